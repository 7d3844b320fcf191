"""Parsing raw inputs into Records and DeadLetters: JSONL (plain/gz/zst), Parquet, text and WET."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.readers import (
    RANGES_PER_FILE,
    DeadLetter,
    FileDigest,
    InputChangedError,
    InputConfig,
    ReadUnit,
    Record,
    derive_id,
    detect_format,
    input_reason,
    merge_digests,
    plan_reads,
    read_file,
    read_unit,
    splittable,
)

DOCS = [
    {"id": "a1", "text": "First document, plain ASCII."},
    {"id": 42, "text": "Second: ünïcödé — 日本語 😀"},
    {"text": "Third has no id at all."},
    {"id": "", "text": "Fourth has an empty id."},
]


def _open(path: str):
    return open(path, "rb")


def _read(path: Path, config: InputConfig | None = None) -> tuple[list[Record], list[DeadLetter], FileDigest]:
    digest = FileDigest(str(path))
    items = list(read_file(str(path), _open, config or InputConfig(), digest))
    records = [i for i in items if isinstance(i, Record)]
    dead = [i for i in items if isinstance(i, DeadLetter)]
    assert len(records) + len(dead) == len(items)
    return records, dead, digest


def _jsonl_bytes(docs: list[dict]) -> bytes:
    return b"".join(json.dumps(d, ensure_ascii=False).encode("utf-8") + b"\n" for d in docs)


def _check_docs(records: list[Record], path: Path) -> None:
    assert [r.text for r in records] == [d["text"] for d in DOCS]
    assert records[0].id == "a1"
    assert records[1].id == "42"
    assert records[2].id.startswith("d") and len(records[2].id) == 21
    assert records[3].id.startswith("d")
    assert records[2].id != records[3].id
    assert all(r.source == str(path) for r in records)


def _check_digest(digest: FileDigest, path: Path, records: int, dead: int) -> None:
    data = path.read_bytes()
    assert digest.sha256 == hashlib.sha256(data).hexdigest()
    assert digest.bytes == len(data)
    assert digest.records == records
    assert digest.dead_letters == dead


# ------------------------------------------------------------------------------------------ JSONL


def test_jsonl_plain(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(_jsonl_bytes(DOCS))
    records, dead, digest = _read(path)
    assert dead == []
    _check_docs(records, path)
    assert [r.position for r in records] == [1, 2, 3, 4]
    _check_digest(digest, path, 4, 0)


def test_jsonl_gz(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl.gz"
    path.write_bytes(gzip.compress(_jsonl_bytes(DOCS)))
    records, dead, digest = _read(path)
    assert dead == []
    _check_docs(records, path)
    _check_digest(digest, path, 4, 0)


def test_jsonl_zst(tmp_path: Path) -> None:
    zstandard = pytest.importorskip("zstandard")
    path = tmp_path / "in.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(_jsonl_bytes(DOCS)))
    records, dead, digest = _read(path)
    assert dead == []
    _check_docs(records, path)
    _check_digest(digest, path, 4, 0)


def test_jsonl_blank_lines_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "in.ndjson"
    path.write_bytes(b'\n{"id": "x", "text": "one"}\r\n   \n{"id": "y", "text": "two"}')  # no final newline
    records, dead, digest = _read(path)
    assert dead == []
    assert [(r.id, r.text) for r in records] == [("x", "one"), ("y", "two")]
    _check_digest(digest, path, 2, 0)


def test_configurable_fields(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_bytes(_jsonl_bytes([{"doc_id": "k1", "content": "hello", "text": "ignored"}]))
    config = InputConfig(text_field="content", id_field="doc_id")
    records, dead, _ = _read(path, config)
    assert dead == []
    assert [(r.id, r.text) for r in records] == [("k1", "hello")]
    # With the default fields the same line reads "text" and derives an id.
    records, _, _ = _read(path)
    assert records[0].text == "ignored"
    assert records[0].id != "k1"


def test_derived_ids_stable_and_position_dependent(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(_jsonl_bytes([{"text": "same"}, {"text": "same"}]))
    first, _, _ = _read(path)
    second, _, _ = _read(path)
    assert [r.id for r in first] == [r.id for r in second]
    assert first[0].id != first[1].id
    assert derive_id(str(path), 1, "same") == first[0].id
    # Only the base name counts: the same file moved elsewhere keeps its ids.
    assert derive_id("/elsewhere/in.jsonl", 1, "same") == first[0].id
    assert derive_id(str(path), 1, "other") != first[0].id


BAD = [
    (b'{"id": "broken", "text": "unterminated\n', "broken JSON"),
    (b'{"id": "badutf8", "text": "caf\xe9 \xff"}\n', "invalid UTF-8"),
    (b'["not", "an", "object"]\n', "expected a JSON object"),
    (b'"just a string"\n', "expected a JSON object"),
    (b'{"id": "notext", "body": "x"}\n', "missing text field"),
    (b'{"id": "numtext", "text": 12345}\n', "is int"),
    (b'{"id": "listtext", "text": ["a", "b"]}\n', "is list"),
    (b'{"id": "nulltext", "text": null}\n', "missing text field"),
    (b'{"id": true, "text": "bool id"}\n', "id field"),
    (b'{"id": 1.5, "text": "float id"}\n', "id field"),
    (b'{"id": "surrogate", "text": "bad \\ud800 half"}\n', "surrogate"),
    # Beam's coders refuse such a string: kept, it would crash the whole build, not just this record.
    (b'{"id": "abc\\ud800", "text": "Hello there."}\n', "id field 'id' contains unpaired UTF-16 surrogates"),
    # The parser recurses per level: its RecursionError once ended the whole build.
    (b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b"}\n", "nested too deeply"),
    # Valid JSON that Python refuses with a ValueError that is no JSONDecodeError.
    (b'{"id": 1' + b"0" * 5000 + b', "text": "huge id"}\n', "4300 digits"),
]


@pytest.mark.parametrize(("line", "error"), BAD, ids=[e for _, e in BAD])
def test_jsonl_dead_letters(tmp_path: Path, line: bytes, error: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"id": "before", "text": "ok"}\n' + line + b'{"id": "after", "text": "ok too"}\n')
    records, dead, digest = _read(path)
    assert [r.id for r in records] == ["before", "after"]
    assert len(dead) == 1
    letter = dead[0]
    assert letter.source == str(path)
    assert letter.position == 2
    assert error in letter.error
    assert letter.raw == line
    _check_digest(digest, path, 2, 1)


def test_jsonl_all_bad_lines_together(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"".join(line for line, _ in BAD))
    records, dead, digest = _read(path)
    assert records == []
    assert [d.position for d in dead] == list(range(1, len(BAD) + 1))
    _check_digest(digest, path, 0, len(BAD))


def test_lone_surrogate_in_a_custom_id_field_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"key": "k\\udfff", "text": "fine text"}\n{"key": "k2", "text": "more"}\n')
    records, dead, digest = _read(path, InputConfig(id_field="key"))
    assert [r.id for r in records] == ["k2"]
    assert [(d.position, d.error) for d in dead] == [(1, "id field 'key' contains unpaired UTF-16 surrogates")]
    _check_digest(digest, path, 1, 1)


BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("name", ["in.jsonl", "in.jsonl.gz", "in.jsonl.zst"])
def test_jsonl_leading_bom_is_not_part_of_the_first_record(tmp_path: Path, name: str) -> None:
    data = BOM + _jsonl_bytes(DOCS)
    path = tmp_path / name
    if name.endswith(".gz"):
        data = gzip.compress(data)
    elif name.endswith(".zst"):
        data = pytest.importorskip("zstandard").ZstdCompressor().compress(data)
    path.write_bytes(data)
    records, dead, digest = _read(path)
    assert dead == []
    _check_docs(records, path)
    assert records[0].position == 1
    _check_digest(digest, path, 4, 0)


def test_jsonl_holding_only_a_bom_is_empty(tmp_path: Path) -> None:
    # What an editor saves for an empty "UTF-8 with BOM" file.
    for data in (BOM, BOM + b"\r\n"):
        path = tmp_path / "empty.jsonl"
        path.write_bytes(data)
        assert _read(path)[:2] == ([], [])


def test_jsonl_record_too_long(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    long_line = json.dumps({"id": "long", "text": "x" * 5000}).encode() + b"\n"
    path.write_bytes(
        b'{"id": "a", "text": "short"}\n' + long_line + b'{"id": "b", "text": "next line parses"}\n'
    )
    records, dead, digest = _read(path, InputConfig(max_record_bytes=1000))
    assert [(r.id, r.text) for r in records] == [("a", "short"), ("b", "next line parses")]
    assert len(dead) == 1
    assert dead[0].position == 2
    assert "longer than 1000 bytes" in dead[0].error
    assert long_line.startswith(dead[0].raw)
    assert 0 < len(dead[0].raw) <= 1001
    _check_digest(digest, path, 2, 1)


def test_jsonl_record_too_long_spanning_many_chunks(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    huge = json.dumps({"text": "y" * (3 << 20)}).encode() + b"\n"  # longer than the 1 MiB skip chunks
    path.write_bytes(huge + b'{"id": "b", "text": "survivor"}\n')
    records, dead, _ = _read(path, InputConfig(max_record_bytes=100))
    assert [r.id for r in records] == ["b"]
    assert [d.position for d in dead] == [1]
    assert records[0].position == 2


def test_corrupt_gz_keeps_records_before_corruption(tmp_path: Path) -> None:
    docs = [{"id": f"doc{i}", "text": f"document number {i} " + "filler " * 20} for i in range(2000)]
    data = gzip.compress(_jsonl_bytes(docs))
    path = tmp_path / "trunc.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    records, dead, digest = _read(path)
    assert len(records) > 0
    assert len(records) < len(docs)
    assert [r.id for r in records] == [f"doc{i}" for i in range(len(records))]
    assert len(dead) == 1
    assert dead[0].source == str(path)
    assert "unreadable" in dead[0].error
    _check_digest(digest, path, len(records), 1)


def test_not_gzip_at_all(tmp_path: Path) -> None:
    path = tmp_path / "fake.jsonl.gz"
    path.write_bytes(b"this is not gzip data\n" * 10)
    records, dead, digest = _read(path)
    assert records == []
    assert len(dead) == 1
    _check_digest(digest, path, 0, 1)


def test_not_zstd_at_all(tmp_path: Path) -> None:
    path = tmp_path / "fake.jsonl.zst"
    path.write_bytes(b"this is not zstd data\n" * 10)
    records, dead, digest = _read(path)
    assert records == []
    assert len(dead) == 1
    assert "unreadable" in dead[0].error
    _check_digest(digest, path, 0, 1)


def test_truncated_zst_keeps_records_before_corruption(tmp_path: Path) -> None:
    zstandard = pytest.importorskip("zstandard")
    docs = [{"id": f"doc{i}", "text": f"document number {i} " + "filler " * 20} for i in range(5000)]
    data = zstandard.ZstdCompressor().compress(_jsonl_bytes(docs))
    path = tmp_path / "trunc.jsonl.zst"
    path.write_bytes(data[: len(data) // 2])
    records, dead, digest = _read(path)
    assert 0 < len(records) < len(docs)
    assert [r.id for r in records] == [f"doc{i}" for i in range(len(records))]
    assert len(dead) == 1
    assert "unreadable" in dead[0].error
    _check_digest(digest, path, len(records), 1)


# ---------------------------------------------------------------------------------------- Parquet


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    table = pa.table({"id": ["p0", None, "p2"], "text": ["zero", "one", None], "other": [1, 2, 3]})
    pq.write_table(table, path)
    records, dead, digest = _read(path)
    assert [(r.id, r.text, r.position) for r in records[:1]] == [("p0", "zero", 0)]
    assert records[1].text == "one"
    assert records[1].id.startswith("d")
    assert len(records) == 2
    assert len(dead) == 1
    assert dead[0].position == 2
    assert "missing text field" in dead[0].error
    _check_digest(digest, path, 2, 1)


def test_parquet_custom_fields_and_int_ids(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"key": [7, 8], "body": ["seven", "eight"]}), path)
    records, dead, _ = _read(path, InputConfig(text_field="body", id_field="key"))
    assert dead == []
    assert [(r.id, r.text) for r in records] == [("7", "seven"), ("8", "eight")]


def test_parquet_without_text_column(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": ["a"], "content": ["x"]}), path)
    records, dead, digest = _read(path)
    assert records == []
    assert len(dead) == 1
    assert "text" in dead[0].error
    _check_digest(digest, path, 0, 1)


def test_corrupt_parquet(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 definitely not a parquet file")
    records, dead, digest = _read(path)
    assert records == []
    assert len(dead) == 1
    _check_digest(digest, path, 0, 1)


# ------------------------------------------------------------------------------------------- text


def test_text_file_is_one_document(tmp_path: Path) -> None:
    path = tmp_path / "doc.txt"
    content = "Line one.\nLine two — ünïcode.\n\nParagraph two.\n"
    path.write_text(content, encoding="utf-8")
    records, dead, digest = _read(path)
    assert dead == []
    assert len(records) == 1
    assert records[0].text == content
    assert records[0].position == 0
    assert records[0].id == derive_id(str(path), 0, content)
    _check_digest(digest, path, 1, 0)


def test_text_gz(tmp_path: Path) -> None:
    path = tmp_path / "doc.md.gz"
    path.write_bytes(gzip.compress(b"# Title\n\nbody\n"))
    records, dead, _ = _read(path)
    assert [r.text for r in records] == ["# Title\n\nbody\n"]
    assert dead == []


def test_text_blank_file_gives_nothing(tmp_path: Path) -> None:
    path = tmp_path / "blank.txt"
    path.write_bytes(b"  \n\n")
    records, dead, digest = _read(path)
    assert records == [] and dead == []
    _check_digest(digest, path, 0, 0)


def test_text_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"abc \xff def")
    records, dead, _ = _read(path)
    assert records == []
    assert len(dead) == 1
    assert "invalid UTF-8 at byte 4" in dead[0].error


def test_text_too_long(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"z" * 2000)
    records, dead, digest = _read(path, InputConfig(max_record_bytes=1000))
    assert records == []
    assert len(dead) == 1
    assert "longer than 1000" in dead[0].error
    _check_digest(digest, path, 0, 1)


# -------------------------------------------------------------------------------------------- WET


def _warc_record(headers: dict[str, str], body: bytes) -> bytes:
    head = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode("utf-8") + body + b"\r\n\r\n"


WET_TEXTS = ["Hello from the first page.\nSecond line.", "Zweite Seite — ünïcode 日本語 😀\n"]


def _wet_bytes() -> bytes:
    parts = [
        _warc_record(
            {"WARC-Type": "warcinfo", "WARC-Record-ID": "<urn:uuid:00000000-0000-0000-0000-000000000000>"},
            b"Software-Info: test\r\nformat: WARC File Format 1.0\r\n",
        )
    ]
    for i, text in enumerate(WET_TEXTS):
        parts.append(
            _warc_record(
                {
                    "WARC-Type": "conversion",
                    "WARC-Target-URI": f"https://example.com/page{i}",
                    "WARC-Date": "2024-01-01T00:00:00Z",
                    "WARC-Record-ID": f"<urn:uuid:1234567{i}-aaaa-bbbb-cccc-dddddddddddd>",
                    "Content-Type": "text/plain",
                },
                text.encode("utf-8"),
            )
        )
    return b"".join(parts)


def test_wet(tmp_path: Path) -> None:
    path = tmp_path / "crawl.warc.wet"
    path.write_bytes(_wet_bytes())
    records, dead, digest = _read(path)
    assert dead == []
    assert [r.text for r in records] == WET_TEXTS
    assert [r.id for r in records] == [
        "12345670-aaaa-bbbb-cccc-dddddddddddd",
        "12345671-aaaa-bbbb-cccc-dddddddddddd",
    ]
    assert [r.position for r in records] == [1, 2]
    _check_digest(digest, path, 2, 0)


def test_wet_gz(tmp_path: Path) -> None:
    path = tmp_path / "crawl.warc.wet.gz"
    path.write_bytes(gzip.compress(_wet_bytes()))
    records, dead, digest = _read(path)
    assert dead == []
    assert [r.text for r in records] == WET_TEXTS
    _check_digest(digest, path, 2, 0)


def test_text_zst(tmp_path: Path) -> None:
    zstandard = pytest.importorskip("zstandard")
    path = tmp_path / "doc.txt.zst"
    text = "word " * 100_000
    path.write_bytes(zstandard.ZstdCompressor().compress(text.encode()))
    records, dead, digest = _read(path)
    assert dead == []
    assert [r.text for r in records] == [text]
    _check_digest(digest, path, 1, 0)


def test_wet_zst(tmp_path: Path) -> None:
    zstandard = pytest.importorskip("zstandard")
    path = tmp_path / "crawl.warc.wet.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(_wet_bytes()))
    records, dead, _ = _read(path)
    assert dead == []
    assert [r.text for r in records] == WET_TEXTS


def _wet_with_big_record(big_bytes: int) -> bytes:
    return (
        _wet_bytes()
        + _warc_record({"WARC-Type": "conversion"}, b"B" * big_bytes)
        + _warc_record({"WARC-Type": "conversion", "WARC-Record-ID": "<urn:uuid:last>"}, b"after the big one")
    )


def test_wet_record_longer_than_excerpt_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "crawl.wet"
    path.write_bytes(_wet_with_big_record(70 * 1024))
    records, dead, digest = _read(path, InputConfig(max_record_bytes=1000))
    assert [r.text for r in records] == [*WET_TEXTS, "after the big one"]
    assert records[-1].id == "last"
    assert len(dead) == 1
    assert dead[0].position == 3
    assert "longer than 1000" in dead[0].error
    assert set(dead[0].raw) == {ord("B")}
    _check_digest(digest, path, 3, 1)


def test_wet_record_too_long_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "crawl.wet"
    path.write_bytes(_wet_with_big_record(5000))
    records, dead, _ = _read(path, InputConfig(max_record_bytes=1000))
    assert [r.text for r in records] == [*WET_TEXTS, "after the big one"]
    assert records[-1].id == "last"
    assert len(dead) == 1
    assert "longer than 1000" in dead[0].error
    assert set(dead[0].raw) == {ord("B")}


def _read_after_good_records(tmp_path: Path, first: bytes, config: InputConfig | None = None):
    """``first``, then the two good conversion records of ``_wet_bytes``, read as one WET file."""
    path = tmp_path / "crawl.wet"
    path.write_bytes(first + _wet_bytes())
    return path, *_read(path, config)


@pytest.mark.parametrize("value", ["many", "-1", "+5", "1_0", "5 5", "", None])
def test_wet_invalid_content_length_is_dead_lettered_and_later_records_still_read(tmp_path: Path,
                                                                                  value: str | None) -> None:
    # int() takes "-1" (read(-1) then swallowed the rest of the file), "+5" and "1_0": only digits frame a record.
    header = "" if value is None else f"Content-Length: {value}\r\n"
    bad = f"WARC/1.0\r\nWARC-Type: conversion\r\n{header}\r\nbody\r\nmore body\r\n\r\n".encode()
    path, records, dead, digest = _read_after_good_records(tmp_path, bad)
    assert [r.text for r in records] == WET_TEXTS
    assert [r.position for r in records] == [2, 3]
    assert [d.position for d in dead] == [1]
    assert ("invalid Content-Length" if value else "no Content-Length") in dead[0].error
    assert dead[0].raw.startswith(b"WARC/1.0\r\nWARC-Type: conversion\r\n")
    _check_digest(digest, path, 2, 1)


@pytest.mark.parametrize("max_record_bytes", [32 << 20, 1000])
def test_wet_length_past_the_end_of_the_file_is_a_dead_letter_whatever_the_record_type(
        tmp_path: Path, max_record_bytes: int) -> None:
    # Once a skipped warcinfo record, it silently swallowed every record after it.
    bogus = _warc_record({"WARC-Type": "warcinfo"}, b"info").replace(b"Content-Length: 4", b"Content-Length: 99999")
    config = InputConfig(max_record_bytes=max_record_bytes)
    path, records, dead, digest = _read_after_good_records(tmp_path, bogus, config)
    assert records == []
    assert [d.position for d in dead] == [1]
    assert "truncated record" in dead[0].error and "of 99999 bytes" in dead[0].error
    _check_digest(digest, path, 0, 1)


def test_wet_record_without_the_blank_line_after_its_headers_is_a_dead_letter(tmp_path: Path) -> None:
    # Its headers ran on into the next record's, whose values overwrote them: the record vanished uncounted.
    bad = b"WARC/1.0\r\nWARC-Type: conversion\r\nContent-Length: 9\r\nbody text\r\n"
    path, records, dead, digest = _read_after_good_records(tmp_path, bad)
    assert [r.text for r in records] == WET_TEXTS
    assert [d.position for d in dead] == [1] and [r.position for r in records] == [2, 3]
    assert "without the blank line" in dead[0].error and dead[0].raw.startswith(b"WARC/1.0\r\nWARC-Type")
    _check_digest(digest, path, 2, 1)


def test_wet_truncated_record(tmp_path: Path) -> None:
    data = _wet_bytes()
    path = tmp_path / "crawl.wet"
    path.write_bytes(data[: len(data) - 20])
    records, dead, digest = _read(path)
    assert [r.text for r in records] == WET_TEXTS[:1]
    assert len(dead) == 1
    assert "truncated" in dead[0].error
    _check_digest(digest, path, 1, 1)


def test_text_and_wet_leading_bom_is_dropped(tmp_path: Path) -> None:
    text = tmp_path / "doc.txt"
    text.write_bytes(BOM + "Body — ünïcode.\n".encode())
    records, dead, _ = _read(text)
    assert [r.text for r in records] == ["Body — ünïcode.\n"] and dead == []
    # Without the BOM stripped, the first record's "WARC/1.0" line is not recognised and the page is lost.
    wet = tmp_path / "crawl.wet"
    wet.write_bytes(BOM + _warc_record({"WARC-Type": "conversion"}, b"first page") + _wet_bytes())
    records, dead, digest = _read(wet)
    assert [r.text for r in records] == ["first page", *WET_TEXTS] and dead == []
    _check_digest(digest, wet, 3, 0)


def test_wet_record_without_id_gets_derived_id(tmp_path: Path) -> None:
    path = tmp_path / "crawl.wet"
    path.write_bytes(_warc_record({"WARC-Type": "conversion"}, b"anonymous page"))
    records, dead, _ = _read(path)
    assert dead == []
    assert records[0].id == derive_id(str(path), 1, "anonymous page")


# --------------------------------------------------------------------------------- format, reasons


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.jsonl", "jsonl"),
        ("a.JSONL.GZ", "jsonl"),
        ("a.ndjson.zst", "jsonl"),
        ("a.json.zstd", "jsonl"),
        ("dir/a.parquet", "parquet"),
        ("CC-MAIN-1.warc.wet.gz", "wet"),
        ("a.wet", "wet"),
        ("a.txt", "text"),
        ("a.md", "text"),
        ("a.text.gz", "text"),
    ],
)
def test_detect_format(name: str, fmt: str) -> None:
    assert detect_format(name) == fmt


@pytest.mark.parametrize("name", ["a.csv", "a.gz", "noext", "a.jsonl.bz2", "a.parquet.txt.exe"])
def test_detect_format_unknown(name: str) -> None:
    with pytest.raises(ValueError, match="unknown input format"):
        detect_format(name)


def test_read_file_unknown_format_raises(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("x,y\n")
    with pytest.raises(ValueError):
        list(read_file(str(path), _open, InputConfig(), FileDigest(str(path))))


@pytest.mark.parametrize("field", ["max_record_bytes", "max_doc_chars"])
@pytest.mark.parametrize("value", [0, -1])
def test_input_limits_below_one_are_config_errors(field: str, value: int) -> None:
    # max_record_bytes=-1 made readline(0) read as end of file: every JSONL document silently vanished.
    with pytest.raises(ValueError, match=rf"input\.{field} must be >= 1, got {value}"):
        InputConfig(**{field: value})
    InputConfig(**{field: 1})


def test_input_reason() -> None:
    config = InputConfig(max_doc_chars=10)
    assert input_reason("fine", config) is None
    assert input_reason("", config) == "empty"
    assert input_reason(" \n\t ", config) == "empty"
    assert input_reason("a\x00b", config) == "nul_bytes"
    assert input_reason("x" * 10, config) is None
    assert input_reason("x" * 11, config) == "too_long"


# ------------------------------------------------------------------------------------ byte ranges


def _messy_jsonl(n: int) -> bytes:
    """Plain JSONL with what a range cut must survive: blank lines, broken JSON, invalid UTF-8, CRLF,
    documents without ids (their derived ids depend on the position) and a last line without newline."""
    lines = []
    for i in range(n):
        if i % 37 == 5:
            lines.append(b"")
        elif i % 41 == 7:
            lines.append(b'{"id": "broken", "text": ')
        elif i % 43 == 11:
            lines.append(b'{"id": "bad-utf8", "text": "\xff\xfe"}')
        else:
            doc = {"text": f"document {i} " + "words " * (i % 50)}
            if i % 3:
                doc["id"] = f"doc-{i}"
            lines.append(json.dumps(doc).encode() + (b"\r" if i % 29 == 3 else b""))
    return b"\n".join(lines)


def _read_planned(path: Path, max_range: int, min_range: int, config: InputConfig | None = None):
    units, planned = plan_reads(str(path), _open, max_range, min_range)
    items, parts = [], [vars(planned)]
    for unit in units:
        digest = FileDigest(str(path))
        items += list(read_unit(unit, _open, config or InputConfig(), digest))
        parts.append(vars(digest))
    return units, items, merge_digests(parts)


@pytest.mark.parametrize("max_range", [1, 100, 4096, 1 << 30])
def test_ranges_read_exactly_what_a_whole_file_read_does(tmp_path: Path, max_range: int) -> None:
    path = tmp_path / "messy.jsonl"
    path.write_bytes(_messy_jsonl(400))
    whole = FileDigest(str(path))
    expected = list(read_file(str(path), _open, InputConfig(), whole))
    units, items, digests = _read_planned(path, max_range, 1)
    assert items == expected  # same records, ids, positions and dead letters, in the same order
    assert digests == [vars(whole)]
    assert len(units) > 1 and units[0].start == 0
    assert [u.start for u in units[1:]] == [u.end for u in units[:-1]] and units[-1].end == path.stat().st_size
    data = path.read_bytes()
    assert all(data[u.end - 1 : u.end] == b"\n" for u in units[:-1])  # cuts fall right after a newline
    assert all(u.first_position == data[: u.start].count(b"\n") for u in units)


def test_range_sizes_follow_the_file_and_the_bounds(tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"
    path.write_bytes(b"".join(json.dumps({"id": i, "text": "x" * 90}).encode() + b"\n" for i in range(10_000)))
    size = path.stat().st_size
    line = len(path.read_bytes().split(b"\n")[0]) + 1
    many, _ = plan_reads(str(path), _open, max_range_bytes=50_000, min_range_bytes=1)
    # Every range but the last stops at the first newline past 50 kB.
    assert all(50_000 <= u.end - u.start < 50_000 + line for u in many[:-1]) and many[-1].end == size
    small, _ = plan_reads(str(path), _open, max_range_bytes=1 << 30, min_range_bytes=1)
    assert len(small) == RANGES_PER_FILE  # a file below RANGES_PER_FILE x the maximum is still cut
    floor, _ = plan_reads(str(path), _open, max_range_bytes=1 << 30, min_range_bytes=1 << 30)
    assert len(floor) == 1


def test_a_huge_line_stays_in_one_range_and_is_dead_lettered_once(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    path.write_bytes(_jsonl_bytes([{"id": "a", "text": "short"}]) + b'{"text": "' + b"y" * 50_000 + b'"}\n'
                     + _jsonl_bytes([{"id": "b", "text": "after"}]))
    config = InputConfig(max_record_bytes=10_000)
    units, items, digests = _read_planned(path, 1000, 1, config)
    assert [type(i).__name__ for i in items] == ["Record", "DeadLetter", "Record"]
    assert items[1].position == 2 and "longer than 10000 bytes" in items[1].error
    assert items[2].position == 3
    assert digests[0]["records"] == 2 and digests[0]["dead_letters"] == 1


def test_a_file_changed_after_planning_is_an_error_not_a_silent_mix(tmp_path: Path) -> None:
    path = tmp_path / "moving.jsonl"
    path.write_bytes(_jsonl_bytes([{"id": str(i), "text": f"text {i}"} for i in range(100)]))
    units, _ = plan_reads(str(path), _open, 200, 1)
    data = bytearray(path.read_bytes())
    data[units[1].start + 2 : units[1].start + 3] = b"X"
    path.write_bytes(bytes(data))
    list(read_unit(units[0], _open, InputConfig(), FileDigest(str(path))))  # untouched range: fine
    with pytest.raises(InputChangedError, match="changed after the build planned its reads"):
        list(read_unit(units[1], _open, InputConfig(), FileDigest(str(path))))


@pytest.mark.parametrize("name", ["a.jsonl.gz", "a.jsonl.zst", "a.parquet", "a.txt", "a.wet"])
def test_other_files_are_one_whole_unit_and_not_read_to_plan(tmp_path: Path, name: str) -> None:
    opened = []
    units, digest = plan_reads(str(tmp_path / name), lambda p: opened.append(p) or _open(p))
    assert units == [ReadUnit(str(tmp_path / name))] and digest is None and not opened
    assert not splittable(name) and splittable("x.jsonl") and splittable("X.NDJSON")


def test_ranges_strip_a_bom_only_at_the_start_of_the_file(tmp_path: Path) -> None:
    # A BOM further on is no byte-order mark: its line is a dead letter whichever way the file is read.
    path = tmp_path / "bom.jsonl"
    path.write_bytes(BOM + _jsonl_bytes(DOCS[:2]) + BOM + _jsonl_bytes(DOCS[2:]))
    expected = list(read_file(str(path), _open, InputConfig(), FileDigest(str(path))))
    units, items, digests = _read_planned(path, 1, 1)
    assert len(units) == len(DOCS) and items == expected
    assert [r.text for r in items if isinstance(r, Record)] == [DOCS[0]["text"], DOCS[1]["text"], DOCS[3]["text"]]
    [dead] = [d for d in items if isinstance(d, DeadLetter)]
    assert dead.position == 3 and "BOM" in dead.error
    assert digests[0]["records"] == 3 and digests[0]["dead_letters"] == 1


def test_an_empty_plain_file_is_one_empty_range(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    units, items, digests = _read_planned(path, 100, 1)
    assert units == [ReadUnit(str(path), 0, 0, 0, units[0].check)] and items == []
    assert digests == [{"path": str(path), "sha256": hashlib.sha256(b"").hexdigest(), "bytes": 0,
                        "records": 0, "dead_letters": 0}]


def test_merge_digests_adds_counts_per_file_and_sorts() -> None:
    parts = [{"path": "b", "sha256": "", "bytes": 0, "records": 3, "dead_letters": 1},
             {"path": "a", "sha256": "s-a", "bytes": 10, "records": 2, "dead_letters": 0},
             {"path": "b", "sha256": "s-b", "bytes": 99, "records": 0, "dead_letters": 0},
             {"path": "b", "sha256": "", "bytes": 0, "records": 4, "dead_letters": 2}]
    assert merge_digests(parts) == [
        {"path": "a", "sha256": "s-a", "bytes": 10, "records": 2, "dead_letters": 0},
        {"path": "b", "sha256": "s-b", "bytes": 99, "records": 7, "dead_letters": 3}]
