"""tokenmill benchmarks: ratio tables (ours vs the raw library or a peer, measured in the same run).

``python -m bench --eval ../shared/eval`` (see ``python -m bench --help`` and docs/benchmarks.md). Nothing
here asserts a timing: the tables print targets next to the measurements.
"""
