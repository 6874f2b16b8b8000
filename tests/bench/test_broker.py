"""``veritee bench broker``: the JSON shape (CONTRACT §4) and a clean stop; never timing."""

from __future__ import annotations

import asyncio
import json
import os

import httpx
import pytest
from typer.testing import CliRunner

from veritee.bench import broker as bench_broker
from veritee.cli.main import app
from veritee.errors import MisuseError

CONTRACT_KEYS = {"benchmark", "ops_per_s", "floor", "ratio_to_floor", "peer", "ratio_to_peer",
                 "threads", "seconds"}


def test_broker_json_shape() -> None:
    result = CliRunner().invoke(app, ["bench", "broker", "--seconds", "0.3", "--json"])
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    out = json.loads(line)
    assert set(out) >= CONTRACT_KEYS
    assert out["benchmark"] == "broker" and out["seconds"] == 0.3
    assert out["floor"]["name"] == f"{out['tee']}-verify-2-threads" and out["threads"] == 2
    assert out["tee"] == bench_broker.bench_platform(None).tee
    assert out["ops_per_s"] > 0 and out["floor"]["ops_per_s"] > 0
    assert isinstance(out["ratio_to_floor"], float)
    assert out["peer"] is None and out["ratio_to_peer"] is None
    assert out["workers"] == os.cpu_count()
    levels = [out[f"concurrency_{c}"] for c in bench_broker.CONCURRENCY]
    for level in levels:
        assert set(level) == {"flows_per_s", "p50_ms", "p99_ms", "flows",
                              "broker_cpu_ms_per_flow", "client_cpu_ms_per_flow"}
        assert level["flows"] > 0 and level["p50_ms"] <= level["p99_ms"]
        assert isinstance(level["client_cpu_ms_per_flow"], float)
        assert level["broker_cpu_ms_per_flow"] is None or isinstance(
            level["broker_cpu_ms_per_flow"], float)
    assert out["best_concurrency"] in bench_broker.CONCURRENCY
    assert out["ops_per_s"] == max(level["flows_per_s"] for level in levels)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_served_broker_stops_with_its_workers_on_an_error() -> None:
    group = None
    with pytest.raises(RuntimeError, match="boom"), bench_broker.served_broker(2) as served:
        group = os.getpgid(served.pid)
        assert httpx.get(f"{served.url}/healthz").status_code == 200
        raise RuntimeError("boom")
    assert group is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)       # no process of the broker's group is left


def test_one_flow_releases_the_secret() -> None:
    guest, _ = bench_broker.bench_platform(None).load("broker_guest")()
    with bench_broker.served_broker(1) as served:
        bench_broker.provision(served, guest)
        level = asyncio.run(bench_broker.run_level(served.url, guest, 2, 0.2))
    assert level.flows >= 2
    assert not _alive(served.pid)


def test_an_unknown_platform_is_refused() -> None:
    with pytest.raises(MisuseError, match="no broker benchmark guests for TEE 'nope'"):
        bench_broker.bench_platform("nope")
    result = CliRunner().invoke(app, ["bench", "broker", "--tee", "nope", "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["type"] == "MisuseError"
