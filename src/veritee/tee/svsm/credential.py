"""TPM 2.0 credential protection, and the broker's stateless activation challenge.

Credential protection (TPM 2.0 Part 1 §24 "Credential Protection", Part 3 §12.6
TPM2_MakeCredential and §12.5 TPM2_ActivateCredential; Part 1 Annex B.10.3 for RSA seeds)
=========================================================================================

For an RSA EK whose ``nameAlg`` is *H* (digest size *d*) and whose symmetric definition is
AES-*k*-CFB (the TCG EK templates: AES-128-CFB for L-1, AES-256 for the high-range ones):

1. ``seed`` = *d* random bytes, encrypted with RSA-OAEP (MGF1 and hash *H*, label
   ``"IDENTITY\\0"``) → ``TPM2B_ENCRYPTED_SECRET`` = u16 size ‖ ciphertext;
2. ``symKey`` = KDFa(*H*, seed, ``"STORAGE"``, objectName, ``""``, *k* bits);
3. ``encIdentity`` = AES-*k*-CFB(symKey, IV = 0) of ``TPM2B_DIGEST(credential)`` (u16 size ‖
   credential; the credential may be at most *d* bytes);
4. ``HMACkey`` = KDFa(*H*, seed, ``"INTEGRITY"``, ``""``, ``""``, 8·*d* bits);
5. ``outerHMAC`` = HMAC-*H*(HMACkey, encIdentity ‖ objectName);
6. ``TPM2B_ID_OBJECT`` = u16 size ‖ (``TPM2B_DIGEST(outerHMAC)`` ‖ encIdentity).

KDFa (Part 1 §11.4.10.2) is SP 800-108 counter mode over HMAC-*H*: block *i* (from 1) is
HMAC(key, u32be(i) ‖ label ‖ 00 ‖ contextU ‖ contextV ‖ u32be(bits)), truncated to the bits.
ActivateCredential checks the HMAC first (TPM_RC_INTEGRITY) and only then decrypts; so does
:func:`activate_credential`. Both values are returned and taken *with* their u16 size (the
form go-tpm's ``credactivation.Generate`` returns; tpm2-tools' ``tpm2_makecredential`` file is
``badcc0de`` ‖ u32be 1 ‖ the two, see :func:`tpm2_tools_blob`).

ECC EKs (seed by KDFe from an ephemeral ECDH) are not supported: the SVSM vTPM creates an
RSA-2048 EK (coconut-svsm ``ek_templates.rs``), and ECC EKs are refused with an
UnsupportedVersionError naming the type.

The activation protocol (stateless, like the rest of the broker)
================================================================

Goal: before any quote counts, prove that the AK that signed it lives in *the* vTPM whose EK
the SNP report vouches for (through the SVSM manifest). Only a TPM holding the EK's private
key, with an object of exactly the AK's name loaded, can undo MakeCredential.

1. **auth** — the guest's KBS ``auth`` request carries in ``extra-params``
   ``{"ek-public": TPMT_PUBLIC, "ak-public": TPMT_PUBLIC}`` (hex or base64 text). The
   broker calls :func:`challenge_extra` with the challenge's ``nonce`` (the UTF-8 bytes of
   the KBS nonce string, exactly as the challenge carries it) and its credential key *K*, and
   adds the result to the challenge's ``extra-params``:
   ``{"credential": b64 TPM2B_ID_OBJECT, "secret": b64 TPM2B_ENCRYPTED_SECRET,
   "ak-name": hex}``, made with

   ``credential = HMAC-SHA256(K, "veritee/svsm-vtpm/credential/v1" ‖ 00 ‖ 2B(nonce) ‖
   2B(EK name) ‖ 2B(AK name))`` (2B = u16be length ‖ bytes).

   Nothing is stored: the broker can recompute the credential from what the evidence
   carries. The **EK name is in the MAC** on purpose: without it, a guest could make the
   broker encrypt a credential for the AK's name to an EK of its own (a software TPM), read
   it, and present it beside a genuine SVSM manifest naming another EK.
2. **the guest** runs TPM2_ActivateCredential(AK, EK) in its vTPM (an EK policy session:
   PolicySecret(endorsement)) and gets the credential back.
3. **attest** — its evidence carries the activated ``credential``, the challenge ``nonce``
   it was made with, the AK's TPMT_PUBLIC and the quote; the verifier (constructed with the
   same *K*) checks it with :func:`check_activation` against the EK name from the
   *manifest* (bound to the SNP report) and the AK name of the key that signs the quote.

Which nonce binds what. The KBS nonce is known at ``auth``; the runtime-data digest (the
``report_data`` a verifier is given) only at ``attest``, so the credential can only use the
former, and the verifier reads it from the evidence. The echoed nonce is reported as the
claim ``svsm.challenge_nonce`` so that the broker (or a policy) may compare it with the
session's. Freshness does not rest on it: an activation proves a fact that does not change
(the AK, ``fixedTPM``, resides in the TPM of that EK), and a replayed one helps nobody who
cannot also make that vTPM's AK sign a fresh quote inside an SNP guest whose fresh report
names that EK. Freshness comes from ``report_data``: the SVSM nonce (64 bytes) *is* the
``report_data`` the verifier is given (the KBS digest padded to 64 bytes, the ``snp`` rule),
and the quote's ``extraData`` is SHA-256 of it (a TPM2B_DATA holds at most one digest of the
TPM's largest hash; SHA-256 fits every TPM).

Without *K* (``credential_key=None``) the activation cannot be checked and the verdict is
``undecided`` (CollateralMissingError "the AK is not proven to live in the vTPM"). A
verifier may hold several keys (while *K* rotates); an activation made with any of them
counts. The AK must be a restricted signing key with ``fixedTPM`` and ``fixedParent``
(:mod:`veritee.tee.svsm.keys`): its name commits to those attributes, and the TPM only
activates for a loaded object of that name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from collections.abc import Mapping
from typing import Any, Final

from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from veritee.errors import BindingError, MalformedEvidenceError, MisuseError
from veritee.evidence import json_bytes
from veritee.tee.svsm import keys
from veritee.tee.tpm.structures import TpmPublic

#: TPM_ALG_ID → hashlib name (TPM 2.0 Part 2 Table 9).
HASHES: Final = {0x0004: "sha1", 0x000B: "sha256", 0x000C: "sha384", 0x000D: "sha512"}
OAEP_LABEL: Final = b"IDENTITY\x00"
"""Part 1 §24.4: the OAEP label of a credential seed (the terminating zero included)."""
TOOLS_MAGIC: Final = 0xBADCC0DE
"""tpm2-tools' credential file header (``tpm2_makecredential -o``), version 1."""
MAC_LABEL: Final = b"veritee/svsm-vtpm/credential/v1\x00"
#: Names and nonces longer than this are refused (a TPM2B_NAME is at most 2 + 64 bytes).
MAX_FIELD: Final = 1024
#: Hex of a TPMT_PUBLIC with an RSA-4096 key is about 1,100 characters.
MAX_PUBLIC_TEXT: Final = 2048
_CRYPTO_HASH: Final[dict[str, type[hashes.SHA1 | hashes.SHA256 | hashes.SHA384
                                     | hashes.SHA512]]] = {
    "sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
    "sha512": hashes.SHA512}


# -- KDFa and the two halves of credential protection --------------------------------------------


def kdfa(hash_name: str, key: bytes, label: bytes, context_u: bytes, context_v: bytes, *,
         bits: int) -> bytes:
    """KDFa (TPM 2.0 Part 1 §11.4.10.2): SP 800-108 counter-mode KDF over HMAC.

    ``label`` is used with one terminating zero byte (added when absent).
    """
    if not label.endswith(b"\x00"):
        label += b"\x00"
    size = (bits + 7) // 8
    out = bytearray()
    counter = 1
    while len(out) < size:
        block = struct.pack(">I", counter) + label + context_u + context_v + struct.pack(
            ">I", bits)
        out += hmac.new(key, block, hash_name).digest()
        counter += 1
    result = bytearray(out[:size])
    if bits % 8:
        result[0] &= (1 << (bits % 8)) - 1
    return bytes(result)


def protect(*, hash_name: str, seed: bytes, object_name: bytes, credential: bytes,
            sym_bits: int) -> bytes:
    """Steps 2–6 above: the ``TPM2B_ID_OBJECT`` (with its size) for ``credential``."""
    digest_size = hashlib.new(hash_name).digest_size
    if not 0 < len(credential) <= digest_size:
        raise MisuseError(f"a credential is 1 to {digest_size} bytes for {hash_name}, got "
                          f"{len(credential)}")
    sym_key = kdfa(hash_name, seed, b"STORAGE", object_name, b"", bits=sym_bits)
    enc_identity = _cfb(sym_key).encryptor().update(_tpm2b(credential))
    hmac_key = kdfa(hash_name, seed, b"INTEGRITY", b"", b"", bits=8 * digest_size)
    outer = hmac.new(hmac_key, enc_identity + object_name, hash_name).digest()
    return _tpm2b(_tpm2b(outer) + enc_identity)


def unprotect(*, hash_name: str, seed: bytes, object_name: bytes, id_object: bytes,
              sym_bits: int) -> bytes:
    """The inverse of :func:`protect`, HMAC first (TPM2_ActivateCredential).

    Raises:
        MalformedEvidenceError: ``id_object`` is no TPM2B_ID_OBJECT.
        BindingError: the integrity HMAC does not verify (TPM_RC_INTEGRITY): the credential
            was made for another object name or another EK, or it was altered.
    """
    body = _read_tpm2b_exact(id_object, "TPM2B_ID_OBJECT")
    outer, enc_identity = _split_tpm2b(body, "integrityHMAC")
    hmac_key = kdfa(hash_name, seed, b"INTEGRITY", b"", b"",
                    bits=8 * hashlib.new(hash_name).digest_size)
    expected = hmac.new(hmac_key, enc_identity + object_name, hash_name).digest()
    if not hmac.compare_digest(outer, expected):
        raise BindingError("the credential's integrity HMAC does not verify for this object "
                           "name and EK (TPM_RC_INTEGRITY)")
    sym_key = kdfa(hash_name, seed, b"STORAGE", object_name, b"", bits=sym_bits)
    plain = _cfb(sym_key).decryptor().update(enc_identity)
    return _read_tpm2b_exact(plain, "the decrypted TPM2B_DIGEST credential")


def _cfb(key: bytes) -> Cipher[CFB]:
    """AES-CFB (full-block feedback), IV zero (Part 1 §24.4)."""
    return Cipher(algorithms.AES(key), CFB(bytes(16)))


# -- MakeCredential / ActivateCredential on RSA EKs ---------------------------------------------


def make_credential_rsa(public_key: rsa.RSAPublicKey, *, hash_name: str, sym_bits: int,
                        object_name: bytes, credential: bytes,
                        seed: bytes | None = None) -> tuple[bytes, bytes]:
    """TPM2_MakeCredential to an RSA key: ``(TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET)``.

    ``seed`` is for reproducible tests only (default: fresh random bytes).
    """
    size = hashlib.new(hash_name).digest_size
    seed = os.urandom(size) if seed is None else seed
    if len(seed) != size:
        raise MisuseError(f"an RSA credential seed is {size} bytes for {hash_name}")
    algorithm = _CRYPTO_HASH[hash_name]()
    encrypted = public_key.encrypt(seed, padding.OAEP(
        mgf=padding.MGF1(algorithm), algorithm=algorithm, label=OAEP_LABEL))
    id_object = protect(hash_name=hash_name, seed=seed, object_name=object_name,
                        credential=credential, sym_bits=sym_bits)
    return id_object, _tpm2b(encrypted)


def activate_credential_rsa(private_key: rsa.RSAPrivateKey, *, hash_name: str, sym_bits: int,
                            object_name: bytes, id_object: bytes,
                            encrypted_secret: bytes) -> bytes:
    """TPM2_ActivateCredential with an RSA EK's private key (emulators and tests).

    Raises:
        MalformedEvidenceError: a blob does not parse, or the seed does not decrypt.
        BindingError: the integrity HMAC does not verify.
    """
    ciphertext = _read_tpm2b_exact(encrypted_secret, "TPM2B_ENCRYPTED_SECRET")
    algorithm = _CRYPTO_HASH[hash_name]()
    try:
        seed = private_key.decrypt(ciphertext, padding.OAEP(
            mgf=padding.MGF1(algorithm), algorithm=algorithm, label=OAEP_LABEL))
    except ValueError as exc:
        raise MalformedEvidenceError("the credential seed does not decrypt under this EK "
                                     "(RSA-OAEP, label IDENTITY)") from exc
    return unprotect(hash_name=hash_name, seed=seed, object_name=object_name,
                     id_object=id_object, sym_bits=sym_bits)


# -- tpm2-tools' file form ------------------------------------------------------------------------


def tpm2_tools_blob(id_object: bytes, encrypted_secret: bytes) -> bytes:
    """The file ``tpm2_makecredential -o`` writes and ``tpm2_activatecredential -i`` reads."""
    return struct.pack(">II", TOOLS_MAGIC, 1) + id_object + encrypted_secret


def parse_tpm2_tools_blob(blob: bytes) -> tuple[bytes, bytes]:
    """``(TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET)`` from a tpm2-tools credential file.

    Raises:
        MalformedEvidenceError: wrong magic or version, or the two TPM2Bs do not fill it.
    """
    if len(blob) < 8 or struct.unpack_from(">II", blob) != (TOOLS_MAGIC, 1):
        raise MalformedEvidenceError("not a tpm2-tools credential file (magic badcc0de, "
                                     "version 1)")
    id_size = _u16(blob, 8, "TPM2B_ID_OBJECT")
    id_object = blob[8:10 + id_size]
    secret = blob[10 + id_size:]
    _read_tpm2b_exact(id_object, "TPM2B_ID_OBJECT")
    _read_tpm2b_exact(secret, "TPM2B_ENCRYPTED_SECRET")
    return bytes(id_object), bytes(secret)


# -- the broker's challenge and the verifier's check --------------------------------------------


def activation_secret(*, nonce: bytes, ek_name: bytes, ak_name: bytes, key: bytes) -> bytes:
    """The credential the broker makes: HMAC-SHA256(K, label ‖ 2B(nonce) ‖ 2B(EK name) ‖
    2B(AK name)) (see the module docstring).

    Raises:
        MisuseError: ``key`` is shorter than 16 bytes, or a field is empty or too long.
    """
    if len(key) < 16:
        raise MisuseError(f"the credential key is {len(key)} bytes; use at least 16 (32 "
                          "random bytes recommended)")
    for name, value in (("nonce", nonce), ("EK name", ek_name), ("AK name", ak_name)):
        if not 0 < len(value) <= MAX_FIELD:
            raise MisuseError(f"the {name} is {len(value)} bytes; 1 to {MAX_FIELD}")
    message = MAC_LABEL + _tpm2b(nonce) + _tpm2b(ek_name) + _tpm2b(ak_name)
    return hmac.new(key, message, "sha256").digest()


def check_activation(evidence_secret: bytes, *, nonce: bytes, ek_name: bytes, ak_name: bytes,
                     key: bytes) -> None:
    """Check that the guest activated the credential made for this nonce, EK and AK
    (constant time).

    Raises:
        BindingError: it did not: the AK was not shown to live in the TPM of this EK.
        MisuseError: as :func:`activation_secret`.
    """
    expected = activation_secret(nonce=nonce, ek_name=ek_name, ak_name=ak_name, key=key)
    if not hmac.compare_digest(bytes(evidence_secret), expected):
        raise BindingError(
            f"the activated credential ({len(evidence_secret)} bytes) is not the one made for "
            f"EK {ek_name.hex()} and AK {ak_name.hex()}: the AK is not proven to live in the "
            "vTPM the SNP report vouches for")


def challenge_extra(request_extra: Mapping[str, Any], nonce: bytes,
                    key: bytes) -> dict[str, Any]:
    """What the broker adds to the challenge's ``extra-params`` for an SVSM vTPM guest.

    ``request_extra`` is the ``extra-params`` of the guest's ``auth`` request; it must hold
    ``ek-public`` and ``ak-public`` (TPMT_PUBLIC, hex or base64). ``nonce`` is the UTF-8 of
    the challenge's nonce string.

    Raises:
        MalformedEvidenceError: a key is missing, not hex/base64, not a TPMT_PUBLIC, an EK
            that is no RSA storage key, or an AK that is no restricted signing key fixed to
            its TPM.
        MisuseError: as :func:`activation_secret`.
    """
    ek = keys.parse_ek(request_bytes(request_extra, "ek-public"))
    ak = keys.parse_ak(request_bytes(request_extra, "ak-public"))
    secret = activation_secret(nonce=nonce, ek_name=ek.name, ak_name=ak.name, key=key)
    id_object, encrypted_secret = make_credential(ek, ak.name, secret)
    return {"credential": base64.b64encode(id_object).decode(),
            "secret": base64.b64encode(encrypted_secret).decode(),
            "ak-name": ak.name.hex()}


def make_credential(ek: TpmPublic, ak_name: bytes, secret: bytes) -> tuple[bytes, bytes]:
    """TPM2_MakeCredential of ``secret`` to the EK ``ek`` (a parsed TPMT_PUBLIC) for the
    object named ``ak_name``: ``(TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET)``.

    Raises:
        MalformedEvidenceError: the EK is not an RSA key with a nameAlg and an AES
            symmetric definition.
    """
    params = keys.ek_parameters(ek)
    return make_credential_rsa(params.public_key, hash_name=params.hash_name,
                               sym_bits=params.sym_bits, object_name=ak_name,
                               credential=secret)


def activate_credential(ek_private_key: rsa.RSAPrivateKey, ak_name: bytes, id_object: bytes,
                        encrypted_secret: bytes, *, hash_name: str = "sha256",
                        sym_bits: int = 128) -> bytes:
    """TPM2_ActivateCredential for an emulated vTPM (defaults: the TCG L-1 EK template).

    Raises:
        MalformedEvidenceError, BindingError: as :func:`activate_credential_rsa`.
    """
    return activate_credential_rsa(ek_private_key, hash_name=hash_name, sym_bits=sym_bits,
                                   object_name=ak_name, id_object=id_object,
                                   encrypted_secret=encrypted_secret)


def request_bytes(extra: Mapping[str, Any], name: str) -> bytes:
    """A binary field of a JSON object given as hex or base64 (base64url) text.

    Raises:
        MalformedEvidenceError: the field is missing or is neither.
    """
    value = extra.get(name) if isinstance(extra, Mapping) else None
    if not isinstance(value, str) or not value or len(value) > MAX_PUBLIC_TEXT:
        raise MalformedEvidenceError(
            f"extra-params {name!r} is missing or not hex / base64 text of at most "
            f"{MAX_PUBLIC_TEXT} characters")
    data = json_bytes(value, f"extra-params {name!r}")
    if data.startswith(b"-----BEGIN"):
        raise MalformedEvidenceError(f"extra-params {name!r} must be a TPMT_PUBLIC, not PEM")
    return data


# -- TPM2B helpers -----------------------------------------------------------------------------


def _tpm2b(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + bytes(data)


def _u16(data: bytes, at: int, what: str) -> int:
    if len(data) < at + 2:
        raise MalformedEvidenceError(f"{what} is cut short: no size field")
    value: int = struct.unpack_from(">H", data, at)[0]
    return value


def _read_tpm2b_exact(data: bytes, what: str) -> bytes:
    size = _u16(data, 0, what)
    if len(data) != 2 + size:
        raise MalformedEvidenceError(f"{what} says {size} bytes and holds {len(data) - 2}")
    return bytes(data[2:])


def _split_tpm2b(data: bytes, what: str) -> tuple[bytes, bytes]:
    size = _u16(data, 0, what)
    if len(data) < 2 + size:
        raise MalformedEvidenceError(f"{what} says {size} bytes and holds {len(data) - 2}")
    return bytes(data[2:2 + size]), bytes(data[2 + size:])


__all__ = [
    "HASHES",
    "activate_credential",
    "activate_credential_rsa",
    "activation_secret",
    "challenge_extra",
    "check_activation",
    "kdfa",
    "make_credential",
    "make_credential_rsa",
    "parse_tpm2_tools_blob",
    "protect",
    "tpm2_tools_blob",
    "unprotect",
]
