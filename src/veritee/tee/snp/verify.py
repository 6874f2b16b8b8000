"""SEV-SNP verification: report signature, VCEK/VLEK chain to a pinned ARK, binding.

Order (go-sev-guest ``verify.SnpAttestation``; amd-sev.md §2.4):

1. parse the report (layout checks, closed version set);
2. SIGNER_INFO selects the key: VCEK (ASK chain) or VLEK (ASVK chain); unsigned reports and
   MASK_CHIP_KEY reports are refused;
3. product line from CPUID (v3+), else from the certificates, else from the chip id;
4. the VCEK/VLEK: from the evidence, the operator's endorsements/collateral, the cache, or
   AMD KDS (VCEK only);
5. chain VEK ← ASK/ASVK ← ARK (RSASSA-PSS SHA-384, salt 48), the ARK pinned by fingerprint,
   every certificate valid at ``now``;
6. the report signature (ECDSA P-384, SHA-384, over ``[0, 0x2A0)``);
7. binding: every TCB component in the certificate equals REPORTED_TCB; hwID equals CHIP_ID
   (Turin: the first 8 bytes, and the rest zero);
8. revocation: a CRL signed by the ARK, when one is supplied or cached;
9. the expected REPORT_DATA, when given.

Pure: no network except through the injected :class:`CollateralSource`, no clock but ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee.collateral import CollateralSource
from veritee.collateral.amd import KdsClient
from veritee.errors import (
    BindingError,
    ChainError,
    CollateralMissingError,
    ExpiredError,
    MisuseError,
    RevokedError,
    SignatureError,
    UntrustedRootError,
    VeriteeError,
)
from veritee.evidence import Evidence
from veritee.tee.snp.certs import VekInfo, product_of_ca, role_of, vek_info
from veritee.tee.snp.claims import SnpClaims, claims_dict
from veritee.tee.snp.evidence import SnpEvidence, parse_snp_evidence
from veritee.tee.snp.layout import (
    SnpReport,
    TcbVersion,
    chip_id_looks_turin,
    product_from_cpuid,
)
from veritee.tee.snp.roots import AmdRoot, amd_roots
from veritee.x509 import Cert, CertCache, Crl

REPORT_DATA_SIZE = 64
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_KDS_NAMES = {"milan": "Milan", "genoa": "Genoa", "turin": "Turin"}


@dataclass
class _Pool:
    """Certificates and CRLs available for one verification, indexed by role."""

    roles: dict[str, list[Cert]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    crls: list[Crl] = field(default_factory=list)

    def add(self, cert: Cert) -> bool:
        """Add ``cert`` unless present; True when it was new."""
        if cert.sha256 in self.seen:
            return False
        self.seen.add(cert.sha256)
        self.roles.setdefault(role_of(cert), []).append(cert)
        return True

    def by_role(self, role: str) -> list[Cert]:
        return self.roles.get(role, [])

    def copy(self) -> _Pool:
        return _Pool({r: list(c) for r, c in self.roles.items()}, set(self.seen), list(self.crls))


class SnpVerifier:
    """Verifies SEV-SNP reports. One instance can serve many threads."""

    tee = "snp"

    def __init__(self, roots: Sequence[AmdRoot] | None = None, *,
                 cache: CertCache | None = None) -> None:
        self.roots: tuple[AmdRoot, ...] = tuple(roots) if roots is not None else amd_roots()
        self._cache = cache or CertCache()
        self._pinned = {fp: root for root in self.roots for fp in root.fingerprints}
        self._root_blobs = tuple(dict.fromkeys(r.pem for r in self.roots if r.pem))
        self._base: _Pool | None = None
        self._vek_infos: dict[str, VekInfo] = {}

    # -- entry point -------------------------------------------------------------------------

    def verify(self, evidence: Evidence, *, report_data: bytes | None,
               collateral: CollateralSource, now: datetime) -> SnpClaims:
        """Verify ``evidence`` and return its claims.

        Raises:
            MalformedEvidenceError, UnsupportedVersionError: the evidence does not parse.
            SignatureError, ChainError, UntrustedRootError, ExpiredError, RevokedError,
            BindingError: the evidence is not authentic, current or bound as required.
            CollateralMissingError, CollateralUnavailableError: a needed certificate could
                not be found.
            MisuseError: ``report_data`` is not 64 bytes, or ``now`` has no time zone.
        """
        if now.utcoffset() is None:
            raise MisuseError(f"verification time {now.isoformat()} has no time zone; "
                              "certificate validity is in UTC")
        if report_data is not None and len(report_data) != REPORT_DATA_SIZE:
            raise MisuseError(
                f"expected report data is {len(report_data)} bytes; SNP REPORT_DATA is "
                f"{REPORT_DATA_SIZE} bytes (pad or hash it explicitly)"
            )
        snp = parse_snp_evidence(evidence)
        report = snp.report
        product = _product_hint(report)
        try:
            return self._verify(snp, product, report_data, collateral, now)
        except VeriteeError as exc:
            raise exc.with_claims(claims_dict(report, product, report.signing_key)) from None

    def _verify(self, snp: SnpEvidence, product: str | None, report_data: bytes | None,
                collateral: CollateralSource, now: datetime) -> SnpClaims:
        report = snp.report
        signer = _signer(report)
        pool = self._pool(snp, collateral)
        vek = self._find_vek(report, signer, product, pool, collateral)
        info = self._vek_info(vek)
        product = product or _product_from_vek(vek, info, pool)
        ark, intermediate = self._chain(vek, signer, product, pool, now)
        root = self._pinned[ark.sha256]
        hint = _product_hint(report)
        if hint is not None and hint != root.product:
            raise BindingError(
                f"the report identifies a {hint} CPU but its {signer.upper()} chains to "
                f"{ark.subject_cn}"
            )
        product = root.product
        _check_report_signature(report, vek)
        _check_tcb(report, info, product, signer)
        _check_hwid(report, info, signer, product)
        revocation = self._check_revocation(ark, intermediate, vek, pool=pool,
                                            collateral=collateral, signer=signer,
                                            product=product, now=now)
        if report_data is not None and report.report_data != report_data:
            raise BindingError(
                f"REPORT_DATA is {report.report_data.hex()}, expected {report_data.hex()}"
            )
        return SnpClaims(
            report=report,
            product=product,
            signer=signer,
            revocation=revocation,
            emulated=root.emulated,
            evidence_form=snp.form,
            vek={"product_name": info.product_name, "struct_version": info.struct_version,
                 "csp_id": info.csp_id, "sha256": vek.sha256},
        )

    # -- certificates ------------------------------------------------------------------------

    def _pool(self, snp: SnpEvidence, collateral: CollateralSource) -> _Pool:
        """The pinned roots (indexed once) plus the evidence's and the operator's certificates;
        any ARK among the latter must be pinned."""
        pool = self._base_pool().copy()
        for entry in snp.certs:
            if entry.kind in ("vcek", "vlek", "ask", "ark", "crl"):
                self._add_blob(pool, entry.data, "evidence")
        for blob in collateral.blobs:
            self._add_blob(pool, blob, "endorsements")
        return pool

    def _base_pool(self) -> _Pool:
        base = self._base
        if base is None:
            base = _Pool()
            for blob in self._root_blobs:
                certs, crls = self._cache.blob(blob)
                for cert in certs:
                    base.add(cert)
                base.crls.extend(crls)
            self._base = base
        return base

    def _emulated_hint(self) -> str:
        if any(r.emulated for r in self.roots):
            return ""
        return " (emulated roots are trusted only when the operator enables them)"

    def _add_blob(self, pool: _Pool, blob: bytes, source: str) -> None:
        certs, crls = self._cache.blob(blob)
        for cert in certs:
            if role_of(cert) == "ark" and cert.sha256 not in self._pinned:
                raise UntrustedRootError(
                    f"{cert.subject_cn} from the {source} has SHA-256 {cert.sha256}, which is "
                    "not a pinned AMD root" + self._emulated_hint()
                )
            pool.add(cert)
        pool.crls.extend(crls)

    def _vek_info(self, cert: Cert) -> VekInfo:
        """AMD's extensions of a VCEK/VLEK, parsed once per certificate."""
        info = self._vek_infos.get(cert.sha256)
        if info is None:
            info = vek_info(cert)
            if len(self._vek_infos) >= 4096:
                self._vek_infos.clear()
            self._vek_infos[cert.sha256] = info
        return info

    def _find_vek(self, report: SnpReport, signer: str, product: str | None, pool: _Pool,
                  collateral: CollateralSource) -> Cert:
        candidates = pool.by_role(signer)
        if candidates:
            return self._best_vek(report, product, candidates)
        if signer == "vlek":
            raise CollateralMissingError(
                "the report is signed by a VLEK and no VLEK came with the evidence or the "
                "endorsements (VLEKs cannot be fetched from AMD KDS: supply the VLEK as an "
                "endorsement or collateral file)"
            )
        return self._fetch_vcek(report, product, collateral)

    def _best_vek(self, report: SnpReport, product: str | None, candidates: list[Cert]) -> Cert:
        """The candidate whose hwID and TCB match the report; else the first (binding then
        says what differs)."""
        for cert in candidates:
            try:
                info = self._vek_info(cert)
            except ChainError:
                continue
            turin = product == "turin" or info.fmc is not None
            tcb = TcbVersion.decode(report.reported_tcb, turin=turin).components()
            hwid_ok = info.hwid is None or report.chip_id.startswith(info.hwid)
            if hwid_ok and all(tcb.get(k) == v for k, v in info.tcb().items()):
                return cert
        return candidates[0]

    def _fetch_vcek(self, report: SnpReport, product: str | None,
                    collateral: CollateralSource) -> Cert:
        if not any(report.chip_id):
            raise CollateralMissingError(
                "CHIP_ID is masked (all zero), so the VCEK cannot be looked up; it must come "
                "with the evidence or through --endorsements"
            )
        kds = KdsClient(collateral.cache, collateral.fetcher)
        products = [product] if product else ["milan", "genoa"]
        misses: list[str] = []
        for name in products:
            turin = name == "turin"
            tcb = TcbVersion.decode(report.reported_tcb, turin=turin).components()
            hwid = report.chip_id[:8] if turin else report.chip_id
            try:
                der = kds.vcek(_KDS_NAMES[name], hwid, tcb)
            except CollateralMissingError as exc:
                misses.append(exc.detail)
                continue
            cert = self._cache.cert(der)
            if cert is None:
                raise ChainError(f"AMD KDS returned a VCEK that does not parse ({len(der)} bytes)")
            return cert
        raise CollateralMissingError("no VCEK found: " + "; ".join(misses))

    def _chain(self, vek: Cert, signer: str, product: str | None, pool: _Pool,
               now: datetime) -> tuple[Cert, Cert]:
        """Verify VEK ← ASK/ASVK ← ARK; return (ARK, intermediate)."""
        want = "asvk" if signer == "vlek" else "ask"
        issuers = [c for c in pool.by_role(want) if c.subject_cn == vek.issuer_cn]
        if product:
            issuers = [c for c in issuers if product_of_ca(c) == product] or issuers
        if not issuers:
            raise ChainError(
                f"no {want.upper()} named {vek.issuer_cn!r} is available to check the "
                f"{signer.upper()} against"
            )
        errors: list[str] = []
        for intermediate in issuers:
            arks = self._arks_for(intermediate, pool)
            if not arks:
                errors.append(f"no pinned ARK named {intermediate.issuer_cn!r}")
            for ark in arks:  # several when emulated roots share AMD's names
                try:
                    self._check_link(vek, intermediate,
                                     f"{signer.upper()} signature by the {want.upper()}")
                    self._check_link(intermediate, ark, f"{want.upper()} signature by the ARK")
                    self._check_link(ark, ark, "ARK self-signature")
                except ChainError as exc:
                    errors.append(exc.detail)
                    continue
                for cert, what in ((ark, "ARK"), (intermediate, want.upper()),
                                   (vek, signer.upper())):
                    cert.check_validity(now, what)
                return ark, intermediate
        raise ChainError("; ".join(dict.fromkeys(errors)))

    def _arks_for(self, intermediate: Cert, pool: _Pool) -> list[Cert]:
        """Every pinned ARK named as the issuer of ``intermediate``."""
        return [ark for ark in pool.by_role("ark")
                if ark.subject_cn == intermediate.issuer_cn and ark.sha256 in self._pinned]

    def _check_link(self, cert: Cert, issuer: Cert, what: str) -> None:
        key = (cert.sha256, issuer.sha256)
        ok = self._cache.link(key)
        if ok is None:
            ok = _pss_verifies(cert, issuer)
            self._cache.set_link(key, ok)
        if not ok:
            raise ChainError(f"{what} does not verify ({cert.subject_cn} ← {issuer.subject_cn})")

    # -- revocation --------------------------------------------------------------------------

    def _check_revocation(self, ark: Cert, intermediate: Cert, vek: Cert, *, pool: _Pool,
                          collateral: CollateralSource, signer: str, product: str,
                          now: datetime) -> str:
        crls = list(pool.crls)
        kds = KdsClient(collateral.cache, None)
        cached = collateral.cache.get(kds.crl_url(_KDS_NAMES[product], signer))
        if cached is not None:
            crls.extend(self._cache.blob(cached)[1])
        crls = [c for c in crls if c.issuer_cn == ark.subject_cn]
        if not crls:
            return "not_checked"
        for crl in crls:
            _check_crl(crl, ark, now)
            for cert, what in ((intermediate, intermediate.subject_cn), (vek, signer.upper())):
                serial = cert.serial
                if serial and crl.crl.get_revoked_certificate_by_serial_number(serial) is not None:
                    raise RevokedError(
                        f"{what} (serial {serial}) is revoked by the {ark.subject_cn} CRL")
        return "checked"


# -- pure helpers ------------------------------------------------------------------------------


def _signer(report: SnpReport) -> str:
    if report.signing_key == "none":
        raise SignatureError("the report is unsigned (SIGNER_INFO.SIGNING_KEY = 7, NONE)")
    if report.mask_chip_key:
        raise SignatureError("MASK_CHIP_KEY is set: the firmware did not sign this report")
    return report.signing_key


def _product_hint(report: SnpReport) -> str | None:
    if report.has_cpuid:
        product = product_from_cpuid(report.cpuid_fam_id, report.cpuid_mod_id)
        if product is not None:
            return product
    if chip_id_looks_turin(report.chip_id):
        return "turin"
    return None


def _product_from_vek(vek: Cert, info: VekInfo, pool: _Pool) -> str | None:
    name = (info.product_name or "").split("-", 1)[0].lower()
    if name in _KDS_NAMES:
        return name
    for role in ("ask", "asvk"):
        for cert in pool.by_role(role):
            if cert.subject_cn == vek.issuer_cn:
                return product_of_ca(cert)
    return None


def _pss_verifies(cert: Cert, issuer: Cert) -> bool:
    key = issuer.public_key
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    if cert.cert.signature_algorithm_oid != x509.SignatureAlgorithmOID.RSASSA_PSS:
        return False
    try:
        key.verify(cert.cert.signature, cert.cert.tbs_certificate_bytes, _PSS, hashes.SHA384())
    except InvalidSignature:
        return False
    return True


def _check_report_signature(report: SnpReport, vek: Cert) -> None:
    key = vek.public_key
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise ChainError(f"the {vek.subject_cn} key is not ECDSA P-384")
    r, s = report.signature_rs
    try:
        key.verify(encode_dss_signature(r, s), report.signed_bytes, ec.ECDSA(hashes.SHA384()))
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError(
            f"the report signature does not verify under the {vek.subject_cn} key "
            f"(sha256 {vek.sha256[:16]}…)"
        ) from exc


def _check_tcb(report: SnpReport, info: VekInfo, product: str, signer: str) -> None:
    reported = TcbVersion.decode(report.reported_tcb, turin=product == "turin")
    mine = reported.components()
    for name, certified in info.tcb().items():
        if certified is None:
            raise BindingError(f"the {signer.upper()} lacks the {name} SPL extension")
        if mine.get(name) != certified:
            raise BindingError(
                f"REPORTED_TCB.{name} is {mine.get(name)}, {signer.upper()} says {certified}"
            )
    if product == "turin" and info.fmc is None:
        raise BindingError(f"a Turin {signer.upper()} must carry the fmcSPL extension")
    for index, spl in enumerate(info.spl_4_7, start=4):
        if spl not in (None, 0):
            raise BindingError(f"{signer.upper()} spl_{index} is {spl}; reserved SPLs are 0")


def _check_hwid(report: SnpReport, info: VekInfo, signer: str, product: str) -> None:
    if signer == "vlek":
        if info.hwid is not None:
            raise ChainError("a VLEK must not carry a hwID extension")
        return
    if info.hwid is None:
        raise ChainError("the VCEK has no hwID extension")
    if not any(report.chip_id):
        return  # MASK_CHIP_ID: the host hid the chip id; the signature still binds the VCEK
    if product == "turin":
        if len(info.hwid) != 8 or report.chip_id[:8] != info.hwid or any(report.chip_id[8:]):
            raise BindingError(
                f"CHIP_ID is {report.chip_id.hex()}; a Turin VCEK for hwID {info.hwid.hex()} "
                "needs those 8 bytes followed by zeros"
            )
    elif report.chip_id != info.hwid:
        raise BindingError(f"CHIP_ID is {report.chip_id.hex()}, VCEK hwID is {info.hwid.hex()}")


def _check_crl(crl: Crl, ark: Cert, now: datetime) -> None:
    key = ark.public_key
    try:
        if not isinstance(key, rsa.RSAPublicKey):
            raise InvalidSignature
        key.verify(crl.crl.signature, crl.crl.tbs_certlist_bytes, _PSS, hashes.SHA384())
    except InvalidSignature as exc:
        raise ChainError(
            f"the CRL named for {ark.subject_cn} is not signed by the pinned ARK") from exc
    last, nxt = crl.crl.last_update_utc, crl.crl.next_update_utc
    if now < last or (nxt is not None and now > nxt):
        raise ExpiredError(
            f"the {ark.subject_cn} CRL is valid from {last.isoformat()} to "
            f"{nxt.isoformat() if nxt else 'unspecified'}; verification time is {now.isoformat()}"
        )
