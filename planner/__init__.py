"""Planner: scaling-law forms (:mod:`planner.laws`) and fits (:mod:`planner.fit`), model shapes (:mod:`planner.shape`),
a GPU catalogue (:mod:`planner.hardware`), parallel layouts (:mod:`planner.layout`), the published-run validation
(:mod:`planner.validation`) and the ``planner`` CLI (:mod:`planner.cli`). Reads trainer runs from the metrics store and
appends every plan and fit to it.
"""
