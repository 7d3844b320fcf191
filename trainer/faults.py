"""Fault injection (``--inject-fault KIND@STEP``), in the spirit of Megatron-LM's fault tests.

Steps count from 1 (step S is the S-th optimizer step, logged at step S) and step S consumes global
batch S of the data stream. Faults are keyed to that *batch number*, not to the step counter: after a
rollback the step counter goes back but the data cursor moves on, so a bad batch, like real bad data,
is met once and then skipped rather than replayed forever. Without rollbacks, batch S is step S.

- ``bad_batch@S`` (or ``bad_batch@S-E``): batch S (through E) is replaced by uniformly random tokens;
  a range long enough makes a persistent spike and exercises rollback.
- ``nan@S``: the gradients of batch S are made non-finite.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("bad_batch", "nan")


@dataclass(frozen=True)
class Fault:
    kind: str
    first: int
    last: int

    def hits(self, batch_number: int) -> bool:
        return self.first <= batch_number <= self.last


def parse_faults(specs: tuple[str, ...] | list[str]) -> tuple[Fault, ...]:
    faults = []
    for spec in specs:
        kind, sep, where = spec.partition("@")
        first, _, last = where.partition("-")
        if not sep or kind not in KINDS or not first.isdigit() or (last and not last.isdigit()):
            raise ValueError(f"--inject-fault {spec!r}: expected KIND@STEP or KIND@FIRST-LAST, KIND in {KINDS}")
        faults.append(Fault(kind, int(first), int(last or first)))
    return tuple(faults)


def active(faults: tuple[Fault, ...], kind: str, batch_number: int) -> bool:
    return any(f.kind == kind and f.hits(batch_number) for f in faults)
