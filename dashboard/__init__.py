"""The tokenmill dashboard: a Streamlit app over the metrics store and the home's dataset versions.

Start it with ``python -m dashboard [--home DIR] [--port P] [--host H]``. Pages live in
:mod:`dashboard.pages`; every query they run is in :mod:`metrics.queries` and :mod:`metrics.catalog`.
"""
