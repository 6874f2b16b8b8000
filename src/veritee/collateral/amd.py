"""AMD Key Distribution Service (KDS): VCEKs, ASK/ASVK+ARK chains and CRLs.

URL shapes from AMD's "Versioned Chip Endorsement Key (VCEK) Certificate and KDS Interface
Specification" (57230) as used by go-sev-guest ``kds/kds.go`` and snpguest ``fetch.rs``:

* ``/vcek/v1/{product}/cert_chain`` — ASK then ARK, PEM;
* ``/vlek/v1/{product}/cert_chain`` — ASVK then ARK, PEM;
* ``/vcek/v1/{product}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..`` — VCEK, DER
  (Turin: 8-byte hwid and ``fmcSPL`` first);
* ``/{vcek,vlek}/v1/{product}/crl`` — CRL, DER, signed by the ARK.

VLEKs are not fetchable by verifiers (they need cloud-provider credentials): they must ship
with the evidence or be given as endorsements.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from veritee.collateral.cache import CollateralCache
from veritee.collateral.fetch import Fetcher
from veritee.errors import CollateralMissingError, CollateralUnavailableError, MisuseError

KDS_BASE_URL = "https://kdsintf.amd.com"
PRODUCTS = ("Milan", "Genoa", "Turin")
#: CRLs are re-fetched after this many seconds when a fetcher is available (AMD issues them
#: with a NextUpdate a week or more ahead; the verifier checks NextUpdate itself).
CRL_REFRESH_SECONDS = 24 * 3600


@dataclass(frozen=True)
class KdsClient:
    """Fetch AMD collateral through a cache; with no fetcher, the cache alone answers."""

    cache: CollateralCache
    fetcher: Fetcher | None = None
    base_url: str = KDS_BASE_URL

    def vcek_url(self, product: str, hwid: bytes, tcb: Mapping[str, int]) -> str:
        """The KDS URL of the VCEK for ``hwid`` at ``tcb`` (the report's REPORTED_TCB)."""
        _check_product(product)
        if product == "Turin":
            if len(hwid) != 8:
                raise MisuseError(f"a Turin hwID is 8 bytes, got {len(hwid)}")
            query = f"fmcSPL={tcb['fmc']}&blSPL={tcb['bootloader']}&teeSPL={tcb['tee']}"
        else:
            if len(hwid) != 64:
                raise MisuseError(f"a {product} hwID is 64 bytes, got {len(hwid)}")
            query = f"blSPL={tcb['bootloader']}&teeSPL={tcb['tee']}"
        query += f"&snpSPL={tcb['snp']}&ucodeSPL={tcb['microcode']}"
        return f"{self.base_url}/vcek/v1/{product}/{hwid.hex()}?{query}"

    def chain_url(self, product: str, signer: str) -> str:
        _check_product(product)
        return f"{self.base_url}/{_signer_path(signer)}/v1/{product}/cert_chain"

    def crl_url(self, product: str, signer: str) -> str:
        _check_product(product)
        return f"{self.base_url}/{_signer_path(signer)}/v1/{product}/crl"

    def vcek(self, product: str, hwid: bytes, tcb: Mapping[str, int]) -> bytes:
        """The VCEK (DER). Raises CollateralMissingError or CollateralUnavailableError."""
        return self.get(self.vcek_url(product, hwid, tcb), "VCEK")

    def cert_chain(self, product: str, signer: str) -> bytes:
        return self.get(self.chain_url(product, signer), f"{signer.upper()} cert chain")

    def crl(self, product: str, signer: str) -> bytes:
        max_age = CRL_REFRESH_SECONDS if self.fetcher is not None else None
        return self.get(self.crl_url(product, signer), "CRL", max_age=max_age)

    def get(self, url: str, what: str, *, max_age: float | None = None) -> bytes:
        cached = self.cache.get(url, max_age=max_age)
        if cached is not None:
            return cached
        if self.fetcher is None:
            stale = self.cache.get(url) if max_age is not None else None
            if stale is not None:
                return stale
            raise CollateralMissingError(f"{what} is not in the offline cache ({url})")
        response = self.fetcher.get(url)
        if response.status == 404:
            raise CollateralMissingError(f"AMD KDS has no {what} at {url} (HTTP 404)")
        if response.status != 200 or not response.body:
            raise CollateralUnavailableError(f"AMD KDS answered HTTP {response.status} for {url}")
        self.cache.put(url, response.body)
        return response.body


def _check_product(product: str) -> None:
    if product not in PRODUCTS:
        raise MisuseError(f"unknown AMD product {product!r}; expected one of {PRODUCTS}")


def _signer_path(signer: str) -> str:
    if signer not in ("vcek", "vlek"):
        raise MisuseError(f"signer must be 'vcek' or 'vlek', got {signer!r}")
    return signer
