"""``veritee bench``: JSON shape per CONTRACT §4 (never timing), the registry, the loops."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from veritee import bench
from veritee.bench.core import BenchResult, Figure, Settings, compare, throughput
from veritee.cli.main import app

CONTRACT_KEYS = {"benchmark", "ops_per_s", "floor", "ratio_to_floor", "peer", "ratio_to_peer",
                 "threads", "seconds"}


def run_json(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["bench", *args, "--json"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    document: dict[str, Any] = json.loads(lines[0])
    return document


@pytest.mark.parametrize("threads", [1, 2])
def test_snp_json_shape(threads: int) -> None:
    out = run_json("snp", "--seconds", "0.2", "--threads", str(threads))
    assert set(out) >= CONTRACT_KEYS
    assert out["benchmark"] == "snp" and out["threads"] == threads and out["seconds"] == 0.2
    assert out["floor"]["name"] == "ecdsa-p384-verify"
    assert out["ops_per_s"] > 0 and out["floor"]["ops_per_s"] > 0
    assert isinstance(out["ratio_to_floor"], float)
    assert out["peer"] is None and out["ratio_to_peer"] is None
    for key in ("single_thread_ops_per_s", "scaling", "floor_scaling"):
        assert isinstance(out[key], float)


def test_list_names_every_benchmark() -> None:
    out = run_json("--list")
    assert [b["name"] for b in out["benchmarks"]] == bench.names()
    assert all(b["description"] for b in out["benchmarks"])


def test_every_registered_benchmark_loads() -> None:
    for name in bench.names():
        assert bench.get(name).name == name


def test_unknown_benchmark_is_usage() -> None:
    result = CliRunner().invoke(app, ["bench", "no-such-bench", "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["status"] == "error"


@pytest.mark.parametrize("args", [["snp", "--seconds", "0"], ["snp", "--threads", "0"]])
def test_bad_settings_are_usage(args: list[str]) -> None:
    assert CliRunner().invoke(app, ["bench", *args]).exit_code == 2


def test_human_output_is_a_table() -> None:
    result = CliRunner().invoke(app, ["bench", "snp", "--seconds", "0.1"])
    assert result.exit_code == 0, result.output
    assert "ratio to floor" in result.stdout


@pytest.mark.parametrize("threads", [1, 3])
def test_throughput_counts_every_call(threads: int) -> None:
    calls: list[int] = []
    count, elapsed = throughput(lambda: calls.append(1), 0.05, threads)
    assert count == len(calls) > 0
    assert elapsed >= 0.05


def test_compare_reports_progress_and_rates() -> None:
    seen: list[tuple[str, float]] = []
    settings = Settings(seconds=0.04, advance=lambda label, took: seen.append((label, took)))
    rates = compare({"a": lambda: None, "b": lambda: None}, settings, 1)
    assert set(rates) == {"a", "b"} and all(r > 0 for r in rates.values())
    assert [label for label, _ in seen] == ["a, 1 thread", "b, 1 thread"]


def test_result_ratios() -> None:
    result = BenchResult("x", 50.0, Figure("f", 100.0), None, 1, 1.0, {"extra": 1})
    document = result.to_dict()
    assert document["ratio_to_floor"] == 0.5 and document["ratio_to_peer"] is None
    assert document["extra"] == 1
