"""Intel PCS (Provisioning Certification Service) API v4: the URLs of the collateral a quote
needs, and reading the answers into :class:`~veritee.tee.dcap.collateral.RawCollateral`.

URL shapes from the research note §2.10:

* ``/{sgx|tdx}/certification/v4/tcb?fmspc=<hex>`` — TCB Info; issuer chain in the
  ``TCB-Info-Issuer-Chain`` header (URL-encoded PEM);
* ``/{sgx|tdx}/certification/v4/qe/identity`` — the QE (SGX) or TD_QE (TDX) identity; issuer
  chain in ``SGX-Enclave-Identity-Issuer-Chain``;
* ``/sgx/certification/v4/pckcrl?ca={processor|platform}&encoding=der`` — the PCK CA's CRL;
  issuer chain in ``SGX-PCK-CRL-Issuer-Chain``;
* the Root CA CRL at the root's CRL distribution point.

A PCCS serves the same paths under its own base: configure it as a mirror of the PCS prefix
(``[verification] mirrors``; several PCCS for one prefix are tried in order), and the cache
stays keyed by the PCS URL, so an air-gapped broker
reads what ``veritee collateral fetch --tee tdx EVIDENCE`` stored on a connected machine.
Fetching, caching and offline operation are the generic client's
(:meth:`veritee.collateral.CollateralSource.get`); this module only builds URLs.
"""

from __future__ import annotations

from typing import Final

from veritee.collateral import CollateralRequest, CollateralSource
from veritee.errors import MalformedEvidenceError
from veritee.evidence import Evidence
from veritee.tee.dcap import collateral as col
from veritee.tee.dcap.evidence import parse_dcap_evidence
from veritee.tee.dcap.pck import ca_kind, pck_extension
from veritee.tee.dcap.quote import parse_quote
from veritee.x509 import CertCache

PCS_BASE_URL: Final = "https://api.trustedservices.intel.com"
ROOT_CA_CRL_URL: Final = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
SERVICE: Final = "Intel PCS"
TCB_INFO_CHAIN: Final = "TCB-Info-Issuer-Chain"
IDENTITY_CHAIN: Final = "SGX-Enclave-Identity-Issuer-Chain"
PCK_CRL_CHAIN: Final = "SGX-PCK-CRL-Issuer-Chain"
#: TCB Info and identities are issued for 30 days and CRLs for longer; a day-old copy is
#: refreshed when the service can be reached.
REFRESH_SECONDS: Final = 24 * 3600


def tcb_info_url(tee: str, fmspc: bytes, *, base_url: str = PCS_BASE_URL) -> str:
    return f"{base_url}/{tee}/certification/v4/tcb?fmspc={fmspc.hex()}"


def qe_identity_url(tee: str, *, base_url: str = PCS_BASE_URL) -> str:
    return f"{base_url}/{tee}/certification/v4/qe/identity"


def pck_crl_url(ca: str, *, base_url: str = PCS_BASE_URL) -> str:
    return f"{base_url}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der"


def requests(tee: str, fmspc: bytes, ca: str | None) -> list[CollateralRequest]:
    """The four answers that verifying a quote of ``tee`` on this platform needs."""
    out = [
        CollateralRequest(tcb_info_url(tee, fmspc), f"{tee.upper()} TCB Info", SERVICE,
                          REFRESH_SECONDS, (TCB_INFO_CHAIN,)),
        CollateralRequest(qe_identity_url(tee), "QE identity", SERVICE, REFRESH_SECONDS,
                          (IDENTITY_CHAIN,)),
        CollateralRequest(ROOT_CA_CRL_URL, "Root CA CRL", SERVICE, REFRESH_SECONDS),
    ]
    if ca is not None:
        out.append(CollateralRequest(pck_crl_url(ca), f"PCK {ca} CA CRL", SERVICE,
                                     REFRESH_SECONDS, (PCK_CRL_CHAIN,)))
    return out


def fetch(source: CollateralSource, tee: str, fmspc: bytes, ca: str | None,
          cache: CertCache | None = None) -> col.RawCollateral:
    """The collateral for a quote of ``tee`` on a platform of ``fmspc`` whose PCK certificate
    ``ca`` issued, through ``source`` (cache, vendor service, offline directory).

    Raises:
        CollateralMissingError: offline and not cached, or PCS has none (404).
        CollateralUnavailableError: PCS answered another error or not at all.
        MalformedEvidenceError: an answer is not collateral.
    """
    found = col.RawCollateral()
    for request in requests(tee, fmspc, ca):
        body = source.get(request.url, request.what, service=request.service,
                          max_age=None if source.offline else request.max_age,
                          keep_headers=request.keep_headers)
        chain = next((source.cached_header(request.url, h) for h in request.keep_headers),
                     None)
        found += _read(body, chain, request.what, cache)
    return found


def _read(body: bytes, chain: bytes | None, what: str,
          cache: CertCache | None) -> col.RawCollateral:
    if body.lstrip()[:1] == b"{":
        return col.read_pcs_body(body, issuer_chain=chain, source=f"the {what} from PCS",
                                 cache=cache)
    crl = col.load_crl(body, f"the {what} from PCS", cache)
    certs = col.load_chain(chain, f"the {what} issuer chain", cache) if chain else ()
    return col.RawCollateral(certs=certs, crls=(crl,))


def collateral_requests(evidence: Evidence) -> list[CollateralRequest]:
    """What ``veritee collateral fetch`` stores for ``evidence``: the platform's TCB Info, the
    QE identity, the PCK CA's CRL and the Root CA CRL (the FMSPC and the CA come from the
    quote's PCK certificate, read without verifying it).

    Raises:
        MalformedEvidenceError: the evidence holds no quote, or the quote no PCK chain.
    """
    quote = parse_quote(parse_dcap_evidence(evidence).quote)
    blob = quote.signature_data.pck_chain
    certs = CertCache().blob(blob)[0] if blob is not None else ()
    leaf = next((c for c in certs if "SGX PCK Certificate" in c.subject_cn), None)
    if leaf is None:
        raise MalformedEvidenceError("the quote carries no PCK certificate (certification "
                                     "data type 5), so its platform's FMSPC is unknown")
    return requests(quote.tee, pck_extension(leaf.cert).fmspc, ca_kind(leaf.issuer_cn))


__all__ = ["PCS_BASE_URL", "ROOT_CA_CRL_URL", "SERVICE", "collateral_requests", "fetch",
           "pck_crl_url", "qe_identity_url", "requests", "tcb_info_url"]
