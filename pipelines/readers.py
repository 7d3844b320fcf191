"""Reading raw documents: JSONL (plain, .gz, .zst), Parquet, plain text and Common Crawl WET.

``read_file`` turns one input file into :class:`Record` s (a parsed document) and
:class:`DeadLetter` s (input that could not be parsed: source, position, error, raw bytes), and
hashes the raw file bytes on the way for the manifest. It never raises for bad content; only an
unreadable file system raises. ``input_reason`` rejects parsed documents that are unusable.

Plain (uncompressed) JSONL files can be read by several workers at once: ``plan_reads`` passes over
the file once (its sha256 for the manifest, and cuts after a newline every few MiB with the line
count so far) and ``read_unit`` parses one such range, giving each record the position it would have
had in a whole-file read. Other files are one unit, read whole.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

RAW_EXCERPT_BYTES = 64 * 1024
# Windows editors start UTF-8 files with one; it belongs to no record, but json.loads refuses it.
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class InputConfig:
    text_field: str = "text"
    id_field: str = "id"
    # A JSONL line or WET record longer than this is dead-lettered unread, bounding worker memory.
    max_record_bytes: int = 32 * 1024 * 1024
    # Parsed documents longer than this are rejected as "too_long" (kept in rejected/ whole).
    max_doc_chars: int = 1_000_000

    def __post_init__(self) -> None:
        # 0 or less would make every record "too long" or read as end of file: nothing would be kept.
        for name in ("max_record_bytes", "max_doc_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"input.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class Record:
    id: str
    text: str
    source: str
    position: int


@dataclass(frozen=True)
class DeadLetter:
    source: str
    position: int
    error: str
    raw: bytes


@dataclass
class FileDigest:
    path: str
    sha256: str = ""
    bytes: int = 0
    records: int = 0
    dead_letters: int = 0


# A range per this many bytes of a plain JSONL file, at most; smaller files are cut in RANGES_PER_FILE
# so their documents still reach every worker, but never below MIN_RANGE_BYTES.
MAX_RANGE_BYTES = 4 * 1024 * 1024
MIN_RANGE_BYTES = 64 * 1024
RANGES_PER_FILE = 16


@dataclass(frozen=True)
class ReadUnit:
    """What one worker reads: a whole file, or the lines in bytes [start, end) of a plain JSONL file."""

    path: str
    start: int = 0
    end: int | None = None  # None: the whole file, checksummed while it is parsed
    first_position: int = 0  # lines before ``start``
    check: str = ""  # xxh3-128 of bytes [start, end) when planned


class InputChangedError(RuntimeError):
    """A file's bytes differ from those its read was planned on: it changed during the build."""


def detect_format(path: str) -> str:
    name = os.path.basename(path).lower()
    for suffix in (".gz", ".zst", ".zstd"):
        name = name.removesuffix(suffix)
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".wet", ".warc.wet")):
        return "wet"
    if name.endswith((".txt", ".text", ".md")):
        return "text"
    raise ValueError(f"{path}: unknown input format (expected .jsonl/.json/.ndjson, .parquet, "
                     ".wet, .txt, optionally .gz or .zst)")


def derive_id(source: str, position: int, text: str) -> str:
    """A stable id for documents that have none: the same file name, place and text give the same id."""
    digest = hashlib.blake2b(digest_size=10)
    digest.update(os.path.basename(source).encode("utf-8", "surrogateescape"))
    digest.update(position.to_bytes(8, "big", signed=True))
    digest.update(text.encode("utf-8", "surrogatepass"))
    return "d" + digest.hexdigest()


class _HashingReader(io.RawIOBase):
    """Passes the bytes of ``raw`` (at most ``limit`` of them) through while hashing them, so inputs
    are read once for parsing and checksums."""

    def __init__(self, raw: IO[bytes], hasher: Any, limit: int | None = None):
        self._raw, self._hash, self._limit = raw, hasher, limit
        self.bytes = 0

    def readable(self) -> bool:
        return True

    def _read(self, size: int) -> bytes:
        if self._limit is not None:
            size = min(size, self._limit - self.bytes)
        data = self._raw.read(size)
        self.bytes += len(data)
        self._hash.update(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self._read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def finish(self) -> str:
        """Hashes whatever the parser did not need to read (e.g. trailing bytes after the last record)."""
        while self._read(1 << 20):
            pass
        return self._hash.hexdigest()


def _decompress(stream: IO[bytes], path: str) -> IO[bytes]:
    lower = path.lower()
    if lower.endswith(".gz"):
        return gzip.GzipFile(fileobj=stream)  # type: ignore[return-value]
    if lower.endswith((".zst", ".zstd")):
        return io.BufferedReader(_ZstdReader(stream), buffer_size=1 << 20)
    return stream


class _ZstdReader(io.RawIOBase):
    """Decompresses concatenated zstd frames and raises EOFError on a truncated one, so a cut-off file
    ends in a dead letter instead of silently losing the records after the cut."""

    def __init__(self, raw: IO[bytes]):
        import zstandard

        self._raw = raw
        self._new = zstandard.ZstdDecompressor().decompressobj
        self._decompressor = self._new()
        self._pending = b""
        self._mid_frame = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = self._raw.read(1 << 20)
            if not chunk:
                if self._mid_frame:
                    raise EOFError("zstd stream ends in the middle of a frame")
                return 0
            while chunk:
                self._mid_frame = True
                self._pending += self._decompressor.decompress(chunk)
                chunk = b""
                if self._decompressor.eof:
                    chunk = self._decompressor.unused_data
                    self._decompressor = self._new()
                    self._mid_frame = False
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def read_file(
    path: str, open_raw: Callable[[str], IO[bytes]], config: InputConfig, digest: FileDigest
) -> Iterator[Record | DeadLetter]:
    """Parse one input file; ``digest`` is filled in (sha256 of the raw bytes) when iteration ends."""
    fmt = detect_format(path)
    with open_raw(path) as raw:
        hashing = _HashingReader(raw, hashlib.sha256())
        buffered = io.BufferedReader(hashing, buffer_size=1 << 20)
        try:
            stream = _decompress(buffered, path)
            parser = {"jsonl": _read_jsonl, "parquet": _read_parquet, "wet": _read_wet,
                      "text": _read_text}[fmt]
            yield from _counted(parser(stream, path, config), digest)
        except _corrupt_errors() as err:
            # A corrupt archive or container: everything we could not reach is one dead letter.
            digest.dead_letters += 1
            yield DeadLetter(path, -1, f"unreadable {fmt} file: {type(err).__name__}: {err}", b"")
        digest.sha256 = hashing.finish()
        digest.bytes += hashing.bytes


def splittable(path: str) -> bool:
    """Whether ``path`` can be read in byte ranges: plain JSONL, whose records end at newlines."""
    return detect_format(path) == "jsonl" and not path.lower().endswith((".gz", ".zst", ".zstd"))


def plan_reads(
    path: str, open_raw: Callable[[str], IO[bytes]], max_range_bytes: int = MAX_RANGE_BYTES,
    min_range_bytes: int = MIN_RANGE_BYTES,
) -> tuple[list[ReadUnit], FileDigest | None]:
    """``path`` → the units to read it in, and for a file cut in ranges its digest (sha256, bytes; the
    readers count records and dead letters). One pass over a splittable file; none over other files."""
    if not splittable(path):
        return [ReadUnit(path)], None
    import xxhash

    digest = FileDigest(path)
    sha = hashlib.sha256()
    units: list[ReadUnit] = []
    with open_raw(path) as raw:
        size = raw.seek(0, io.SEEK_END)
        raw.seek(0)
        target = max(min_range_bytes, min(max_range_bytes, -(-size // RANGES_PER_FILE)))
        start = first_line = lines = 0
        check = xxhash.xxh3_128()
        while chunk := raw.read(1 << 20):
            sha.update(chunk)
            offset = 0
            # Cut after the first newline at or past the range's target size; a record is never split.
            while (cut := chunk.find(b"\n", max(offset, start + target - digest.bytes))) >= 0:
                piece = chunk[offset : cut + 1]
                check.update(piece)
                end = digest.bytes + cut + 1
                units.append(ReadUnit(path, start, end, first_line, check.hexdigest()))
                lines += piece.count(b"\n")
                start, first_line, offset, check = end, lines, cut + 1, xxhash.xxh3_128()
            piece = chunk[offset:]
            check.update(piece)
            lines += piece.count(b"\n")
            digest.bytes += len(chunk)
    if digest.bytes > start or not units:
        units.append(ReadUnit(path, start, digest.bytes, first_line, check.hexdigest()))
    digest.sha256 = sha.hexdigest()
    return units, digest


def read_unit(
    unit: ReadUnit, open_raw: Callable[[str], IO[bytes]], config: InputConfig, digest: FileDigest
) -> Iterator[Record | DeadLetter]:
    """Parse one unit. ``digest`` gets its record and dead-letter counts (and, for a whole file, its
    checksum and size); raises :class:`InputChangedError` if a range's bytes are not the planned ones."""
    if unit.end is None:
        yield from read_file(unit.path, open_raw, config, digest)
        return
    import xxhash

    with open_raw(unit.path) as raw:
        raw.seek(unit.start)
        ranged = _HashingReader(raw, xxhash.xxh3_128(), limit=unit.end - unit.start)
        stream = io.BufferedReader(ranged, buffer_size=1 << 20)
        yield from _counted(_read_jsonl(stream, unit.path, config, unit.first_position,
                                        at_file_start=unit.start == 0), digest)
        if ranged.finish() != unit.check:
            raise InputChangedError(f"{unit.path}: bytes {unit.start}-{unit.end} changed after the build "
                                    "planned its reads; rerun the build on a file nothing is writing to")


def merge_digests(parts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-unit digests (see ``read_unit``) → one per file, sorted by path."""
    files: dict[str, dict[str, Any]] = {}
    for part in parts:
        merged = files.setdefault(part["path"], vars(FileDigest(part["path"])))
        merged["sha256"] = merged["sha256"] or part["sha256"]
        for count in ("bytes", "records", "dead_letters"):
            merged[count] += part[count]
    return [files[path] for path in sorted(files)]


def _corrupt_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError)
    try:
        import zstandard
    except ImportError:
        return errors
    return (*errors, zstandard.ZstdError)


def _counted(items: Iterator[Record | DeadLetter], digest: FileDigest) -> Iterator[Record | DeadLetter]:
    for item in items:
        if isinstance(item, Record):
            digest.records += 1
        else:
            digest.dead_letters += 1
        yield item


def _document(obj: Any, path: str, position: int, raw: bytes, config: InputConfig) -> Record | DeadLetter:
    if not isinstance(obj, dict):
        return DeadLetter(path, position, f"expected a JSON object, got {type(obj).__name__}", raw)
    text = obj.get(config.text_field)
    if text is None:
        return DeadLetter(path, position, f"missing text field {config.text_field!r}", raw)
    if not isinstance(text, str):
        return DeadLetter(path, position,
                          f"text field {config.text_field!r} is {type(text).__name__}, expected a string", raw)
    doc_id = obj.get(config.id_field)
    if doc_id is None or doc_id == "":
        doc_id = derive_id(path, position, text)
    elif isinstance(doc_id, bool) or not isinstance(doc_id, str | int):
        return DeadLetter(path, position,
                          f"id field {config.id_field!r} is {type(doc_id).__name__}, expected string or int", raw)
    if has_lone_surrogate(text):
        return DeadLetter(path, position, "text contains unpaired UTF-16 surrogates", raw)
    # Beam's coders cannot encode such an id: it would fail the whole build, not this record.
    if isinstance(doc_id, str) and has_lone_surrogate(doc_id):
        return DeadLetter(path, position, f"id field {config.id_field!r} contains unpaired UTF-16 surrogates", raw)
    return Record(str(doc_id), text, path, position)


def has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _read_jsonl(stream: IO[bytes], path: str, config: InputConfig, first_position: int = 0,
                at_file_start: bool = True) -> Iterator[Record | DeadLetter]:
    """``at_file_start``: the stream begins at the file's first byte, where a BOM may stand."""
    position = first_position
    while True:
        line = stream.readline(config.max_record_bytes + 1)
        if not line:
            return
        position += 1
        if len(line) > config.max_record_bytes and not line.endswith(b"\n"):
            excerpt = line[:RAW_EXCERPT_BYTES]
            while chunk := stream.readline(1 << 20):
                if chunk.endswith(b"\n"):
                    break
            yield DeadLetter(path, position, f"record longer than {config.max_record_bytes} bytes", excerpt)
            continue
        if at_file_start and position == first_position + 1:
            line = line.removeprefix(UTF8_BOM)
        if not line.strip():
            continue
        try:
            decoded = line.decode("utf-8")
        except UnicodeDecodeError as err:
            yield DeadLetter(path, position, f"invalid UTF-8 at byte {err.start}", line)
            continue
        try:
            obj = json.loads(decoded)
        except json.JSONDecodeError as err:
            yield DeadLetter(path, position, f"broken JSON: {err.msg} at column {err.colno}", line)
            continue
        except RecursionError:
            yield DeadLetter(path, position, "broken JSON: nested too deeply", line)
            continue
        except ValueError as err:  # valid JSON Python refuses, e.g. an integer of more than 4,300 digits
            yield DeadLetter(path, position, f"unreadable JSON: {err}", line)
            continue
        yield _document(obj, path, position, line, config)


def _read_parquet(stream: IO[bytes], path: str, config: InputConfig) -> Iterator[Record | DeadLetter]:
    import pyarrow.parquet as pq

    # Parquet needs random access: the footer is at the end.
    parquet = pq.ParquetFile(io.BytesIO(stream.read()))
    if config.text_field not in parquet.schema_arrow.names:
        raise ValueError(f"no column {config.text_field!r}")
    columns = [c for c in (config.text_field, config.id_field) if c in parquet.schema_arrow.names]
    position = 0
    for batch in parquet.iter_batches(columns=columns, batch_size=4096):
        for row in batch.to_pylist():
            yield _document(row, path, position, b"", config)
            position += 1


def _read_text(stream: IO[bytes], path: str, config: InputConfig) -> Iterator[Record | DeadLetter]:
    data = stream.read(config.max_record_bytes + 1)
    if len(data) > config.max_record_bytes:
        yield DeadLetter(path, 0, f"text file longer than {config.max_record_bytes} bytes",
                         data[:RAW_EXCERPT_BYTES])
        return
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        yield DeadLetter(path, 0, f"invalid UTF-8 at byte {err.start}", data[:RAW_EXCERPT_BYTES])
        return
    if text.strip():
        yield Record(derive_id(path, 0, text), text, path, 0)


def _read_wet(stream: IO[bytes], path: str, config: InputConfig) -> Iterator[Record | DeadLetter]:
    """WARC/WET records: a version line, headers, a blank line, then Content-Length body bytes."""
    position = 0
    bom = UTF8_BOM  # only the file's first line can start with one
    next_version_line = b""  # a "WARC/" line met inside a record's headers: the next record starts there
    while True:
        line = next_version_line or stream.readline(65536).removeprefix(bom)
        next_version_line = bom = b""
        if not line:
            return
        if not line.startswith(b"WARC/"):
            continue
        headers: dict[str, str] = {}
        head = bytearray(line)  # the raw bytes of a dead letter for a bad Content-Length
        while (header := stream.readline(65536)) not in (b"\r\n", b"\n", b""):
            if header.startswith(b"WARC/"):
                next_version_line = header
                break
            if len(head) < RAW_EXCERPT_BYTES:
                head += header
            name, _, value = header.decode("utf-8", "replace").partition(":")
            headers[name.strip().lower()] = value.strip()
        if next_version_line:
            # No blank line ended the headers, so where the body starts is unknown. Read on, the next record's
            # headers would have overwritten these and the record would have vanished uncounted.
            position += 1
            yield DeadLetter(path, position, "WARC record without the blank line that ends its headers; skipped to "
                             "the next WARC/ line", bytes(head[:RAW_EXCERPT_BYTES]))
            continue
        length_text = headers.get("content-length", "")
        # Digits only: int() would also take "-1" (read(-1) swallows the rest of the file), "+5" or "1_0".
        if not (length_text.isascii() and length_text.isdigit()):
            position += 1
            # The record's end is unknown: parsing resumes at the next line starting "WARC/", the
            # only other framing the format has, so the records after this one are still read.
            problem = f"invalid Content-Length {length_text[:40]!r}" if length_text else "no Content-Length"
            yield DeadLetter(path, position, f"WARC record with {problem}; skipped to the next WARC/ line",
                             bytes(head[:RAW_EXCERPT_BYTES]))
            continue
        length = int(length_text)
        if length > config.max_record_bytes:
            body_excerpt = stream.read(min(length, RAW_EXCERPT_BYTES))
            missing = _skip(stream, length - len(body_excerpt))
            position += 1
            if missing:
                yield DeadLetter(path, position, f"truncated record: {length - missing} of {length} bytes",
                                 body_excerpt)
                return
            yield DeadLetter(path, position, f"record longer than {config.max_record_bytes} bytes", body_excerpt)
            continue
        body = stream.read(length)
        if len(body) < length:
            # Whatever its type: a length past the end of the file may have swallowed later records.
            position += 1
            yield DeadLetter(path, position, f"truncated record: {len(body)} of {length} bytes", body)
            return
        if headers.get("warc-type") != "conversion":
            continue
        position += 1
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as err:
            yield DeadLetter(path, position, f"invalid UTF-8 at byte {err.start}", body)
            continue
        record_id = headers.get("warc-record-id", "").strip("<>").removeprefix("urn:uuid:")
        yield _document({config.text_field: text, config.id_field: record_id or None}, path, position,
                        body, config)


def _skip(stream: IO[bytes], count: int) -> int:
    """Reads past ``count`` bytes; returns how many of them the stream ended short of."""
    while count > 0:
        chunk = stream.read(min(count, 1 << 20))
        if not chunk:
            return count
        count -= len(chunk)
    return 0


def input_reason(text: str, config: InputConfig) -> str | None:
    """Reasons a parsed document cannot enter the text stages at all."""
    if not text.strip():
        return "empty"
    if "\x00" in text:
        return "nul_bytes"
    if len(text) > config.max_doc_chars:
        return "too_long"
    return None
