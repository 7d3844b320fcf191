"""``python -m bench.timed_build ARGS``: ``pipelines.build.main(ARGS)``, plus where its wall time went.

Exactly the build's own entry point; the only addition is a handler on the FnApiRunner's bundle logger,
which logs the start of each fused stage (the runner executes stages one after another, each split over
the workers). The gaps between consecutive starts are the stages' wall times; they are written as JSON
to ``$TOKENMILL_BENCH_STAGE_LOG`` when the build ends (also when it fails).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import sys
import time

BUNDLE_LOGGER = "apache_beam.runners.portability.fn_api_runner.fn_runner.run_bundle"
_PREFIX = "Running bundle for stage "


class StageClock(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.start = time.perf_counter()
        self.epoch = time.time()  # lines the stages up with the benchmark's memory samples
        self.events: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(_PREFIX):
            self.events.append((time.perf_counter() - self.start, message[len(_PREFIX) :].split("\n")[0]))


def label(stage: str) -> str:
    """A fused stage's name → the user transforms in it, in order, by their top-level name."""
    names = re.findall(r"ref_AppliedPTransform_([^\s()+]+?)_\d+\)", stage)
    names += re.findall(r"\(([A-Za-z][^\s()+/]*)/[^()+]*(?:Read|Write)\)", stage)
    tops: list[str] = []
    for name in names:
        if name.startswith("ref_PCollection"):
            continue
        parts = re.split(r"[-/]", name)
        top = parts[0]
        if top in ("Stage", "Stages") and len(parts) > 1:
            # Stage names are lower case; Beam's own sub-transforms (ParDo, ...) are not.
            stage_names = itertools.takewhile(lambda part: part[:1].islower(), parts[1:])
            top = f"{top}[{','.join(stage_names)}]"
        elif top == "Dedup" and len(parts) > 1:
            top = f"Dedup/{parts[1]}"
        if top not in tops:
            tops.append(top)
    return ", ".join(tops) or stage[:80]


def main(argv: list[str]) -> int:
    clock = StageClock()
    logger = logging.getLogger(BUNDLE_LOGGER)
    logger.setLevel(logging.DEBUG)
    logger.addHandler(clock)
    logger.propagate = False
    from pipelines import beamlog, worker

    beamlog.quiet_beam_chatter(worker=False)  # as `python -m pipelines.build` does, before Beam is imported
    worker.start_early(argv)
    from pipelines.build import main as build_main

    try:
        return build_main(argv)
    finally:
        worker.stop_early()  # if the build stopped before adopting them
        out = os.environ.get("TOKENMILL_BENCH_STAGE_LOG")
        if out:
            end = time.perf_counter() - clock.start
            events = clock.events
            stages = [
                {
                    "start": t,
                    "seconds": (events[i + 1][0] if i + 1 < len(events) else end) - t,
                    "stage": label(name),
                }
                for i, (t, name) in enumerate(events)
            ]
            with open(out, "w", encoding="utf-8") as handle:
                json.dump(
                    {"total": end, "epoch": clock.epoch, "first_bundle": events[0][0] if events else None,
                     "stages": stages},
                    handle,
                )


if __name__ == "__main__":
    from pipelines import worker

    worker.exit_now(main(sys.argv[1:]))  # as `python -m pipelines.build` exits
