"""TPM2_Quote and TPM2_Certify attestations checked under a given key, in keylime's order.

Sources: research note se-pef-tpm-gpu.md §3.2 — keylime ``checkquote`` (key type fits the
signature scheme, signature verified before anything attacker-controlled is parsed, then magic
and type, ``extraData``, ``pcrDigest``), go-tpm-tools ``quote.go`` (``extraData`` compared in
constant time; ``pcrDigest`` over the PCRs in selection order with the *signature's* hash),
tpm2-tools ``tpm2_checkquote`` (PSS signatures accepted).

Decisions:

* **SHA-1 signatures are refused** unless the caller passes ``allow_sha1=True``
  (:class:`~veritee.errors.SignatureError`). go-tpm-tools refuses them too; a SHA-1 *PCR bank*
  is fine — GCE signs its SHA-1-bank quote with SHA-256.
* **RSASSA-PSS** is verified with the salt length recovered from the signature
  (``padding.PSS.AUTO``). TPM Library Part 1 §B.7 first said "the largest salt the key allows"
  and later revisions (for FIPS 186-4) "the digest size"; TPMs in the field do either. The salt
  is covered by the PSS hash, so accepting either length does not weaken the signature.
* Whether the key is trusted is not decided here: the caller passes the key it trusts.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from operator import itemgetter
from typing import Final, cast

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from veritee.errors import BindingError, MalformedEvidenceError, MisuseError, SignatureError
from veritee.tee.tpm.structures import (
    HASH_SIZES,
    TPM_ST_ATTEST_CERTIFY,
    TPM_ST_ATTEST_QUOTE,
    Attest,
    PublicKey,
    Signature,
    TpmPublic,
    parse_attest,
    parse_signature,
    pcr_digest,
)

_HASHES: Final[Mapping[str, hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1(), "sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512()}
#: RSASSA-PKCS1-v1_5 holds no state: one instance serves every verification.
_PKCS1: Final = padding.PKCS1v15()
#: PCR values: {bank: {index: value}}.
Pcrs = Mapping[str, Mapping[int, bytes]]


def verify_signature(attest: bytes, signature: bytes, key: PublicKey | TpmPublic, *,
                     allow_sha1: bool = False) -> Signature:
    """Steps 1-2: parse ``signature`` (a ``TPMT_SIGNATURE``) and verify it over the raw
    ``attest`` bytes under ``key``.

    Raises:
        UnsupportedVersionError: a signature scheme or hash outside the supported set.
        MalformedEvidenceError: the signature does not parse.
        SignatureError: the key type does not fit the scheme (RSA → RSASSA/RSAPSS, EC →
            ECDSA), the key fixes another scheme, the hash is SHA-1 and ``allow_sha1`` is
            false, or the signature does not verify.
    """
    sig = parse_signature(signature)
    fixed = key if isinstance(key, TpmPublic) else None
    public = fixed.key if fixed is not None else key
    is_rsa = isinstance(public, rsa.RSAPublicKey)
    _check_fits(sig, public, fixed, is_rsa)
    if sig.hash == "sha1" and not allow_sha1:
        raise SignatureError("the attestation is signed with SHA-1, which is refused "
                             "(a SHA-1 PCR bank may be quoted, but signed with SHA-256 or more)")
    algorithm = _HASHES[sig.hash]
    try:
        if is_rsa:  # the isinstance checks are done once, above (ABC checks are not free)
            pad: padding.AsymmetricPadding = (
                _PKCS1 if sig.alg == "rsassa"
                else padding.PSS(padding.MGF1(algorithm), padding.PSS.AUTO))
            cast(rsa.RSAPublicKey, public).verify(sig.signature, attest, pad, algorithm)
        else:
            cast(ec.EllipticCurvePublicKey, public).verify(sig.signature, attest,
                                                           ec.ECDSA(algorithm))
    except (InvalidSignature, ValueError, UnsupportedAlgorithm) as exc:
        raise SignatureError(
            f"the {sig.alg.upper()}-{sig.hash.upper()} signature over the "
            f"{len(attest)}-byte TPMS_ATTEST does not verify under the AK") from exc
    return sig


def _check_fits(sig: Signature, key: object, public: TpmPublic | None, is_rsa: bool) -> None:
    if is_rsa:
        fits = sig.alg in ("rsassa", "rsapss")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        fits = sig.alg == "ecdsa"
    else:
        raise MisuseError(f"an AK is an RSA or EC public key, not {type(key).__name__}")
    if not fits:
        kind = "RSA" if is_rsa else "EC"
        raise SignatureError(f"the signature scheme is {sig.alg.upper()} but the AK is an "
                             f"{kind} key")
    if public is not None and public.scheme not in (None, sig.alg):
        raise SignatureError(f"the signature scheme is {sig.alg.upper()} but the AK's "
                             f"TPMT_PUBLIC fixes {public.scheme.upper()}")


def check_nonce(attest: Attest, nonce: bytes | None) -> None:
    """Step 4: ``extraData == nonce`` (constant time); nothing when ``nonce`` is None.

    Raises:
        BindingError: they differ (the message names both, in hex).
    """
    if nonce is not None and not hmac.compare_digest(attest.extra_data, nonce):
        raise BindingError(f"TPMS_ATTEST extraData is {attest.extra_data.hex() or '(empty)'}, "
                           f"expected {nonce.hex() or '(empty)'}")


def selected_values(attest: Attest, pcrs: Pcrs) -> list[bytes]:
    """The values of the PCRs ``attest`` selects, in selection order.

    Raises:
        MalformedEvidenceError: a selected PCR is missing from ``pcrs`` (all missing ones are
            named), or a value's length is not its bank's digest size.
    """
    return [v for values in _selected_by_bank(attest, pcrs) for v in values]


def _selected_by_bank(attest: Attest, pcrs: Pcrs) -> list[list[bytes]]:
    """:func:`selected_values`, one list per selection."""
    out = []
    for s in attest.pcr_select:
        bank = pcrs.get(s.bank, {})
        try:
            values = (list(itemgetter(*s.indices)(bank)) if len(s.indices) > 1
                      else [bank[i] for i in s.indices])
        except KeyError:
            raise _missing(attest, pcrs) from None
        if list(map(type, values)).count(bytes) != len(values):
            values = [bytes(v) for v in values]  # a bytearray or memoryview, copied
        size = HASH_SIZES[s.bank]
        if list(map(len, values)).count(size) != len(values):
            i, value = next((i, v) for i, v in zip(s.indices, values, strict=True)
                            if len(v) != size)
            raise MalformedEvidenceError(
                f"PCR {s.bank}:{i} is {len(value)} bytes, expected {size}")
        out.append(values)
    return out


def _missing(attest: Attest, pcrs: Pcrs) -> MalformedEvidenceError:
    missing = [f"{s.bank}:{i}" for s in attest.pcr_select for i in s.indices
               if i not in pcrs.get(s.bank, {})]
    return MalformedEvidenceError(
        f"the quote selects PCRs with no value in the evidence: {', '.join(missing)}")


def check_pcrs(attest: Attest, pcrs: Pcrs, hash: str) -> dict[str, dict[int, bytes]]:
    """Step 5: ``pcrDigest == H_hash(selected values)``, with ``hash`` the signature's.

    Returns the selected values only ({bank: {index: value}}): values the evidence carries
    beyond the selection are not covered by the signature and are dropped.

    Raises:
        MalformedEvidenceError: see :func:`selected_values`.
        BindingError: the digest differs (both values named).
    """
    by_bank = _selected_by_bank(attest, pcrs)
    expected = pcr_digest([v for values in by_bank for v in values], hash)
    if not hmac.compare_digest(expected, attest.pcr_digest):
        raise BindingError(
            f"TPMS_ATTEST pcrDigest is {attest.pcr_digest.hex()}, but the {hash} digest of "
            f"the selected PCR values ({_selection_text(attest)}) is {expected.hex()}")
    out: dict[str, dict[int, bytes]] = {}
    for s, values in zip(attest.pcr_select, by_bank, strict=True):
        out.setdefault(s.bank, {}).update(zip(s.indices, values, strict=True))
    return out


def _selection_text(attest: Attest) -> str:
    return "; ".join(f"{s.bank}:{','.join(map(str, s.indices))}" for s in attest.pcr_select)


def check_quote(attest: bytes, signature: bytes, key: PublicKey | TpmPublic, *,
                pcrs: Pcrs | None, nonce: bytes | None, allow_sha1: bool = False,
                signature_checked: bool = False) -> Attest:
    """Verify a TPM2_Quote: signature, structure, nonce, then PCR digest (keylime's order).

    ``pcrs=None`` skips the PCR digest; ``nonce=None`` skips the nonce;
    ``signature_checked``: the caller has just verified the signature under ``key`` with
    :func:`verify_signature` (it is not verified twice).

    Raises:
        SignatureError: see :func:`verify_signature`.
        MalformedEvidenceError, UnsupportedVersionError: the signature or the attest does not
            parse, the attest is not a quote, or a selected PCR value is missing.
        BindingError: ``extraData`` is not ``nonce``, or ``pcrDigest`` does not match.
    """
    sig = (parse_signature(signature) if signature_checked
           else verify_signature(attest, signature, key, allow_sha1=allow_sha1))
    parsed = _quote_of(attest, nonce)
    if pcrs is not None:
        check_pcrs(parsed, pcrs, sig.hash)
    return parsed


def check_quote_values(attest: bytes, signature: bytes | Signature, key: PublicKey | TpmPublic,
                       *, pcrs: Pcrs, nonce: bytes | None,
                       allow_sha1: bool = False) -> tuple[Attest, dict[str, dict[int, bytes]]]:
    """:func:`check_quote`, returning the quote and the values of the PCRs it selects
    (:func:`check_pcrs`). ``signature`` given as the :class:`Signature` that
    :func:`verify_signature` returned: the caller has just verified it under ``key``.

    Raises:
        as :func:`check_quote`.
    """
    sig = (signature if isinstance(signature, Signature)
           else verify_signature(attest, signature, key, allow_sha1=allow_sha1))
    parsed = _quote_of(attest, nonce)
    return parsed, check_pcrs(parsed, pcrs, sig.hash)


def _quote_of(attest: bytes, nonce: bytes | None) -> Attest:
    """Steps 3-4 (after the signature): the parsed TPMS_ATTEST, a quote carrying ``nonce``."""
    parsed = parse_attest(attest)
    _check_type(parsed, TPM_ST_ATTEST_QUOTE, "quote")
    check_nonce(parsed, nonce)
    return parsed


def check_certify(attest: bytes, signature: bytes, key: PublicKey | TpmPublic, *,
                  nonce: bytes | None = None, certified_name: bytes | None = None,
                  allow_sha1: bool = False) -> Attest:
    """Verify a TPM2_Certify attestation: signature, type ``TPM_ST_ATTEST_CERTIFY``, and
    optionally ``extraData == nonce`` and the certified object's Name.

    Raises:
        SignatureError: see :func:`verify_signature`.
        MalformedEvidenceError, UnsupportedVersionError: it does not parse or is not a
            certify.
        BindingError: ``extraData`` or the certified Name differs from the one expected.
    """
    verify_signature(attest, signature, key, allow_sha1=allow_sha1)
    parsed = parse_attest(attest)
    _check_type(parsed, TPM_ST_ATTEST_CERTIFY, "certify")
    check_nonce(parsed, nonce)
    if certified_name is not None and not hmac.compare_digest(
            parsed.certified_name or b"", certified_name):
        raise BindingError(
            f"TPMS_CERTIFY_INFO name is {(parsed.certified_name or b'').hex()}, expected "
            f"{certified_name.hex()}")
    return parsed


def _check_type(attest: Attest, expected: int, what: str) -> None:
    if attest.type != expected:
        raise MalformedEvidenceError(
            f"TPMS_ATTEST type is {attest.type:#06x}, expected {expected:#06x} ({what})")


__all__ = ["Pcrs", "check_certify", "check_nonce", "check_pcrs", "check_quote",
           "check_quote_values", "selected_values", "verify_signature"]
