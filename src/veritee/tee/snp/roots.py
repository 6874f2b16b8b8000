"""Trust anchors for SEV-SNP: AMD's ARK, ASK and ASVK per product line, pinned by SHA-256.

Fingerprints are SHA-256 of the DER certificates AMD KDS serves (amd-sev.md §2.2, checked
against go-sev-guest ``verify/trust/ask_ark_*.pem``). A root certificate from any source is
used only when its fingerprint is pinned here (or in roots the operator adds explicitly).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Final

from veritee.tee.snp.layout import Product


@dataclass(frozen=True, slots=True)
class AmdRoot:
    """The pinned certificates of one product line."""

    product: Product
    ark_sha256: str
    ask_sha256: str
    asvk_sha256: str
    emulated: bool = False
    """True for test PKIs from :mod:`veritee.testing`; results say so."""
    pem: bytes = b""
    """Certificates that come with these roots (ARK/ASK/ASVK PEM), used only if pinned."""

    @property
    def fingerprints(self) -> frozenset[str]:
        return frozenset({self.ark_sha256, self.ask_sha256, self.asvk_sha256})


def _builtin_pem() -> bytes:
    return resources.files("veritee.tee.snp").joinpath("amd_roots.pem").read_bytes()


_AMD: Final = (
    ("milan",
     "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
     "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
     "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5"),
    ("genoa",
     "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
     "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
     "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372"),
    ("turin",
     "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
     "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185",
     "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c"),
)


def amd_roots() -> tuple[AmdRoot, ...]:
    """AMD's production roots for Milan, Genoa and Turin (the default trust anchors)."""
    pem = _builtin_pem()
    return tuple(AmdRoot(p, ark, ask, asvk, pem=pem) for p, ark, ask, asvk in _AMD)  # type: ignore[arg-type]
