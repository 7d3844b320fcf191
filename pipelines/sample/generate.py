"""Deterministic generator of the bundled sample corpus (``corpus.jsonl.gz``).

The corpus is authored by the project: clean prose is composed from the hand-written sentence
banks in ``banks/`` (16 languages), and noise is produced by :mod:`pipelines.sample.noise` and
:mod:`pipelines.sample.pii_docs`. Every random choice comes from ``random.Random`` instances
seeded from ``seed`` and a stage name, and the gzip stream is written with ``mtime=0``, so the
same seed always yields byte-identical output.

Each JSON line is ``{"id", "text", "url", "source": "sample"}``; a few records deliberately
have no ``id``. :func:`build_documents` additionally exposes the intended category and
language of every record (used by the tests; not written to the file).
"""

from __future__ import annotations

import gzip
import json
import random
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipelines.sample import noise, pii_docs
from pipelines.sample.compose import Prose, compose, near_duplicate
from pipelines.sample.sentence_bank import load_bank

# Clean prose documents per language (all >= 40 so each language is usable on its own).
CLEAN_DOCS: dict[str, int] = {
    "en": 110, "de": 60, "fr": 60, "es": 60, "it": 50, "pt": 50, "nl": 50, "ru": 55, "ja": 50, "zh": 50,
    "pl": 45, "sv": 45, "tr": 45, "ko": 45, "ar": 45, "th": 45,
}
# Target length in characters (about 1-4 KB of UTF-8 for every script).
LENGTHS: dict[str, tuple[int, int]] = {
    "ja": (380, 1300), "zh": (380, 1300), "ko": (450, 1400), "th": (400, 1200), "ar": (600, 2000),
    "ru": (700, 2100), "pl": (700, 1900), "sv": (700, 1900), "tr": (700, 1900),
}
DEFAULT_LENGTH = (900, 3200)

N_PII = 150
N_LOOKALIKE = 30
N_BOILERPLATE = 125
N_NEAR_DUP = 150
N_EXACT_DUP = 45
N_TINY = 75
N_CODE = 60
N_GIBBERISH = 45
N_OTHER_LANG = 45
N_WITHOUT_ID = 6

CATEGORIES = (
    "clean", "near_duplicate", "exact_duplicate", "pii", "lookalike", "boilerplate", "tiny", "code",
    "gibberish", "other_language", "tricky",
)

DOMAINS: dict[str, list[str]] = {
    "en": ["dailyhearth.net", "thegreenplot.org", "cityramble.co.uk", "slowtrain-journal.com",
           "northfield-news.com"],
    "de": ["alltagsnotizen.de", "gartenfreunde-nord.de", "stadtleben-magazin.de", "kuechenzeit.at"],
    "fr": ["carnets-du-quotidien.fr", "jardin-et-cuisine.fr", "balades-urbaines.fr", "journal-des-villes.be"],
    "es": ["cuadernodeviaje.es", "huertoencasa.es", "vidaurbana.com.mx", "lacocinadelaabuela.es"],
    "it": ["taccuinodiviaggio.it", "orto-e-cucina.it", "vitadicitta.it"],
    "pt": ["cadernodobairro.pt", "hortaemcasa.com.br", "cronicasurbanas.pt"],
    "nl": ["dagboekvandestad.nl", "moestuinpraat.nl", "fietsnieuws.be"],
    "ru": ["gorodskie-zametki.ru", "sad-i-ogorod.ru", "putevye-ocherki.ru"],
    "ja": ["kurashi-note.jp", "machi-aruki.jp", "ryokou-nikki.jp"],
    "zh": ["shenghuo-biji.cn", "chengshi-zhinan.com.cn", "lvxing-riji.cn"],
    "pl": ["notatki-z-miasta.pl", "ogrod-i-kuchnia.pl"],
    "sv": ["vardagsanteckningar.se", "tradgardsliv.se"],
    "tr": ["sehirnotlari.com.tr", "mutfakgunlugu.com.tr"],
    "ko": ["ilsang-note.kr", "yeohaeng-diary.co.kr"],
    "ar": ["yawmiyat-madina.com", "matbakh-beiti.net"],
    "th": ["banthai-blog.in.th", "kinthiaw.co.th"],
    "*": ["forum.example.com", "pages.example.net", "devnotes.example.org", "random-pages.example",
          "shop.example"],
}
MIRRORS = ["mirror.example.org", "news-aggregator.example.com", "copyblog.example.net", "feeds.example"]


@dataclass
class SampleDoc:
    """One corpus record plus the labels the generator intended for it."""

    key: str
    category: str
    lang: str
    text: str
    url: str
    kind: str = ""
    dup_of: str | None = None
    id: str | None = None

    def record(self) -> dict[str, str]:
        """The JSON object written to the corpus file."""
        rec: dict[str, str] = {} if self.id is None else {"id": self.id}
        rec.update(text=self.text, url=self.url, source="sample")
        return rec


def _slug(title: str) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:60]


class _Urls:
    """Unique, plausible URLs."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def _unique(self, url: str) -> str:
        candidate, i = url, 2
        while candidate in self.used:
            candidate = f"{url}-{i}"
            i += 1
        self.used.add(candidate)
        return candidate

    def new(self, lang: str, title: str = "") -> str:
        r = self.rng
        domain = r.choice(DOMAINS.get(lang, DOMAINS["*"]))
        slug = _slug(title)
        if len(slug) < 4:
            slug = f"p{r.randint(1000, 99999)}"
        section = r.choice(["blog", "news", "stories", "article", "magazine", "post", "page"])
        return self._unique(f"https://{domain}/{section}/{r.randint(2015, 2024)}/{slug}")

    def copy_of(self, url: str) -> str:
        r = self.rng
        path = url.split("/", 3)[3]
        return self._unique(r.choice([
            f"https://{r.choice(MIRRORS)}/{path}",
            f"{url}?utm_source=newsletter",
            f"{url}/amp",
            url.replace("https://", "https://m.", 1),
            f"https://{r.choice(MIRRORS)}/archive/{r.randint(1, 9999)}",
        ]))


def _stage_rng(seed: int, stage: str) -> random.Random:
    # String seeds are hashed with SHA-512 by ``random``, so this is stable across runs.
    return random.Random(f"tokenmill-sample/{seed}/{stage}")


def build_documents(seed: int = 0) -> list[SampleDoc]:
    """Build every document of the corpus, in final (shuffled) order, with ids assigned."""
    docs: list[SampleDoc] = []
    urls = _Urls(_stage_rng(seed, "urls"))

    # Clean prose.
    r = _stage_rng(seed, "clean")
    proses: dict[str, Prose] = {}
    by_key: dict[str, SampleDoc] = {}
    for lang, count in CLEAN_DOCS.items():
        bank = load_bank(lang)
        lo, hi = LENGTHS.get(lang, DEFAULT_LENGTH)
        for i in range(count):
            prose = compose(r, bank, lo, hi)
            key = f"clean/{lang}/{i:03d}"
            proses[key] = prose
            doc = SampleDoc(key, "clean", lang, prose.render(), urls.new(lang, prose.title))
            by_key[key] = doc
            docs.append(doc)

    # Near-duplicate clusters (source + 1..4 edited copies).
    r = _stage_rng(seed, "near_duplicate")
    keys = list(proses)
    sources = r.sample(keys, k=len(keys) // 6)
    made = 0
    for src in sources:
        if made >= N_NEAR_DUP:
            break
        src_doc = by_key[src]
        bank = load_bank(src_doc.lang)
        seen = {src_doc.text}
        for _ in range(min(r.randint(1, 4), N_NEAR_DUP - made)):
            variant, edits = near_duplicate(r, bank, proses[src])
            text = variant.render()
            while text in seen:
                variant, edits = near_duplicate(r, bank, proses[src])
                text = variant.render()
            seen.add(text)
            docs.append(SampleDoc(f"near/{made:03d}", "near_duplicate", src_doc.lang, text,
                                  urls.copy_of(src_doc.url), kind="+".join(edits), dup_of=src))
            made += 1

    # Exact duplicates (mostly byte-identical; a few differ only in whitespace or case).
    r = _stage_rng(seed, "exact_duplicate")
    near_sources = set(sources)
    candidates = [k for k in keys if k not in near_sources]
    for i, src in enumerate(r.sample(candidates, k=N_EXACT_DUP)):
        src_doc = by_key[src]
        text, kind = src_doc.text, "identical"
        if i % 8 == 6:
            text, kind = "\n" + text.replace("\n", "\n\n") + "  \n", "whitespace"
        elif i % 8 == 7:
            text, kind = text.upper() if src_doc.lang in ("en", "de", "fr", "es") else text + " ", "case"
        docs.append(SampleDoc(f"exact/{i:03d}", "exact_duplicate", src_doc.lang, text,
                              urls.copy_of(src_doc.url), kind=kind, dup_of=src))

    # PII and look-alikes.
    r = _stage_rng(seed, "pii")
    for i in range(N_PII):
        text, lang, kinds = pii_docs.pii_doc(r, i)
        docs.append(SampleDoc(f"pii/{i:03d}", "pii", lang, text, urls.new(lang), kind="+".join(kinds)))
    r = _stage_rng(seed, "lookalike")
    for i in range(N_LOOKALIKE):
        text, lang = pii_docs.lookalike_doc(r)
        docs.append(SampleDoc(f"lookalike/{i:03d}", "lookalike", lang, text, urls.new("*")))

    # Boilerplate / spam, tiny, code, gibberish, other languages, tricky records.
    r = _stage_rng(seed, "boilerplate")
    for i in range(N_BOILERPLATE):
        text, lang = noise.boilerplate(r, i)
        kind = noise.BOILERPLATE_KINDS[i % len(noise.BOILERPLATE_KINDS)].__name__
        docs.append(SampleDoc(f"boilerplate/{i:03d}", "boilerplate", lang, text, urls.new("*"), kind=kind))
    r = _stage_rng(seed, "tiny")
    for i in range(N_TINY):
        text, lang = noise.tiny(r)
        docs.append(SampleDoc(f"tiny/{i:03d}", "tiny", lang, text, urls.new("*")))
    r = _stage_rng(seed, "code")
    for i in range(N_CODE):
        text, lang = noise.code(r, i)
        kind = noise.CODE_KINDS[i % len(noise.CODE_KINDS)].__name__.lstrip("_")
        docs.append(SampleDoc(f"code/{i:03d}", "code", lang, text, urls.new("*"), kind=kind))
    r = _stage_rng(seed, "gibberish")
    for i in range(N_GIBBERISH):
        text, lang = noise.gibberish(r, i)
        kind = noise.GIBBERISH_KINDS[i % len(noise.GIBBERISH_KINDS)].__name__
        docs.append(SampleDoc(f"gibberish/{i:03d}", "gibberish", lang, text, urls.new("*"), kind=kind))
    r = _stage_rng(seed, "other_language")
    for i in range(N_OTHER_LANG):
        text, lang = noise.other_language(r, i)
        docs.append(SampleDoc(f"other/{i:03d}", "other_language", lang, text, urls.new("*")))
    r = _stage_rng(seed, "tricky")
    for i, (kind, text, lang) in enumerate(noise.tricky(r)):
        docs.append(SampleDoc(f"tricky/{i:03d}", "tricky", lang, text, urls.new("*"), kind=kind))

    # Final order, ids, and a few records without an id.
    r = _stage_rng(seed, "order")
    r.shuffle(docs)
    without_id = set(r.sample(range(len(docs)), k=N_WITHOUT_ID))
    for i, doc in enumerate(docs):
        doc.id = None if i in without_id else f"sample-{i:05d}"
    return docs


def serialize(docs: list[SampleDoc]) -> bytes:
    """Return the gzip-compressed JSON-lines bytes of ``docs`` (reproducible: mtime=0)."""
    lines = [json.dumps(d.record(), ensure_ascii=False) for d in docs]
    return gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), compresslevel=9, mtime=0)


def count(docs: list[SampleDoc]) -> dict[str, int]:
    """Counts per category (``category/<name>``) and intended language (``lang/<code>``)."""
    out: dict[str, int] = {"documents": len(docs), "without_id": sum(d.id is None for d in docs)}
    cats = Counter(d.category for d in docs)
    for cat in CATEGORIES:
        out[f"category/{cat}"] = cats[cat]
    for lang, n in sorted(Counter(d.lang for d in docs).items(), key=lambda kv: (-kv[1], kv[0])):
        out[f"lang/{lang}"] = n
    for lang, n in sorted(Counter(d.lang for d in docs if d.category == "clean").items()):
        out[f"clean/{lang}"] = n
    return out


def generate(path: Path, seed: int = 0) -> dict[str, int]:
    """Write the corpus for ``seed`` to ``path`` and return its counts (see :func:`count`)."""
    docs = build_documents(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(serialize(docs))
    return count(docs)
