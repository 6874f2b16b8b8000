"""Azure confidential VMs: a vTPM quote bound, through the HCL report, to an SEV-SNP report
(``az-snp-vtpm``) or a TD quote (``az-tdx-vtpm``).

The binding chain (se-pef-tpm-gpu.md §3.6; trustee's ``AzSnpVtpm``/``AzTdxVtpm``), checked in
this order so that a definite failure is found before any missing input (CONTRACT.md §1.1,
"rejected beats undecided"):

1. the evidence and the HCL report parse; the HCL report holds the machine's report type;
2. the TPM quote (a TPMS_ATTEST) verifies under HCLAkPub from the variable data, RSASSA with
   SHA-256 over the raw signature; its PCR selection is the 24 SHA-256 PCRs and its
   pcrDigest is SHA-256 of the PCR values given; its extraData is the expected report data
   when one is given (the ``tpm`` room's :func:`~veritee.tee.tpm.quote.check_quote`); when
   the operator names public keys as endorsements, HCLAkPub is one of them (CONTRACT.md
   §1.1; they are taken out of the collateral the hardware verifiers see);
3. v2 evidence: the variable data's ``user-data`` begins with the expected report data;
4. SHA-256(variable data) is the first 32 bytes of the SNP report's / TD quote's REPORT_DATA;
5. SNP: the report was made at VMPL 0 (by the HCL, not by the guest);
6. the hardware report is verified exactly as ``--tee snp`` / ``--tee tdx`` verify it, by
   their verifiers, with their report-data check off (the binding is step 4): the VCEK of
   the evidence rides in a certificate table behind the SNP report; the TD quote uses the
   caller's Intel collateral (none: undecided, everything else having held).

Errors carry the nested claims parsed before the failure (``tpm``, ``hcl``, ``snp``/``tdx``).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, ClassVar, Final, Self

from veritee.collateral import CollateralSource
from veritee.errors import (
    BindingError,
    MalformedEvidenceError,
    MisuseError,
    SignatureError,
    VeriteeError,
)
from veritee.evidence import Evidence
from veritee.memo import BoundedMemo
from veritee.tee.azure.claims import (
    AzSnpVtpmClaims,
    AzTdxVtpmClaims,
    VtpmQuote,
    ak_signer,
    hcl_claims,
)
from veritee.tee.azure.evidence import AzureEvidence, Machine, TpmQuote, parse_azure_evidence
from veritee.tee.azure.hcl import (
    HclReport,
    JwkKeys,
    VarData,
    parse_hcl_report,
    parse_var_data,
)
from veritee.tee.dcap.claims import TdxClaims, Verdict
from veritee.tee.dcap.claims import claims_dict as tdx_claims_dict
from veritee.tee.dcap.quote import parse_quote
from veritee.tee.dcap.roots import IntelRoot
from veritee.tee.dcap.verify import TdxVerifier
from veritee.tee.snp import certtable
from veritee.tee.snp.claims import SnpClaims
from veritee.tee.snp.claims import claims_dict as snp_claims_dict
from veritee.tee.snp.layout import SnpReport, parse_report, product_hint
from veritee.tee.snp.roots import AmdRoot
from veritee.tee.snp.verify import SnpVerifier
from veritee.tee.tpm.anchors import load_key
from veritee.tee.tpm.quote import Pcrs, check_quote_values
from veritee.tee.tpm.structures import Attest, PublicKey, build_signature
from veritee.x509 import same_key

AzureClaims = AzSnpVtpmClaims | AzTdxVtpmClaims

#: The HCL requests the SNP report at VMPL 0 (trustee ``HCL_VMPL_VALUE``).
HCL_VMPL: Final = 0
PCR_BANK: Final = "sha256"
BOUND_SIZE: Final = 32
"""REPORT_DATA[0:32] holds SHA-256(variable data)."""


class _AzureVerifier:
    """The steps both machines share; subclasses add the hardware report."""

    tee: ClassVar[str]
    machine: ClassVar[Machine]

    def __init__(self) -> None:
        #: HCLAkPub/HCLEkPub read before, by their exact JWK text (a VM's keys repeat).
        self._jwk_keys = JwkKeys()

    def verify(self, evidence: Evidence, *, report_data: bytes | None,
               collateral: CollateralSource, now: datetime) -> AzureClaims:
        """Verify ``evidence`` and return its claims.

        Raises:
            MalformedEvidenceError, UnsupportedVersionError, UnrecognizedEvidenceError: the
                evidence does not parse, or is not this machine's.
            SignatureError, BindingError: the quote is not the AK's, or a binding fails.
            ChainError, UntrustedRootError, ExpiredError, RevokedError: as ``--tee snp`` /
                ``--tee tdx`` raise them for the hardware report.
            CollateralMissingError: no Intel collateral (TDX), every other check having held.
            MisuseError: ``now`` has no time zone.
        """
        if now.utcoffset() is None:
            raise MisuseError(f"verification time {now.isoformat()} has no time zone")
        wire = parse_azure_evidence(evidence, machine=self.machine)
        partial: dict[str, Any] = {"evidence_form": wire.form}
        try:
            return self._verify(wire, partial, report_data=report_data,
                                collateral=collateral, now=now)
        except VeriteeError as exc:
            exc.claims = _nest(partial, self.machine, exc.claims)
            raise

    def _verify(self, wire: AzureEvidence, partial: dict[str, Any], *,
                report_data: bytes | None, collateral: CollateralSource,
                now: datetime) -> AzureClaims:
        report = parse_hcl_report(wire.hcl_report)
        try:
            if report.report_type != self.machine:
                raise MalformedEvidenceError(
                    f"the HCL report holds a {report.report_type.upper()} report "
                    f"(IgvmRequestData.report_type {report.report_type_code}); {self.tee} "
                    f"evidence needs a {self.machine.upper()} one")
            var = parse_var_data(report.var_data, self._jwk_keys)
        except VeriteeError:
            partial["hcl"] = hcl_claims(report, None)  # the report without its variable data
            raise
        partial["hcl"] = hcl_claims(report, var)
        trusted, collateral = _trusted_keys(collateral)
        attest, pcrs = _check_tpm_quote(wire.tpm_quote, var, report_data)
        partial["tpm"] = VtpmQuote(attest, pcrs, ak_signer(var))  # a dict for errors: _nest
        _check_trusted_ak(var, trusted)
        _check_user_data(wire.version, var, report_data)
        return self._hardware(wire, report, partial, collateral, now)

    def _hardware(self, wire: AzureEvidence, report: HclReport, partial: dict[str, Any],
                  collateral: CollateralSource, now: datetime) -> AzureClaims:
        raise NotImplementedError


class AzSnpVtpmVerifier(_AzureVerifier):
    """``az-snp-vtpm``: trusts the pinned AMD roots (or ``roots``), as :class:`SnpVerifier`."""

    tee: ClassVar[str] = "az-snp-vtpm"
    machine: ClassVar[Machine] = "snp"

    def __init__(self, roots: Sequence[AmdRoot] | None = None, *,
                 snp: SnpVerifier | None = None) -> None:
        super().__init__()
        self._snp = snp or SnpVerifier(roots)
        #: The certificate table carrying a VCEK, by the VCEK's exact bytes (one per chip
        #: and TCB: it repeats across the guests of a host); bounded.
        self._tables: BoundedMemo[bytes] = BoundedMemo(64)

    @property
    def roots(self) -> tuple[AmdRoot, ...]:
        return self._snp.roots

    def with_roots(self, roots: Sequence[Any]) -> Self:
        """A verifier trusting the AMD roots among ``roots`` beside these (the vTPM's AK
        needs no root: the SNP report binds it)."""
        return type(self)(snp=self._snp.with_roots([r for r in roots if isinstance(r, AmdRoot)]))

    def _hardware(self, wire: AzureEvidence, report: HclReport, partial: dict[str, Any],
                  collateral: CollateralSource, now: datetime) -> AzSnpVtpmClaims:
        snp = parse_report(report.hw_report)
        try:
            _check_bound(report, snp.report_data, "the SNP report's REPORT_DATA")
            _check_vmpl(snp)
            verified: SnpClaims = self._snp.verify(
                Evidence(data=report.hw_report + self._vcek_table(wire.vcek), form="raw"),
                report_data=None, collateral=collateral, now=now)
        except VeriteeError:
            # what the report says, for the error only (the SNP verifier's own claims, when
            # it attached any, take their place in _nest)
            partial["snp"] = snp_claims_dict(snp, product_hint(snp), snp.signing_key)
            raise
        return AzSnpVtpmClaims(tpm=partial["tpm"], hcl=partial["hcl"],
                               evidence_form=wire.form, snp=verified)

    def _vcek_table(self, vcek: bytes | None) -> bytes:
        """The certificate table (GHCB §4.1.8.1) holding the evidence's VCEK, as the SNP
        verifier reads it: a pure function of the VCEK's bytes, kept by them."""
        key = vcek or b""
        return self._tables.get(key, lambda: certtable.vcek_table(key))


class AzTdxVtpmVerifier(_AzureVerifier):
    """``az-tdx-vtpm``: trusts the pinned Intel root (or ``roots``), as :class:`TdxVerifier`."""

    tee: ClassVar[str] = "az-tdx-vtpm"
    machine: ClassVar[Machine] = "tdx"

    def __init__(self, roots: Sequence[IntelRoot] | None = None, *,
                 tdx: TdxVerifier | None = None) -> None:
        super().__init__()
        self._tdx = tdx or TdxVerifier(roots)

    @property
    def roots(self) -> tuple[IntelRoot, ...]:
        return self._tdx.roots

    def with_roots(self, roots: Sequence[Any]) -> Self:
        """A verifier trusting the Intel roots among ``roots`` beside these."""
        return type(self)(tdx=self._tdx.with_roots(
            [r for r in roots if isinstance(r, IntelRoot)]))

    def with_collateral_grace(self, grace: timedelta) -> Self:
        """A verifier accepting Intel collateral up to ``grace`` past its nextUpdate."""
        return type(self)(tdx=self._tdx.with_collateral_grace(grace))

    def _hardware(self, wire: AzureEvidence, report: HclReport, partial: dict[str, Any],
                  collateral: CollateralSource, now: datetime) -> AzTdxVtpmClaims:
        assert wire.td_quote is not None  # parse_azure_evidence requires it for TDX
        quote = parse_quote(wire.td_quote)
        partial["tdx"] = tdx_claims_dict(quote, None, Verdict())
        _check_bound(report, quote.report_data, "the TD quote's REPORTDATA")
        verified = self._tdx.verify(Evidence(data=wire.td_quote, form="raw"),
                                    report_data=None, collateral=collateral, now=now)
        assert isinstance(verified, TdxClaims)
        return AzTdxVtpmClaims(tpm=partial["tpm"], hcl=partial["hcl"],
                               evidence_form=wire.form, tdx=verified)


# -- the checks ----------------------------------------------------------------------------------


def _check_tpm_quote(quote: TpmQuote, var: VarData,
                     report_data: bytes | None) -> tuple[Attest, Pcrs]:
    """Step 2: the AK signed the quote, over the 24 SHA-256 PCRs given, for ``report_data``.
    Returns the quote and the PCR values it covers."""
    attest, pcrs = check_quote_values(
        quote.message, build_signature("rsassa", "sha256", quote.signature), var.ak_public,
        pcrs={PCR_BANK: dict(enumerate(quote.pcrs))}, nonce=report_data)
    selected = {bank: sorted(indices) for bank, indices in _selection(attest).items()}
    if selected != {PCR_BANK: list(range(len(quote.pcrs)))}:
        raise BindingError(
            f"the TPM quote selects PCRs {selected}; the evidence gives the "
            f"{len(quote.pcrs)} {PCR_BANK} PCRs 0-{len(quote.pcrs) - 1}")
    return attest, pcrs


def _selection(attest: Attest) -> dict[str, list[int]]:
    return {selection.bank: list(selection.indices) for selection in attest.pcr_select}


def _trusted_keys(collateral: CollateralSource) -> tuple[list[PublicKey], CollateralSource]:
    """The public keys among the operator's endorsement files (trusted AKs, in any form the
    ``tpm`` room reads), and the source without them (the hardware verifiers read
    certificates, not keys)."""
    keys: list[PublicKey] = []
    rest = []
    for item in collateral.files:
        key = load_key(item.data) if item.origin == "endorsement" else None
        if key is None:
            rest.append(item)
        else:
            keys.append(key)
    if not keys:
        return keys, collateral
    return keys, replace(collateral, files=tuple(rest))


def _check_trusted_ak(var: VarData, trusted: Sequence[PublicKey]) -> None:
    """CONTRACT.md §1.1: when the operator names trusted keys, the AK must be one of them."""
    if trusted and not any(same_key(key, var.ak_public) for key in trusted):
        raise SignatureError(
            f"the quote's AK (HCLAkPub, SPKI SHA-256 {ak_signer(var).hex()}) is none of the "
            f"{len(trusted)} trusted keys given as endorsements")


def _check_user_data(version: int, var: VarData, report_data: bytes | None) -> None:
    """Step 3 (evidence v2): the attester wrote the report data into ``user-data``."""
    if version < 2:
        return
    if var.user_data is None:
        raise MalformedEvidenceError(
            "version 2 evidence: the HCL variable data has no user-data")
    if report_data is not None and not hmac.compare_digest(
            var.user_data[:len(report_data)], report_data):
        raise BindingError(
            f"the HCL variable data's user-data is {var.user_data.hex()}; it must begin with "
            f"the expected report data {report_data.hex()}")


def _check_bound(report: HclReport, hardware_report_data: bytes, what: str) -> None:
    """Step 4: the hardware report carries H(variable data)."""
    digest = report.var_data_sha256
    if not hmac.compare_digest(hardware_report_data[:BOUND_SIZE], digest):
        raise BindingError(
            f"{what}[0:32] is {hardware_report_data[:BOUND_SIZE].hex()}, but SHA-256 of the "
            f"HCL variable data is {digest.hex()}: the vTPM key is not bound to the hardware "
            "report")


def _check_vmpl(report: SnpReport) -> None:
    """Step 5: only a report the HCL requested (VMPL 0) vouches for its variable data."""
    if report.vmpl != HCL_VMPL:
        raise BindingError(
            f"the SNP report's VMPL is {report.vmpl}, expected {HCL_VMPL}: the HCL requests "
            "its report at VMPL 0, so this report was not made by the HCL")


def _nest(partial: Mapping[str, Any], machine: Machine,
          inner: Mapping[str, Any] | None) -> dict[str, Any]:
    """The claims an error carries: ours, with the hardware verifier's (flat) claims under
    ``snp``/``tdx`` when it attached any."""
    out = dict(partial)
    if inner is not None and machine not in inner:
        out[machine] = dict(inner)
    tpm = out.get("tpm")
    if isinstance(tpm, VtpmQuote):
        out["tpm"] = tpm = tpm.to_dict()
    if isinstance(tpm, Mapping):
        out["report_data"] = tpm.get("extra_data", "")
    return out


__all__ = ["AzSnpVtpmVerifier", "AzTdxVtpmVerifier"]
