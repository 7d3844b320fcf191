"""The metrics store: append-only Parquet parts in one schema, queried through DuckDB views.

Writers (pipelines, trainer, planner) call :func:`append`; readers (dashboard, planner fits) call
:func:`connect`. No process ever holds a database file, so a dashboard never blocks a writer.
"""

from metrics.store import SCHEMA, MetricRow, MetricsStore, connect, store_dir

__all__ = ["SCHEMA", "MetricRow", "MetricsStore", "connect", "store_dir"]
