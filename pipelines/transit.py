"""Records handed between pipeline stages must all arrive: a fix for the runner, and checks for the rest.

Document accounting (kept + rejected + dead-lettered = input) catches lost documents, but not lost
intermediate records: a dedup edge or a bucket entry that vanishes between two stages silently changes
which documents are kept. Beam 2.77's DirectRunner in multi_processing mode lost such records in five
100k-document builds here (docs/benchmarks.md). The cause is a race in Beam's runner-side data plane:
the runner sends a bundle's input through a ``TimeBasedBufferingClosableOutputStream``, whose flusher
thread wakes every second, hands the buffer to a send queue and then clears it, without holding off the
writing thread. Since Beam bounded that send queue, the hand-over can block for as long as the queue is
full; every chunk the runner writes meanwhile is cleared unsent, and the worker decodes a clean but
shorter input. :func:`avoid_runner_flush_race` turns the runner's time-based flushing off (batch builds
do not need it; workers already flush by size only).

Because a runner can lose records in other ways, the build also checks, and refuses to publish on a
mismatch:

* every grouping edge the pipeline owns is a :class:`CheckedGroupByKey`: records counted on the sending
  side (fused into the producing stage) must all arrive inside the groups on the receiving side;
* for every PCollection handed from one fused stage to another without grouping, the element counts
  the runner itself reports for the producing and each consuming stage must agree
  (:func:`stage_count_problems`).

Counting happens once per bundle, so the cost is one dictionary update per record.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics import monitoring_infos as infos
from apache_beam.metrics.metric import MetricsFilter

NAMESPACE = "tokenmill.transit"
SENT, RECEIVED = "sent", "received"


class _Count(beam.DoFn):
    """Passes records through and adds how many it saw (or how many values their groups held)."""

    def __init__(self, edge: str, side: str, grouped: bool):
        self.edge, self.side, self.grouped = edge, side, grouped

    def setup(self) -> None:
        self.counter = Metrics.counter(NAMESPACE, f"{self.edge}/{self.side}")

    def start_bundle(self) -> None:
        self.seen = 0

    def process(self, element: Any) -> Iterator[Any]:
        if self.grouped:
            key, values = element
            values = list(values)
            self.seen += len(values)
            element = key, values
        else:
            self.seen += 1
        yield element

    def finish_bundle(self) -> None:
        self.counter.inc(self.seen)


class _OnEdge(beam.PTransform):
    """A transform whose records are counted under the name of one pipeline edge."""

    def __init__(self, edge: str):
        super().__init__()
        self.edge = edge


class CheckedGroupByKey(_OnEdge):
    """``GroupByKey`` whose records are counted before and after the shuffle under ``edge``.

    Given a tuple of PCollections (Beam would take a list for data), it groups them together as a
    Flatten before a GroupByKey would; each is counted where it is made, so that the Flatten feeds the
    GroupByKey directly and the local runner writes every input straight into the grouping
    (``runner.sink_flattens_into_groups``).
    """

    def expand(self, pcolls: beam.PCollection | tuple[beam.PCollection, ...]) -> beam.PCollection:
        if isinstance(pcolls, tuple) and len(pcolls) == 1:
            pcolls = pcolls[0]
        if isinstance(pcolls, beam.PCollection):
            sent = pcolls | "Sent" >> beam.ParDo(_Count(self.edge, SENT, grouped=False))
        else:
            sent = [pcoll | f"Sent[{i}]" >> beam.ParDo(_Count(self.edge, SENT, grouped=False))
                    for i, pcoll in enumerate(pcolls)] | "Flatten" >> beam.Flatten()
        return (
            sent
            | "Group" >> beam.GroupByKey()
            | "Received" >> beam.ParDo(_Count(self.edge, RECEIVED, grouped=True))
        )


def _tagged(tag: str):
    def tag_value(kv: tuple[Any, Any]) -> tuple[Any, tuple[str, Any]]:
        return kv[0], (tag, kv[1])

    return tag_value


def _by_tag(tags: tuple[str, ...]):
    def split(item: tuple[Any, Iterable[tuple[str, Any]]]) -> tuple[Any, dict[str, list]]:
        key, tagged = item
        groups: dict[str, list] = {tag: [] for tag in tags}
        for tag, value in tagged:
            groups[tag].append(value)
        return key, groups

    return split


class CheckedCoGroupByKey(_OnEdge):
    """``CoGroupByKey`` over a dict of keyed PCollections, as one :class:`CheckedGroupByKey`.

    Output is ``(key, {tag: [values]})`` like Beam's ``CoGroupByKey`` given a dict.
    """

    def expand(self, inputs: dict[str, beam.PCollection]) -> beam.PCollection:
        tags = tuple(inputs)
        tagged = tuple(pcoll | f"Tag[{tag}]" >> beam.Map(_tagged(tag)) for tag, pcoll in inputs.items())
        return (
            tagged
            | "Group" >> CheckedGroupByKey(self.edge)
            | "ByTag" >> beam.Map(_by_tag(tags))
        )


class CheckedDistinct(_OnEdge):
    """``Distinct`` through a :class:`CheckedGroupByKey` (no combiner lifting, so every record is counted)."""

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        return (
            pcoll
            | "Key" >> beam.Map(lambda element: (element, None))
            | "Group" >> CheckedGroupByKey(self.edge)
            | "Unkey" >> beam.Map(lambda kv: kv[0])
        )


def avoid_runner_flush_race() -> None:
    """Makes FnApiRunners (the DirectRunner's engine) started after this call flush data by size only."""
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0


def edge_problems(result: Any) -> list[str]:
    """Every :class:`CheckedGroupByKey` edge whose received count differs from its sent count."""
    counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    totals: dict[str, dict[str, int]] = defaultdict(lambda: {SENT: 0, RECEIVED: 0})
    for counter in counters:
        edge, _, side = counter.key.metric.name.rpartition("/")
        totals[edge][side] += counter.committed or 0
    return [
        f"{edge}: {sides[SENT]:,} records sent, {sides[RECEIVED]:,} received"
        for edge, sides in sorted(totals.items())
        if sides[SENT] != sides[RECEIVED]
    ]


def stage_count_problems(monitoring_infos: Iterable[Any], names: dict[str, str]) -> list[str]:
    """PCollections whose element counts differ between the stages that produced and read them.

    ``monitoring_infos`` holds each fused stage's own reports (FnApiRunner: ``result.monitoring_infos()``);
    a PCollection passed between stages is reported by its producer and by each consumer.
    """
    reports: dict[str, list[int]] = defaultdict(list)
    for info in monitoring_infos:
        if info.urn == infos.ELEMENT_COUNT_URN and "PCOLLECTION" in info.labels:
            reports[info.labels["PCOLLECTION"]].append(int(infos.extract_counter_value(info)))
    return [
        f"{names.get(pcoll, pcoll)}: stages report {' vs '.join(f'{n:,}' for n in counts)} elements"
        for pcoll, counts in sorted(reports.items())
        if len(set(counts)) > 1
    ]


def problems(result: Any, pipeline: beam.Pipeline) -> list[str]:
    """Both checks for a finished pipeline; the second only where the runner reports per-stage counts."""
    found = edge_problems(result)
    if hasattr(result, "monitoring_infos"):
        reports = list(result.monitoring_infos())
        # Names only make the message readable, and walking the graph for them takes ~0.7 s of a build.
        if stage_count_problems(reports, {}):
            found += stage_count_problems(reports, pcollection_names(pipeline))
    return found


def pcollection_names(pipeline: beam.Pipeline) -> dict[str, str]:
    """Runner PCollection ids → the transform that produces them (and the output tag), for error messages."""
    names = {}
    for transform in pipeline.to_runner_api().components.transforms.values():
        for tag, pcoll_id in transform.outputs.items():
            names[pcoll_id] = transform.unique_name if tag in ("None", "out") else f"{transform.unique_name}.{tag}"
    return names
