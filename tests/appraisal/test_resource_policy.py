"""Resource policies: EAR claims + resource path → release or not, with explanations."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from veritee.appraisal import (
    DEFAULT_RESOURCE_POLICY,
    UNSAFE_ALLOW_ALL_RESOURCE_POLICY,
    PolicyEngine,
    PolicyError,
)
from veritee.errors import MisuseError

PATH = ["default", "key", "disk"]


@pytest.fixture(scope="module", params=[True, False], ids=["native", "regorus"])
def engine(request: pytest.FixtureRequest) -> PolicyEngine:
    """Every test runs on the native evaluator of the shipped policy and on regorus."""
    return PolicyEngine(native=request.param)


def token(*statuses: str) -> dict[str, Any]:
    names = ["cpu0", "gpu0", "gpu1"]
    return {"eat_profile": "x", "submods": {
        names[index]: {"ear.status": status, "ear.trustworthiness-vector": {}}
        for index, status in enumerate(statuses)}}


# (name, claims, allowed, explanation of a denial)
DEFAULT_CASES: list[tuple[str, dict[str, Any], bool, list[str]]] = [
    ("affirming cpu", token("affirming"), True, []),
    ("affirming cpu and gpu", token("affirming", "affirming"), True, []),
    ("warning cpu", token("warning"), False, [
        'submods.cpu0.ear.status: "warning", expected "affirming"',
        "policy.allow: resource policy resource set allow to false for default/key/disk"]),
    ("contraindicated gpu", token("affirming", "contraindicated"), False, [
        'submods.gpu0.ear.status: "contraindicated", expected "affirming"',
        "policy.allow: resource policy resource set allow to false for default/key/disk"]),
    ("none", token("none"), False, [
        'submods.cpu0.ear.status: "none", expected "affirming"',
        "policy.allow: resource policy resource set allow to false for default/key/disk"]),
    ("no submods", {"submods": {}}, False, [
        "submods: the attestation token has no submodules",
        "policy.allow: resource policy resource set allow to false for default/key/disk"]),
    ("submods not an object", {"submods": ["affirming"]}, False, [
        "submods: the attestation token has no submodules",
        "policy.allow: resource policy resource set allow to false for default/key/disk"]),
    ("status missing", {"submods": {"cpu0": {}}}, False, [
        'submods.cpu0.ear.status: null, expected "affirming"',
        "policy.allow: resource policy resource set allow to false for default/key/disk"]),
    ("empty token", {}, False, [
        "submods: the attestation token has no submodules",
        "policy.allow: resource policy resource set allow to false for default/key/disk"]),
]


@pytest.mark.parametrize(("name", "claims", "allowed", "explanation"), DEFAULT_CASES,
                         ids=[case[0] for case in DEFAULT_CASES])
def test_default_resource_policy(engine: PolicyEngine, name: str, claims: dict[str, Any],
                                 allowed: bool, explanation: list[str]) -> None:
    decision = engine.allow_resource(policy=DEFAULT_RESOURCE_POLICY, ear_claims=claims,
                                     path=PATH)
    assert decision.allow is allowed
    if allowed:
        assert decision.explain() == "default/key/disk: released under resource policy resource"
        assert decision.failed() == []
    else:
        assert decision.explain().splitlines() == explanation


def test_policy_sees_the_path(engine: PolicyEngine) -> None:
    policy = """package policy
import rego.v1
default allow := false
allow if {
    data.plugin == "resource"
    data["resource-path"] == ["team-a", "key", input.submods.cpu0.tag]
}
"""
    claims = {"submods": {"cpu0": {"ear.status": "affirming", "tag": "disk"}}}
    assert engine.allow_resource(policy=policy, ear_claims=claims,
                                 path=["team-a", "key", "disk"]).allow
    denied = engine.allow_resource(policy=policy, ear_claims=claims,
                                   path=["team-b", "key", "disk"])
    assert not denied.allow
    # without checks in the policy, the denial still names each submod's status
    assert denied.explain().splitlines() == [
        "policy.allow: resource policy resource set allow to false for team-b/key/disk"]
    assert denied.checks[0].line() == (
        'submods.cpu0.ear.status: ear.status is "affirming"')


def test_unsafe_policy_warns(engine: PolicyEngine, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="veritee.appraisal"):
        decision = engine.allow_resource(policy=UNSAFE_ALLOW_ALL_RESOURCE_POLICY,
                                         ear_claims=token("contraindicated"), path=PATH)
    assert decision.allow
    assert "marked unsafe" in caplog.text
    assert "default/key/disk" in caplog.text


@pytest.mark.parametrize(("name", "rule", "shown"), [
    ("string", 'allow := "true"', '"true"'),
    ("number", "allow := 1", "1"),
    ("undefined", "allow if input.nothing", "null"),
    ("object", 'allow := {"a": true}', '{"a": true}'),
])
def test_non_boolean_allow_denies(engine: PolicyEngine, caplog: pytest.LogCaptureFixture,
                                  name: str, rule: str, shown: str) -> None:
    policy = f"package policy\nimport rego.v1\n{rule}\n"
    with caplog.at_level(logging.WARNING, logger="veritee.appraisal"):
        decision = engine.allow_resource(policy=policy, ear_claims=token("affirming"),
                                         path=PATH)
    assert not decision.allow
    assert "not a boolean" in caplog.text
    assert decision.explain().splitlines()[-1] == (
        f"policy.allow: resource policy resource set allow to {shown} for default/key/disk")


def test_resource_policy_compile_error(engine: PolicyEngine) -> None:
    with pytest.raises(PolicyError, match=r"policy\.rego:2:\d+"):
        engine.allow_resource(policy="package policy\nallow if {", ear_claims={}, path=PATH)


@pytest.mark.parametrize("path", [[], "a/b/c", ["a", 1, "c"]])
def test_path_must_be_strings(engine: PolicyEngine, path: Any) -> None:
    with pytest.raises(MisuseError):
        engine.allow_resource(policy=DEFAULT_RESOURCE_POLICY, ear_claims={}, path=path)


def test_resource_decision_to_dict(engine: PolicyEngine) -> None:
    decision = engine.allow_resource(policy=DEFAULT_RESOURCE_POLICY,
                                     ear_claims=token("warning"), path=PATH)
    out = decision.to_dict()
    assert out["allow"] is False
    assert out["path"] == PATH
    failing = [c for c in out["checks"] if not c["held"]]
    assert failing[0]["values"] == {"actual": "warning", "expected": "affirming"}


# -- one compiled policy for every path: the request is data given per evaluation ----------

PATH_POLICIES = {
    "dotted and indexed": """package policy
import rego.v1
default allow := false
allow if {
    data.plugin == "resource"
    data["resource-path"][0] == "team-a"
    data["resource-path"][2] == input.submods.cpu0.tag
}
""",
    "bracketed plugin, own rules": """package policy
import rego.v1
default allow := false
repo := data["resource-path"][0]
allow if {
    data["plugin"] == "resource"
    data.policy.repo == "team-a"
    every _, s in input.submods { s["ear.status"] == "affirming" }
}
""",
    "query is undefined": """package policy
import rego.v1
default allow := false
allow if not data.query
""",
    "data imported": """package policy
import rego.v1
import data.plugin
default allow := false
allow if {
    plugin == "resource"
    data["resource-path"] == ["team-a", "key", "disk"]
}
""",
}
ROUTES = [["team-a", "key", "disk"], ["team-a", "key", "other"], ["team-b", "key", "disk"]]
TOKENS = [token("affirming") | {"submods": {"cpu0": {"ear.status": "affirming", "tag": "disk"}}},
          token("warning")]


EXPECTED = {  # (route index, token index) → allow
    "dotted and indexed": {(0, 0)},
    "bracketed plugin, own rules": {(0, 0), (1, 0)},
    "query is undefined": {(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)},
    "data imported": {(0, 0), (0, 1)},
}


@pytest.mark.parametrize("name", PATH_POLICIES)
def test_policies_read_the_request_from_data(name: str) -> None:
    engine = PolicyEngine()
    allowed = {(r, t) for r, route in enumerate(ROUTES) for t, claims in enumerate(TOKENS)
               if engine.allow_resource(policy=PATH_POLICIES[name], ear_claims=claims,
                                        path=route).allow}
    assert allowed == EXPECTED[name]
    assert engine.compiled_count == 1


def test_a_policy_is_compiled_once_for_every_path() -> None:
    engine = PolicyEngine()
    policy = PATH_POLICIES["dotted and indexed"]
    for index in range(20):
        engine.allow_resource(policy=policy, ear_claims=TOKENS[0], path=["team-a", "k", str(index)])
    assert engine.compiled_count == 1
    imported = PATH_POLICIES["data imported"]
    assert engine.allow_resource(policy=imported, ear_claims=TOKENS[0],
                                 path=["team-a", "key", "disk"]).allow
    assert not engine.allow_resource(policy=imported, ear_claims=TOKENS[0],
                                     path=["team-a", "key", "d"]).allow
    assert engine.compiled_count == 2


def test_compile_errors_point_into_the_policy_as_written(engine: PolicyEngine) -> None:
    policy = 'package policy\nimport rego.v1\nallow if { data.plugin == "resource" \n'
    with pytest.raises(PolicyError, match=r"policy\.rego:\d+:\d+"):
        engine.allow_resource(policy=policy, ear_claims={}, path=PATH)
