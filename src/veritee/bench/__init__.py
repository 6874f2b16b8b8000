"""Benchmarks: each measures one operation and its unavoidable floor in the same run.

CONTRACT.md §4. A benchmark is an object with the :class:`~veritee.bench.core.Benchmark`
shape, named in :data:`BENCHMARKS`; ``veritee bench --list`` shows them. To add one, write
``veritee/bench/<name>.py`` with a module-level benchmark object and list it here.
"""

from __future__ import annotations

import importlib

from veritee.bench.core import Benchmark, BenchResult, Figure, Settings, compare, throughput
from veritee.errors import MisuseError

#: Benchmark name → "module:attribute" of its :class:`Benchmark` (imported on use).
BENCHMARKS: dict[str, str] = {
    "broker": "veritee.bench.broker:BENCHMARK",
    "snp": "veritee.bench.snp:BENCHMARK",
}


def names() -> list[str]:
    return sorted(BENCHMARKS)


def get(name: str) -> Benchmark:
    """The benchmark called ``name``.

    Raises:
        MisuseError: no benchmark has that name.
    """
    target = BENCHMARKS.get(name)
    if target is None:
        raise MisuseError(f"no benchmark named {name!r}; known: {', '.join(names())}")
    module, _, attribute = target.partition(":")
    benchmark: Benchmark = getattr(importlib.import_module(module), attribute)
    return benchmark


__all__ = [
    "BENCHMARKS",
    "BenchResult",
    "Benchmark",
    "Figure",
    "Settings",
    "compare",
    "get",
    "names",
    "throughput",
]
