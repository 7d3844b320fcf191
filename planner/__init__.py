"""Planner: scaling-law forms (:mod:`planner.laws`), Approach 3 fits (:mod:`planner.fit`), a GPU catalogue
(:mod:`planner.hardware`) and the ``planner`` CLI (:mod:`planner.cli`). Reads the metrics store, never writes it.
"""
