"""Benchmarks: each measures one operation and its unavoidable floor in the same run.

CONTRACT.md §4. A benchmark is an object with the :class:`~veritee.bench.core.Benchmark`
shape. The benchmarks of the whole service are listed in :data:`BENCHMARKS`; each platform
names its own in its descriptor (``benchmarks``), so ``veritee bench --list`` shows both.
"""

from __future__ import annotations

from veritee.bench.core import Benchmark, BenchResult, Figure, Settings, compare, throughput
from veritee.errors import MisuseError
from veritee.tee import load, platforms

#: Benchmarks of the service as a whole: name → "module:attribute" (imported on use).
BENCHMARKS: dict[str, str] = {
    "broker": "veritee.bench.broker:BENCHMARK",
    "cli": "veritee.bench.cli:BENCHMARK",
    "hostile": "veritee.bench.hostile:BENCHMARK",
    "scale": "veritee.bench.scale:BENCHMARK",
    "store": "veritee.bench.store:BENCHMARK",
}


def _all() -> dict[str, str]:
    found = dict(BENCHMARKS)
    for platform in platforms():
        for name, target in platform.benchmarks:
            if name in found:
                raise MisuseError(f"two benchmarks are called {name!r}")
            found[name] = target
    return found


def names() -> list[str]:
    return sorted(_all())


def get(name: str) -> Benchmark:
    """The benchmark called ``name``.

    Raises:
        MisuseError: no benchmark has that name.
    """
    target = _all().get(name)
    if target is None:
        raise MisuseError(f"no benchmark named {name!r}; known: {', '.join(names())}")
    benchmark: Benchmark = load(target)
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
