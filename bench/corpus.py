"""The benchmark corpus: N documents of about 3 KB of real text, as JSONL in a cache directory.

Sources are the public-domain texts under ``<eval>/corpus/`` (see its PROVENANCE.txt): the NLTK Gutenberg
books, the US inaugural addresses, tiny Shakespeare and the UDHR translations (``udhr_utf8.jsonl``). Each
text is cut into ~3 KB documents at paragraph boundaries (line boundaries for long paragraphs, sentence
boundaries for very long lines), keeping the line breaks. The unique chunks are spread evenly over the
list, so any prefix of the corpus mixes prose, verse, speeches and other languages.

Beyond the unique chunks (about 3,700) documents repeat, each repeat made different in a deterministic way
so that deduplication does not simply drop them: repeat ``r`` of a chunk keeps a seeded ~75% of the chunk's
lines, fills up to the original length with lines of another chunk, shuffles the line order and shuffles the
sentences inside long lines. Two repeats of one chunk then share well under the 0.7 estimated Jaccard that
the dedup stage calls a near-duplicate; some still fall above it, and the builds report how many
documents survive (the "kept fraction").

Nothing here is copied into the repository: the corpus is written to ``bench-home/`` (gitignored).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

TARGET_CHARS = 3000
MAX_LINE_CHARS = 3000
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


class EvalMissing(RuntimeError):
    """The eval directory (or its corpus) is not there: benchmarks skip with this message."""


@dataclass(frozen=True)
class Chunk:
    source: str
    text: str


def corpus_dir(eval_dir: str | Path) -> Path:
    root = Path(eval_dir) / "corpus"
    if not (root / "PROVENANCE.txt").is_file():
        raise EvalMissing(
            f"benchmark corpus not found: {root}/PROVENANCE.txt is missing "
            "(pass --eval DIR pointing at the shared eval data)"
        )
    return root


def _split_long_line(line: str) -> list[str]:
    if len(line) <= MAX_LINE_CHARS:
        return [line]
    pieces, current = [], ""
    for sentence in _SENTENCE_END.split(line):
        if current and len(current) + len(sentence) + 1 > TARGET_CHARS:
            pieces.append(current)
            current = ""
        current = f"{current} {sentence}" if current else sentence
    if current:
        pieces.append(current)
    return pieces


def split_text(text: str, target: int = TARGET_CHARS) -> list[str]:
    """Paragraphs (blank-line separated) packed into ~``target``-char documents; line breaks kept."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    paragraphs = [p.strip("\n") for p in re.split(r"\n\s*\n", text) if p.strip()]
    units: list[str] = []  # paragraphs no longer than target; longer ones split at line boundaries
    for para in paragraphs:
        if len(para) <= target:
            units.append(para)
            continue
        block: list[str] = []
        size = 0
        for line in (piece for raw in para.split("\n") for piece in _split_long_line(raw)):
            if block and size + len(line) + 1 > target:
                units.append("\n".join(block))
                block, size = [], 0
            block.append(line)
            size += len(line) + 1
        if block:
            units.append("\n".join(block))
    docs: list[str] = []
    current: list[str] = []
    size = 0
    for unit in units:
        if current and size + len(unit) + 2 > target:
            docs.append("\n\n".join(current))
            current, size = [], 0
        current.append(unit)
        size += len(unit) + 2
    if current:
        tail = "\n\n".join(current)
        # A short tail joins the previous document rather than becoming a tiny one.
        if docs and len(tail) < target // 3:
            docs[-1] = docs[-1] + "\n\n" + tail
        else:
            docs.append(tail)
    return docs


def _source_texts(root: Path) -> list[tuple[str, str]]:
    texts: list[tuple[str, str]] = []
    for folder in ("gutenberg", "inaugural", "tinyshakespeare"):
        for path in sorted((root / folder).glob("*.txt")):
            texts.append((f"{folder}/{path.name}", path.read_text(encoding="utf-8", errors="replace")))
    udhr = root / "udhr_utf8.jsonl"
    if udhr.is_file():
        with udhr.open(encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                texts.append((f"udhr/{row['file']}", row["text"]))
    if not texts:
        raise EvalMissing(f"no texts found under {root}")
    return texts


def unique_chunks(eval_dir: str | Path) -> list[Chunk]:
    """Every ~3 KB chunk of every source, each source spread evenly over the list.

    Chunk j of a source with m chunks sorts at (j + 0.5) / m, so any prefix of the list holds every
    source in proportion to its size (Gutenberg books are most of the text, UDHR about a quarter).
    """
    sources = _source_texts(corpus_dir(eval_dir))
    keyed: list[tuple[float, int, Chunk]] = []
    for s, (name, text) in enumerate(sources):
        pieces = split_text(text)
        keyed.extend(((j + 0.5) / len(pieces), s, Chunk(name, doc)) for j, doc in enumerate(pieces))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [chunk for _, _, chunk in keyed]


def _shuffle_sentences(line: str, rng: random.Random) -> str:
    sentences = _SENTENCE_END.split(line)
    if len(sentences) < 3:
        return line
    rng.shuffle(sentences)
    return " ".join(sentences)


def variant(chunk: Chunk, other: Chunk, repeat: int, index: int, seed: int) -> str:
    """Repeat ``repeat`` (>= 1) of ``chunk``: a seeded line subset + filler from ``other``, shuffled."""
    rng = random.Random(f"{seed}:{index}:{repeat}")
    lines = [line for line in chunk.text.split("\n") if line.strip()]
    filler = [line for line in other.text.split("\n") if line.strip()]
    keep = [line for line in lines if rng.random() < 0.75] or lines[:1]
    size = sum(len(line) + 1 for line in keep)
    rng.shuffle(filler)
    for line in filler:
        if size >= len(chunk.text):
            break
        keep.append(line)
        size += len(line) + 1
    rng.shuffle(keep)
    keep = [_shuffle_sentences(line, rng) if len(line) > 200 else line for line in keep]
    # Paragraph breaks every few lines, as in the originals.
    out: list[str] = []
    for i, line in enumerate(keep):
        if i and rng.random() < 0.15:
            out.append("")
        out.append(line)
    return "\n".join(out)


def build_documents(eval_dir: str | Path, n: int, seed: int = 0) -> list[dict]:
    chunks = unique_chunks(eval_dir)
    unique = len(chunks)
    docs = []
    for i in range(n):
        repeat, k = divmod(i, unique)
        chunk = chunks[k]
        if repeat == 0:
            text = chunk.text
        else:
            other = chunks[(k + 7919 * repeat) % unique]
            text = variant(chunk, other, repeat, k, seed)
        docs.append({"id": f"bench-{i:07d}", "text": text, "source": chunk.source, "repeat": repeat})
    return docs


def ensure_corpus(eval_dir: str | Path, n: int, cache_dir: str | Path, seed: int = 0) -> Path:
    """``<cache_dir>/corpus-N.jsonl``, written once (temp file + rename) and reused afterwards."""
    cache = Path(cache_dir)
    path = cache / f"corpus-{n}.jsonl"
    corpus_dir(eval_dir)  # fail early with a clear message
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for doc in build_documents(eval_dir, n, seed):
            handle.write(json.dumps(doc, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def describe(eval_dir: str | Path) -> dict:
    chunks = unique_chunks(eval_dir)
    sizes = sorted(len(c.text) for c in chunks)
    return {
        "unique_chunks": len(chunks),
        "median_chars": sizes[len(sizes) // 2],
        "sources": len({c.source for c in chunks}),
    }
