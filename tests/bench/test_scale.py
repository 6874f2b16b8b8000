"""``veritee bench scale`` at a small scale: the result's shape, flows that succeeded in
every case, and the pieces (seeding, the operator policy); never timing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from veritee import bench
from veritee.bench import broker as harness
from veritee.bench import scale
from veritee.bench.core import Settings
from veritee.broker.config import Config
from veritee.broker.keys import load_keys
from veritee.store.store import Store

SMALL = scale.ScaleBenchmark(reference_values=1_000, audit_rows=1_000, expired_sessions=1_000,
                             rules=20)
CONTRACT_KEYS = {"benchmark", "ops_per_s", "floor", "ratio_to_floor", "peer", "ratio_to_peer",
                 "threads", "seconds"}
LEVEL_KEYS = {"flows_per_s", "p50_ms", "p99_ms", "flows", "broker_cpu_ms_per_flow",
              "client_cpu_ms_per_flow"}


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    document: dict[str, Any] = SMALL.run(Settings(seconds=0.3)).to_dict()
    return document


def test_the_result_has_every_case_beside_the_baseline(result: dict[str, Any]) -> None:
    assert set(result) >= CONTRACT_KEYS
    assert result["benchmark"] == "scale" and result["floor"] is None
    keys = [case.key for case in SMALL.cases()]
    assert keys == ["baseline", "reference_values_1000", "audit_1000_purging_1000",
                    "policy_20_rules", "baseline_again"]
    assert set(result["ratios"]) == (set(keys) - {"baseline", "baseline_again"}
                                     | {"audit_1000_purging_1000_while_purging"})
    assert set(result["non_2xx"]) == set(keys)
    for key in keys:
        case = result[key]
        assert set(case) >= LEVEL_KEYS | {"title", "ratio", "failed_flows", "non_2xx"}
        assert case["flows"] > 0, key
        assert case["failed_flows"] == 0 and case["non_2xx"] == {}, (key, case)
        assert case["ratio"] is None or isinstance(case["ratio"], float)
    purge = result["audit_1000_purging_1000"]
    assert {"expired_sessions_at_start", "expired_sessions_at_end",
            "broker_cpu_ms_per_flow_while_purging", "ratio_while_purging"} <= set(purge)
    assert purge["expired_sessions_at_end"] <= purge["expired_sessions_at_start"] <= 1_000


def test_scale_and_cli_are_listed() -> None:
    assert {"scale", "cli"} <= set(bench.names())
    assert bench.get("scale").name == "scale"


def test_seeding_writes_every_row(tmp_path: Path) -> None:
    case = scale.Case("x", "x", reference_values=50, audit_rows=30, expired_sessions=40)
    tee = harness.bench_platform(None).tee
    scale.seed_store(tmp_path, case, own=6, tee=tee, advance=lambda _label, _took: None)
    assert scale.expired_sessions(tmp_path) == 40
    config = Config(data_dir=str(tmp_path))
    with Store.open(config.store_url, kek=load_keys(config).kek) as store:
        values = store.get_reference_values(now=scale.datetime.now(scale.UTC))
        assert len(values) == 44
        assert all(1 <= len(v) <= 2 for v in values.values())
        assert len(store.list_audit(limit=100)) == 30


def test_the_operator_policy_has_its_rules_and_affirms_the_guests() -> None:
    platform = harness.bench_platform(None)
    guest, _ = platform.load("broker_guest")()
    source = scale.operator_policy(platform, guest, 200)
    assert sum(line.startswith("r_") for line in source.splitlines()) == 200
    assert "report_data" not in source  # it changes with every challenge
    assert scale.stable_claims(platform, guest)
