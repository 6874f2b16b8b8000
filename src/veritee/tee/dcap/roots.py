"""The trust anchors of DCAP verification: the pinned Intel SGX Root CA (research note §2.1,
§0.1 item 4; only the root is pinned, never the TCB Signing certificate, which Intel rotated
in 2025) and, when an operator asks for them, the emulated roots of :mod:`veritee.testing`."""

from __future__ import annotations

from dataclasses import dataclass

from veritee.tee.dcap.collateral import intel_roots
from veritee.x509 import Cert


@dataclass(frozen=True, slots=True)
class IntelRoot:
    """One trusted root certificate."""

    cert: Cert
    emulated: bool = False
    """True for test PKIs from :mod:`veritee.testing`; results say so."""

    @property
    def sha256(self) -> str:
        return self.cert.sha256


def pinned_roots() -> tuple[IntelRoot, ...]:
    """The Intel SGX Root CA, as pinned."""
    return tuple(IntelRoot(cert) for cert in intel_roots())
