"""The native evaluators of the shipped policies equal their Rego source run by regorus.

Property tests compare, on generated claim sets, reference values and token claim sets:
the raw policy outputs (native function against the compiled policy, strictly: ``1`` is not
``true``), and the whole Appraisal/Decision of an engine with native evaluators against one
without (every check's name, held, detail and values; or the same error).
"""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from support.platforms import default_policy, engine, shape
from veritee.appraisal import (
    DEFAULT_RESOURCE_POLICY,
    GENERIC_ATTESTATION_POLICY,
    PolicyEngine,
    PolicyError,
    ReferenceValueError,
    policy_input,
)
from veritee.appraisal import native as native_module
from veritee.appraisal.ear import EarIssuer
from veritee.appraisal.native import NativePolicy, resource_default
from veritee.appraisal.prepared import PreparedReferences
from veritee.appraisal.rego import CompiledPolicy
from veritee.tee.snp.claims import SnpClaims
from veritee.tee.snp.layout import parse_report
from veritee.tee.snp.policy import default_policy as snp_default
from veritee.testing.snp import SnpEmulator

SNP_POLICY = default_policy("snp")
REAL = SnpClaims(parse_report(SnpEmulator(product="genoa").report()), "genoa", "vcek",
                 emulated=True).to_dict()
MEASUREMENT = REAL["measurement"]
#: Genoa's components and Turin's fmc: generated TCBs have an fmc component or not.
TCB = {**REAL["reported_tcb"], "fmc": 0}
EXAMPLES = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NATIVE = engine()
REGORUS = engine(native=False)


def strict(value: Any) -> str:
    """JSON text that tells 1 from true and 1 from 1.0, independent of key order."""
    return json.dumps(value, sort_keys=True, allow_nan=True)


# -- generated values ------------------------------------------------------------------------

_ODD_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=6) | st.sampled_from(
    ["", "A", "a!", "a b", 'q"uote', "back\\slash", "tab\t", "nul\x00", "é", "K", "\u212a",
     "İ", "ß"])
SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.integers(-3, 300) | st.floats(allow_nan=False, width=32) | _ODD_TEXT)
#: Values the engine takes unchanged (most of the time), so that the native path is exercised.
PLAIN = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
         | st.text(alphabet=string.printable, max_size=6))
JSON = st.recursive(st.one_of(PLAIN, PLAIN, PLAIN, SCALARS), lambda inner: st.lists(
    inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)
MISSING = object()


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.just(MISSING) | strategy


def _hex_like(value: str) -> st.SearchStrategy[str]:
    return st.sampled_from([value, value.upper(), value[:-1] + "0", "b07a" + value[4:]])


MEASUREMENTS = _hex_like(MEASUREMENT) | PLAIN | SCALARS
HOST_DATA = _hex_like(REAL["host_data"]) | PLAIN | SCALARS
FLAGS = st.booleans() | st.sampled_from([None, 0, 1, "false", [False]])
VMPLS = st.integers(-1, 4) | st.sampled_from([None, True, False, "0", [0]]) | PLAIN
REVOCATION = st.sampled_from(["checked", "not_checked", "CHECKED", "", None, True]) | PLAIN
TCB_VALUES = st.integers(-2, 300) | st.sampled_from(list(TCB.values())) | PLAIN | SCALARS


@st.composite
def snp_claims(draw: st.DrawFn) -> dict[str, Any]:
    claims = json.loads(json.dumps(REAL))
    for name, strategy in (("measurement", MEASUREMENTS), ("host_data", HOST_DATA),
                           ("emulated", FLAGS), ("vmpl", VMPLS), ("revocation", REVOCATION)):
        value = draw(_maybe(strategy))
        if value is MISSING:
            claims.pop(name, None)
        else:
            claims[name] = value
    claims["reported_tcb"] = draw(st.fixed_dictionaries(
        {}, optional=dict.fromkeys(TCB, TCB_VALUES)) | PLAIN | st.just(dict(TCB)))
    claims["policy_flags"] = draw(st.fixed_dictionaries(
        {}, optional={"debug": FLAGS, "migrate_ma": FLAGS}) | PLAIN
        | st.just(dict(REAL["policy_flags"])))
    claims.update(draw(st.dictionaries(st.text(max_size=5), JSON, max_size=1)))
    return claims


def _reference_list(items: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(items | PLAIN | SCALARS, max_size=4)


TRUE_LISTS = st.sampled_from([[True], [False], [1], ["true"], [True, True], []]) | (
    _reference_list(st.booleans()))
REFERENCES = st.fixed_dictionaries({}, optional={
    "snp_launch_measurement": _reference_list(_hex_like(MEASUREMENT)),
    "snp_host_data": _reference_list(_hex_like(REAL["host_data"])),
    **{f"snp_{c}": _reference_list(st.integers(-1, 300) | st.sampled_from([v, v + 1, v - 1]))
       for c, v in TCB.items()},
    **dict.fromkeys(("allow_emulated", "snp_allow_debug", "snp_allow_migrate_ma"),
                    TRUE_LISTS),
    "snp_vmpl": _reference_list(st.integers(-1, 4)) | st.sampled_from([False, None, True]),
    "other": _reference_list(JSON),
})
RUNTIME = st.none() | st.dictionaries(st.text(max_size=5), JSON, max_size=3)
#: The broker's settings (``input.veritee``).
SETTINGS = st.none() | st.fixed_dictionaries({}, optional={
    "require_revocation": st.sampled_from([True, False, None, 1, "true", [True]]) | PLAIN,
    "other": JSON})

STATUSES = st.sampled_from(["affirming", "warning", "contraindicated", "none"]) | SCALARS
SUBMOD = st.fixed_dictionaries({}, optional={"ear.status": STATUSES, "x": JSON}) | SCALARS
SUBMOD_NAMES = st.sampled_from(["cpu0", "gpu0", "gpu1", "a", "a!", "a b", "Z"]) | st.text(
    alphabet=string.printable, max_size=4) | st.text(max_size=3)
TOKENS = st.fixed_dictionaries({}, optional={
    "submods": st.dictionaries(SUBMOD_NAMES, SUBMOD, max_size=4) | SCALARS,
    "eat_profile": JSON,
})


def _input(claims: dict[str, Any], runtime: dict[str, Any] | None,
           settings: dict[str, Any] | None = None) -> dict[str, Any]:
    return policy_input("snp", claims, runtime_data=runtime, settings=settings,
                        **shape("snp"))


# -- the raw outputs -------------------------------------------------------------------------


def _compiled(kind: str, source: str, references: dict[str, Any] | None = None
              ) -> CompiledPolicy:
    prepared = None if references is None else PreparedReferences.build(references)
    policy = REGORUS.compile(kind, "equivalence", source, prepared)  # type: ignore[arg-type]
    assert isinstance(policy, CompiledPolicy)
    return policy


def _document(references: dict[str, Any]) -> dict[str, Any]:
    return dict(PreparedReferences.build(references).document)


def _compare_outputs(evaluator: Any, compiled: CompiledPolicy, document: dict[str, Any],
                     data: dict[str, Any], *, per_call: bool = False) -> None:
    if not native_module.acceptable(document):
        event("declined: document")
        return
    try:
        native = evaluator(document, data)
    except native_module.Decline:
        event("declined: read value")
        return
    event("native")
    assert strict(native) == strict(compiled.evaluate(document, data if per_call else None))


@EXAMPLES
@given(claims=snp_claims(), references=REFERENCES, runtime=RUNTIME, settings=SETTINGS)
def test_snp_outputs_equal_regorus(claims: dict[str, Any], references: dict[str, Any],
                                  runtime: dict[str, Any] | None,
                                  settings: dict[str, Any] | None) -> None:
    try:
        compiled = _compiled("attestation", SNP_POLICY, references)
    except (PolicyError, ReferenceValueError):
        event("data refused")    # the appraisal test checks both paths refuse alike
        return
    _compare_outputs(snp_default, compiled, _input(claims, runtime, settings),
                     _document(references))


@EXAMPLES
@given(settings=st.sampled_from([{"require_revocation": True}, {"require_revocation": False},
                                 {}, {"require_revocation": 1}, []]) | SETTINGS | JSON,
       claims=snp_claims())
def test_snp_settings_of_any_shape_equal_regorus(settings: Any, claims: dict[str, Any]) -> None:
    # input.veritee as the broker builds it is an object; a policy must not trip on others.
    references = {"snp_launch_measurement": [MEASUREMENT], "allow_emulated": [True]}
    document = {**_input(claims, None), "veritee": settings}
    _compare_outputs(snp_default, _compiled("attestation", SNP_POLICY, references), document,
                     _document(references))


@EXAMPLES
@given(claims=TOKENS, plugin=_maybe(st.sampled_from(["resource", "other", "a!", ""])))
def test_resource_outputs_equal_regorus(claims: dict[str, Any], plugin: Any) -> None:
    data: dict[str, Any] = {"resource-path": ["a", "b", "c"]}
    if plugin is not MISSING:
        data["plugin"] = plugin
    _compare_outputs(resource_default, _compiled("resource", DEFAULT_RESOURCE_POLICY),
                     claims, data, per_call=True)


# -- whole appraisals and decisions ----------------------------------------------------------


def _outcome(call: Any) -> tuple[str, str]:
    try:
        return "ok", repr(call())
    except Exception as exc:  # the same error, with the same message, on both paths
        return type(exc).__name__, str(exc)


@EXAMPLES
@given(claims=snp_claims(), references=REFERENCES, runtime=RUNTIME, settings=SETTINGS)
def test_snp_appraisal_equals_regorus(claims: dict[str, Any], references: dict[str, Any],
                                     runtime: dict[str, Any] | None,
                                     settings: dict[str, Any] | None) -> None:
    def appraise(engine: PolicyEngine) -> Any:
        return engine.appraise(tee="snp", claims=claims, policy_id="default_cpu",
                               policy=SNP_POLICY, reference_values=references,
                               runtime_data=runtime, policy_version=3, settings=settings,
                               **shape("snp"))

    assert _outcome(lambda: appraise(NATIVE)) == _outcome(lambda: appraise(REGORUS))


@EXAMPLES
@given(claims=TOKENS, path=st.lists(st.sampled_from(["repo", "key", "tag", "x"]), min_size=1,
                                    max_size=3))
def test_resource_decision_equals_regorus(claims: dict[str, Any], path: list[str]) -> None:
    def decide(engine: PolicyEngine) -> Any:
        return engine.allow_resource(policy=DEFAULT_RESOURCE_POLICY, ear_claims=claims,
                                     path=path)

    assert _outcome(lambda: decide(NATIVE)) == _outcome(lambda: decide(REGORUS))


# -- which policies, and the real flow stays native ------------------------------------------


def test_only_the_exact_shipped_text_is_native() -> None:
    assert NATIVE.native_evaluator("attestation", SNP_POLICY) is snp_default
    assert NATIVE.native_evaluator("resource", DEFAULT_RESOURCE_POLICY) is resource_default
    assert NATIVE.native_evaluator("attestation", SNP_POLICY + "\n") is None
    assert NATIVE.native_evaluator("resource", SNP_POLICY) is None
    assert NATIVE.native_evaluator("attestation", GENERIC_ATTESTATION_POLICY) is None
    changed = DEFAULT_RESOURCE_POLICY.replace("affirming", "warning")
    assert NATIVE.native_evaluator("resource", changed) is None


def test_engine_without_native_never_uses_it() -> None:
    policy = REGORUS.compile("resource", "resource", DEFAULT_RESOURCE_POLICY, None)
    assert isinstance(policy, CompiledPolicy)
    assert REGORUS.native_evaluator("resource", DEFAULT_RESOURCE_POLICY) is None
    policy = NATIVE.compile("resource", "resource", DEFAULT_RESOURCE_POLICY, None)
    assert isinstance(policy, NativePolicy)


def test_a_real_flow_never_falls_back() -> None:
    fresh = engine()
    references = {"snp_launch_measurement": [MEASUREMENT], "allow_emulated": [True],
                  **{f"snp_{c}": [v] for c, v in REAL["reported_tcb"].items()}}
    runtime = {"nonce": "bm9uY2U=", "tee-pubkey": {"kty": "EC", "crv": "P-256", "x": "AQ",
                                                  "y": "Ag", "alg": "ECDH-ES+A256KW"}}
    appraisal = fresh.appraise(tee="snp", claims=REAL, policy_id="default_cpu",
                               policy=SNP_POLICY, reference_values=references,
                               runtime_data=runtime, **shape("snp"))
    assert appraisal.status == "affirming"
    issuer = EarIssuer(ec.generate_private_key(ec.SECP256R1()))
    token = json.loads(json.dumps(issuer.claims({"cpu0": appraisal}, now=datetime.now(UTC))))
    decision = fresh.allow_resource(policy=DEFAULT_RESOURCE_POLICY, ear_claims=token,
                                    path=["repo", "key", "tag"])
    assert decision.allow
    assert fresh.evaluations == {"native": 2}


def test_declined_input_runs_in_regorus() -> None:
    claims = {"submods": {"cpu0": {"ear.status": "affirming", "x": 0.5}}}
    decision = NATIVE.allow_resource(policy=DEFAULT_RESOURCE_POLICY, ear_claims=claims,
                                     path=["a", "b", "c"])
    assert decision.allow
    assert repr(decision) == repr(REGORUS.allow_resource(
        policy=DEFAULT_RESOURCE_POLICY, ear_claims=claims, path=["a", "b", "c"]))
