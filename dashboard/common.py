"""What every page shares: the home, a store snapshot, CSV downloads and empty-home guidance."""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb
import pandas as pd
import streamlit as st

from metrics import queries

# Live charts poll at this interval while a run is going (seconds).
LIVE_EVERY_S = 5


def home() -> Path:
    """The workspace home: TOKENMILL_HOME (set by ``python -m dashboard --home``), else the current directory."""
    return Path(os.environ.get("TOKENMILL_HOME", ".")).resolve()


@st.cache_resource(show_spinner=False)
def _snapshot(path: str) -> queries.Snapshot:
    return queries.Snapshot(path)


def store() -> duckdb.DuckDBPyConnection:
    """A cursor on this home's store snapshot, after loading any parts written since the last rerun."""
    snapshot = _snapshot(str(home()))
    snapshot.refresh()
    return snapshot.cursor()


def generation() -> int:
    """How many parts the snapshot has loaded: a cache key that changes exactly when new data arrived."""
    return _snapshot(str(home())).parts


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "data"


def download(frame: pd.DataFrame, name: str, key: str, label: str = "Download CSV") -> None:
    """A CSV download button for the data behind one chart or table."""
    st.download_button(label, frame.to_csv(index=False).encode("utf-8"), file_name=f"{slug(name)}.csv",
                       mime="text/csv", key=f"csv-{key}", icon=":material/download:")


def guidance(what: str, commands: list[str]) -> None:
    """An empty-home message: what is missing and the commands that produce it."""
    st.info(f"{what} in `{home()}`. " + ("Create it with:" if len(commands) == 1 else "Create it with these:"))
    st.code("\n".join(commands), language="bash")
