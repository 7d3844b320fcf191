"""Loader for the hand-written sentence banks in ``pipelines/sample/banks/*.txt``.

Bank file format (UTF-8 text)::

    # comment
    [names_m]          one masculine first name per line
    [names_f]          one feminine first name per line
    [cities]           one city per line
    [titles]           headline templates
    [headers]          date lines prepended to near-duplicate copies ({date} slot)
    [footers]          lines appended to near-duplicate copies
    [contact]          optional sentences carrying {email} / {phone} for PII documents
    [topic cooking]    sentence templates of one topic (any number of topic sections)

Templates use ``str.format`` slots; see :data:`SLOTS` for the accepted names. Slots were
chosen so that grammar never depends on the filler: names are either gender-specific
(``{man}``, ``{woman}``) or used where no agreement is needed (``{name}``), numbers are
always plural-safe, and cities appear only where the language needs no declension.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

BANK_DIR = Path(__file__).with_name("banks")

SLOTS = frozenset(
    {"name", "name2", "man", "woman", "city", "city2", "n", "nn", "big", "year", "hour", "pct", "date",
     "email", "phone"}
)


@dataclass(frozen=True)
class Bank:
    """Sentence templates and slot fillers of one language."""

    lang: str
    names_m: tuple[str, ...]
    names_f: tuple[str, ...]
    cities: tuple[str, ...]
    titles: tuple[str, ...]
    headers: tuple[str, ...]
    footers: tuple[str, ...]
    contact: tuple[str, ...]
    topics: dict[str, tuple[str, ...]]

    @property
    def sentences(self) -> list[str]:
        """All topic sentences, in file order."""
        return [s for group in self.topics.values() for s in group]


def parse_sections(text: str) -> dict[str, list[str]]:
    """Split a bank file into ``{section name: non-empty lines}``."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
            sections.setdefault(current, [])
            continue
        if current is None:
            raise ValueError(f"bank line outside a section: {line!r}")
        sections[current].append(line)
    return sections


@functools.cache
def load_sections(name: str) -> dict[str, list[str]]:
    """Return the parsed sections of ``banks/<name>.txt``."""
    return parse_sections((BANK_DIR / f"{name}.txt").read_text(encoding="utf-8"))


@functools.cache
def load_bank(lang: str) -> Bank:
    """Return the :class:`Bank` of ``lang`` (``banks/<lang>.txt``)."""
    sec = load_sections(lang)
    topics = {k.split(None, 1)[1]: tuple(v) for k, v in sec.items() if k.startswith("topic ")}
    if not topics:
        raise ValueError(f"bank {lang!r} has no topic sections")
    return Bank(
        lang=lang,
        names_m=tuple(sec["names_m"]),
        names_f=tuple(sec["names_f"]),
        cities=tuple(sec["cities"]),
        titles=tuple(sec["titles"]),
        headers=tuple(sec["headers"]),
        footers=tuple(sec["footers"]),
        contact=tuple(sec.get("contact", ())),
        topics=topics,
    )
