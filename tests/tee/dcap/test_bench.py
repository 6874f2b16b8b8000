"""``veritee bench tdx`` / ``sgx``: the measured operations do what they say (the warm and the
cold verifier reach the same verdict, the peer agrees, the floor verifies), and a short run
gives every figure CONTRACT.md §4 names. No timing is asserted."""

from __future__ import annotations

import pytest

from veritee.bench.core import Settings
from veritee.tee.dcap.bench import SGX_BENCHMARK, TDX_BENCHMARK, workload


@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_the_operations_agree(tee: str) -> None:
    work = workload(tee)
    warm, cold = work.verify().to_dict(), work.verify_cold().to_dict()
    assert warm == cold == work.verify_new_qe().to_dict()
    assert warm["tcb_status"] == "UpToDate" and warm["emulated"] is True
    work.floor()
    if work.peer is not None:
        assert work.peer().status == warm["tcb_status"]


@pytest.mark.parametrize("benchmark", [TDX_BENCHMARK, SGX_BENCHMARK], ids=lambda b: b.name)
def test_a_short_run_reports_every_figure(benchmark: object) -> None:
    result = benchmark.run(Settings(seconds=0.2, threads=2)).to_dict()  # type: ignore[attr-defined]
    assert result["benchmark"] in ("tdx", "sgx") and result["threads"] == 2
    assert result["floor"]["name"] == "ecdsa-p256-verify-x2"
    for key in ("ops_per_s", "cold_ops_per_s", "single_thread_ops_per_s", "ratio_to_floor",
                "new_qe_ops_per_s", "new_qe_ratio_to_floor"):
        assert result[key] > 0, key
    if result["peer"] is not None:
        assert result["ratio_to_peer"] > 0 and result["cold_ratio_to_peer"] > 0
