"""Verification of DCAP quotes (TDX and SGX) in QVL's order (research note §2.4).

1. The quote parses (:mod:`veritee.tee.dcap.quote`) and is from Intel's quoting enclave.
2. The PCK certificate chain (certification data type 5, or the collateral's) reaches the
   pinned Intel SGX Root CA, every link ECDSA P-256 (:func:`collateral.chain_to_root`).
3. The QE report is signed by the PCK leaf key, and its report data binds the attestation
   key: ``SHA256(attestation_key || qe_auth_data) == report_data[:32]`` (QVL and dcap-qvl
   compare 32 bytes; go-tdx-guest also wants the other 32 to be zero).
4. The quote (``header || body``) is signed by the attestation key.
5. With collateral: the Root CA CRL, the PCK CRL of the leaf's CA (the chain not revoked),
   the TCB Info for the PCK certificate's FMSPC and the QE identity, all signed under the
   pinned root and current at ``now``; then TCB matching and status convergence
   (:mod:`veritee.tee.dcap.tcb`). ``Revoked`` and ``TcbNotSupported`` reject; every other
   status is a claim for policy (CONTRACT.md §1).

Without collateral the result is undecided (:class:`~veritee.errors.CollateralMissingError`)
with every parsed claim attached. Verified collateral is kept per verifier, keyed by its bytes,
and reused while ``now`` lies inside the window in which it verified; the QE report's signature is
checked once per quoting enclave (every quote from one QE carries the same QE report and
signature). A warm verifier so does one ECDSA verification per quote from a QE it has seen, and
two for a new one.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Final, Literal, Self

from cryptography.hazmat.primitives.asymmetric import ec

from veritee import eventlog
from veritee.collateral import CollateralSource
from veritee.errors import (
    BindingError,
    ChainError,
    CollateralMissingError,
    MalformedEvidenceError,
    MisuseError,
    SignatureError,
    UnrecognizedEvidenceError,
    VeriteeError,
)
from veritee.evidence import Evidence
from veritee.memo import BoundedMemo
from veritee.tee.dcap import ccel, pcs, tcb
from veritee.tee.dcap import collateral as col
from veritee.tee.dcap.claims import PckFacts, SgxClaims, TdxClaims, Verdict, claims_dict
from veritee.tee.dcap.evidence import DcapEvidence, parse_dcap_evidence
from veritee.tee.dcap.pck import SGX_TYPES, ca_kind, pck_extension
from veritee.tee.dcap.quote import INTEL_QE_VENDOR_ID, Quote, SgxReport, TdReport, parse_quote
from veritee.tee.dcap.roots import IntelRoot, pinned_roots
from veritee.x509 import Cert, CertCache, check_link, require_pinned

REPORT_DATA_SIZE: Final = 64
_PCK_LEAF_CN: Final = "SGX PCK Certificate"
#: Verified collateral bundles kept per verifier.
MAX_BUNDLES: Final = 64


@dataclass(frozen=True, slots=True)
class _Bundle:
    """Collateral verified once, and the instants in which that verification holds."""

    collateral: col.Collateral
    valid_from: datetime
    valid_until: datetime
    expiration: datetime
    """The collateral's earliest nextUpdate."""
    verdicts: BoundedMemo[Any] = field(default_factory=BoundedMemo)
    """Verdicts under this collateral, per (platform TCB, QE report, revocation, expired)."""


class DcapVerifier:
    """Verifies TDX or SGX quotes (:attr:`tee`) against the pinned Intel root, or ``roots``."""

    tee: ClassVar[Literal["tdx", "sgx"]]

    def __init__(self, roots: Sequence[IntelRoot] | None = None, *,
                 grace: timedelta = timedelta(0),
                 compare_all_tdx_components: bool = False,
                 remember_quoting_enclaves: bool = True) -> None:
        """``roots``: the trust anchors (default: the pinned Intel SGX Root CA); ``grace``:
        how long collateral past its nextUpdate is still accepted (the claims then say
        ``collateral_expired``); ``compare_all_tdx_components``: dcap-qvl's TCB rule instead
        of QVL's (§2.9); ``remember_quoting_enclaves=False``: verify every QE report's
        signature and load every attestation key afresh, as for quotes from quoting enclaves
        never seen before (``bench tdx``'s ``new_qe`` figure)."""
        self._anchors = tuple(roots) if roots is not None else pinned_roots()
        self._roots = tuple(root.cert for root in self._anchors)
        self._emulated = frozenset(r.sha256 for r in self._anchors if r.emulated)
        self._grace = grace
        self._all_tdx = compare_all_tdx_components
        self._cache = CertCache()
        self._bundles: OrderedDict[tuple[Any, ...], _Bundle] = OrderedDict()
        self._lock = threading.Lock()
        # Results that depend only on their keys' bytes, computed once: the PCK extension per
        # certificate, the replayed event log per (log, RTMRs), the QE report's signature per
        # (PCK certificate, QE report, signature), the attestation key's object per its bytes;
        # TCB verdicts are kept per verified collateral (_Bundle.verdicts).
        self._pck_memo: BoundedMemo[PckFacts] = BoundedMemo()
        self._log_memo: BoundedMemo[dict[str, Any] | None] = BoundedMemo()
        self._remember_qe = remember_quoting_enclaves
        qe_size = 1024 if remember_quoting_enclaves else 0
        self._qe_memo: BoundedMemo[bool] = BoundedMemo(qe_size)
        self._key_memo: BoundedMemo[ec.EllipticCurvePublicKey] = BoundedMemo(qe_size)

    @property
    def roots(self) -> tuple[IntelRoot, ...]:
        return self._anchors

    def with_collateral_grace(self, grace: timedelta) -> Self:
        """A verifier accepting collateral up to ``grace`` past its nextUpdate."""
        return type(self)(self._anchors, grace=grace,
                          compare_all_tdx_components=self._all_tdx,
                          remember_quoting_enclaves=self._remember_qe)

    def with_roots(self, roots: Sequence[IntelRoot]) -> Self:
        """A verifier trusting ``roots`` (for instance emulated ones) beside these."""
        return type(self)((*self._anchors, *roots), grace=self._grace,
                          compare_all_tdx_components=self._all_tdx,
                          remember_quoting_enclaves=self._remember_qe)

    # -- entry point -------------------------------------------------------------------------

    def verify(self, evidence: Evidence, *, report_data: bytes | None,
               collateral: CollateralSource, now: datetime) -> TdxClaims | SgxClaims:
        """Verify ``evidence`` and return its claims.

        Raises:
            MalformedEvidenceError, UnsupportedVersionError: the evidence does not parse.
            UnrecognizedEvidenceError: it is a quote of the other TEE.
            SignatureError, ChainError, UntrustedRootError, ExpiredError, RevokedError,
                BindingError: the quote is not authentic, current, bound as required, or its
                TCB is revoked or matches no level.
            CollateralMissingError: no TCB Info or QE identity for the quote's platform.
            MisuseError: ``report_data`` is not 64 bytes, or ``now`` has no time zone.
        """
        if now.utcoffset() is None:
            raise MisuseError(f"verification time {now.isoformat()} has no time zone")
        if report_data is not None and len(report_data) != REPORT_DATA_SIZE:
            raise MisuseError(f"expected report data is {len(report_data)} bytes; the quote's "
                              f"REPORTDATA is {REPORT_DATA_SIZE} bytes (pad or hash it)")
        wire = parse_dcap_evidence(evidence)
        quote = parse_quote(wire.quote)
        self._check_tee(quote)
        pck: PckFacts | None = None
        try:
            leaf, chain, root = self._authentic(quote, collateral, now)
            pck = self._pck_memo.get(leaf.sha256, lambda: self._pck_facts(leaf))
            _check_report_data(quote, report_data)
            event_log = self._event_log(quote, wire)
            verdict = self._appraise(quote, leaf, chain, pck, collateral=collateral, now=now)
            return self._claims(quote, pck, verdict, wire, event_log=event_log,
                                emulated=root.sha256 in self._emulated)
        except VeriteeError as exc:
            exc.with_claims(claims_dict(quote, pck, Verdict()))
            raise

    def _check_tee(self, quote: Quote) -> None:
        if quote.tee != self.tee:
            raise UnrecognizedEvidenceError(
                f"this is {'a TDX' if quote.tee == 'tdx' else 'an SGX'} quote (tee_type "
                f"0x{quote.header.tee_type:x}); verify it with --tee {quote.tee}")

    def _event_log(self, quote: Quote, wire: DcapEvidence) -> dict[str, Any] | None:
        """:func:`_event_log`, once per (log, RTMRs)."""
        if wire.cc_eventlog is None:
            return None
        rtmrs = quote.body.rtmrs if isinstance(quote.body, TdReport) else ()
        found: dict[str, Any] | None = self._log_memo.get(
            (wire.cc_eventlog, rtmrs), lambda: _event_log(quote, wire))
        return found

    def _claims(self, quote: Quote, pck: PckFacts, verdict: Verdict, wire: DcapEvidence, *,
                event_log: dict[str, Any] | None, emulated: bool) -> TdxClaims | SgxClaims:
        kind = TdxClaims if self.tee == "tdx" else SgxClaims
        return kind(quote=quote, pck=pck, verdict=verdict, emulated=emulated,
                    evidence_form=wire.form, event_log=event_log)

    # -- steps 1-4: the quote is Intel's and intact (§2.4 B) --------------------------------

    def _authentic(self, quote: Quote, collateral: CollateralSource,
                   now: datetime) -> tuple[Cert, tuple[Cert, ...], Cert]:
        if quote.header.qe_vendor_id != INTEL_QE_VENDOR_ID:
            raise ChainError(f"the QE vendor ID is {quote.header.qe_vendor_id.hex()}, not "
                             f"Intel's {INTEL_QE_VENDOR_ID.hex()}")
        chain = self._pck_chain(quote, collateral)
        self._check_roots(chain)
        leaf = _pck_leaf(chain, quote)
        intermediate = [c for c in chain if c.subject_cn == leaf.issuer_cn]
        if not intermediate:
            raise ChainError(f"the PCK chain holds no issuer of the PCK certificate "
                             f"({leaf.issuer_cn!r})")
        ca = intermediate[0]
        root = col.chain_to_root(ca, chain, what="PCK certificate chain", now=now,
                          roots=self._roots, cache=self._cache)
        check_link(self._cache, leaf, ca, "the PCK certificate chain", col.p256_signed)
        leaf.check_validity(now, "the PCK certificate")
        qe = quote.signature_data.qe
        if not self._qe_memo.get((leaf.sha256, qe.qe_report_bytes, qe.qe_report_signature),
                                 lambda: _qe_report_signed(quote, leaf)):
            raise SignatureError("the QE report's signature does not verify under the PCK "
                                 f"certificate's key (PCK certificate SHA-256 "
                                 f"{leaf.sha256[:16]}…)")
        _check_qe_binding(quote)
        key = self._key_memo.get(quote.signature_data.attestation_key,
                                 lambda: _attestation_key(quote))
        if not col.raw_p256_verifies(quote.signed_bytes, quote.signature_data.signature, key):
            raise SignatureError("the quote's signature does not verify under its attestation "
                                 "key")
        return leaf, chain, root

    def _check_roots(self, chain: Sequence[Cert]) -> None:
        """A self-signed certificate in the PCK chain must be a trusted root (QVL compares the
        chain's root with the trusted one before anything else)."""
        pins = {root.sha256 for root in self._roots}
        for cert in chain:
            if cert.subject_cn == cert.issuer_cn and cert.sha256 not in pins:
                require_pinned(cert, pins, what="PCK certificate chain", vendor="Intel")

    def _pck_chain(self, quote: Quote, collateral: CollateralSource) -> tuple[Cert, ...]:
        blob = quote.signature_data.pck_chain
        if blob is not None:
            certs = self._cache.blob(blob)[0]
            if not certs:
                raise MalformedEvidenceError("the quote's PCK certificate chain (certification "
                                             "data type 5) holds no certificate")
            return certs
        raw = col.read_collateral(collateral.files, self._cache)
        if raw.pck_chain:
            return raw.pck_chain
        if any(_PCK_LEAF_CN in c.subject_cn for c in raw.certs):
            return raw.certs
        kind = quote.signature_data.certification_data.type_name
        raise CollateralMissingError(
            f"the quote identifies its PCK certificate by {kind} (certification data type "
            f"{quote.signature_data.certification_data.cert_type}), not by its chain; supply "
            "the PCK certificate chain as collateral")

    def _pck_facts(self, leaf: Cert) -> PckFacts:
        extension = pck_extension(leaf.cert)
        return PckFacts(fmspc=extension.fmspc, pce_id=extension.pce_id,
                        ca=ca_kind(leaf.issuer_cn),
                        sgx_type=SGX_TYPES.get(extension.sgx_type, "unknown"),
                        pce_svn=extension.tcb.pcesvn, components=extension.tcb.comp_svns)

    # -- step 5: collateral and TCB (§2.4 A, steps 9-18) -------------------------------------

    def _appraise(self, quote: Quote, leaf: Cert, chain: tuple[Cert, ...], pck: PckFacts, *,
                  collateral: CollateralSource, now: datetime) -> Verdict:
        bundle = self._bundle(quote, chain, pck, collateral, now)
        found = bundle.collateral
        revocation = "not_checked"
        if found.pck_crl is not None:
            col.check_not_revoked(found.pck_crl, leaf, now, "the PCK certificate")
            ca = next(c for c in chain if c.subject_cn == leaf.issuer_cn)
            col.check_not_revoked(found.root_ca_crl, ca, now, "the PCK CA certificate")
            revocation = "checked" if found.root_ca_crl is not None else "pck_crl_only"
        platform, qe = _platform(quote, pck), _qe(quote)
        expired = now > bundle.expiration
        return bundle.verdicts.get(  # type: ignore[no-any-return]
            (platform, qe, revocation, expired),
            lambda: self._verdict(found, platform, qe, revocation=revocation, expired=expired))

    def _verdict(self, found: col.Collateral, platform: tcb.PlatformTcb, qe: tcb.QeReport, *,
                 revocation: str, expired: bool) -> Verdict:
        result = tcb.evaluate_tcb(found.tcb_info, platform, qe_identity=found.qe_identity,
                                  qe_report=qe, compare_all_tdx_components=self._all_tdx)
        result.raise_for_status()
        return Verdict(
            tcb_status=result.status, advisory_ids=result.advisory_ids,
            tcb_date=result.tcb_date.isoformat() if result.tcb_date else None,
            collateral_expiration=found.collateral_expiration.isoformat(),
            collateral_expired=expired, platform_status=result.platform_status,
            qe_status=result.qe_status, module_status=result.module_status,
            revocation=revocation)

    def _bundle(self, quote: Quote, chain: tuple[Cert, ...], pck: PckFacts,
                collateral: CollateralSource, now: datetime) -> _Bundle:
        tcb_id: col.TcbId = "TDX" if quote.tee == "tdx" else "SGX"
        key = (tcb_id, pck.fmspc, pck.ca, tuple(f.data for f in collateral.files))
        with self._lock:
            cached = self._bundles.get(key)
            if cached is not None and cached.valid_from <= now <= cached.valid_until:
                self._bundles.move_to_end(key)
                return cached
        raw = col.read_collateral(collateral.files, self._cache)
        raw = raw + col.RawCollateral(certs=chain)
        if not any(col.tcb_info_for(s, tcb_id, pck.fmspc) for s in raw.tcb_infos):
            raw = raw + self._fetched(quote, pck, collateral)
        found = col.verify_collateral(raw, tcb_id=tcb_id, fmspc=pck.fmspc, pck_ca=pck.ca,
                                      now=now, roots=self._roots, cache=self._cache,
                                      grace=self._grace)
        bundle = _Bundle(found, *_window(found, raw, self._grace),
                         expiration=found.collateral_expiration)
        with self._lock:
            self._bundles[key] = bundle
            while len(self._bundles) > MAX_BUNDLES:
                self._bundles.popitem(last=False)
        return bundle


    def _fetched(self, quote: Quote, pck: PckFacts,
                 collateral: CollateralSource) -> col.RawCollateral:
        """The platform's collateral from Intel PCS through the collateral client (its cache,
        offline or not), when the files given hold no TCB Info for it."""
        try:
            return pcs.fetch(collateral, quote.tee, pck.fmspc, pck.ca, self._cache)
        except CollateralMissingError as exc:
            raise CollateralMissingError(
                f"no {quote.tee.upper()} TCB Info for FMSPC {pck.fmspc.hex()} in the collateral "
                f"supplied, and {exc.detail}; pass --collateral with Intel PCS or PCCS "
                "collateral for this platform, or run `veritee collateral fetch --tee "
                f"{quote.tee} EVIDENCE` where Intel PCS is reachable") from exc


class TdxVerifier(DcapVerifier):
    tee: ClassVar[Literal["tdx", "sgx"]] = "tdx"


class SgxVerifier(DcapVerifier):
    tee: ClassVar[Literal["tdx", "sgx"]] = "sgx"


# -- checks -------------------------------------------------------------------------------------


def _pck_leaf(chain: Sequence[Cert], quote: Quote) -> Cert:
    """The PCK certificate: the chain's only one, or (collateral holding several) the one
    whose key signed the QE report."""
    leaves = [c for c in chain if _PCK_LEAF_CN in c.subject_cn]
    if not leaves:
        names = ", ".join(repr(c.subject_cn) for c in chain) or "nothing"
        raise ChainError(f"the PCK certificate chain holds no '{_PCK_LEAF_CN}' (found {names})")
    qe = quote.signature_data.qe
    signing = [c for c in leaves if len(leaves) > 1 and col.raw_p256_verifies(
        qe.qe_report_bytes, qe.qe_report_signature, c.public_key)]
    return (signing or leaves)[0]


def _qe_report_signed(quote: Quote, leaf: Cert) -> bool:
    """§2.4 step 13 (QVL 4.1.2.4.12): the QE report is signed by the PCK key. A pure function
    of the PCK certificate, the QE report and its signature, which every quote from one
    quoting enclave shares (its attestation key lives as long as the QE), so the verifier
    computes it once per QE."""
    qe = quote.signature_data.qe
    key = leaf.public_key
    if not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)):
        raise ChainError("the PCK certificate's key is not an ECDSA P-256 key")
    return col.raw_p256_verifies(qe.qe_report_bytes, qe.qe_report_signature, key)


def _check_qe_binding(quote: Quote) -> None:
    """§2.4 step 14 (QVL 4.1.2.4.13): the QE report's data binds the attestation key."""
    qe = quote.signature_data.qe
    expected = hashlib.sha256(quote.signature_data.attestation_key_binding).digest()
    found = qe.qe_report.report_data[:32]
    if found != expected:
        raise BindingError(f"the QE report's REPORTDATA[0:32] is {found.hex()}, but SHA-256 of "
                           f"the attestation key and QE authentication data is {expected.hex()}")


def _attestation_key(quote: Quote) -> ec.EllipticCurvePublicKey:
    """The key of §2.4 step 17 (QVL 4.1.2.4.16), which signs ``header || body``."""
    point = b"\x04" + quote.signature_data.attestation_key
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError as exc:
        raise SignatureError("the attestation key is not a P-256 point") from exc


def _check_report_data(quote: Quote, expected: bytes | None) -> None:
    if expected is not None and quote.report_data != expected:
        raise BindingError(f"REPORTDATA is {quote.report_data.hex()}, expected {expected.hex()}")


def _event_log(quote: Quote, wire: DcapEvidence) -> dict[str, Any] | None:
    """The CCEL event log replayed and compared with the quote's RTMRs (research note §3.2):
    RTMR0-2 always, RTMR3 when the log has events for it (the firmware never extends RTMR3;
    software that does, such as the attestation agent, keeps its own log).

    Raises:
        MalformedEvidenceError: the log does not parse, or comes with an SGX quote.
        BindingError: a replayed RTMR differs from the quote's.
    """
    if wire.cc_eventlog is None:
        return None
    body = quote.body
    if not isinstance(body, TdReport):
        raise MalformedEvidenceError("an SGX quote came with a CC event log")
    parsed = eventlog.parse(wire.cc_eventlog)
    extends_rtmr3 = any(ccel.rtmr_of(e.index) == 3 for e in parsed.events[1:])
    registers = (0, 1, 2, 3) if extends_rtmr3 else (0, 1, 2)
    ccel.verify_event_log(parsed, body.rtmrs, registers=registers)
    return {"replayed": [f"rtmr{i}" for i in registers],
            "events": [_event_json(event) for event in parsed.events[1:]]}


def _event_json(event: eventlog.Event) -> dict[str, Any]:
    """The event as JSON, its device path also as Trustee lists it (``details.device_paths``,
    one text per node), so Trustee's TDX policies read the same strings here."""
    out = event.to_json()
    path = event.details.device_path
    if path is not None:
        out["details"]["device_paths"] = list(path.trustee_texts())
    return out


def _platform(quote: Quote, pck: PckFacts) -> tcb.PlatformTcb:
    body = quote.body
    if isinstance(body, TdReport):
        return tcb.PlatformTcb(pck.components, pck.pce_svn, pck.fmspc, pck.pce_id,
                               tee_tcb_svn=body.tee_tcb_svn, mr_signer_seam=body.mr_signer_seam,
                               seam_attributes=body.seam_attributes,
                               tee_tcb_svn2=body.tee_tcb_svn2)
    return tcb.PlatformTcb(pck.components, pck.pce_svn, pck.fmspc, pck.pce_id)


def _qe(quote: Quote) -> tcb.QeReport:
    report: SgxReport = quote.signature_data.qe.qe_report
    return tcb.QeReport(misc_select=report.misc_select, attributes=report.attributes,
                        mr_signer=report.mr_signer, isv_prod_id=report.isv_prod_id,
                        isv_svn=report.isv_svn)


def _window(found: col.Collateral, raw: col.RawCollateral,
            grace: timedelta) -> tuple[datetime, datetime]:
    """The instants in which ``found`` verifies as it did: after every issue date and
    certificate's notBefore, before the earliest nextUpdate (plus grace) and notAfter."""
    starts = [found.latest_issue_date, *(c.not_before for c in raw.certs)]
    ends = [found.collateral_expiration + grace, *(c.not_after for c in raw.certs)]
    return max(starts), min(ends)


__all__ = ["DcapVerifier", "SgxVerifier", "TdxVerifier"]
