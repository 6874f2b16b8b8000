"""SVSM vTPM on SEV-SNP (``snp-svsm-vtpm``): a quote from a vTPM that runs in the guest's
SVSM at VMPL 0, whose EK the SNP report vouches for, from an AK proven to live in that vTPM.

Steps (se-pef-tpm-gpu.md §3.5; AMD 58019 §7, §8.3), in an order that finds every definite
failure before any missing input (CONTRACT.md §1.1, "rejected beats undecided"):

1. the evidence parses (:mod:`.evidence`); so does the SNP report inside;
2. the report was made at VMPL 0 (by the SVSM, not by the guest OS at VMPL 1–3);
3. the nonce: the 64-byte SVSM nonce *is* the ``report_data`` the caller expects (the
   broker's runtime-data digest zero-padded to 64 bytes, the ``snp`` rule); evidence that
   names its nonce must name that one; without ``report_data`` the evidence's nonce is used
   (reported, ``nonce_source: evidence``);
4. ``REPORT_DATA == SHA-512(nonce ‖ manifest)`` (:mod:`.manifest`);
5. the manifest (version 0) is the EK's TPMT_PUBLIC; it must be an RSA storage key fixed to
   its TPM (:mod:`.keys`); the AK a restricted signing key fixed to its TPM;
6. every quote verifies under the AK (the ``tpm`` room's
   :func:`~veritee.tee.tpm.quote.check_quote`: signature and scheme, magic and type,
   pcrDigest over the PCR values given, ``extraData == SHA-256(nonce)``; go-tpm-tools'
   protobuf: one extraData of its own shared by all quotes, reported);
7. the activation: the credential the guest's vTPM returned is the one the broker made for
   the challenge nonce, *this* EK (from the manifest) and *this* AK
   (:func:`.credential.check_activation`) — a valid quote from any other AK is refused here;
8. the SNP report is verified exactly as ``--tee snp`` does (:class:`SnpVerifier`, its own
   report-data check off: the binding is step 4);
9. undecided unless steps 3 and 7 could run: no nonce at all, no activation in the evidence,
   or no credential key (``credential_key=None``) → CollateralMissingError "the AK is not
   proven to live in the vTPM". Only then does the quote count.

Errors carry the nested claims parsed before the failure (``snp``, ``tpm``, ``svsm``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Final, Self

from veritee.collateral import CollateralSource
from veritee.errors import (
    BindingError,
    CollateralMissingError,
    MalformedEvidenceError,
    MisuseError,
    VeriteeError,
)
from veritee.evidence import Evidence
from veritee.tee.snp.claims import SnpClaims
from veritee.tee.snp.claims import claims_dict as snp_claims_dict
from veritee.tee.snp.evidence import parse_snp_evidence
from veritee.tee.snp.layout import SnpReport, product_hint
from veritee.tee.snp.roots import AmdRoot
from veritee.tee.snp.verify import SnpVerifier
from veritee.tee.svsm import credential, keys, manifest
from veritee.tee.svsm.claims import SvsmVtpmClaims
from veritee.tee.svsm.evidence import SvsmEvidence, parse_svsm_evidence
from veritee.tee.tpm.claims import quote_claims, signer_of
from veritee.tee.tpm.quote import Pcrs, check_quote
from veritee.tee.tpm.structures import HASH_SIZES, Attest, TpmPublic, parse_attest

#: The SVSM requests its report at VMPL 0 (coconut-svsm ``get_attestation_report``).
SVSM_VMPL: Final = 0
NOT_PROVEN: Final = "the AK is not proven to live in the vTPM"


def quote_nonce(nonce: bytes) -> bytes:
    """The quote's ``extraData`` for an SVSM nonce: SHA-256 of its 64 bytes (a TPM2B_DATA
    holds one digest of the TPM's largest hash at most; 32 bytes fit every TPM)."""
    return hashlib.sha256(nonce).digest()


@dataclass(frozen=True, slots=True)
class CredentialKey:
    """The key *K* of the activation challenge, as a trust anchor: what
    :meth:`SvsmVtpmVerifier.with_roots` takes beside AMD roots (the emulated one comes with
    :func:`veritee.testing.svsm.emulated_roots`; a broker passes its own)."""

    key: bytes = field(repr=False)
    emulated: bool = False


class SvsmVtpmVerifier:
    """``snp-svsm-vtpm``. Trusts the pinned AMD roots (or ``roots``) as :class:`SnpVerifier`;
    ``credential_key`` is the broker's key *K* of the activation challenge (None: the
    activation cannot be checked and the verdict is at best undecided)."""

    tee: ClassVar[str] = "snp-svsm-vtpm"

    def __init__(self, roots: Sequence[AmdRoot] | None = None, *,
                 credential_key: bytes | Sequence[bytes] | None = None,
                 snp: SnpVerifier | None = None) -> None:
        given = ([] if credential_key is None else [credential_key]
                 if isinstance(credential_key, bytes | bytearray) else list(credential_key))
        for key in given:
            if len(key) < 16:
                raise MisuseError(f"a credential key is {len(key)} bytes; use at least 16 "
                                  "(32 random bytes recommended)")
        self._snp = snp or SnpVerifier(roots)
        #: Every key an activation may have been made with (several while a key rotates).
        self._keys: tuple[bytes, ...] = tuple(dict.fromkeys(bytes(k) for k in given))
        #: Those of them that are emulated (public test keys): an activation checked with
        #: one makes the result ``emulated``.
        self._emulated: frozenset[bytes] = frozenset()

    @property
    def roots(self) -> tuple[AmdRoot, ...]:
        return self._snp.roots

    def with_roots(self, roots: Sequence[Any]) -> Self:
        """A verifier trusting the AMD roots among ``roots`` beside these, and the
        :class:`CredentialKey` among them beside this one's keys. The AK needs no root: the
        SNP report and the activation bind it."""
        added = [r for r in roots if isinstance(r, CredentialKey)]
        out = type(self)(snp=self._snp.with_roots([r for r in roots if isinstance(r, AmdRoot)]),
                         credential_key=[*self._keys, *(r.key for r in added)])
        out._emulated = self._emulated | {r.key for r in added if r.emulated}
        return out

    def with_credential_key(self, key: bytes | Sequence[bytes] | None) -> Self:
        """The same verifier checking activations made with ``key`` (or any of the keys)
        instead of this one's."""
        return type(self)(snp=self._snp, credential_key=key)

    def with_challenge_key(self, key: bytes) -> Self:
        """The broker's hook (a platform with a ``challenge`` slot): this verifier also
        checking activations made with ``key``, the key the broker's challenges use."""
        out = type(self)(snp=self._snp, credential_key=[*self._keys, key])
        out._emulated = self._emulated
        return out

    def verify(self, evidence: Evidence, *, report_data: bytes | None,
               collateral: CollateralSource, now: datetime) -> SvsmVtpmClaims:
        """Verify ``evidence`` and return its claims.

        Raises:
            MalformedEvidenceError, UnsupportedVersionError, UnrecognizedEvidenceError: the
                evidence, the report, the manifest or a TPM structure does not parse.
            BindingError: VMPL is not 0, REPORT_DATA does not bind the nonce and manifest,
                the nonce is not ``report_data``, the AK is no restricted key fixed to its
                TPM, the quote's PCRs or nonce differ, or the activation fails.
            SignatureError: the quote is not the AK's.
            ChainError, UntrustedRootError, ExpiredError, RevokedError: as ``--tee snp``.
            CollateralMissingError: no VCEK, no nonce, no activation or no credential key,
                every definite check having held.
            MisuseError: ``report_data`` is not 64 bytes, or ``now`` has no time zone.
        """
        if now.utcoffset() is None:
            raise MisuseError(f"verification time {now.isoformat()} has no time zone")
        if report_data is not None and len(report_data) != manifest.NONCE_SIZE:
            raise MisuseError(
                f"expected report data is {len(report_data)} bytes; the SVSM nonce is "
                f"{manifest.NONCE_SIZE} (pad or hash it explicitly)")
        wire = parse_svsm_evidence(evidence)
        partial: dict[str, Any] = {"evidence_form": wire.form,
                                   "svsm": {"manifest_version": wire.manifest_version}}
        try:
            return self._verify(wire, partial, report_data, collateral, now)
        except VeriteeError as exc:
            exc.claims = _nest(partial, exc.claims)
            raise

    def _verify(self, wire: SvsmEvidence, partial: dict[str, Any], report_data: bytes | None,
                collateral: CollateralSource, now: datetime) -> SvsmVtpmClaims:
        report = parse_snp_evidence(wire.snp).report
        partial["snp"] = snp_claims_dict(report, product_hint(report), report.signing_key)
        svsm: dict[str, Any] = partial["svsm"]
        _check_vmpl(report)
        nonce = _nonce(wire.nonce, report_data, svsm)
        if nonce is not None:
            manifest.check_report_data(report.report_data, nonce=nonce, manifest=wire.manifest)
        ek = keys.parse_ek(manifest.vtpm_ek_public(wire.manifest, wire.manifest_version))
        svsm.update(ek_public=ek.raw.hex(), ek_name=ek.name.hex())
        ak = keys.parse_ak(wire.ak_public)
        svsm.update(ak_public=ak.raw.hex(), ak_name=ak.name.hex())
        checked = _check_quotes(wire, ak, nonce)
        partial["tpm"] = quote_claims(checked, signer=signer_of(ak.key), eventlog_pcrs=None)
        svsm["quote_nonce"] = "bound" if wire.quote_nonce_bound else "not_bound"
        svsm["activation"] = self._check_activation(wire, ek, ak, svsm)
        verified: SnpClaims = self._snp.verify(wire.snp, report_data=None,
                                               collateral=collateral, now=now)
        if nonce is None:
            raise CollateralMissingError(
                "no nonce to check the manifest binding against: give the expected report "
                "data (the 64-byte SVSM nonce) or evidence that names its nonce")
        if svsm["activation"] != "checked":
            raise CollateralMissingError(f"{NOT_PROVEN}: {_why(svsm['activation'])}")
        return SvsmVtpmClaims(snp=verified, tpm=partial["tpm"], svsm=svsm,
                              evidence_form=wire.form)

    def _check_activation(self, wire: SvsmEvidence, ek: TpmPublic, ak: TpmPublic,
                          svsm: dict[str, Any]) -> str:
        """Step 7: ``checked``, or why not (``absent``, ``not_checked``); BindingError when
        the credential is not the one made for this EK and AK."""
        if wire.activation is None:
            return "absent"
        svsm["challenge_nonce"] = wire.activation.nonce.decode("utf-8")
        if not self._keys:
            return "not_checked"
        failure: BindingError | None = None
        for key in self._keys:
            try:
                credential.check_activation(wire.activation.credential,
                                            nonce=wire.activation.nonce, ek_name=ek.name,
                                            ak_name=ak.name, key=key)
            except BindingError as exc:
                failure = exc
            else:
                svsm["activation_key"] = "emulated" if key in self._emulated else "configured"
                return "checked"
        assert failure is not None
        raise failure


# -- the checks ----------------------------------------------------------------------------------


def _check_vmpl(report: SnpReport) -> None:
    """Step 2: only a report the SVSM requested (VMPL 0) vouches for its manifest."""
    if report.vmpl != SVSM_VMPL:
        raise BindingError(
            f"the SNP report's VMPL is {report.vmpl}, expected {SVSM_VMPL}: the SVSM requests "
            "its report at VMPL 0, so this report was not made by the SVSM")


def _nonce(evidence_nonce: bytes | None, report_data: bytes | None,
           svsm: dict[str, Any]) -> bytes | None:
    """Step 3: the SVSM nonce, from ``report_data`` (checked against the evidence's)."""
    if report_data is not None:
        if evidence_nonce is not None and not hmac.compare_digest(evidence_nonce, report_data):
            raise BindingError(
                f"the evidence's SVSM nonce is {evidence_nonce.hex()}, expected the report "
                f"data {report_data.hex()}")
        svsm.update(nonce=report_data.hex(), nonce_source="report_data")
        return report_data
    if evidence_nonce is not None:
        svsm.update(nonce=evidence_nonce.hex(), nonce_source="evidence")
    return evidence_nonce


def _check_quotes(wire: SvsmEvidence, ak: TpmPublic,
                  nonce: bytes | None) -> list[tuple[Attest, Pcrs]]:
    """Step 6: the AK signed every quote over the PCR values given, for SHA-256(nonce) (or,
    go-tpm-tools' quotes, all for one nonce of their own)."""
    expected = quote_nonce(nonce) if nonce is not None and wire.quote_nonce_bound else None
    checked: list[tuple[Attest, Pcrs]] = []
    for quote in wire.quotes:
        pcrs: Pcrs = (quote.pcr_map if quote.pcr_map is not None
                      else _pcr_map(parse_attest(quote.message), quote.pcrs))
        attest = check_quote(quote.message, quote.signature, ak, pcrs=pcrs, nonce=expected)
        if checked and not hmac.compare_digest(attest.extra_data, checked[0][0].extra_data):
            raise BindingError(
                f"quote {len(checked)} has extraData {attest.extra_data.hex()}, quote 0 "
                f"{checked[0][0].extra_data.hex()}: every quote must carry the same nonce")
        checked.append((attest, pcrs))
    if not checked:
        raise MalformedEvidenceError("the evidence holds no TPM quote")
    return checked


def _pcr_map(attest: Attest, values: Sequence[bytes]) -> dict[str, dict[int, bytes]]:
    """The evidence's PCR list (selection order, Trustee's shape) as ``{bank: {index: value}}``
    for the quote's selection."""
    wanted = [(s.bank, i) for s in attest.pcr_select for i in s.indices]
    if len(wanted) != len(values):
        raise BindingError(
            f"tpm_quote.pcrs holds {len(values)} values; the quote selects {len(wanted)} PCRs "
            f"({', '.join(f'{b}:{i}' for b, i in wanted) or 'none'})")
    out: dict[str, dict[int, bytes]] = {}
    for (bank, index), value in zip(wanted, values, strict=True):
        if len(value) != HASH_SIZES[bank]:
            raise MalformedEvidenceError(
                f"tpm_quote PCR {bank}:{index} is {len(value)} bytes; a {bank} PCR is "
                f"{HASH_SIZES[bank]}")
        out.setdefault(bank, {})[index] = value
    return out


def _why(status: str) -> str:
    if status == "absent":
        return "the evidence carries no activated credential (no broker challenge)"
    return "no credential key is configured to check the activated credential"


def _nest(partial: Mapping[str, Any], inner: Mapping[str, Any] | None) -> dict[str, Any]:
    """The claims an error carries: ours, with the SNP verifier's (flat) claims under ``snp``
    when it attached any."""
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in partial.items()}
    if inner is not None and "svsm" not in inner:
        out["snp"] = dict(inner)
    out["report_data"] = out.get("svsm", {}).get("nonce", "")
    return out


__all__ = ["NOT_PROVEN", "SVSM_VMPL", "CredentialKey", "SvsmVtpmVerifier", "quote_nonce"]
