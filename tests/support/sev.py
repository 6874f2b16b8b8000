"""Provisioning a running broker for SEV and SEV-ES launches (the flow tests share it)."""

from __future__ import annotations

from support.broker import RunningBroker, unique_path
from veritee.appraisal import shipped_policy
from veritee.encoding import b64url


def provision_sev(kbs: RunningBroker, secret: bytes, *, known: list[str],
                  opted_in: list[str]) -> str:
    """The shipped sev.rego as both TEEs' policy, the launch digests ``known`` and
    ``opted_in`` (hex), emulated platforms allowed, and ``secret`` at a fresh path (returned)."""
    resource = unique_path("sev")
    with kbs.admin() as admin:
        calls = [admin.post("/kbs/v0/attestation-policy", json={
            "type": "rego", "policy_id": f"default_{tee}",
            "policy": b64url(shipped_policy("sev.rego").encode())}) for tee in ("sev", "sev-es")]
        calls += [
            admin.post("/kbs/v0/reference-value", json={
                "sev_launch_digest": known, "sev_accept_host_relayed": opted_in,
                "allow_emulated": [True]}),
            admin.post(f"/kbs/v0/resource/{resource}", content=secret,
                       headers={"Content-Type": "application/octet-stream"}),
        ]
    for call in calls:
        assert call.status_code == 200, call.text
    return resource
