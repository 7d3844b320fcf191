"""Entry script: page navigation. Each page is a file under dashboard/pages/."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="tokenmill", page_icon=":material/monitoring:", layout="wide")
page = st.navigation([
    st.Page(PAGES / "data.py", title="Data", icon=":material/dataset:", default=True),
    st.Page(PAGES / "training.py", title="Training", icon=":material/show_chart:"),
    st.Page(PAGES / "planning.py", title="Planning", icon=":material/architecture:"),
])
page.run()
