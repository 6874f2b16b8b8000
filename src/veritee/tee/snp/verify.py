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
7. binding: REPORTED_TCB equals the certificate's TCB in all 8 bytes (every component, and
   the reserved bytes zero as the certificate's reserved SPLs are; go-sev-guest compares the
   whole TCB_VERSION); hwID equals CHIP_ID (Turin: the first 8 bytes, and the rest zero);
8. the expected REPORT_DATA, when given;
9. revocation (see below).

Revocation. The CRLs considered are those shipped with the evidence or given by the operator
("supplied"), and AMD's CRL for the product and signer (``/{vcek,vlek}/v1/{product}/crl``,
:func:`kds.crl`): online from the collateral cache or KDS (refreshed daily, and as soon as
the cached one's nextUpdate has passed), offline from the cache alone. Of those naming the
chain's ARK as issuer:

* each must be signed by the ARK, else ChainError (never skipped);
* a revocation one lists (the ASK/ASVK serial; VCEKs and VLEKs have serial 0 and are never
  listed) with a revocation date at or before ``now`` is RevokedError, even when that CRL is
  out of date: a revocation is not undone by age;
* at least one current at ``now`` (thisUpdate ≤ now ≤ nextUpdate): ``revocation`` is
  ``checked``;
* none current: ExpiredError when an out-of-date CRL was supplied, or offline (the cache is
  then the operator's, filled by ``veritee collateral fetch``); online, when only AMD's CRL
  is out of date and no refresh helped, or when AMD's CRL cannot be obtained at all (KDS
  down, 404), ``not_checked``: the policy decides (the default one requires a check only
  when the broker says so).

Pure: no network except through the injected :class:`CollateralSource`, no clock but ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final, Self

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee import x509 as chains
from veritee.collateral import CollateralSource
from veritee.errors import (
    BindingError,
    ChainError,
    CollateralMissingError,
    CollateralUnavailableError,
    ExpiredError,
    MalformedEvidenceError,
    MisuseError,
    RevokedError,
    SignatureError,
    VeriteeError,
)
from veritee.evidence import Evidence
from veritee.tee.snp import kds
from veritee.tee.snp.certs import VekInfo, product_of_ca, role_of, vek_info
from veritee.tee.snp.certtable import CertEntry
from veritee.tee.snp.claims import SnpClaims, claims_dict
from veritee.tee.snp.evidence import SnpEvidence, parse_snp_evidence
from veritee.tee.snp.layout import SnpReport, TcbVersion, product_hint
from veritee.tee.snp.roots import AmdRoot, amd_roots
from veritee.x509 import Cert, CertCache, CertPool, Crl

REPORT_DATA_SIZE: Final = 64
_PSS: Final = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
#: The roles a certificate-table entry of each kind may hold (the ASK GUID also carries the
#: ASVK, GHCB 56421 §4.1.8.1).
_ENTRY_ROLES: Final = {"vcek": ("vcek",), "vlek": ("vlek",), "ask": ("ask", "asvk"),
                       "ark": ("ark",)}


class SnpVerifier:
    """Verifies SEV-SNP reports. One instance can serve many threads."""

    tee = "snp"

    def __init__(self, roots: Sequence[AmdRoot] | None = None, *,
                 cache: CertCache | None = None) -> None:
        self._roots: tuple[AmdRoot, ...] = tuple(roots) if roots is not None else amd_roots()
        self._cache = cache or CertCache()
        self._pinned = {fp: root for root in self._roots for fp in root.fingerprints}
        self._root_blobs = tuple(dict.fromkeys(r.pem for r in self._roots if r.pem))
        self._base: CertPool | None = None
        self._vek_infos: dict[str, VekInfo] = {}
        self._crl_links: dict[tuple[bytes, str], bool] = {}

    @property
    def roots(self) -> tuple[AmdRoot, ...]:
        return self._roots

    def with_roots(self, roots: Sequence[AmdRoot]) -> Self:
        """A verifier trusting ``roots`` (for instance emulated ones) beside these."""
        return type(self)((*self._roots, *roots))

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
        product = product_hint(report)
        try:
            return self._verify(snp, product, report_data, collateral, now)
        except VeriteeError as exc:
            exc.with_claims(claims_dict(report, product, report.signing_key))
            raise

    def _verify(self, snp: SnpEvidence, product: str | None, report_data: bytes | None,
                collateral: CollateralSource, now: datetime) -> SnpClaims:
        report = snp.report
        hint = product  # what the report itself says (CPUID fields), before the chain decides
        signer = _signer(report)
        pool = self._pool(snp, collateral)
        vek = self._find_vek(report, signer, product, pool, collateral)
        info = self._vek_info(vek)
        product = product or _product_from_vek(vek, info, pool)
        ark, intermediate = self._chain(vek, signer, product, pool, now)
        root = self._pinned[ark.sha256]
        if hint is not None and hint != root.product:
            raise BindingError(
                f"the report identifies a {hint} CPU but its {signer.upper()} chains to "
                f"{ark.subject_cn}"
            )
        product = root.product
        _check_report_signature(report, vek)
        _check_tcb(report, info, product, signer)
        _check_hwid(report, info, signer, product)
        if report_data is not None and report.report_data != report_data:
            raise BindingError(
                f"REPORT_DATA is {report.report_data.hex()}, expected {report_data.hex()}"
            )
        revocation = self._check_revocation(ark, intermediate, vek, pool=pool,
                                            collateral=collateral, signer=signer,
                                            product=product, now=now)
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

    def _pool(self, snp: SnpEvidence, collateral: CollateralSource) -> CertPool:
        """The pinned roots (indexed once) plus the evidence's and the operator's certificates;
        any ARK among the latter must be pinned."""
        pool = self._base_pool().copy()
        for entry in snp.certs:
            if entry.kind in _ENTRY_ROLES:
                self._add_entry(pool, entry)
            elif entry.kind == "crl":
                pool.crls.extend(self._cache.blob(entry.data)[1])
        for item in collateral.files:
            found, crls = self._cache.blob(item.data)
            if item.named and not found and not crls:
                raise MisuseError(f"{item.origin} file {item.name} holds no certificate or "
                                  "CRL that veritee can read (PEM, DER or base64 DER)")
            self._add_certs(pool, found, f"{item.origin} {item.name}")
            pool.crls.extend(crls)
        return pool

    def _add_entry(self, pool: CertPool, entry: CertEntry) -> None:
        """A certificate of the evidence's table: it must parse and hold the role its GUID
        names (a VCEK entry holding a certificate named SEV-VLEK is refused)."""
        found = self._cache.blob(entry.data)[0]
        cert = found[0] if found else None
        if cert is None:
            raise MalformedEvidenceError(
                f"the evidence's {entry.kind.upper()} entry ({len(entry.data)} bytes) is not a "
                "certificate")
        if role_of(cert) not in _ENTRY_ROLES[entry.kind]:
            raise ChainError(f"the evidence's {entry.kind.upper()} entry holds a certificate "
                             f"named {cert.subject_cn!r}, which is not a {entry.kind.upper()}")
        self._add_certs(pool, (cert,), "evidence")

    def _base_pool(self) -> CertPool:
        base = self._base
        if base is None:
            base = CertPool(role_of)
            for blob in self._root_blobs:
                base.extend(*self._cache.blob(blob))
            self._base = base
        return base

    def _emulated_hint(self) -> str:
        if any(r.emulated for r in self._roots):
            return ""
        return " (emulated roots are trusted only when the operator enables them)"

    def _add_certs(self, pool: CertPool, found: Sequence[Cert], source: str) -> None:
        for cert in found:
            if role_of(cert) == "ark":
                chains.require_pinned(cert, self._pinned, what=source, vendor="AMD",
                                      hint=self._emulated_hint())
            pool.add(cert)

    def _vek_info(self, cert: Cert) -> VekInfo:
        """AMD's extensions of a VCEK/VLEK, parsed once per certificate."""
        info = self._vek_infos.get(cert.sha256)
        if info is None:
            info = vek_info(cert)
            if len(self._vek_infos) >= 4096:
                self._vek_infos.clear()
            self._vek_infos[cert.sha256] = info
        return info

    def _find_vek(self, report: SnpReport, signer: str, product: str | None, pool: CertPool,
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
        misses: list[str] = []
        for name in [product] if product else ["milan", "genoa"]:
            try:
                der = collateral.get(kds.report_vcek_url(report, name), "VCEK",
                                     service=kds.SERVICE)
            except CollateralMissingError as exc:
                misses.append(exc.detail)
                continue
            cert = self._cache.cert(der)
            if cert is None:
                raise ChainError(f"AMD KDS returned a VCEK that does not parse ({len(der)} bytes)")
            return cert
        raise CollateralMissingError("no VCEK found: " + "; ".join(misses))

    def _chain(self, vek: Cert, signer: str, product: str | None, pool: CertPool,
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
                    chains.check_link(self._cache, vek, intermediate,
                                     f"{signer.upper()} signature by the {want.upper()}",
                                     _pss_signed)
                    chains.check_link(self._cache, intermediate, ark,
                                     f"{want.upper()} signature by the ARK", _pss_signed)
                    chains.check_link(self._cache, ark, ark, "ARK self-signature", _pss_signed)
                except ChainError as exc:
                    errors.append(exc.detail)
                    continue
                for cert, what in ((ark, "ARK"), (intermediate, want.upper()),
                                   (vek, signer.upper())):
                    cert.check_validity(now, what)
                return ark, intermediate
        raise ChainError("; ".join(dict.fromkeys(errors)))

    def _arks_for(self, intermediate: Cert, pool: CertPool) -> list[Cert]:
        """Every pinned ARK named as the issuer of ``intermediate``."""
        return [ark for ark in pool.by_role("ark")
                if ark.subject_cn == intermediate.issuer_cn and ark.sha256 in self._pinned]

    # -- revocation --------------------------------------------------------------------------

    def _check_revocation(self, ark: Cert, intermediate: Cert, vek: Cert, *, pool: CertPool,
                          collateral: CollateralSource, signer: str, product: str,
                          now: datetime) -> str:
        """``checked`` or ``not_checked``; the rules are in the module docstring."""
        supplied = [c for c in pool.crls if c.issuer_cn == ark.subject_cn]
        vendor = [c for c in self._vendor_crls(ark, collateral, product, signer, now)
                  if c.issuer_cn == ark.subject_cn]
        chain = ((intermediate, intermediate.subject_cn), (vek, signer.upper()))
        for crl in (*supplied, *vendor):
            if not self._crl_signed(crl, ark):
                raise ChainError(f"a CRL naming {ark.subject_cn} as its issuer is not signed "
                                 f"by {ark.subject_cn}'s key")
            _check_not_listed(crl, chain, now)
        if any(_current(crl, now) for crl in (*supplied, *vendor)):
            return "checked"
        if supplied or (vendor and collateral.offline):
            raise ExpiredError(_out_of_date((*supplied, *vendor), ark, now))
        return "not_checked"

    def _vendor_crls(self, ark: Cert, collateral: CollateralSource, product: str,
                     signer: str, now: datetime) -> tuple[Crl, ...]:
        """AMD's CRL for ``product`` and ``signer``: cached or fetched (online, refreshed when
        out of date), cached (offline); none when it cannot be obtained."""
        if collateral.offline:  # the cached CRL, however old (what kds.crl gives offline)
            blob: bytes | None = collateral.cached(kds.crl_url(product, signer))
            return self._cache.blob(blob)[1] if blob else ()
        try:
            blob = kds.crl(collateral, product, signer,
                           out_of_date=lambda cached: not self._usable_crl(cached, ark, now))
        except (CollateralMissingError, CollateralUnavailableError):
            blob = collateral.cached(kds.crl_url(product, signer))  # a refresh failed
        return self._cache.blob(blob)[1] if blob else ()

    def _usable_crl(self, blob: bytes, ark: Cert, now: datetime) -> bool:
        """Whether ``blob`` holds a CRL signed by ``ark`` and current at ``now``."""
        return any(crl.issuer_cn == ark.subject_cn and _current(crl, now)
                   and self._crl_signed(crl, ark) for crl in self._cache.blob(blob)[1])

    def _crl_signed(self, crl: Crl, ark: Cert) -> bool:
        """Whether ``ark`` signed ``crl`` (AMD's profile: RSASSA-PSS SHA-384), remembered so
        that a cached CRL costs one RSA verification per verifier."""
        key = (crl.der, ark.sha256)
        signed = self._crl_links.get(key)
        if signed is None:
            signed = _pss_signed_crl(crl, ark)
            if len(self._crl_links) >= 256:
                self._crl_links.clear()
            self._crl_links[key] = signed
        return signed


# -- pure helpers ------------------------------------------------------------------------------


def _signer(report: SnpReport) -> str:
    if report.signing_key == "none":
        raise SignatureError("the report is unsigned (SIGNER_INFO.SIGNING_KEY = 7, NONE)")
    if report.mask_chip_key:
        raise SignatureError("MASK_CHIP_KEY is set: the firmware did not sign this report")
    return report.signing_key


def _product_from_vek(vek: Cert, info: VekInfo, pool: CertPool) -> str | None:
    name = (info.product_name or "").split("-", 1)[0].lower()
    if name in kds.PRODUCTS:
        return name
    for role in ("ask", "asvk"):
        for cert in pool.by_role(role):
            if cert.subject_cn == vek.issuer_cn:
                return product_of_ca(cert)
    return None


def _pss_signed(cert: Cert, issuer: Cert) -> bool:
    """AMD's profile: every link is RSASSA-PSS with SHA-384 and a 48-byte salt (57230)."""
    if cert.cert.signature_algorithm_oid != x509.SignatureAlgorithmOID.RSASSA_PSS:
        return False
    return chains.signature_verifies(cert.tbs, cert.signature, issuer.public_key,
                                    rsa_padding=_PSS, algorithm=hashes.SHA384())


def _current(crl: Crl, now: datetime) -> bool:
    """thisUpdate ≤ ``now`` ≤ nextUpdate (RFC 5280 §5.1.2.4–5; no nextUpdate: no end)."""
    last, nxt = crl.crl.last_update_utc, crl.crl.next_update_utc
    return last <= now and (nxt is None or now <= nxt)


def _out_of_date(crls: Sequence[Crl], ark: Cert, now: datetime) -> str:
    spans = ", ".join(
        f"{c.crl.last_update_utc.isoformat()} to "
        f"{c.crl.next_update_utc.isoformat() if c.crl.next_update_utc else 'unspecified'}"
        for c in crls)
    return (f"no {ark.subject_cn} CRL is current at {now.isoformat()}: the CRLs available "
            f"are valid from {spans}")


def _check_not_listed(crl: Crl, chain: Sequence[tuple[Cert, str]], now: datetime) -> None:
    """RevokedError when ``crl`` lists a certificate of ``chain`` as revoked at ``now``.
    VCEKs and VLEKs have serial 0: AMD's CRLs list ASKs and ASVKs."""
    for cert, what in chain:
        if not cert.serial:
            continue
        entry = crl.crl.get_revoked_certificate_by_serial_number(cert.serial)
        if entry is not None and entry.revocation_date_utc <= now:
            raise RevokedError(
                f"{what} (serial {cert.serial}) is revoked since "
                f"{entry.revocation_date_utc.isoformat()} by the {crl.issuer_cn} CRL")


def _pss_signed_crl(crl: Crl, ark: Cert) -> bool:
    return chains.signature_verifies(crl.crl.tbs_certlist_bytes, crl.crl.signature,
                                    ark.public_key, rsa_padding=_PSS, algorithm=hashes.SHA384())


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
    _check_reserved_tcb(reported, product, signer)


def _check_reserved_tcb(reported: TcbVersion, product: str, signer: str) -> None:
    """REPORTED_TCB's reserved bytes (Milan/Genoa 2–5, Turin 4–6) are zero, as in the
    certificate's TCB (its reserved SPLs are 0): go-sev-guest compares all 8 bytes.

    A BindingError, not malformed evidence: which bytes are reserved depends on the product
    line, which a v2 report does not name, so the layout cannot tell; against the
    certificate it is a mismatch. CURRENT_TCB, COMMITTED_TCB and LAUNCH_TCB are not held to
    this: neither go-sev-guest nor the ABI notes we follow require it, and no certificate
    binds them.
    """
    if any(reported.reserved):
        where = "4–6" if product == "turin" else "2–5"
        zero = bytes(len(reported.reserved)).hex()
        raise BindingError(
            f"REPORTED_TCB is {reported.raw.hex()}: its reserved bytes {where} are "
            f"{reported.reserved.hex()}, {signer.upper()} says {zero}"
        )


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
