"""``veritee bench store`` and ``python -m veritee.bench.store``: every store call runs and
is reported (figures are printed, never asserted)."""

from __future__ import annotations

import json

import pytest

from veritee import bench
from veritee.bench import store as store_bench
from veritee.bench.core import Settings


def test_the_script_runs_every_call(capsys: pytest.CaptureFixture[str]) -> None:
    assert store_bench.main(["-n", "20", "--threads", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["backend"] == "sqlite"
    assert out["ops_per_s"]["consume_nonce"] > 0
    assert {"flow, 1 thread", "flow, 2 threads"} <= set(out["ops_per_s"])


def test_the_registered_benchmark_reports_the_flow() -> None:
    result = bench.get("store").run(Settings(seconds=0.1))
    as_json = result.to_dict()
    assert as_json["benchmark"] == "store" and as_json["floor"] is None
    assert as_json["ops_per_s"] == round(as_json["ops_per_s_by_call"]["flow, 1 thread"], 1)
