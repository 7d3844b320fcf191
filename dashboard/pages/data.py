"""Data: dataset versions and lineage, the per-stage funnel, distributions, and sample documents."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard.common import download, guidance, home, store
from metrics import catalog, queries

PAGE_SIZE = 10

st.title("Data")
con = store()
published, broken = catalog.scan_versions(home())
recorded = queries.pipeline_versions(con)
names = list(dict.fromkeys([*published["version"], *recorded["version"]]))
latest = catalog.latest(home())


def warn_broken() -> None:
    """Name the version directories the table leaves out, so that none looks as if it never existed."""
    if broken:
        # Names match the catalog's version pattern and reasons carry neither a path nor file text: safe as Markdown.
        st.warning(f"Not in the versions table: these directories under `{catalog.data_root(home()) / 'versions'}` "
                   "have no usable manifest.json; rebuild or remove them.\n\n" + "\n".join(
                       f"- `{name}`{' (LATEST)' if name == latest else ''}: {reason}"
                       for name, reason in broken.items()))


if not names:
    warn_broken()
    guidance("No readable dataset version" if broken else "No dataset version yet",
             [f"python -m pipelines.build --runner DirectRunner --home {home()}"])
    st.stop()

version = st.selectbox("Dataset version", names, index=names.index(latest) if latest in names else 0,
                       key="version", help="LATEST is preselected; every published version is listed")
in_catalog = version in set(published["version"])
manifest = catalog.manifest(home(), version) if in_catalog else None
if not in_catalog:
    problem = f"an unusable manifest ({broken[version]})" if version in broken else "no manifest"
    st.warning(f"`{version}` has pipeline metrics but {problem} under `{catalog.data_root(home())}`: "
               "only the metrics-based charts are shown.")

# --- versions and lineage --------------------------------------------------------------------------------
st.header("Versions and lineage")
warn_broken()
st.dataframe(published, hide_index=True)
download(published, "versions", "versions")
if manifest is not None:
    chain = catalog.lineage(home(), version)
    st.markdown("Lineage, newest first: " + " ← ".join(
        f"`{link['version']}`" + ("" if link["present"] else " (unreadable)" if link["version"] in broken
                                  else " (not in this home)") for link in chain))
    others = [v for v in published["version"] if v != version]
    if others:
        default = others.index(manifest["parent"]) if manifest.get("parent") in others else 0
        other = st.selectbox("Compare config with", others, index=default, key="compare")
        diff = catalog.config_diff(home(), other, version)
        if diff.empty:
            st.success(f"`{other}` and `{version}` were built with the same config, code and tokenizer.")
        else:
            st.dataframe(diff, hide_index=True)
            download(diff, f"config-diff-{other}-{version}", "diff")

# --- funnel ----------------------------------------------------------------------------------------------
st.header("Funnel")
funnel = queries.funnel(con, version)
reasons = queries.drop_reasons(con, version)
if funnel.empty:
    st.info(f"No pipeline metrics recorded for `{version}`.")
else:
    order = list(funnel["stage"])
    cols = st.columns(4)
    counts = (manifest or {}).get("counts", {})
    cols[0].metric("Input documents", f"{counts.get('input', funnel['in'].iloc[0]):,}")
    cols[1].metric("Kept", f"{counts.get('kept', funnel['kept'].iloc[-1]):,}")
    cols[2].metric("Rejected", f"{counts.get('rejected', int(funnel['rejected'].sum())):,}")
    cols[3].metric("Dead-lettered", f"{queries.dead_letters(con, version):,}")
    long = funnel.melt(id_vars="stage", value_vars=["kept", "rejected"], var_name="outcome", value_name="documents")
    chart = alt.Chart(long).mark_bar().encode(
        y=alt.Y("stage:N", sort=order, title=None), x=alt.X("documents:Q", stack=True),
        color=alt.Color("outcome:N", scale=alt.Scale(domain=["kept", "rejected"], range=["#4c78a8", "#e45756"])),
        tooltip=["stage", "outcome", "documents"])
    st.altair_chart(chart, width="stretch")
    download(funnel, f"funnel-{version}", "funnel")
    if not reasons.empty:
        st.subheader("Drop reasons")
        drops = alt.Chart(reasons).mark_bar().encode(
            y=alt.Y("reason:N", sort="-x", title=None, axis=alt.Axis(labelLimit=320)),
            x=alt.X("n:Q", title="documents dropped"),
            color=alt.Color("stage:N", sort=order), tooltip=["stage", "reason", "n"])
        st.altair_chart(drops, width="stretch")
        download(reasons, f"drop-reasons-{version}", "reasons")


def bars(stage: str, name: str, title: str, key: str, numeric: bool = False) -> pd.DataFrame:
    frame = queries.distribution(con, version, stage, name)
    if frame.empty:
        st.caption(f"{title}: not recorded for this version (stage `{stage}` did not run).")
        return frame
    chart = alt.Chart(frame).mark_bar().encode(
        x=alt.X("bucket:N", sort=list(frame["bucket"]) if numeric else "-y", title=title),
        y=alt.Y("n:Q", title="documents"), tooltip=["bucket", "n"])
    st.altair_chart(chart, width="stretch")
    download(frame, f"{key}-{version}", key)
    return frame


# --- languages, dedup, PII -------------------------------------------------------------------------------
st.header("Languages")
left, right = st.columns(2)
with left:
    st.caption("Kept by language")
    bars("langid", "lang", "language", "lang")
with right:
    st.caption("Rejected by language ID, by the language it guessed")
    bars("langid", "rejected_lang", "language", "rejected-lang")

st.header("Duplicates and PII")
left, right = st.columns(2)
with left:
    st.caption("Kept documents by the size of their duplicate cluster")
    bars("dedup", "cluster_size", "cluster size", "cluster-size", numeric=True)
with right:
    pii = pd.concat([queries.distribution(con, version, "pii", name).assign(count=name)
                     for name in ("replaced", "docs_with")], ignore_index=True)
    st.caption("PII per type: replacements and documents containing it")
    if pii.empty:
        st.caption("PII: not recorded for this version.")
    else:
        chart = alt.Chart(pii).mark_bar().encode(
            x=alt.X("bucket:N", title="PII type"), xOffset="count:N", y=alt.Y("n:Q", title="count"),
            color=alt.Color("count:N", title=None), tooltip=["bucket", "count", "n"])
        st.altair_chart(chart, width="stretch")
        download(pii, f"pii-{version}", "pii")

# --- quality ---------------------------------------------------------------------------------------------
st.header("Quality signals")
st.caption("Quality score deciles of kept documents (from the pipeline's metrics)")
bars("quality", "quality_score", "quality score", "quality-score", numeric=True)
signals = catalog.signal_columns(home(), version) if in_catalog else []
if not signals:
    st.caption("Per-document signals: this version has no kept-document Parquet files to read them from.")
else:
    default = signals.index("q_word_count") if "q_word_count" in signals else 0
    signal = st.selectbox("Signal", signals, index=default, key="signal",
                          help="Per-document signal from the version's Parquet files, kept against rejected")
    bins = st.slider("Bins", 10, 100, 40, key="bins")
    hist = catalog.signal_histogram(home(), version, signal, bins)
    lines = pd.DataFrame(catalog.thresholds(manifest, signal), columns=["setting", "rule", "value"])
    if hist.empty:
        st.caption(f"`{signal}` is not applicable to any document of this version.")
    else:
        long = hist.melt(id_vars=["lo", "hi"], value_vars=["kept", "rejected"], var_name="side",
                         value_name="documents")
        layer = alt.Chart(long).mark_bar(opacity=0.75).encode(
            x=alt.X("lo:Q", bin="binned", title=signal), x2="hi:Q", y=alt.Y("documents:Q", stack=True),
            color=alt.Color("side:N", scale=alt.Scale(domain=["kept", "rejected"], range=["#4c78a8", "#e45756"])),
            tooltip=["lo", "hi", "side", "documents"])
        top = float(hist["hi"].max())
        shown = lines[lines["value"] <= top] if not lines.empty else lines
        if not shown.empty:
            layer = layer + alt.Chart(shown).mark_rule(color="black", strokeDash=[6, 3], size=2).encode(
                x="value:Q", tooltip=["setting", "rule", "value"])
        st.altair_chart(layer, width="stretch")
        download(hist, f"{signal}-{version}", "signal")
    if lines.empty:
        st.caption("No config threshold acts on this signal.")
    else:
        st.caption("Thresholds from the manifest's config (dashed): " + "; ".join(
            f"`{r.setting}` {'≥' if r.rule == 'min' else '≤'} {r.value:g}" for r in lines.itertuples()))

# --- tokens and shards -----------------------------------------------------------------------------------
st.header("Tokens and shards")
shards = pd.DataFrame((manifest or {}).get("shards", []))
cols = st.columns(3)
cols[0].metric("Tokens in shards", f"{int(shards['tokens'].sum()):,}" if "tokens" in shards else "-")
cols[1].metric("Shards", len(shards))
tokenizer = (manifest or {}).get("tokenizer", {})
cols[2].metric("Vocabulary", f"{tokenizer.get('vocab_size', 0):,}" if tokenizer else "-")
bars("tokenize", "tokens_per_doc", "tokens per document (power-of-two bucket)", "tokens-per-doc", numeric=True)
if not shards.empty:
    st.dataframe(shards, hide_index=True)
    download(shards, f"shards-{version}", "shards")

# --- document viewer -------------------------------------------------------------------------------------
st.header("Documents")
if in_catalog:
    kind = st.radio("Show", ["kept", "rejected"], horizontal=True, key="doc_kind")
    folder = "docs" if kind == "kept" else "rejected"
    cols = st.columns(3)
    reason = (cols[0].selectbox("Reason", ["(any)", *catalog.reasons(home(), version)], key="doc_reason")
              if kind == "rejected" else "(any)")
    lang = cols[1].selectbox("Language", ["(any)", *catalog.languages(home(), version, folder)], key="doc_lang")
    search = cols[2].text_input("Text contains", key="doc_search", max_chars=200,
                                help="Literal, case-insensitive substring")
    page = st.number_input("Page", min_value=1, value=1, step=1, key="doc_page")
    docs = catalog.sample_documents(home(), version, folder, reason=None if reason == "(any)" else reason,
                                    lang=None if lang == "(any)" else lang, contains=search, limit=PAGE_SIZE,
                                    offset=(int(page) - 1) * PAGE_SIZE)
    if docs.empty:
        st.caption("No document matches.")
    for row in docs.to_dict("records"):
        label = str(row["id"])
        # Null when the version was built without the langid or quality stage.
        if pd.notna(row["lang"]):
            label += f" · {row['lang']}"
        if pd.notna(row["quality_score"]):
            label += f" · quality {row['quality_score']:.2f}"
        if "reason" in row:
            label += f" · {row['stage']}: {row['reason']}"
        # Document text and ids are untrusted: st.text and st.code show them verbatim, never as HTML or Markdown.
        st.text(label)
        st.code(row["text"], language=None, wrap_lines=True, height=200)
    if not docs.empty:
        download(docs, f"documents-{kind}-{version}", "docs")
