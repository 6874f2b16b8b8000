"""The reference values SEV-SNP gives ``veritee demo`` and ``veritee bench broker`` make
their genuine emulated guests affirming under the shipped default policy (which refuses a
TCB component without a minimum), on both policy paths."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from support import platforms
from veritee.appraisal import PolicyEngine
from veritee.appraisal.reference import parse_reference_values, reference_mapping
from veritee.collateral import CollateralSource
from veritee.evidence import decode_evidence
from veritee.tee import get_verifier
from veritee.tee.snp.bench import BrokerGuest
from veritee.tee.snp.demo import DEMO
from veritee.testing.snp import DEFAULT_TCB, EMULATOR, PRODUCTS

NONCE = bytes(range(64))


@pytest.fixture(scope="module", params=[True, False], ids=["native", "regopy"])
def engine(request: pytest.FixtureRequest) -> PolicyEngine:
    return platforms.engine(native=request.param)


def appraise(engine: PolicyEngine, evidence: bytes, refs: dict[str, list[Any]]) -> Any:
    claims = get_verifier("snp", trust_emulated=True).verify(
        decode_evidence(evidence), report_data=NONCE, collateral=CollateralSource(),
        now=datetime.now(UTC)).to_dict()
    return engine.appraise(tee="snp", claims=claims, policy_id="default_snp",
                           policy=platforms.default_policy("snp"), reference_values=refs,
                           **platforms.shape("snp"))


def demo_references() -> dict[str, list[Any]]:
    return reference_mapping(parse_reference_values(DEMO.reference_values(), source="demo"))


def test_demo_lists_the_smallest_tcb_of_every_product_line() -> None:
    refs = demo_references()
    assert {name: refs[f"snp_{name}"] for name in ("bootloader", "tee", "snp", "microcode",
                                                   "fmc")} == {
        "bootloader": [1], "tee": [0], "snp": [2], "microcode": [71], "fmc": [0]}
    for tcb in DEFAULT_TCB.values():
        assert all(value >= refs[f"snp_{name}"][0] for name, value in tcb.items())


def test_demo_genuine_guests_are_affirming(engine: PolicyEngine) -> None:
    released = [guest for guest in DEMO.guests() if guest.expect == "released"]
    assert len(released) == len(PRODUCTS)
    for guest in released:
        result = appraise(engine, json.dumps(guest.collector(NONCE)).encode(),
                          demo_references())
        assert result.status == "affirming", (guest.name, result.explain())


def test_bench_broker_guests_are_affirming(engine: PolicyEngine) -> None:
    guest = BrokerGuest()
    result = appraise(engine, guest.report(NONCE) + guest.emulator.cert_table(),
                      guest.reference_values())
    assert result.status == "affirming", result.explain()


def test_the_example_reference_values_affirm_the_emulated_guest(engine: PolicyEngine) -> None:
    # README: `veritee emulate snp --out evidence.bin` then `veritee policy test ...
    # --reference-values examples/rv.json` is affirming (offline: revocation not required).
    example = Path(__file__).resolve().parents[3] / "examples" / "rv.json"
    refs = reference_mapping(parse_reference_values(example.read_text(), source="rv.json"))
    emulated = EMULATOR.emulate(report_data=NONCE, host_data=None, knobs=())
    result = appraise(engine, emulated.evidence, refs)
    assert result.status == "affirming", result.explain()
