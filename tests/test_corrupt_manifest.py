"""A corrupt manifest.json (not JSON, not an object, keys missing or mistyped) gets a one-line error from
every reader of dataset versions, and breaks none of the healthy versions next to it."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from metrics import catalog
from pipelines import shards
from pipelines.versions import main as versions_main

CORRUPT = {
    "truncated": '{"version": "vbad", "counts": {',
    "not utf-8": b'{"version": "vbad\xff"}',
    "a list": "[1, 2]",
    "a string": '"vbad"',
    "no version": '{"counts": {}}',
    "counts a list": '{"version": "vbad", "counts": []}',
    "shard without tokens": '{"version": "vbad", "shards": [{"path": "s.arrow", "sha256": "x", "rows": 1}]}',
    "table entry without path": '{"version": "vbad", "files": {"docs": [{"sha256": "x"}]}}',
    "nested too deep": "[" * 100_000 + "]" * 100_000,
}
# What breaks the dashboard's own reading (metrics.catalog reads no version key and no table list).
CATALOG_CORRUPT = {k: CORRUPT[k] for k in ("truncated", "not utf-8", "a list", "a string", "counts a list",
                                           "nested too deep")}


def _healthy(data: Path, name: str, created_at: str = "2026-01-01T00:00:00+00:00") -> Path:
    folder = data / shards.VERSIONS / name
    folder.mkdir(parents=True)
    manifest = {"version": name, "parent": None, "created_at": created_at, "config": {"stages": []},
                "counts": {"input": 1, "kept": 1, "rejected": 0, "dead_letter": 0},
                "stages": {"input": {"in": 1, "kept": 1, "rejected": {}}}, "shards": []}
    (folder / shards.MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def _corrupt(data: Path, content: str | bytes, name: str = "vbad") -> Path:
    folder = data / shards.VERSIONS / name
    folder.mkdir(parents=True)
    raw = content if isinstance(content, bytes) else content.encode()
    (folder / shards.MANIFEST).write_bytes(raw)
    return folder


@pytest.mark.parametrize("content", CORRUPT.values(), ids=CORRUPT.keys())
def test_read_manifest_raises_manifest_error(tmp_path: Path, content: str | bytes) -> None:
    folder = _corrupt(tmp_path, content)
    with pytest.raises(shards.ManifestError, match="manifest.json: ") as caught:
        shards.read_manifest(folder)
    assert "\n" not in str(caught.value) and caught.value.version_dir == folder
    assert isinstance(caught.value, FileNotFoundError)  # what trainer.data.resolve_data turns into a DataError
    assert shards.verify_version(folder) == [str(caught.value)]


def test_resolve_version_checks_the_manifest_of_a_version_dir(tmp_path: Path) -> None:
    folder = _corrupt(tmp_path, "[1, 2]")
    with pytest.raises(shards.ManifestError, match="not a JSON object but a list"):
        shards.resolve_version(folder)
    with pytest.raises(shards.ManifestError):
        shards.resolve_version(tmp_path, "vbad")


def test_scan_versions_keeps_the_healthy_ones(tmp_path: Path) -> None:
    _healthy(tmp_path, "vgood")
    _corrupt(tmp_path, "{not json")
    manifests, broken = shards.scan_versions(tmp_path)
    assert [m["version"] for m in manifests] == ["vgood"] and list(broken) == ["vbad"]
    assert "not valid JSON" in broken["vbad"]
    assert [m["version"] for m in shards.list_versions(tmp_path)] == ["vgood"]


def test_versions_list_flags_the_broken_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _healthy(tmp_path, "vgood")
    _corrupt(tmp_path, "[1, 2]")
    assert versions_main(["--data", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("  vgood ") and out[1].startswith("! vbad  UNREADABLE: ") and len(out) == 2
    assert versions_main(["--data", str(tmp_path), "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [v["version"] for v in listed] == ["vgood", "vbad"]
    assert "error" not in listed[0] and "not a JSON object" in listed[1]["error"]


@pytest.mark.parametrize("command", ["show", "lineage"])
@pytest.mark.parametrize("content", CORRUPT.values(), ids=CORRUPT.keys())
def test_show_and_lineage_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str,
                                               content: str | bytes) -> None:
    _corrupt(tmp_path, content)
    assert versions_main(["--data", str(tmp_path), command, "vbad"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "manifest.json: " in captured.err


def test_verify_reports_the_manifest_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _corrupt(tmp_path, '{"version": ')
    assert versions_main(["--data", str(tmp_path), "verify", "vbad"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "not valid JSON" in out[0] and out[1] == "vbad: 1 problem(s)"
    assert versions_main(["--data", str(tmp_path), "verify", "vbad", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and len(report["problems"]) == 1


def test_lineage_marks_an_unreadable_parent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    child = _healthy(tmp_path, "vchild")
    manifest = json.loads((child / shards.MANIFEST).read_text(encoding="utf-8"))
    (child / shards.MANIFEST).write_text(json.dumps({**manifest, "parent": "vbad"}), encoding="utf-8")
    _corrupt(tmp_path, "[]")
    assert versions_main(["--data", str(tmp_path), "lineage", "vchild"]) == 0
    assert "└─ vbad (UNREADABLE: " in capsys.readouterr().out
    assert versions_main(["--data", str(tmp_path), "lineage", "vchild", "--json"]) == 0
    chain = json.loads(capsys.readouterr().out)
    assert chain[0]["error"] is None and "not a JSON object" in chain[1]["error"]


def test_versions_show_and_list_take_a_manifest_with_only_a_version(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _corrupt(tmp_path, '{"version": "vmin", "shards": []}', name="vmin")
    assert versions_main(["--data", str(tmp_path), "show", "vmin"]) == 0
    assert versions_main(["--data", str(tmp_path), "list"]) == 0
    assert "vmin  -  in -  kept -" in capsys.readouterr().out


@pytest.mark.parametrize("content", CATALOG_CORRUPT.values(), ids=CATALOG_CORRUPT.keys())
def test_catalog_skips_a_corrupt_version(tmp_path: Path, content: str | bytes) -> None:
    _healthy(tmp_path / "data", "vgood")
    _corrupt(tmp_path / "data", content)
    assert list(catalog.versions(tmp_path)["version"]) == ["vgood"]
    with pytest.raises(catalog.CatalogError, match="manifest"):
        catalog.manifest(tmp_path, "vbad")


def test_catalog_lineage_stops_at_an_unreadable_parent(tmp_path: Path) -> None:
    child = _healthy(tmp_path / "data", "vchild")
    manifest = json.loads((child / shards.MANIFEST).read_text(encoding="utf-8"))
    (child / shards.MANIFEST).write_text(json.dumps({**manifest, "parent": "vbad"}), encoding="utf-8")
    _corrupt(tmp_path / "data", "[1, 2]")
    assert [(link["version"], link["present"]) for link in catalog.lineage(tmp_path, "vchild")] == [
        ("vchild", True), ("vbad", False)]


def test_trainer_reports_a_corrupt_manifest_as_a_data_error(tmp_path: Path) -> None:
    from trainer.data import DataError, resolve_data  # torch: only this test needs it

    _healthy(tmp_path / "data", "vgood")
    folder = _corrupt(tmp_path / "data", "[1, 2]")
    shards.write_latest(tmp_path / "data", "vbad")
    for data in ("vbad", str(folder), None):
        with pytest.raises(DataError, match=r"not a JSON object but a list") as caught:
            resolve_data(tmp_path, data)
        assert "not found" not in str(caught.value)  # it was found; it is unreadable


CATALOG_REASONS = {
    "truncated": "manifest.json is not valid JSON (",
    "not utf-8": "manifest.json is not UTF-8 (invalid start byte at byte 17)",
    "a list": "manifest.json is not a dataset manifest (a JSON array, not an object)",
    "a string": "manifest.json is not a dataset manifest (a JSON string, not an object)",
    "counts a list": "manifest.json is not a dataset manifest ('counts' is a JSON array)",
    "nested too deep": "manifest.json is not valid JSON (",
}


@pytest.mark.parametrize(("content", "reason"), [(CATALOG_CORRUPT[k], v) for k, v in CATALOG_REASONS.items()],
                         ids=CATALOG_REASONS.keys())
def test_catalog_scan_names_a_corrupt_version_with_its_reason(tmp_path: Path, content: str | bytes,
                                                              reason: str) -> None:
    _healthy(tmp_path / "data", "vgood")
    _corrupt(tmp_path / "data", content)
    published, broken = catalog.scan_versions(tmp_path)
    assert list(published["version"]) == ["vgood"] and list(broken) == ["vbad"]
    assert broken["vbad"].startswith(reason) and "\n" not in broken["vbad"]
    assert str(tmp_path) not in broken["vbad"]  # the page shows it as Markdown: no path, no file text
    assert published.equals(catalog.versions(tmp_path))


def test_catalog_scan_names_version_dirs_without_a_manifest_file(tmp_path: Path) -> None:
    _healthy(tmp_path / "data", "vgood")
    (tmp_path / "data" / shards.VERSIONS / "vmissing").mkdir()
    (tmp_path / "data" / shards.VERSIONS / "vdir" / shards.MANIFEST).mkdir(parents=True)
    # Not versions at all: a stray file and a name no build gives (the catalog refuses to build paths from it).
    (tmp_path / "data" / shards.VERSIONS / "notes.txt").write_text("x", encoding="utf-8")
    (tmp_path / "data" / shards.VERSIONS / ".hidden").mkdir()
    published, broken = catalog.scan_versions(tmp_path)
    assert list(published["version"]) == ["vgood"]
    assert broken == {"vdir": "manifest.json is not a file", "vmissing": "manifest.json is missing"}


def test_catalog_scan_rejects_the_types_the_pages_would_trip_on(tmp_path: Path) -> None:
    _healthy(tmp_path / "data", "vgood")
    for name, content in {"vparent": '{"parent": {"v": 1}}', "vcreated": '{"created_at": 5}',
                          "vtokenizer": '{"tokenizer": [1]}', "vshard": '{"shards": [{"tokens": "9"}]}'}.items():
        _corrupt(tmp_path / "data", content, name=name)
    assert catalog.scan_versions(tmp_path)[1] == {
        "vcreated": "manifest.json is not a dataset manifest ('created_at' is a JSON number)",
        "vparent": "manifest.json is not a dataset manifest ('parent' is a JSON object)",
        "vshard": "manifest.json is not a dataset manifest (shard 0 has no integer 'tokens')",
        "vtokenizer": "manifest.json is not a dataset manifest ('tokenizer' is a JSON array)"}


def test_catalog_scan_names_an_unreadable_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _healthy(tmp_path / "data", "vgood")
    folder = _corrupt(tmp_path / "data", "{}")
    read_bytes = Path.read_bytes

    # chmod 0 would not stop these tests when they run as root: the read itself fails instead.
    def denied(path: Path) -> bytes:
        if path == folder / shards.MANIFEST:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", denied)
    published, broken = catalog.scan_versions(tmp_path)
    assert list(published["version"]) == ["vgood"]
    assert broken == {"vbad": "manifest.json cannot be read (Permission denied)"}
