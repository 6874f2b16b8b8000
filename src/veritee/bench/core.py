"""Timing loops and result shapes shared by every benchmark.

Throughput is measured by running an operation in a loop until a deadline, in one thread or
in N threads that each loop until the same deadline (the operations this project cares
about release the GIL inside OpenSSL, so threads scale). :func:`compare` interleaves the
operation and its floor in short rounds, so a noisy neighbour slows both alike and the
ratio stays meaningful.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

Operation = Callable[[], object]

#: Length of one interleaving round per operation, in seconds (at most).
ROUND_SECONDS = 1.0


def _ignore(_label: str, _seconds: float) -> None:
    return None


@dataclass(frozen=True)
class Settings:
    seconds: float = 5.0
    """Measuring time per operation and thread count."""
    threads: int = 1
    advance: Callable[[str, float], None] = _ignore
    """Called after each timed round with a label and the seconds it took (progress)."""
    tee: str | None = None
    """The platform a benchmark that can drive several (``broker``) drives; None: its
    default."""


@dataclass(frozen=True)
class Figure:
    name: str
    ops_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ops_per_s": round(self.ops_per_s, 1)}


@dataclass(frozen=True)
class BenchResult:
    """One benchmark run, shaped as CONTRACT.md §4 prints it (``extra`` adds keys)."""

    benchmark: str
    ops_per_s: float
    floor: Figure | None
    peer: Figure | None
    threads: int
    seconds: float
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ratio_to_floor(self) -> float | None:
        return _ratio(self.ops_per_s, self.floor)

    @property
    def ratio_to_peer(self) -> float | None:
        return _ratio(self.ops_per_s, self.peer)

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "ops_per_s": round(self.ops_per_s, 1),
            "floor": self.floor.to_dict() if self.floor else None,
            "ratio_to_floor": self.ratio_to_floor,
            "peer": self.peer.to_dict() if self.peer else None,
            "ratio_to_peer": self.ratio_to_peer,
            "threads": self.threads,
            "seconds": self.seconds,
            **self.extra,
        }


def _ratio(ops: float, other: Figure | None) -> float | None:
    if other is None or other.ops_per_s <= 0:
        return None
    return round(ops / other.ops_per_s, 3)


class Benchmark(Protocol):
    name: str
    description: str

    def planned_seconds(self, settings: Settings) -> float:
        """How long :meth:`run` will measure (for a progress bar)."""
        ...

    def run(self, settings: Settings) -> BenchResult: ...


def throughput(op: Operation, seconds: float, threads: int = 1) -> tuple[int, float]:
    """Run ``op`` until ``seconds`` have passed in ``threads`` threads; (count, elapsed)."""
    start = time.perf_counter()
    deadline = start + seconds
    if threads == 1:
        count, end = _loop(op, deadline)
        return count, end - start
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(lambda _: _loop(op, deadline), range(threads)))
    return sum(c for c, _ in results), max(e for _, e in results) - start


def _loop(op: Operation, deadline: float) -> tuple[int, float]:
    count = 0
    clock = time.perf_counter
    while clock() < deadline:
        op()
        count += 1
    return count, clock()


def compare(ops: Mapping[str, Operation], settings: Settings, threads: int) -> dict[str, float]:
    """Ops/s of each operation, measured for ``settings.seconds`` each, interleaved."""
    rounds = max(1, math.ceil(settings.seconds / ROUND_SECONDS))
    slice_seconds = settings.seconds / rounds
    counts = dict.fromkeys(ops, 0)
    elapsed = dict.fromkeys(ops, 0.0)
    for _ in range(rounds):
        for name, op in ops.items():
            count, took = throughput(op, slice_seconds, threads)
            counts[name] += count
            elapsed[name] += took
            settings.advance(f"{name}, {threads} thread{'s' if threads > 1 else ''}", took)
    return {name: counts[name] / elapsed[name] for name in ops}


@dataclass(frozen=True)
class Workload:
    """A benchmark's operations: the verification, its floor and (when installed) the peer
    doing the same verification on the same input."""

    verify: Operation
    floor: Operation
    peer: Operation | None = None


@dataclass(frozen=True)
class FloorBenchmark:
    """A verification measured beside its floor and its peer, interleaved, on one thread and
    on ``settings.threads`` (the one-thread figures go into ``extra``)."""

    name: str
    description: str
    floor_name: str
    make: Callable[[], Workload]
    """Builds the workload (each operation checked once before it is timed)."""
    peer_name: str | None = None

    def planned_seconds(self, settings: Settings) -> float:
        operations = 3 if self.peer_name else 2
        return operations * settings.seconds * len({1, settings.threads})

    def run(self, settings: Settings) -> BenchResult:
        work = self.make()
        ops: dict[str, Operation] = {"verify": work.verify, "floor": work.floor}
        if work.peer is not None:
            ops["peer"] = work.peer
        figures = {n: compare(ops, settings, n) for n in sorted({1, settings.threads})}
        one, many = figures[1], figures[settings.threads]
        extra: dict[str, Any] = {
            "single_thread_ops_per_s": round(one["verify"], 1),
            "single_thread_floor_ops_per_s": round(one["floor"], 1),
            "single_thread_ratio_to_floor": round(one["verify"] / one["floor"], 3),
            "scaling": round(many["verify"] / one["verify"], 3),
            "floor_scaling": round(many["floor"] / one["floor"], 3),
        }
        if "peer" in one:
            extra["single_thread_peer_ops_per_s"] = round(one["peer"], 1)
            extra["single_thread_ratio_to_peer"] = round(one["verify"] / one["peer"], 3)
        peer = (Figure(self.peer_name or "peer", many["peer"]) if "peer" in many else None)
        return BenchResult(benchmark=self.name, ops_per_s=many["verify"],
                           floor=Figure(self.floor_name, many["floor"]), peer=peer,
                           threads=settings.threads, seconds=settings.seconds, extra=extra)
