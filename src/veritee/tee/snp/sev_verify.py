"""SEV and SEV-ES launches: the launch measurement a host relays, checked under the TIK.

Evidence (JSON; research note amd-sev.md §3.3, QEMU's ``query-sev`` and
``query-sev-launch-measure`` field names):

```
{"measurement": "<base64 or hex of MEASURE(32) || MNONCE(16)>",
 "api-major": int, "api-minor": int, "build-id": int, "policy": int,
 "launch-digest": "<hex, 32 bytes>" | ["<hex>", ...],
 "launch-id": "<the broker's launch id>"  |  "tik": "<base64 or hex, 16 bytes>"}
```

Steps:

1. the fields parse (sizes, ranges);
2. the guest policy fits the TEE: ``sev-es`` needs the ES bit, ``sev`` must not have it;
3. the TIK: from the launch id (the broker's own session, sealed under its platform key —
   :meth:`SevVerifier.with_challenge_key` — which also fixes the TEE and the policy the
   session was made for), or given by the guest owner (``tik``: for offline checks by whoever
   ran the session, e.g. with ``sevctl session``);
4. ``MEASURE == HMAC-SHA256(TIK, 0x04 ‖ api_major ‖ api_minor ‖ build ‖ policy ‖ LD ‖
   MNONCE)`` for the launch digest given, or for one of the candidates given (the broker
   passes its ``sev_launch_digest`` reference values when the host names none);
5. claims (:class:`~.sev_claims.SevClaims`).

There is no report data: ``report_data`` must be None.

The platform chain is checked when the session is made (:meth:`SevVerifier.platform`):
ARK (pinned) → ASK → CEK → PEK (also signed by the OCA) → PDH.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar, Final, Self

from veritee.collateral import CollateralSource
from veritee.errors import (
    BindingError,
    CollateralMissingError,
    MalformedEvidenceError,
    MisuseError,
    SignatureError,
)
from veritee.evidence import Evidence, json_bytes
from veritee.tee.snp import session, sev_launch, sevcert, sevroots
from veritee.tee.snp.sev_claims import SevClaims
from veritee.tee.snp.sev_report import SIZE as REPORT_SIZE
from veritee.tee.snp.sev_report import AttestationReport
from veritee.tee.snp.sevcert import SevRoot, VerifiedPlatform

#: The reference values holding the launch digests a broker tries when the host names none.
REFERENCE_NAME: Final = "sev_launch_digest"
#: At most this many candidate launch digests are tried.
MAX_CANDIDATES: Final = 4096


@dataclass(frozen=True)
class RelayedLaunch:
    """The fields of one piece of SEV evidence."""

    measure: bytes
    mnonce: bytes
    api_major: int
    api_minor: int
    build_id: int
    policy: int
    digests: tuple[bytes, ...]
    launch_id: str | None
    tik: bytes | None


def parse_launch(evidence: Evidence) -> RelayedLaunch:
    """The relayed launch in ``evidence``.

    Raises:
        MalformedEvidenceError: not the JSON form above.
    """
    document = evidence.json if evidence.form == "json" else None
    if not isinstance(document, Mapping):
        raise MalformedEvidenceError(
            "SEV evidence is a JSON object with measurement, api-major, api-minor, build-id, "
            "policy, launch-digest and launch-id or tik")
    blob = json_bytes(_required(document, "measurement"), "measurement", 48)
    if len(blob) != 48:
        raise MalformedEvidenceError(
            f"measurement is {len(blob)} bytes; query-sev-launch-measure gives 48 "
            "(MEASURE || MNONCE)")
    launch_id = document.get("launch-id")
    tik = document.get("tik")
    if (launch_id is None) == (tik is None):
        raise MalformedEvidenceError("SEV evidence names exactly one of launch-id and tik")
    if launch_id is not None and not isinstance(launch_id, str):
        raise MalformedEvidenceError("launch-id must be a string")
    tik_bytes = None if tik is None else json_bytes(tik, "tik", 16)
    if tik_bytes is not None and len(tik_bytes) != 16:
        raise MalformedEvidenceError(f"tik is {len(tik_bytes)} bytes, not 16")
    return RelayedLaunch(
        measure=blob[:32], mnonce=blob[32:],
        api_major=_int(document, "api-major", 255), api_minor=_int(document, "api-minor", 255),
        build_id=_int(document, "build-id", 255), policy=_int(document, "policy", 2**32 - 1),
        digests=_digests(_required(document, "launch-digest")), launch_id=launch_id,
        tik=tik_bytes)


@dataclass(frozen=True)
class SevVerifier:
    """Checks SEV launch measurements (and, for the broker, platform chains)."""

    tee: ClassVar[str] = "sev"
    extra_roots: tuple[SevRoot, ...] = ()
    launch_key: bytes | None = None

    @property
    def roots(self) -> tuple[SevRoot, ...]:
        return sevroots.pinned_roots() + self.extra_roots

    def with_roots(self, roots: Sequence[Any]) -> Self:
        for root in roots:
            if not isinstance(root, SevRoot):
                raise MisuseError(f"a SEV root is a SevRoot, not {type(root).__name__}")
        return replace(self, extra_roots=self.extra_roots + tuple(roots))

    def with_challenge_key(self, key: bytes) -> Self:
        """A verifier that opens the launch ids sealed with the broker's platform ``key``."""
        return replace(self, launch_key=key)

    def check_policy(self, policy: int) -> None:
        """Refuse a guest policy that does not fit the TEE (ES bit).

        Raises:
            BindingError: ``sev-es`` without ES, or ``sev`` with it.
        """
        es = session.SevPolicy.from_int(policy).es
        if es != (self.tee == "sev-es"):
            want = "sev-es" if es else "sev"
            raise BindingError(
                f"guest policy {policy:#x} {'sets' if es else 'lacks'} the ES bit: that is a "
                f"{want} launch, not {self.tee}")

    def platform(self, fields: Mapping[str, Any]) -> VerifiedPlatform:
        """The platform whose chain ``fields`` carry (``{"chain"}`` as ``sevctl export
        --full`` writes it, or QEMU's ``{"pdh", "cert-chain"}``), verified to a root.

        Raises:
            MalformedEvidenceError, ChainError, UntrustedRootError, SignatureError.
        """
        return sevcert.verify_platform_chain(sevcert.chain_from_fields(fields),
                                             roots=self.roots)

    def verify(self, evidence: Evidence, *, report_data: bytes | None,
               collateral: CollateralSource, now: datetime) -> SevClaims:
        document = evidence.json if evidence.form == "json" else None
        if isinstance(document, Mapping) and "report" in document:
            return self._verify_report(document, report_data)
        if report_data is not None:
            raise MisuseError("a relayed launch measurement carries no report data (an "
                              "attestation report carries a 16-byte MNONCE)")
        launch = parse_launch(evidence)
        self.check_policy(launch.policy)
        tik, opened = self._tik(launch, now)
        digest = self._matching_digest(launch, tik)
        flags = session.SevPolicy.from_int(launch.policy)
        return SevClaims(
            tee=self.tee, launch_digest=digest.hex(), measure=launch.measure.hex(),
            mnonce=launch.mnonce.hex(), api_major=launch.api_major,
            api_minor=launch.api_minor, build_id=launch.build_id, policy=launch.policy,
            policy_flags=flags.to_claims(), debug=not flags.nodbg, es=flags.es,
            product=opened.product if opened else "unknown",
            key_source="broker-session" if opened else "owner-tik",
            launch_id=opened.session_id if opened else None,
            emulated=opened.emulated if opened else False)

    def _verify_report(self, document: Mapping[str, Any],
                       report_data: bytes | None) -> SevClaims:
        """The attestation-report form: ``{"report", "chain" | "pdh" + "cert-chain"}``."""
        report = AttestationReport.parse(json_bytes(document["report"], "report", REPORT_SIZE))
        chain_fields = {k: document[k] for k in ("chain", "pdh", "cert-chain") if k in document}
        chain = sevcert.chain_from_fields(chain_fields)
        platform = sevcert.verify_platform_chain(chain, roots=self.roots)
        report.verify_signed_by(chain)
        if report_data is not None:
            if len(report_data) != len(report.mnonce):
                raise MisuseError(f"--report-data is {len(report_data)} bytes; a SEV report's "
                                  "MNONCE is 16")
            report.check_nonce(report_data)
        self.check_policy(report.policy)
        flags = session.SevPolicy.from_int(report.policy)
        return SevClaims(
            tee=self.tee, launch_digest=report.launch_digest.hex(), measure=None,
            mnonce=report.mnonce.hex(), api_major=platform.pek_api[0],
            api_minor=platform.pek_api[1], build_id=None, policy=report.policy,
            policy_flags=flags.to_claims(), debug=not flags.nodbg, es=flags.es,
            product=platform.product, key_source="pek-report", emulated=platform.emulated)

    def _tik(self, launch: RelayedLaunch,
             now: datetime) -> tuple[bytes, sev_launch.LaunchId | None]:
        if launch.tik is not None:
            return launch.tik, None
        if self.launch_key is None:
            raise CollateralMissingError(
                "the evidence names a broker's launch id but this verifier has no launch key "
                "(only the broker that made the session can check it; offline, give the tik)")
        opened = sev_launch.open_launch_id(launch.launch_id, self.launch_key, now=now)
        if opened.tee != self.tee:
            raise BindingError(f"the launch session was made for {opened.tee}, not {self.tee}")
        if opened.policy != launch.policy:
            raise BindingError(f"the relayed policy is {launch.policy:#x}; the session was "
                               f"made for {opened.policy:#x}")
        return sev_launch.transport_keys(opened, self.launch_key)[1], opened

    def _matching_digest(self, launch: RelayedLaunch, tik: bytes) -> bytes:
        for digest in launch.digests:
            try:
                session.check_launch_measure(
                    launch.measure, tik=tik, api_major=launch.api_major,
                    api_minor=launch.api_minor, build_id=launch.build_id, policy=launch.policy,
                    launch_digest=digest, mnonce=launch.mnonce)
            except SignatureError:
                continue
            return digest
        if not launch.digests:
            raise CollateralMissingError(
                f"no launch digest to check the measurement against: name one, or add "
                f"reference values {REFERENCE_NAME} (`veritee measure sev` prints them)")
        if len(launch.digests) == 1:
            raise SignatureError(
                f"LAUNCH_MEASURE {launch.measure.hex()} is not the measurement of launch digest "
                f"{launch.digests[0].hex()} under this session's TIK (another firmware, kernel, "
                "command line or vCPU count, or another session)")
        raise SignatureError(
            f"LAUNCH_MEASURE {launch.measure.hex()} matches none of the "
            f"{len(launch.digests)} reference launch digests ({REFERENCE_NAME}) under this "
            "session's TIK: the guest was launched from other firmware, kernel, initrd, "
            "command line or vCPU count")


class SevEsVerifier(SevVerifier):
    """SEV-ES launches: the same check, the ES bit required."""

    tee: ClassVar[str] = "sev-es"


def _required(document: Mapping[str, Any], name: str) -> Any:
    if name not in document:
        raise MalformedEvidenceError(f"SEV evidence lacks {name}")
    return document[name]


def _int(document: Mapping[str, Any], name: str, top: int) -> int:
    value = _required(document, name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
        raise MalformedEvidenceError(f"{name} must be an integer in 0..{top}, got {value!r}")
    return value


def _digests(value: Any) -> tuple[bytes, ...]:
    values = value if isinstance(value, list) else [value]
    if len(values) > MAX_CANDIDATES:
        raise MalformedEvidenceError(
            f"launch-digest lists {len(values)} digests, over {MAX_CANDIDATES}")
    digests = []
    for item in values:
        if not isinstance(item, str):
            raise MalformedEvidenceError("launch-digest holds hex strings")
        try:
            digest = bytes.fromhex(item)
        except ValueError as exc:
            raise MalformedEvidenceError(f"launch-digest {item[:80]!r} is not hex") from exc
        if len(digest) != 32:
            raise MalformedEvidenceError(
                f"launch-digest is {len(digest)} bytes; a SEV launch digest is 32 (SHA-256)")
        digests.append(digest)
    return tuple(digests)


__all__ = ["REFERENCE_NAME", "SevEsVerifier", "SevRoot", "SevVerifier", "parse_launch"]
