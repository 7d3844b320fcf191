"""Planning: scaling-law fits with 95% bands, IsoFLOP views, published laws, and saved plans."""

from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from dashboard import analysis
from dashboard.common import download, guidance, home, store
from metrics import queries

PLAN_FIELDS = ["compute", "gpus", "gpu", "law", "fit", "params", "tokens", "loss", "days", "gpu_hours", "mfu", "hfu",
               "memory_gb_per_gpu", "step_time_s", "layers", "d_model", "heads", "ffn", "vocab", "dp", "tp", "pp",
               "micro_batch", "grad_accum", "zero", "recompute"]


@st.cache_data(show_spinner="Bootstrapping the fit's 95% band…", max_entries=32)
def bootstrap(law: tuple[float, ...], points: pd.DataFrame) -> list[tuple[float, ...]]:
    # Cached on the law and its points: refitting 200 resamples costs a fraction of a second per fit.
    samples = analysis.bootstrap_laws(analysis.ChinchillaLaw(*law), points)
    return [(s.E, s.A, s.B, s.alpha, s.beta) for s in samples]


def significant(frame: pd.DataFrame) -> dict[str, object]:
    """Four significant digits for every number column: fitted constants run from 1e-30 (an E at zero) to 1e13."""
    return {column: st.column_config.NumberColumn(format="%.4g") for column in frame.select_dtypes("number")}


def loss_view(lines: pd.DataFrame, points: pd.DataFrame) -> alt.Scale:
    """A loss axis around the fitted lines and the runs: far from the data a bootstrap band of a loosely
    pinned law can reach losses in the thousands and would flatten everything else."""
    losses = pd.concat([lines["loss"], points["loss"] if not points.empty else pd.Series(dtype=float)])
    return alt.Scale(zero=False, domain=[float(losses.min()) * 0.97, float(losses.max()) * 1.05])


def log_axis(field: str, title: str) -> dict[str, object]:
    return {"field": field, "type": "quantitative", "scale": alt.Scale(type="log"), "title": title}


st.title("Planning")
con = store()
fits = queries.fits(con)
plans = queries.plans(con)
if fits.empty and plans.empty:
    guidance("No scaling-law fit or plan recorded yet", [
        f"planner fit {home()}/metrics            # fit your own completed runs (a sweep)",
        "planner --compute 6e21 --gpus 128       # plan with a published law"])
    st.stop()

# --- fits ------------------------------------------------------------------------------------------------
st.header("Scaling-law fits")
fit_law = None
if fits.empty:
    st.info(f"No fit recorded yet: `planner fit {home()}/metrics` fits your completed runs.")
else:
    st.dataframe(fits, hide_index=True, column_config=significant(fits))
    download(fits, "fits", "fits")
    fit_id = st.selectbox("Fit", list(fits["id"]), key="fit")
    row = fits[fits["id"] == fit_id].iloc[0]
    fit_law = analysis.law_of(row)
    intervals = queries.fit_intervals(con, fit_id)
    points = queries.fit_points(con, fit_id)
    present = [p for p in analysis.LAW_FIELDS if p in row.index]
    estimates = pd.DataFrame({"parameter": present, "estimate": [row[p] for p in present]})
    estimates = estimates.merge(intervals, on="parameter", how="left").rename(columns={"lo": "ci95 lo",
                                                                                       "hi": "ci95 hi"})
    estimates["Hoffmann 2022"] = [analysis.HOFFMANN2022.as_dict().get(p) for p in estimates["parameter"]]
    st.dataframe(estimates, hide_index=True, column_config=significant(estimates))
    download(estimates, f"fit-{fit_id}", "estimates")
    if fit_law is None:
        st.info(f"Fit `{fit_id}` is not a complete Chinchilla fit (form `{row.get('form')}`): "
                "its curves are not drawn.")
    elif points.empty:
        st.info(f"Fit `{fit_id}` recorded no points: curves are drawn without data or bands.")

if fit_law is not None:
    samples = [analysis.ChinchillaLaw(*s) for s in bootstrap(tuple(fit_law.as_dict().values()), points)]
    if not samples:
        st.caption("Fewer than 5 points: no bootstrap band.")
    sizes = sorted(points["params"].dropna().unique()) if not points.empty else [1e6, 1e7, 1e8]
    d_lo, d_hi = ((points["tokens"].min() / 2, points["tokens"].max() * 2) if not points.empty else (1e7, 1e10))
    curves = analysis.loss_curves(fit_law, samples, sizes, np.geomspace(d_lo, d_hi, 60))
    st.subheader("Loss against tokens, per model size")
    st.caption("Points: the runs the fit used. Lines: the fitted L(N, D). Bands: 95% of "
               f"{analysis.BOOTSTRAP} bootstrap refits.")
    n_color = alt.Color("params:O", title="parameters N", legend=alt.Legend(format=".3s"),
                        scale=alt.Scale(scheme="tableau10"))
    view = loss_view(curves, points)
    loss_axis = alt.Y("loss:Q", title="loss", scale=view)
    layers = [alt.Chart(curves).mark_area(opacity=0.15, clip=True).encode(
        x=alt.X(**log_axis("tokens", "tokens D")), y=alt.Y("lo:Q", title="loss", scale=view), y2="hi:Q",
        color=n_color)] if samples else []
    layers.append(alt.Chart(curves).mark_line(clip=True).encode(
        x=alt.X(**log_axis("tokens", "tokens D")), y=loss_axis, color=n_color))
    if not points.empty:
        layers.append(alt.Chart(points).mark_point(filled=True, size=60).encode(
            x="tokens:Q", y="loss:Q", color=n_color, tooltip=["point", "params", "tokens", "loss", "compute"]))
    st.altair_chart(alt.layer(*layers), width="stretch")
    download(curves, f"loss-curves-{fit_id}", "loss-curves")
    if not points.empty:
        download(points, f"fit-points-{fit_id}", "fit-points", "Download CSV (the fit's points)")

    st.subheader("IsoFLOP view")
    c_lo, c_hi = ((points["compute"].min(), points["compute"].max()) if not points.empty else (1e15, 1e18))
    budgets = list(np.geomspace(c_lo, c_hi, 4)) if c_hi > c_lo else [c_lo]
    n_lo, n_hi = ((points["params"].min() / 4, points["params"].max() * 4) if not points.empty else (1e5, 1e9))
    iso = analysis.isoflop_curves(fit_law, samples, budgets, np.geomspace(n_lo, n_hi, 80))
    optima = analysis.isoflop_optima(fit_law, budgets)
    view = loss_view(iso, points)
    c_color = alt.Color("compute:O", title="compute C (FLOPs)", legend=alt.Legend(format=".2e"),
                        scale=alt.Scale(scheme="tableau10"))
    layers = [alt.Chart(iso).mark_area(opacity=0.12, clip=True).encode(
        x=alt.X(**log_axis("params", "parameters N")), y=alt.Y("lo:Q", title="loss", scale=view), y2="hi:Q",
        color=c_color)] if samples else []
    layers += [
        alt.Chart(iso).mark_line(clip=True).encode(x=alt.X(**log_axis("params", "parameters N")),
                                                   y=alt.Y("loss:Q", title="loss", scale=view), color=c_color),
        alt.Chart(optima).mark_point(shape="diamond", size=120, filled=True, color="black").encode(
            x="params:Q", y="loss:Q", tooltip=["compute", "params", "tokens", "loss"]),
    ]
    if not points.empty:
        layers.append(alt.Chart(points).mark_point(size=50, color="gray").encode(
            x="params:Q", y="loss:Q", tooltip=["params", "tokens", "loss", "compute"]))
    st.altair_chart(alt.layer(*layers), width="stretch")
    st.caption("Each curve is L(N, C / 6N) at one budget; diamonds are the fitted law's compute-optimal N; "
               "grey points are the runs (each at its own C = 6ND).")
    download(iso, f"isoflop-{fit_id}", "isoflop")

# --- where the published laws lie ------------------------------------------------------------------------
st.header("Compute-optimal frontiers")
laws = dict(analysis.PUBLISHED)
for other in fits.to_dict("records"):
    law = analysis.law_of(pd.Series(other))
    if law is not None:
        # Name fits by what they were fitted to: our sweep's store and a published run table read apart.
        source = str(other.get("input") or "").removeprefix("metrics:").rstrip("/").rsplit("/", 1)[-1]
        laws[f"fit {other['id']}" + (f" ({source})" if source else "")] = law
known = [v for v in [*(points["compute"] if fit_law is not None and not points.empty else []),
                     *(plans["compute"] if "compute" in plans else [])] if isinstance(v, float) and v > 0]
c_min = min([1e17, *known]) / 10
c_max = max([1e24, *known]) * 10
front = analysis.frontiers(laws, np.geomspace(c_min, c_max, 60))
left, right = st.columns(2)
with left:
    st.caption("Compute-optimal parameters N against compute; stars are saved plans")
    layers = [alt.Chart(front).mark_line().encode(
        x=alt.X(**log_axis("compute", "compute C (FLOPs)")), y=alt.Y(**log_axis("params", "N")),
        color=alt.Color("law:N"), tooltip=["law", "compute", "params", "tokens"])]
    if {"compute", "params"} <= set(plans.columns):
        layers.append(alt.Chart(plans).mark_point(shape="cross", size=140, filled=True, color="black").encode(
            x="compute:Q", y="params:Q", tooltip=["id", "compute", "params", "tokens"]))
    st.altair_chart(alt.layer(*layers), width="stretch")
with right:
    st.caption("Compute-optimal loss against compute; points are the selected fit's runs. Published Chinchilla "
               "losses are on MassiveText, so only the shape compares with ours (Kaplan's is left out: WebText2)")
    layers = [alt.Chart(front.dropna(subset=["loss"])).mark_line().encode(
        x=alt.X(**log_axis("compute", "compute C (FLOPs)")), y=alt.Y("loss:Q", scale=alt.Scale(zero=False)),
        color=alt.Color("law:N"), tooltip=["law", "compute", "loss"])]
    if fit_law is not None and not points.empty:
        layers.append(alt.Chart(points).mark_point(filled=True, color="black").encode(
            x="compute:Q", y="loss:Q", tooltip=["params", "tokens", "loss"]))
    st.altair_chart(alt.layer(*layers), width="stretch")
download(front, "frontiers", "frontiers")

# --- plans -----------------------------------------------------------------------------------------------
st.header("Plans")
contains = st.text_input("Plan id contains", key="plan_filter", max_chars=200,
                         help="Literal, case-insensitive substring of the plan id")
shown = queries.plans(con, contains) if contains else plans
if shown.empty:
    st.info("No plan recorded yet: `planner --compute 6e21 --gpus 128` records one." if plans.empty
            else "No plan id matches the filter.")
    st.stop()
columns = ["id", *[c for c in PLAN_FIELDS if c in shown.columns], "recorded"]
st.dataframe(shown[columns], hide_index=True)
download(shown[columns], "plans", "plans")

chosen = st.selectbox("Recommended plan", list(shown["id"]), key="plan", help="Newest first")
plan = shown[shown["id"] == chosen].iloc[0]


def number(field: str, fmt: str = "") -> str:
    """A plan field for display: ``fmt`` as in format(), or K/M/B/T suffixes when fmt is empty."""
    value = plan.get(field)
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    if not fmt:
        for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
            if abs(value) >= scale:
                return f"{value / scale:.3g}{suffix}"
        return f"{value:.3g}"
    return format(value, fmt)


def label(field: str) -> str:
    """A text plan field for display; "-" where this plan has none (a plan without --gpus has no GPU type)."""
    value = plan.get(field)
    return value if isinstance(value, str) else "-"


cols = st.columns(5)
cols[0].metric("Parameters N", number("params"))
cols[1].metric("Tokens D", number("tokens"))
cols[2].metric("Predicted loss", number("loss", ".3f"))
cols[3].metric("Days", number("days", ".2f"))
cols[4].metric("GPU-hours", number("gpu_hours", ",.0f"))
cols = st.columns(5)
cols[0].metric("GPUs", f"{number('gpus', '.0f')} × {label('gpu')}")
cols[1].metric("DP × TP × PP", f"{number('dp', '.0f')} × {number('tp', '.0f')} × {number('pp', '.0f')}")
cols[2].metric("ZeRO / recompute", f"{number('zero', '.0f')} / {label('recompute')}")
cols[3].metric("MFU / HFU", f"{number('mfu', '.0%')} / {number('hfu', '.0%')}")
cols[4].metric("Step time (s)", number("step_time_s", ".2f"))


def memory_per_gpu() -> None:
    """The chosen plan's memory breakdown; a plan without a layout has none to break down."""
    if not analysis.has_layout(plan):
        st.info("No layout (plan made without --gpus): memory per GPU depends on the DP × TP × PP split. "
                f"`planner --compute {number('compute', 'g')} --gpus N` plans one.")
        return
    memory = analysis.model_state_memory(plan)
    chart = alt.Chart(memory).mark_bar().encode(x=alt.X("sum(gb):Q", title="GiB per GPU"),
                                                color=alt.Color("part:N", title=None), tooltip=["part", "gb"])
    st.altair_chart(chart, width="stretch")
    st.caption("Model states follow from the plan's size and layout (2 + 2 + 12 bytes per parameter, sharded by "
               "TP × PP and by ZeRO over DP); the rest is the planner's recorded total minus those.")
    if (memory["gb"] < 0).any():
        st.warning("The recorded total is smaller than the model states alone: the planner assumed other "
                   "precisions or sharding than this breakdown.")
    download(memory, f"memory-{chosen}", "memory")


st.subheader("Memory per GPU")
memory_per_gpu()

st.subheader("Compare saved plans")
compare = st.multiselect("Plans", list(shown["id"]), default=list(shown["id"])[:3], key="compare_plans")
if compare:
    picked = shown[shown["id"].isin(compare)]
    side = picked.set_index("id")[[c for c in PLAN_FIELDS if c in picked.columns]].T
    st.dataframe(side.astype(str))
    long = picked.melt(id_vars="id", value_vars=[c for c in ("days", "gpu_hours", "loss", "memory_gb_per_gpu")
                                                 if c in picked.columns], var_name="measure")
    chart = alt.Chart(long).mark_bar().encode(x=alt.X("id:N", title=None), y=alt.Y("value:Q", title=None),
                                              color="id:N", column=alt.Column("measure:N", title=None),
                                              tooltip=["id", "measure", "value"]).resolve_scale(y="independent")
    st.altair_chart(chart)
    download(picked, "plans-compared", "compare")
