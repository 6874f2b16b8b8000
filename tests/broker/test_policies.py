"""Which attestation policy applies to which TEE: default_<tee>, then default_cpu, then
default, each only when its `# veritee: tees` line (if any) names the TEE; else the TEE's
shipped default. Declarations that cannot hold are refused when installed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.broker import RunningBroker, running_broker
from support.platforms import default_policy
from veritee.appraisal.rego import declared_tees
from veritee.broker import policies
from veritee.encoding import b64url
from veritee.tee import get_platform

ANY_TEE = "package policy\ntrust_claims := {\"hardware\": 2}\n"


def declaring(*tees: str) -> str:
    return f"# veritee: tees {', '.join(tees)}\n{ANY_TEE}"


@pytest.fixture
def kbs(tmp_path: Path) -> Iterator[RunningBroker]:
    with running_broker(tmp_path) as running:
        yield running


def install(kbs: RunningBroker, policy_id: str, source: str) -> httpx.Response:
    with kbs.admin() as admin:
        return admin.post("/kbs/v0/attestation-policy", json={
            "type": "rego", "policy_id": policy_id, "policy": b64url(source.encode())})


def applied(kbs: RunningBroker, tee: str = "snp") -> tuple[str, str]:
    kbs.broker.forget_cached()
    policy_id, source, _ = kbs.broker.attestation_policy_source(tee)
    return policy_id, source


def test_without_stored_policies_the_shipped_default_applies(kbs: RunningBroker) -> None:
    assert applied(kbs) == ("default", default_policy("snp"))
    assert declared_tees(default_policy("snp")) == {"snp"}


def test_lookup_order_most_specific_first(kbs: RunningBroker) -> None:
    assert install(kbs, "default", ANY_TEE).status_code == 200
    assert applied(kbs)[0] == "default"
    assert install(kbs, "default_cpu", declaring("snp")).status_code == 200
    assert applied(kbs)[0] == "default_cpu"
    assert install(kbs, "default_snp", ANY_TEE).status_code == 200
    assert applied(kbs)[0] == "default_snp"


def test_a_declared_policy_applies_only_to_its_tees() -> None:
    assert policies.applies(declaring("snp"), "snp")
    assert not policies.applies(declaring("snp"), "tdx")
    assert policies.applies(ANY_TEE, "tdx")
    assert not policies.applies("# veritee: tees !!\n" + ANY_TEE, "snp")  # unreadable: never
    platform = get_platform("snp")
    assert policies.policy_ids(platform) == ("default_snp", "default_cpu", "default")


@pytest.mark.parametrize(("policy_id", "source", "reason"), [
    ("default_cpu", declaring("snp", "nope"), "declares unknown TEEs ['nope']"),
    ("default_snp", declaring("nope"), "declares unknown TEEs"),
    ("default", "# veritee: tees\n" + ANY_TEE, "must list TEE names"),
])
def test_impossible_declarations_are_refused(kbs: RunningBroker, policy_id: str, source: str,
                                             reason: str) -> None:
    answer = install(kbs, policy_id, source)
    assert answer.status_code == 400
    assert answer.json()["title"] == "ParsePolicyError" and reason in answer.json()["detail"]
