"""Composition of prose documents from sentence banks, plus near-duplicate editing.

A document is a title followed by paragraphs; each paragraph draws 2-5 sentence templates
from one topic of the language's bank (never repeating a template inside a document) and
fills their slots with fresh random values. Keeping the sentence structure around lets the
generator make realistic near-duplicate copies (one sentence replaced, a typo, a date
header, an appended footer...).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from pipelines.sample import fakes
from pipelines.sample.sentence_bank import Bank

# Languages written without spaces between sentences.
NO_SPACE = frozenset({"ja", "zh"})

DATE_FORMATS: dict[str, str] = {
    "en": "{m}/{d}/{y}", "de": "{d}.{m}.{y}", "fr": "{d}/{m}/{y}", "es": "{d}/{m}/{y}",
    "it": "{d}/{m}/{y}", "pt": "{d}/{m}/{y}", "nl": "{d}-{m}-{y}", "ru": "{d}.{m}.{y}",
    "ja": "{y}年{m}月{d}日", "zh": "{y}年{m}月{d}日", "ko": "{y}년 {m}월 {d}일", "pl": "{d}.{m}.{y}",
    "sv": "{y}-{m}-{d}", "tr": "{d}.{m}.{y}", "ar": "{d}/{m}/{y}", "th": "{d}/{m}/{y}",
}


def format_date(rng: random.Random, lang: str) -> str:
    """Return a random date between 2015 and 2024 in the customary numeric form of ``lang``."""
    y, m, d = rng.randint(2015, 2024), rng.randint(1, 12), rng.randint(1, 28)
    fmt = DATE_FORMATS.get(lang, "{y}-{m}-{d}")
    if lang in ("de", "ru", "pl", "tr", "fr", "es", "it", "pt", "nl", "sv"):
        return fmt.format(y=y, m=f"{m:02d}", d=f"{d:02d}")
    return fmt.format(y=y, m=m, d=d)


class Slots(dict[str, str]):
    """Lazily filled slot values for one template (``str.format_map`` argument)."""

    def __init__(self, rng: random.Random, bank: Bank) -> None:
        super().__init__()
        self._rng = rng
        self._bank = bank

    def __missing__(self, key: str) -> str:
        value = self._make(key)
        self[key] = value
        return value

    def _other(self, pool: tuple[str, ...], taken: str) -> str:
        choices = [p for p in pool if p != taken]
        return self._rng.choice(choices)

    def _make(self, key: str) -> str:
        r, b = self._rng, self._bank
        if key == "name":
            return r.choice(b.names_m + b.names_f)
        if key == "name2":
            return self._other(b.names_m + b.names_f, self["name"])
        if key == "man":
            return r.choice(b.names_m)
        if key == "woman":
            return r.choice(b.names_f)
        if key == "city":
            return r.choice(b.cities)
        if key == "city2":
            return self._other(b.cities, self["city"])
        if key == "n":
            return str(r.randint(2, 9))
        if key == "nn":
            return str(r.randint(11, 60))
        if key == "big":
            return str(r.randint(12, 95) * 10)
        if key == "year":
            return str(r.randint(1870, 2022))
        if key == "hour":
            return str(r.randint(6, 21))
        if key == "pct":
            return str(r.randint(5, 19) * 5)
        if key == "date":
            return format_date(r, b.lang)
        if key == "email":
            return fakes.email(r)
        if key == "phone":
            return fakes.phone(r, r.choice(fakes.LANG_COUNTRIES.get(b.lang, ["US", "GB", "DE"])))
        raise KeyError(key)


def fill(rng: random.Random, bank: Bank, template: str) -> str:
    """Fill the slots of ``template`` with random values from ``bank``."""
    return template.format_map(Slots(rng, bank))


@dataclass
class Prose:
    """A composed document: title plus paragraphs of (template, filled sentence) pairs."""

    lang: str
    title: str
    paragraphs: list[list[tuple[str, str]]]
    header: str | None = None
    footer: str | None = None
    para_sep: str = "\n"
    trailing_space: bool = False
    extra: list[str] = field(default_factory=list)

    @property
    def joiner(self) -> str:
        return "" if self.lang in NO_SPACE else " "

    def templates(self) -> set[str]:
        return {t for para in self.paragraphs for t, _ in para}

    def render(self) -> str:
        lines = [] if self.header is None else [self.header]
        if self.title:
            lines.append(self.title)
        for para in self.paragraphs:
            line = self.joiner.join(s for _, s in para)
            lines.append(line + (" " if self.trailing_space else ""))
        lines.extend(self.extra)
        if self.footer is not None:
            lines.append(self.footer)
        return self.para_sep.join(lines)

    def copy(self) -> Prose:
        return Prose(
            lang=self.lang,
            title=self.title,
            paragraphs=[list(p) for p in self.paragraphs],
            header=self.header,
            footer=self.footer,
            para_sep=self.para_sep,
            trailing_space=self.trailing_space,
            extra=list(self.extra),
        )


def compose(rng: random.Random, bank: Bank, min_chars: int, max_chars: int, title: bool = True) -> Prose:
    """Compose a multi-paragraph document of roughly ``min_chars``..``max_chars`` characters."""
    target = rng.randint(min_chars, max_chars)
    topics = list(bank.topics)
    rng.shuffle(topics)
    used: set[str] = set()
    paragraphs: list[list[tuple[str, str]]] = []
    length = 0
    turn = 0
    while length < target and turn < 3 * len(topics):
        topic = topics[turn % len(topics)]
        turn += 1
        pool = [s for s in bank.topics[topic] if s not in used]
        if len(pool) < 2:
            continue
        chosen = rng.sample(pool, k=min(len(pool), rng.randint(2, 5)))
        used.update(chosen)
        para = [(t, fill(rng, bank, t)) for t in chosen]
        paragraphs.append(para)
        length += sum(len(s) + 1 for _, s in para)
    head = fill(rng, bank, rng.choice(bank.titles)) if title else ""
    sep = "\n\n" if rng.random() < 0.3 else "\n"
    return Prose(lang=bank.lang, title=head, paragraphs=paragraphs, para_sep=sep)


def _typo(rng: random.Random, sentence: str, lang: str) -> str:
    if lang in NO_SPACE or lang == "th":
        if len(sentence) < 6:
            return sentence
        i = rng.randrange(1, len(sentence) - 2)
        return sentence[:i] + sentence[i + 1 :]
    words = sentence.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not candidates:
        return sentence
    i = rng.choice(candidates)
    w = words[i]
    j = rng.randrange(1, len(w) - 2)
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


NEAR_DUP_EDITS = ("header", "footer", "replace", "refill", "typo", "drop", "whitespace")


def near_duplicate(rng: random.Random, bank: Bank, prose: Prose) -> tuple[Prose, list[str]]:
    """Return an edited copy of ``prose`` and the list of edits applied (1-3 small edits)."""
    out = prose.copy()
    edits = rng.sample(NEAR_DUP_EDITS, k=rng.randint(1, 3))
    for edit in edits:
        pi = rng.randrange(len(out.paragraphs))
        para = out.paragraphs[pi]
        si = rng.randrange(len(para))
        if edit == "header":
            out.header = fill(rng, bank, rng.choice(bank.headers))
        elif edit == "footer":
            out.footer = fill(rng, bank, rng.choice(bank.footers))
        elif edit == "replace":
            unused = [s for s in bank.sentences if s not in out.templates()]
            t = rng.choice(unused)
            para[si] = (t, fill(rng, bank, t))
        elif edit == "refill":
            t = para[si][0]
            para[si] = (t, fill(rng, bank, t))
        elif edit == "typo":
            para[si] = (para[si][0], _typo(rng, para[si][1], bank.lang))
        elif edit == "drop" and len(para) > 2:
            del para[si]
        elif edit == "whitespace":
            out.para_sep = "\n\n" if out.para_sep == "\n" else "\n"
            out.trailing_space = True
    return out, edits
