"""The broker's host-side routes for SEV and SEV-ES guests (the descriptor's ``routes``).

A SEV or SEV-ES guest cannot attest itself; its host does, before the guest runs:

1. ``POST /sev/v0/session`` ``{"tee", "policy", "platform": {"chain"} | {"pdh",
   "cert-chain"}}``: the broker verifies the platform chain (ARK → ASK → CEK → PEK → PDH,
   the ARK pinned), derives a TEK and a TIK for a new launch id (:mod:`.sev_launch`: nothing
   is stored) and wraps them to the PDH; it answers the GODH certificate and the session
   blob QEMU takes (``dh-cert-file``, ``session-file``), and the launch id.
2. ``POST /sev/v0/secret`` ``{"launch-id", "measurement", "api-major", "api-minor",
   "build-id", "policy", "resources"}``: the broker checks LAUNCH_MEASURE under the TIK
   against the launch digest the host names or, when it names none, against every
   ``sev_launch_digest`` reference value; appraises the claims (``sev.rego``: the opt-in per
   reference value); releases each resource through the resource policy; and answers the
   LAUNCH_SECRET packet (header and encrypted secret table) for QEMU's
   ``sev-inject-launch-secret``. A launch id is appraised once.

Not simple-kbs's gRPC ``GetBundle`` / ``GetSecret``: the same two steps and fields, as JSON
over the broker's HTTP (docs/ARCHITECTURE.md says why).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from veritee.broker import problems
from veritee.errors import EvidenceError, MisuseError, VeriteeError
from veritee.evidence import Evidence
from veritee.tee import get_verifier
from veritee.tee.snp import session, sev_launch
from veritee.tee.snp.sev_verify import REFERENCE_NAME, SevVerifier

if TYPE_CHECKING:
    from veritee.broker.service import Broker

PREFIX: Final = "/sev/v0"
TEES: Final = ("sev", "sev-es")
#: How long a launch session may wait for its measurement (QEMU loads the firmware first).
LAUNCH_SECONDS: Final = 600
#: The fields of a relayed launch measurement (the rest of a request is not evidence).
RELAYED_FIELDS: Final = ("launch-id", "measurement", "api-major", "api-minor", "build-id",
                         "policy", "launch-digest")
#: At most this many resources go into one launch secret.
MAX_RESOURCES: Final = 16


class SevLaunchService:
    """The two host-side steps, free of HTTP."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        # One key for both TEEs: the launch id names its TEE under the MAC.
        self._key = broker.challenges.platform_key(TEES[0])
        self._verifiers: dict[str, SevVerifier] = {
            tee: get_verifier(tee, trust_emulated=broker.trust_emulated)  # type: ignore[attr-defined]
            .with_challenge_key(self._key) for tee in TEES}

    def session(self, request: Mapping[str, Any], *, client: str) -> dict[str, Any]:
        """Step 1: a launch session for the host's platform."""
        tee = _tee(request)
        policy = _u32(request, "policy")
        verifier = self._verifiers[tee]
        try:
            verifier.check_policy(policy)
        except VeriteeError as exc:
            raise problems.InvalidRequest(exc.detail) from exc
        platform_fields = request.get("platform")
        if not isinstance(platform_fields, Mapping):
            raise problems.InvalidRequest("platform must be an object: {\"chain\"} or "
                                          "{\"pdh\", \"cert-chain\"}")
        try:
            platform = verifier.platform(platform_fields)
        except EvidenceError as exc:
            raise problems.AttestationFailed(
                f"the platform chain: {type(exc).__name__}: {exc.detail}") from exc
        now = self.broker.clock()
        launch = sev_launch.LaunchId.new(
            tee=tee, policy=policy, product=platform.product, emulated=platform.emulated,
            expires_at=now + timedelta(seconds=LAUNCH_SECONDS))
        tek, tik = sev_launch.transport_keys(launch, self._key)
        godh, blob = session.new_session(platform.pdh_public_key, policy, tek=tek, tik=tik)
        return {"launch-id": sev_launch.seal(launch, self._key),
                "godh-cert": _b64(godh), "session": _b64(blob), "policy": policy,
                "expires-at": launch.expires_at.isoformat()}

    def secret(self, request: Mapping[str, Any], *, client: str) -> dict[str, Any]:
        """Step 2: check the launch measurement, appraise, release the secret packet."""
        launch_text = request.get("launch-id")
        now = self.broker.clock()
        try:
            launch = sev_launch.open_launch_id(launch_text, self._key, now=now)
        except EvidenceError as exc:
            raise problems.SessionInvalid(f"{type(exc).__name__}: {exc.detail}") from exc
        wanted = _resources(request)
        # Only the relayed measurement's fields: the secret is bound to *this* launch's TIK,
        # so no other evidence form (an attestation report) may stand in for it.
        evidence = {k: request[k] for k in RELAYED_FIELDS if k in request}
        if "launch-digest" not in evidence:
            evidence["launch-digest"] = [
                v for v in self.broker.reference_values(REFERENCE_NAME) if isinstance(v, str)]
        verifier = self._verifiers[launch.tee]
        checked: dict[str, Any] = {}

        def verify() -> dict[str, Any]:
            claims = verifier.verify(Evidence.from_json(evidence), report_data=None,
                                     collateral=self.broker.collateral, now=now)
            if claims.key_source != "broker-session" or claims.measure is None:
                raise MisuseError("the launch secret needs a measurement checked under this "
                                  "launch's TIK")
            checked["measure"] = bytes.fromhex(claims.measure)
            return claims.to_dict()

        token, _ = self.broker.attest_relayed(
            launch.tee, verify, session_id=launch.session_id, nonce=launch.session_id,
            expires_at=launch.expires_at, client=client)
        released = self.broker.release(token, [path for path, _ in wanted], client=client)
        entries = [(guid, released[path]) for path, guid in wanted]
        tek, tik = sev_launch.transport_keys(launch, self._key)
        packet = session.secret_packet(tek, tik, checked["measure"],
                                       session.build_secret_table(entries))
        return {"packet-header": _b64(packet.header), "secret": _b64(packet.ciphertext),
                "entries": [{"resource": path, "guid": str(guid)} for path, guid in wanted]}


# -- request fields -------------------------------------------------------------------------------


def _tee(request: Mapping[str, Any]) -> str:
    tee = request.get("tee")
    if tee not in TEES:
        raise problems.InvalidRequest(f"tee is {tee!r}; a launch session is for 'sev' or "
                                      "'sev-es'")
    return str(tee)


def _u32(request: Mapping[str, Any], name: str) -> int:
    value = request.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
        raise problems.InvalidRequest(f"{name} must be an integer in 0..2^32-1, got {value!r}")
    return value


def _resources(request: Mapping[str, Any]) -> list[tuple[str, uuid.UUID]]:
    """(path, GUID) of each resource asked for: a path string, or {"resource", "guid"}."""
    items = request.get("resources")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_RESOURCES:
        raise problems.InvalidRequest(
            f"resources must be a list of 1 to {MAX_RESOURCES} resource paths")
    wanted: list[tuple[str, uuid.UUID]] = []
    for item in items:
        path, guid = (item, None) if isinstance(item, str) else _resource_item(item)
        wanted.append((path, guid or sev_launch.secret_guid(path)))
    if len({g for _, g in wanted}) != len(wanted):
        raise problems.InvalidRequest("two resources would share one secret-table GUID")
    return wanted


def _resource_item(item: Any) -> tuple[str, uuid.UUID | None]:
    if not isinstance(item, Mapping) or not isinstance(item.get("resource"), str):
        raise problems.InvalidRequest(
            "each resource is a path string or {\"resource\": path, \"guid\": GUID}")
    guid = item.get("guid")
    if guid is None:
        return item["resource"], None
    try:
        return item["resource"], uuid.UUID(str(guid))
    except ValueError as exc:
        raise problems.InvalidRequest(f"resource guid {guid!r} is not a GUID") from exc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


__all__ = ["PREFIX", "SevLaunchService"]
