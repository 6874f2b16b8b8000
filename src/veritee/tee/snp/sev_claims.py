"""Claims of a SEV or SEV-ES launch whose measurement verified (docs/CLAIMS.md ``sev``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SevClaims:
    tee: str
    """``sev`` or ``sev-es``."""
    launch_digest: str
    """The SHA-256 launch digest (hex) the firmware measured: what ``veritee measure sev`` /
    ``sev-es`` computes from the firmware, kernel, initrd, command line (and VMSAs)."""
    measure: str | None
    """LAUNCH_MEASURE's HMAC (hex), checked under the TIK (None for an attestation
    report)."""
    mnonce: str
    api_major: int
    api_minor: int
    build_id: int | None
    """The firmware build (None for an attestation report, which does not carry it; its
    API version is then the PEK certificate's)."""
    policy: int
    """The guest policy (u32) the firmware launched with."""
    policy_flags: dict[str, Any]
    """The policy's bits: ``nodbg``, ``noks``, ``es``, ``nosend``, ``domain``, ``sev``,
    ``api_major``, ``api_minor`` (minimum firmware API)."""
    debug: bool
    """The policy allows debugging (NODBG clear): the host can read the guest's memory."""
    es: bool
    """SEV-ES: the register state is encrypted too (policy bit ES)."""
    product: str
    """The platform's product line (from the chain that signed its PDH), or ``unknown``."""
    key_source: str
    """``broker-session``: the TIK is the broker's own (a launch id); ``owner-tik``: the
    guest owner supplied it; ``pek-report``: an attestation report signed by the
    platform's PEK, whose chain verified to a pinned ARK."""
    launch_id: str | None = None
    """The launch session's id (``broker-session``)."""
    emulated: bool = False
    attestation: str = "host-relayed"
    """Always ``host-relayed``: the launch measurement reaches the verifier through the
    host, which the hardware does not authenticate to the guest owner beyond the TIK (the
    flow's architectural weaknesses: docs/CLAIMS.md ``sev``)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


__all__ = ["SevClaims"]
