"""Training: the runs table and overlaid curves with EMA smoothing, event markers and live refresh."""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from dashboard.common import LIVE_EVERY_S, download, generation, guidance, home, store
from metrics import queries

LABELS = {"loss": "training loss", "val_loss": "validation loss", "lr": "learning rate", "grad_norm": "gradient norm",
          "loss_scale": "loss scale", "tokens_per_s": "tokens/s", "mfu": "MFU", "tokens_seen": "tokens seen"}
EVENT_COLORS = {"spike_skip": "#f58518", "rollback": "#e45756", "nan": "#b279a2", "resume": "#54a24b",
                "checkpoint": "#9d9d9d", "fault_injected": "#eeca3b"}

st.title("Training")
if not queries.has_rows(store(), "trainer"):
    guidance("No training run recorded yet", [
        f"python -m pipelines.build --runner DirectRunner --home {home()}   # a dataset version first",
        f"python -m trainer --home {home()} --preset tiny"])
    st.stop()

contains = st.text_input("Run name contains", key="run_filter", max_chars=200,
                         help="Literal, case-insensitive substring of the run name")
table = queries.runs(store(), contains)
st.dataframe(table, hide_index=True, column_config={
    "mfu": st.column_config.NumberColumn("MFU", format="percent"),
    "tokens_per_s": st.column_config.NumberColumn("tokens/s", format="%.0f"),
    "final_loss": st.column_config.NumberColumn("final loss", format="%.4f")})
download(table, "runs", "runs")
if table.empty:
    st.info("No run name matches the filter.")
    st.stop()

names = list(table["run"])
running = [r for r, s in zip(table["run"], table["status"], strict=True) if s == "running"]
default = list(dict.fromkeys(running + names))[:3]
chosen = st.multiselect("Runs to compare", names, default=default, key="runs")
cols = st.columns([2, 2, 1, 1, 1])
logged = queries.scalar_names(store(), chosen)
metrics_ = cols[0].multiselect("Curves", logged, key="curves", format_func=lambda n: LABELS.get(n, n),
                               default=[n for n in logged if n in LABELS and n != "tokens_seen"])
smoothing = cols[1].slider("EMA smoothing", 0.0, 0.99, 0.6, 0.01, key="smoothing",
                           help="Weight on the past in TensorBoard's debiased EMA; 0 shows the raw values only")
x_axis = cols[2].radio("x-axis", ["step", "wall"], key="x_axis", format_func={
    "step": "step", "wall": "wall time"}.get)
log_x = cols[3].toggle("log x", key="log_x")
log_y = cols[4].toggle("log y", key="log_y")
live = st.toggle(f"Live refresh every {LIVE_EVERY_S} s while a selected run is running", value=True, key="live")
# Finished runs do not change: polling them would only cost queries.
polling = live and bool(set(chosen) & set(running))
if not chosen:
    st.info("Pick at least one run to draw its curves.")
    st.stop()


@st.cache_data(max_entries=32, show_spinner=False)
def load_curves(path: str, parts: int, runs: tuple[str, ...], names: tuple[str, ...], x_axis: str,
                smoothing: float) -> dict[str, pd.DataFrame]:
    # Keyed on the home and its part count: toggling a log scale reuses the curves; a new part reloads them.
    return queries.curves(store(), list(runs), list(names), x_axis=x_axis, smoothing=smoothing)


def event_positions(events: pd.DataFrame, curve: pd.DataFrame) -> pd.DataFrame:
    """Events placed on the curve's x-axis (steps map to wall time through that run's own points)."""
    placed = []
    for run, group in events.groupby("run"):
        points = curve[curve["run"] == run]
        if points.empty:
            continue
        x = np.interp(group["step"].to_numpy(float), points["step"].to_numpy(float), points["x"].to_numpy(float))
        placed.append(group.assign(x=x))
    return pd.concat(placed, ignore_index=True) if placed else events.assign(x=pd.Series(dtype=float))


def curve_chart(curve: pd.DataFrame, events: pd.DataFrame, name: str) -> alt.LayerChart:
    x_title = "step" if x_axis == "step" else "wall time (minutes since the run's first row)"
    x = alt.X("x:Q", title=x_title, scale=alt.Scale(type="log" if log_x else "linear"))
    y = alt.Scale(type="log" if log_y else "linear", zero=False)
    base = alt.Chart(curve).encode(x=x, color=alt.Color("run:N", title="run", scale=alt.Scale(scheme="tableau10")))
    lines = [base.mark_line(opacity=0.25 if smoothing > 0 else 1.0, strokeWidth=1).encode(
        y=alt.Y("value:Q", title=LABELS.get(name, name), scale=y), tooltip=["run", "step", "x", "value"])]
    if smoothing > 0:
        lines.append(base.mark_line(strokeWidth=2).encode(
            y=alt.Y("smoothed:Q", scale=y), tooltip=["run", "step", "x", "smoothed"]))
    chart = alt.layer(*lines)
    if not events.empty:
        markers = alt.Chart(events).mark_rule(strokeDash=[4, 3], size=1.5).encode(
            x="x:Q", color=alt.Color("kind:N", title="event",
                                     scale=alt.Scale(domain=list(EVENT_COLORS), range=list(EVENT_COLORS.values()))),
            tooltip=["run", "step", "kind", "detail", "loss"])
        # Raw and smoothed lines share one run legend; event kinds get their own.
        chart = alt.layer(chart, markers).resolve_scale(color="independent")
    return chart.properties(height=260)


def curves() -> None:
    con = store()
    events = queries.events(con, chosen)
    loaded = load_curves(str(home()), generation(), tuple(chosen), tuple(metrics_), x_axis, smoothing)
    for name, curve in loaded.items():
        if log_x:
            curve = curve[curve["x"] > 0]
        if log_y:
            curve = curve[(curve["value"] > 0) & (curve["smoothed"] > 0)]
        st.subheader(LABELS.get(name, name))
        if curve.empty:
            st.caption(f"No `{name}` logged by the selected runs" + (" (above zero)." if log_y or log_x else "."))
            continue
        placed = event_positions(events, curve)
        if log_x:
            placed = placed[placed["x"] > 0]
        st.altair_chart(curve_chart(curve, placed, name), width="stretch")
        download(curve, f"{name}-{'-'.join(chosen)}", f"curve-{name}")
    st.subheader("Events")
    if events.empty:
        st.caption("No spike, skip, rollback or other event in the selected runs.")
    else:
        st.dataframe(events, hide_index=True)
        download(events, "events", "events")
    if polling:
        st.caption(f"Live: refreshed {pd.Timestamp.now(tz='UTC'):%H:%M:%S} UTC; next in {LIVE_EVERY_S} s.")


# A fragment reruns on its own timer without rerunning (and resetting) the controls above it.
st.fragment(curves, run_every=timedelta(seconds=LIVE_EVERY_S) if polling else None)()

st.header("Run details")
detail_run = st.selectbox("Run", chosen, key="detail_run")
info = queries.run_info(store(), detail_run)
st.dataframe(pd.DataFrame({"field": list(info), "value": [str(v) for v in info.values()]}), hide_index=True)
