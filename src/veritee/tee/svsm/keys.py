"""The two TPM keys of an SVSM vTPM attestation: which TPMT_PUBLIC may serve as EK, which as AK.

Parsing is the ``tpm`` room's (:func:`~veritee.tee.tpm.structures.parse_public`); this
module only decides what the keys must be:

* the **EK** (from the SVSM manifest, or the guest's ``auth`` request): an RSA storage key
  made in its TPM — ``fixedTPM``, ``fixedParent``, ``sensitiveDataOrigin``, ``restricted``,
  ``decrypt``, not ``sign`` — with an AES-CFB symmetric definition (the TCG EK templates;
  coconut-svsm's vTPM uses template L-1, attributes ``0x000300b2``, AES-128-CFB). ECC EKs
  are not supported (see :mod:`veritee.tee.svsm.credential`);
* the **AK** (which signs the quote): a restricted signing key made in its TPM and bound to
  it — ``fixedTPM``, ``fixedParent``, ``sensitiveDataOrigin``, ``restricted``, ``sign``, not
  ``decrypt``. ``fixedTPM`` is what makes an activation a lasting proof: such a key cannot
  be duplicated out of the TPM it was created in; ``restricted`` makes the TPM refuse to sign
  outside data that starts like a TPMS_ATTEST.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric import rsa

from veritee.errors import BindingError, MalformedEvidenceError, UnsupportedVersionError
from veritee.tee.tpm.structures import (
    DECRYPT,
    FIXED_PARENT,
    FIXED_TPM,
    RESTRICTED,
    SENSITIVE_DATA_ORIGIN,
    SIGN_ENCRYPT,
    TPM_ALG_AES,
    TPM_ALG_CFB,
    TpmPublic,
    parse_public,
)

#: Attributes every key made in (and fixed to) its TPM has.
RESIDENT: Final = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN
EK_REQUIRED: Final = RESIDENT | RESTRICTED | DECRYPT
AK_REQUIRED: Final = RESIDENT | RESTRICTED | SIGN_ENCRYPT
AES_KEY_BITS: Final = frozenset({128, 192, 256})


@dataclass(frozen=True, slots=True)
class EkParameters:
    """What credential protection needs from an EK."""

    public_key: rsa.RSAPublicKey
    hash_name: str
    """The EK's nameAlg (seed size, OAEP hash, KDFa and HMAC)."""
    sym_bits: int
    """The AES key size of the EK's symmetric definition."""


def parse_ek(data: bytes) -> TpmPublic:
    """A TPMT_PUBLIC that may serve as the EK credentials are made to.

    Raises:
        UnsupportedVersionError: an ECC EK, or a symmetric definition other than AES-CFB.
        MalformedEvidenceError: not a TPMT_PUBLIC, or not a restricted decryption key
            fixed to its TPM.
    """
    ek = parse_public(data)
    ek_parameters(ek)
    missing = EK_REQUIRED & ~ek.attributes
    if missing or ek.attributes & SIGN_ENCRYPT:
        raise MalformedEvidenceError(
            f"the EK's objectAttributes are {ek.attributes:#010x}; an EK has "
            f"{EK_REQUIRED:#010x} set (fixedTPM, fixedParent, sensitiveDataOrigin, "
            "restricted, decrypt) and sign clear")
    return ek


def parse_ak(data: bytes) -> TpmPublic:
    """A TPMT_PUBLIC that may serve as the AK whose quotes count.

    Raises:
        MalformedEvidenceError, UnsupportedVersionError: not a TPMT_PUBLIC this verifier
            reads.
        BindingError: not a restricted signing key fixed to its TPM (a key that could leave
            its TPM, or sign any data, proves nothing by activation or by quote).
    """
    ak = parse_public(data)
    missing = AK_REQUIRED & ~ak.attributes
    if missing or ak.attributes & DECRYPT:
        raise BindingError(
            f"the AK's objectAttributes are {ak.attributes:#010x}; an attestation key has "
            f"{AK_REQUIRED:#010x} set (fixedTPM, fixedParent, sensitiveDataOrigin, "
            "restricted, sign) and decrypt clear")
    return ak


def ek_parameters(ek: TpmPublic) -> EkParameters:
    """The RSA key, nameAlg and AES key size of ``ek``.

    Raises:
        UnsupportedVersionError: ``ek`` is an ECC key, or its symmetric definition is not
            AES-CFB.
    """
    if ek.type != "rsa" or not isinstance(ek.key, rsa.RSAPublicKey):
        raise UnsupportedVersionError(
            f"the EK is an {ek.type.upper()} key; veritee makes credentials to RSA EKs only")
    symmetric = ek.symmetric
    if (symmetric is None or symmetric[0] != TPM_ALG_AES or symmetric[2] != TPM_ALG_CFB
            or symmetric[1] not in AES_KEY_BITS):
        raise UnsupportedVersionError(
            f"the EK's symmetric definition is {symmetric}; credentials need AES-CFB "
            f"({TPM_ALG_AES:#06x}, 128/192/256, {TPM_ALG_CFB:#06x})")
    return EkParameters(ek.key, ek.name_alg, symmetric[1])


__all__ = ["EkParameters", "ek_parameters", "parse_ak", "parse_ek"]
