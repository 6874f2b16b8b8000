"""Verification of TPM 2.0 quotes (CONTRACT.md §1.1 ``tpm``; research note §3.2).

For every quote of the evidence, in keylime's order (:func:`.quote.check_quote`): the
signature over the raw TPMS_ATTEST, magic and type, ``extraData`` = the expected report data,
``pcrDigest`` = H_sig(the selected PCR values). Then every quote carries the same
``extraData``; then the event log, when present, is replayed and every quoted PCR with events
must equal its replayed value (:mod:`.replay`). Last, the AK's trust (:mod:`.anchors`): a
supplied key equal to the AK, or the AK certificate chaining to a supplied CA.

Verdicts (``rejected`` beats ``undecided``):

* a bad signature under the evidence's own AK, a nonce or PCR-digest mismatch, quotes with
  different nonces, or an event log that contradicts a quoted PCR: rejected, even when no AK
  is trusted (:class:`~veritee.errors.SignatureError`, :class:`~veritee.errors.BindingError`);
* the evidence carries no AK (keylime) and keys are supplied, none of which verifies the
  signature: :class:`~veritee.errors.SignatureError`;
* the evidence's AK signed, keys or CAs are supplied, and none trusts it:
  :class:`~veritee.errors.UntrustedRootError` (the signer is known, just not trusted);
* nothing is supplied to trust an AK with, or the evidence is a bare event log:
  :class:`~veritee.errors.CollateralMissingError`, with every parsed claim.

SHA-1 *signatures* are refused (:mod:`.quote`); SHA-1 PCR banks are fine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final, Self

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from veritee.collateral import CollateralSource
from veritee.errors import (
    BindingError,
    CollateralMissingError,
    MalformedEvidenceError,
    MisuseError,
    SignatureError,
    UntrustedRootError,
    VeriteeError,
)
from veritee.evidence import Evidence
from veritee.memo import BoundedMemo
from veritee.tee.tpm import replay
from veritee.tee.tpm.anchors import TpmRoot, anchors_from, certificate_anchor, key_anchor
from veritee.tee.tpm.claims import TpmClaims, quote_claims, signer_of
from veritee.tee.tpm.evidence import TpmEvidence, TpmQuote, parse_tpm_evidence
from veritee.tee.tpm.quote import check_nonce, check_pcrs, check_quote_values, verify_signature
from veritee.tee.tpm.structures import (
    MAX_DATA,
    TPM_ST_ATTEST_QUOTE,
    Attest,
    PublicKey,
    Signature,
    TpmPublic,
    parse_attest,
    parse_public,
    parse_signature,
)

Pcrs = dict[str, dict[int, bytes]]
_NO_TRUST: Final = ("no trusted AK: supply the AK public key (PEM/DER/JWK/TPMT_PUBLIC) or the "
                    "CA certificate of its AK certificate with --endorsements")


@dataclass(frozen=True, slots=True)
class _Checked:
    """What the quote checks established."""

    quotes: tuple[tuple[Attest, Pcrs], ...]
    key: PublicKey | None
    anchor: TpmRoot | None
    ak_trust: str | None
    #: :func:`signer_of` the key (None: no key).
    signer: bytes | None = None


class TpmVerifier:
    """Verifies TPM quotes under an AK the operator trusts (``roots`` or ``--endorsements``)."""

    tee: ClassVar[str] = "tpm"

    def __init__(self, roots: Sequence[TpmRoot] = (), *, allow_sha1_signatures: bool = False):
        self._roots = tuple(roots)
        self._allow_sha1 = allow_sha1_signatures
        self._anchor_memo: BoundedMemo[list[TpmRoot]] = BoundedMemo(64)

    @property
    def roots(self) -> tuple[TpmRoot, ...]:
        return self._roots

    def with_roots(self, roots: Sequence[TpmRoot | bytes]) -> Self:
        """A verifier trusting ``roots`` (anchors, or PEM/DER blobs of keys or CA
        certificates) beside these."""
        more = [r for root in roots for r in (
            [root] if isinstance(root, TpmRoot) else TpmRoot.from_bytes(root, "root"))]
        return type(self)((*self._roots, *more), allow_sha1_signatures=self._allow_sha1)

    def verify(self, evidence: Evidence, *, report_data: bytes | None,
               collateral: CollateralSource, now: datetime) -> TpmClaims:
        """Verify ``evidence`` and return its claims.

        Raises:
            MalformedEvidenceError, UnsupportedVersionError, UnrecognizedEvidenceError: the
                evidence does not parse.
            SignatureError, BindingError, UntrustedRootError, ChainError, ExpiredError: see
                the module docstring.
            CollateralMissingError: nothing to trust the AK with, or a bare event log.
            MisuseError: ``now`` has no time zone, or ``report_data`` is longer than any
                quote's extraData can be (66 bytes).
        """
        if now.utcoffset() is None:
            raise MisuseError(f"verification time {now.isoformat()} has no time zone")
        if report_data is not None and len(report_data) > MAX_DATA:
            raise MisuseError(f"expected report data is {len(report_data)} bytes; a TPM's "
                              f"extraData (TPM2B_DATA) holds at most {MAX_DATA}")
        wire = parse_tpm_evidence(evidence)
        anchors = [*self._roots, *self._anchors(collateral)]
        try:
            return self._verify(wire, anchors, report_data, now)
        except VeriteeError as exc:
            exc.with_claims(_partial_claims(wire))  # only what parses: built only to explain
            raise

    def _anchors(self, collateral: CollateralSource) -> list[TpmRoot]:
        """The anchors in the operator's files, read once per set of files (a broker passes
        the same files on every call)."""
        key = tuple((f.name, f.origin, f.data) for f in collateral.files)
        return list(self._anchor_memo.get(key, lambda: anchors_from(collateral.files)))

    def _verify(self, wire: TpmEvidence, anchors: Sequence[TpmRoot], report_data: bytes | None,
                now: datetime) -> TpmClaims:
        if not wire.quotes:
            claims = _log_claims(wire, [])
            raise CollateralMissingError(
                "a bare event log: it replays, but no quote vouches for it").with_claims(
                    claims.to_dict())
        checked = self._check_quotes(wire, anchors, report_data, now)
        claims = _log_claims(wire, checked.quotes, signer=checked.signer, trust=checked.ak_trust,
                             emulated=checked.anchor is not None and checked.anchor.emulated)
        if checked.anchor is None:
            raise CollateralMissingError(_NO_TRUST).with_claims(claims.to_dict())
        return claims

    # -- the quotes -----------------------------------------------------------------------

    def _check_quotes(self, wire: TpmEvidence, anchors: Sequence[TpmRoot],
                      report_data: bytes | None, now: datetime) -> _Checked:
        signing = _evidence_ak(wire)
        if signing is not None:
            ak = signing.key if isinstance(signing, TpmPublic) else signing
            quotes = self._under(wire.quotes, signing, report_data)
            anchor, how = _trust(wire, ak, anchors, now)
            return _Checked(quotes, ak, anchor, how, signer_of(ak))
        keys = [a for a in anchors if a.key is not None]
        failures: list[SignatureError] = []
        for anchor in keys:
            assert anchor.key is not None
            try:
                checked = self._under(wire.quotes, anchor.key, report_data, trying=True)
            except _NotThisKey as exc:
                failures.append(exc.refusal)
                continue
            return _Checked(checked, anchor.key, anchor, "key", anchor.signer)
        if len(failures) == 1:
            raise failures[0]
        if failures:
            raise SignatureError(
                f"none of the {len(keys)} supplied AK keys ({', '.join(a.name for a in keys)}) "
                f"verifies the quote's signature: {failures[0].detail}")
        return _Checked(_unsigned(wire.quotes, report_data), None, None, None)

    def _under(self, quotes: Sequence[TpmQuote], key: PublicKey | TpmPublic,
               report_data: bytes | None, *,
               trying: bool = False) -> tuple[tuple[Attest, Pcrs], ...]:
        """Every quote verified under ``key``, with the same nonce as the first.
        ``trying``: ``key`` is one candidate among the supplied ones, and the first quote's
        signature not verifying under it raises :class:`_NotThisKey`."""
        out: list[tuple[Attest, Pcrs]] = []
        for n, quote in enumerate(quotes):
            signature: bytes | Signature = quote.signature
            if trying and n == 0:
                signature = self._signed_by(quote, key)
            try:
                out.append(check_quote_values(quote.attest, signature, key, pcrs=quote.pcrs,
                                              nonce=report_data, allow_sha1=self._allow_sha1))
            except VeriteeError as exc:
                if len(quotes) > 1:
                    exc.detail = f"quote {n}: {exc.detail}"
                    exc.args = (exc.detail,)
                raise
        _same_nonce([a for a, _ in out])
        return tuple(out)

    def _signed_by(self, quote: TpmQuote, key: PublicKey | TpmPublic) -> Signature:
        """The quote's signature, verified under ``key``.

        Raises:
            _NotThisKey: it does not verify under ``key``, with the reason.
        """
        try:
            return verify_signature(quote.attest, quote.signature, key,
                                    allow_sha1=self._allow_sha1)
        except SignatureError as exc:
            raise _NotThisKey(exc) from exc


class _NotThisKey(Exception):
    """A candidate key did not sign the first quote."""

    def __init__(self, refusal: SignatureError) -> None:
        super().__init__(refusal.detail)
        self.refusal = refusal


def _evidence_ak(wire: TpmEvidence) -> PublicKey | TpmPublic | None:
    """The AK the evidence carries (untrusted); as a TPMT_PUBLIC it must be a restricted
    signing key — the TPM signs with TPM2_Sign, for an unrestricted key, any digest, also
    that of a forged TPMS_ATTEST (TPM 2.0 Part 1 §34.2: only restricted keys refuse to sign
    data that starts with TPM_GENERATED_VALUE).

    Raises:
        MalformedEvidenceError: the AK does not parse.
        SignatureError: its TPMT_PUBLIC is not a restricted signing key.
    """
    if wire.ak_public is None:
        return None
    if wire.ak_public_form == "tpmt":
        public = parse_public(wire.ak_public)
        if not public.restricted_signing:
            raise SignatureError(
                f"the AK's TPMT_PUBLIC has objectAttributes {public.attributes:#010x}, not a "
                "restricted signing key: it could sign a forged TPMS_ATTEST")
        return public
    try:
        key = (serialization.load_pem_public_key(wire.ak_public)
               if wire.ak_public.lstrip().startswith(b"-----BEGIN")
               else serialization.load_der_public_key(wire.ak_public))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise MalformedEvidenceError(
            f"ak_public is not a PEM or DER SubjectPublicKeyInfo: {exc}") from exc
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise MalformedEvidenceError(f"ak_public is a {type(key).__name__}, not RSA or EC")
    return key


def _trust(wire: TpmEvidence, ak: PublicKey, anchors: Sequence[TpmRoot],
           now: datetime) -> tuple[TpmRoot | None, str | None]:
    """The anchor trusting ``ak`` and how; (None, None) when nothing is supplied.

    Raises:
        UntrustedRootError: anchors are supplied and none trusts the AK.
    """
    found = key_anchor(ak, anchors)
    if found is not None:
        return found, "key"
    if wire.ak_certificate is not None:
        found = certificate_anchor(wire.ak_certificate, ak, wire.intermediates, anchors, now)
        if found is not None:
            return found, "certificate"
    if anchors:
        raise UntrustedRootError(
            f"the AK that signed the quote (signer {signer_of(ak).hex()}) is none of the "
            f"{len(anchors)} supplied keys and CAs ({', '.join(a.name for a in anchors)})")
    return None, None


def _unsigned(quotes: Sequence[TpmQuote],
              report_data: bytes | None) -> tuple[tuple[Attest, Pcrs], ...]:
    """Without a key: what can still be refused — structure, nonce, PCR digest (with the
    signature's hash), the same nonce in every quote."""
    out: list[tuple[Attest, Pcrs]] = []
    for quote in quotes:
        sig = parse_signature(quote.signature)
        attest = parse_attest(quote.attest)
        if attest.type != TPM_ST_ATTEST_QUOTE:
            raise MalformedEvidenceError(
                f"TPMS_ATTEST type is {attest.type:#06x}, expected {TPM_ST_ATTEST_QUOTE:#06x}")
        check_nonce(attest, report_data)
        out.append((attest, check_pcrs(attest, quote.pcrs, sig.hash)))
    _same_nonce([a for a, _ in out])
    return tuple(out)


def _same_nonce(attests: Sequence[Attest]) -> None:
    for n, attest in enumerate(attests[1:], start=1):
        if attest.extra_data != attests[0].extra_data:
            raise BindingError(
                f"quote {n} has extraData {attest.extra_data.hex()}, quote 0 "
                f"{attests[0].extra_data.hex()}: every quote must carry the same nonce")


# -- event log and claims ------------------------------------------------------------------


def _log_claims(wire: TpmEvidence, quotes: Sequence[tuple[Attest, Pcrs]], *,
                signer: bytes | None = None, trust: str | None = None,
                emulated: bool = False) -> TpmClaims:
    """The claims, once the event log (if any) replays and agrees with the quoted PCRs.

    Raises:
        MalformedEvidenceError: the log does not parse.
        BindingError: the log contradicts a quoted PCR.
    """
    replayed: Pcrs | None = None
    events: tuple[dict[str, Any], ...] | None = None
    notes: tuple[str, ...] = ()
    if wire.event_log is not None:
        replayed = replay.replay_pcrs(wire.event_log)
        events = tuple(replay.events_json(wire.event_log))
        if quotes:
            merged: Pcrs = {}
            for _, pcrs in quotes:
                for bank, values in pcrs.items():
                    merged.setdefault(bank, {}).update(values)
            notes = tuple(replay.check_replay(replayed, merged) or ())
    return TpmClaims(quotes=tuple(quotes), signer=signer,
                     evidence_form=wire.form, eventlog_pcrs=replayed, events=events,
                     notes=notes, ak_trust=trust, emulated=emulated)


def _partial_claims(wire: TpmEvidence) -> dict[str, Any]:
    """Claims of whatever parses, for errors (nothing here is verified)."""
    quotes: list[tuple[Attest, Pcrs]] = []
    for quote in wire.quotes:
        try:
            attest = parse_attest(quote.attest)
        except VeriteeError:
            break
        quotes.append((attest, {b: dict(v) for b, v in quote.pcrs.items()}))
    signer = None
    try:
        ak = _evidence_ak(wire)
        key = ak.key if isinstance(ak, TpmPublic) else ak
        signer = signer_of(key) if key is not None else None
    except VeriteeError:
        pass
    out = quote_claims(quotes, signer=signer, eventlog_pcrs=None)
    out["evidence_form"] = wire.form
    return out


__all__ = ["TpmRoot", "TpmVerifier"]
