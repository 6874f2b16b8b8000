"""The default SEV / SEV-ES policy (``sev.rego``) on claims as the verifier returns them, in
the broker's engine: affirming only with the opt-in, each failure named with the reference
value or setting that would change it."""

from __future__ import annotations

from typing import Any

import pytest

from support import platforms
from veritee.appraisal import PolicyEngine
from veritee.tee.snp.session import SevPolicy
from veritee.tee.snp.sev_claims import SevClaims

DIGEST = "ab" * 32
OTHER = "cd" * 32
AFFIRMING = {"instance-identity": 2, "configuration": 2, "executables": 3, "hardware": 2}


def claims(tee: str = "sev", *, policy: int | None = None, emulated: bool = False,
           digest: str = DIGEST, api: tuple[int, int] = (0, 24)) -> dict[str, Any]:
    value = (0x7 if tee == "sev-es" else 0x3) if policy is None else policy
    flags = SevPolicy.from_int(value)
    return SevClaims(tee=tee, launch_digest=digest, measure="00" * 32, mnonce="00" * 16,
                     api_major=api[0], api_minor=api[1], build_id=15, policy=value,
                     policy_flags=flags.to_claims(), debug=not flags.nodbg, es=flags.es,
                     product="rome", key_source="broker-session", launch_id="x",
                     emulated=emulated).to_dict()


REFS: dict[str, list[Any]] = {"sev_launch_digest": [DIGEST],
                              "sev_accept_host_relayed": [DIGEST]}


@pytest.fixture(scope="module", params=[True, False], ids=["natives-on", "natives-off"])
def engine(request: pytest.FixtureRequest) -> PolicyEngine:
    """The broker's engine (sev.rego has no native evaluator: Rego runs either way)."""
    return platforms.engine(native=request.param)


def appraise(engine: PolicyEngine, tee: str, facts: dict[str, Any],
             refs: dict[str, list[Any]]) -> Any:
    return engine.appraise(tee=tee, claims=facts, policy_id="default", reference_values=refs,
                           policy=platforms.default_policy(tee), **platforms.shape(tee))


@pytest.mark.parametrize("tee", ["sev", "sev-es"])
def test_an_opted_in_digest_is_affirming(engine: PolicyEngine, tee: str) -> None:
    result = appraise(engine, tee, claims(tee), REFS)
    assert result.status == "affirming", result.explain()
    assert {k: result.trust_vector[k] for k in AFFIRMING} == AFFIRMING


@pytest.mark.parametrize("case", [
    ("digest not a reference value", "sev", claims(digest=OTHER), REFS,
     {"sev.launch_digest", "sev.host_relayed"}, {"executables": 33, "hardware": 32}),
    ("no opt-in", "sev", claims(), {"sev_launch_digest": [DIGEST]}, {"sev.host_relayed"},
     {"hardware": 32}),
    ("debug allowed by the guest policy", "sev", claims(policy=0x2), REFS,
     {"sev.policy.nodbg"}, {"configuration": 36}),
    ("emulated without allow_emulated", "sev", claims(emulated=True), REFS,
     {"sev.emulated"}, {"hardware": 96, "instance-identity": 96}),
    ("firmware API below the minimum", "sev-es", claims("sev-es", api=(0, 17)),
     {**REFS, "sev_min_api_major": [0], "sev_min_api_minor": [22]}, {"sev.api_version"},
     {"hardware": 97}),
    ("an sev-es launch without ES", "sev-es", {**claims("sev-es"), "es": False}, REFS,
     {"sev.policy.es"}, {"configuration": 36}),
    ("no reference values at all", "sev", claims(), {}, {"sev.launch_digest",
                                                         "sev.host_relayed"},
     {"executables": 33, "hardware": 32}),
], ids=lambda case: case[0])
def test_failures_are_named(engine: PolicyEngine, case: tuple[Any, ...]) -> None:
    _, tee, facts, refs, failed, vector = case
    result = appraise(engine, tee, facts, refs)
    assert result.status != "affirming"
    assert {c.name for c in result.failed()} == failed
    assert {k: result.trust_vector[k] for k in vector} == vector
    assert result.explain()


def test_the_opt_in_explains_the_weaknesses(engine: PolicyEngine) -> None:
    result = appraise(engine, "sev", claims(), {"sev_launch_digest": [DIGEST]})
    text = result.explain()
    assert "sev_accept_host_relayed" in text and "undeSErVed" in text


@pytest.mark.parametrize("refs", [
    {**REFS, "sev_allow_debug": [True]},
    {**REFS, "sev_min_api_major": [0], "sev_min_api_minor": [24]},
    {"sev_launch_digest": [DIGEST.upper()], "sev_accept_host_relayed": [DIGEST.upper()]},
])
def test_settings_that_allow(engine: PolicyEngine, refs: dict[str, list[Any]]) -> None:
    facts = claims(policy=0x2) if "sev_allow_debug" in refs else claims()
    assert appraise(engine, "sev", facts, refs).status == "affirming"


def test_a_string_api_minimum_does_not_pass_a_number(engine: PolicyEngine) -> None:
    refs = {**REFS, "sev_min_api_major": ["0"]}
    assert appraise(engine, "sev", claims(), refs).status != "affirming"
