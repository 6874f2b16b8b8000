"""AMD Key Distribution Service (KDS): the URLs of VCEKs, ASK/ASVK+ARK chains and CRLs.

URL shapes from AMD's "Versioned Chip Endorsement Key (VCEK) Certificate and KDS Interface
Specification" (57230) as used by go-sev-guest ``kds/kds.go`` and snpguest ``fetch.rs``:

* ``/vcek/v1/{product}/cert_chain`` — ASK then ARK, PEM;
* ``/vlek/v1/{product}/cert_chain`` — ASVK then ARK, PEM;
* ``/vcek/v1/{product}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..`` — VCEK, DER
  (Turin: 8-byte hwid and ``fmcSPL`` first);
* ``/{vcek,vlek}/v1/{product}/crl`` — CRL, DER, signed by the ARK.

VLEKs are not fetchable by verifiers (they need cloud-provider credentials): they must ship
with the evidence or be given as endorsements.

Only URLs and how long a cached CRL may serve live here: fetching, caching and offline
operation are the generic client's (:meth:`veritee.collateral.CollateralSource.get`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from veritee.collateral import CollateralRequest, CollateralSource
from veritee.errors import MisuseError
from veritee.evidence import Evidence
from veritee.tee.snp.evidence import parse_snp_evidence
from veritee.tee.snp.layout import SnpReport, TcbVersion, product_hint

KDS_BASE_URL: Final = "https://kdsintf.amd.com"
SERVICE: Final = "AMD KDS"
#: Product names in KDS URLs, by the product names of claims.
PRODUCTS: Final = {"milan": "Milan", "genoa": "Genoa", "turin": "Turin"}
#: CRLs are re-fetched after this many seconds when a fetcher is available (AMD issues them
#: with a NextUpdate a week or more ahead), and sooner when the cached one is out of date.
CRL_REFRESH_SECONDS: Final = 24 * 3600
#: A cached CRL that is out of date (its nextUpdate has passed) is re-fetched when it was
#: stored more than this many seconds ago: at once for a CRL kept since before its
#: nextUpdate, and at most this often while AMD still serves an out-of-date one.
CRL_RETRY_SECONDS: Final = 600


def _title(product: str) -> str:
    title = PRODUCTS.get(product)
    if title is None:
        raise MisuseError(f"unknown AMD product {product!r}; expected one of {sorted(PRODUCTS)}")
    return title


def _signer_path(signer: str) -> str:
    if signer not in ("vcek", "vlek"):
        raise MisuseError(f"signer must be 'vcek' or 'vlek', got {signer!r}")
    return signer


def vcek_url(product: str, hwid: bytes, tcb: Mapping[str, int], *,
             base_url: str = KDS_BASE_URL) -> str:
    """The KDS URL of the VCEK for ``hwid`` at ``tcb`` (the report's REPORTED_TCB)."""
    title = _title(product)
    if product == "turin":
        if len(hwid) != 8:
            raise MisuseError(f"a Turin hwID is 8 bytes, got {len(hwid)}")
        query = f"fmcSPL={tcb['fmc']}&blSPL={tcb['bootloader']}&teeSPL={tcb['tee']}"
    else:
        if len(hwid) != 64:
            raise MisuseError(f"a {title} hwID is 64 bytes, got {len(hwid)}")
        query = f"blSPL={tcb['bootloader']}&teeSPL={tcb['tee']}"
    query += f"&snpSPL={tcb['snp']}&ucodeSPL={tcb['microcode']}"
    return f"{base_url}/vcek/v1/{title}/{hwid.hex()}?{query}"


def chain_url(product: str, signer: str, *, base_url: str = KDS_BASE_URL) -> str:
    return f"{base_url}/{_signer_path(signer)}/v1/{_title(product)}/cert_chain"


def crl_url(product: str, signer: str, *, base_url: str = KDS_BASE_URL) -> str:
    return f"{base_url}/{_signer_path(signer)}/v1/{_title(product)}/crl"


def report_vcek_url(report: SnpReport, product: str) -> str:
    """The VCEK URL for ``report`` on ``product`` (its CHIP_ID and REPORTED_TCB)."""
    turin = product == "turin"
    tcb = TcbVersion.decode(report.reported_tcb, turin=turin).components()
    return vcek_url(product, report.chip_id[:8] if turin else report.chip_id, tcb)


def crl(source: CollateralSource, product: str, signer: str, *,
        out_of_date: Callable[[bytes], bool] | None = None) -> bytes:
    """The CRL of ``product``'s ARK for ``signer``'s chain (DER, as AMD KDS serves it).

    Offline: the cached answer, however old. Online: the cached answer unless it is older
    than :data:`CRL_REFRESH_SECONDS`, or ``out_of_date(cached)`` is true (the caller, which
    can read CRLs and knows the verification time, says its nextUpdate has passed) and it is
    older than :data:`CRL_RETRY_SECONDS`; else fetched from KDS and cached.

    Raises:
        CollateralMissingError: offline and not cached, or KDS answered 404.
        CollateralUnavailableError: KDS answered another error or not at all.
    """
    url = crl_url(product, signer)
    max_age: float | None = None
    if not source.offline:
        cached = source.cached(url)
        stale = cached is not None and out_of_date is not None and out_of_date(cached)
        max_age = CRL_RETRY_SECONDS if stale else CRL_REFRESH_SECONDS
    return source.get(url, "CRL", service=SERVICE, max_age=max_age)


def collateral_requests(evidence: Evidence) -> list[CollateralRequest]:
    """What ``veritee collateral fetch`` stores for ``evidence``: the VCEK for the report's
    chip and REPORTED_TCB (VCEK-signed reports with a CHIP_ID), the ASK/ASVK+ARK chain and
    the CRL.

    Raises:
        MalformedEvidenceError: the evidence holds no SNP report.
    """
    report = parse_snp_evidence(evidence).report
    product = product_hint(report) or "milan"
    signer = report.signing_key if report.signing_key in ("vcek", "vlek") else "vcek"
    out: list[CollateralRequest] = []
    if signer == "vcek" and any(report.chip_id):
        out.append(CollateralRequest(report_vcek_url(report, product), "VCEK", SERVICE))
    out.append(CollateralRequest(chain_url(product, signer), f"{signer.upper()} cert chain",
                                 SERVICE))
    out.append(CollateralRequest(crl_url(product, signer), "CRL", SERVICE, CRL_REFRESH_SECONDS))
    return out


__all__ = ["CRL_REFRESH_SECONDS", "CRL_RETRY_SECONDS", "KDS_BASE_URL", "PRODUCTS", "SERVICE",
           "chain_url", "collateral_requests", "crl", "crl_url", "report_vcek_url",
           "vcek_url"]
