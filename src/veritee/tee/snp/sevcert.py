"""SEV and SEV-ES platform certificates: the AMD CA format (ARK, ASK), the SEV certificate
format (PDH, PEK, OCA, CEK and the guest owner's GODH), and the chain between them.

Sources: AMD "Secure Encrypted Virtualization API" (55766), Appendix B.1 (AMD CA
certificate) and Appendix C (SEV certificate), cross-read with virtee/sev
``certs/sev/{ca,sev}`` (research note amd-sev.md §3.4). Every integer is little-endian,
signatures too.

Chain: ARK (self-signed, pinned) → ASK → CEK → PEK ← OCA (self-signed); PEK → PDH.

Accepted chain inputs (:func:`parse_chain`, :func:`chain_from_fields`):

* ``sevctl export --full``: PDH ‖ PEK ‖ OCA ‖ CEK ‖ ASK ‖ ARK (virtee's ``certs::sev::Chain``
  encoding: the SEV chain, then the CA chain with the ASK first);
* ``sevctl export`` without ``--full``: PDH ‖ PEK ‖ OCA ‖ CEK (the CA chain then comes from
  the pinned roots);
* QEMU's ``query-sev-capabilities``: ``pdh`` (base64 PDH) and ``cert-chain`` (base64 of
  PEK ‖ OCA ‖ CEK).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, Final, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from veritee.errors import (
    ChainError,
    EvidenceError,
    MalformedEvidenceError,
    MisuseError,
    SignatureError,
    UnsupportedVersionError,
    UntrustedRootError,
)
from veritee.tee._layout import FieldTable

# --- the AMD CA format (55766 Appendix B.1) ------------------------------------------------

CA_VERSION: Final = 1
CA_HEADER: Final = FieldTable("AMD CA certificate header", (
    ("version", 0x00, 4, "I"),
    ("key_id", 0x04, 16, "s"),
    ("certifying_id", 0x14, 16, "s"),
    ("key_usage", 0x24, 4, "I"),
    ("_reserved_28", 0x28, 16, "x"),
    ("pubexp_bits", 0x38, 4, "I"),
    ("modulus_bits", 0x3C, 4, "I"),
), size=0x40)
#: RSA sizes AMD uses: 2048 bits (Naples), 4096 bits (Rome and later).
RSA_BITS: Final = frozenset({2048, 4096})


class Usage(IntEnum):
    """KEY_USAGE / PUBKEY_USAGE / SIGx_USAGE values (55766 Table 125 and B.1)."""

    ARK = 0x0000
    ASK = 0x0013
    INVALID = 0x1000  # an empty signature slot
    OCA = 0x1001
    PEK = 0x1002
    PDH = 0x1003
    CEK = 0x1004


class Algo(IntEnum):
    """PUBKEY_ALGO / SIGx_ALGO values (55766 Table 126)."""

    NONE = 0x000
    RSA_SHA256 = 0x001
    ECDSA_SHA256 = 0x002
    ECDH_SHA256 = 0x003
    RSA_SHA384 = 0x101
    ECDSA_SHA384 = 0x102
    ECDH_SHA384 = 0x103


_RSA_ALGOS: Final = frozenset({Algo.RSA_SHA256, Algo.RSA_SHA384})
_ECDSA_ALGOS: Final = frozenset({Algo.ECDSA_SHA256, Algo.ECDSA_SHA384})
_ECDH_ALGOS: Final = frozenset({Algo.ECDH_SHA256, Algo.ECDH_SHA384})


def _usage_name(value: int) -> str:
    try:
        return f"{Usage(value).name} ({value:#x})"
    except ValueError:
        return f"{value:#x}"


def _hash_for_bits(bits: int) -> hashes.HashAlgorithm:
    """AMD CA signatures: SHA-256 with a 2048-bit key, SHA-384 with a 4096-bit key (B.1)."""
    return hashes.SHA256() if bits == 2048 else hashes.SHA384()


def _hash_for_algo(algo: int) -> hashes.HashAlgorithm:
    return hashes.SHA384() if algo & 0x100 else hashes.SHA256()


def _pss(hash_algorithm: hashes.HashAlgorithm) -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=hash_algorithm.digest_size)


def _le(data: bytes) -> int:
    value: int = int.from_bytes(data, "little")
    return value


@dataclass(frozen=True, slots=True)
class AmdCaCert:
    """An ARK or ASK in AMD's CA format: header, RSA public key, RSASSA-PSS signature."""

    key_id: bytes
    certifying_id: bytes
    key_usage: int
    pubexp_bits: int
    modulus_bits: int
    pubexp: int
    modulus: int
    signature: bytes
    version: int = CA_VERSION

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Parse exactly one certificate.

        Raises:
            UnsupportedVersionError: VERSION is not 1.
            MalformedEvidenceError: wrong size, usage, key sizes or reserved bytes.
        """
        size = ca_cert_size(data)
        if len(data) != size:
            raise MalformedEvidenceError(
                f"AMD CA certificate is {len(data)} bytes; its header says {size}")
        head = CA_HEADER.unpack(data)
        exp_end = 0x40 + head["pubexp_bits"] // 8
        mod_end = exp_end + head["modulus_bits"] // 8
        return cls(key_id=head["key_id"], certifying_id=head["certifying_id"],
                   key_usage=head["key_usage"], pubexp_bits=head["pubexp_bits"],
                   modulus_bits=head["modulus_bits"], pubexp=_le(data[0x40:exp_end]),
                   modulus=_le(data[exp_end:mod_end]), signature=data[mod_end:],
                   version=head["version"])

    def to_bytes(self) -> bytes:
        return self.signed_bytes + self.signature

    @property
    def signed_bytes(self) -> bytes:
        """The header, exponent and modulus: what the issuer signs."""
        head = CA_HEADER.pack({
            "version": self.version, "key_id": self.key_id,
            "certifying_id": self.certifying_id, "key_usage": self.key_usage,
            "pubexp_bits": self.pubexp_bits, "modulus_bits": self.modulus_bits})
        try:
            return (head + self.pubexp.to_bytes(self.pubexp_bits // 8, "little")
                    + self.modulus.to_bytes(self.modulus_bits // 8, "little"))
        except OverflowError as exc:
            raise MalformedEvidenceError("AMD CA key does not fit its declared size") from exc

    @property
    def role(self) -> str:
        return "ARK" if self.key_usage == Usage.ARK else "ASK"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def public_key(self) -> rsa.RSAPublicKey:
        """Raises MalformedEvidenceError when the numbers are no RSA key."""
        try:
            return rsa.RSAPublicNumbers(self.pubexp, self.modulus).public_key()
        except ValueError as exc:
            raise MalformedEvidenceError(f"the {self.role}'s RSA key is invalid: {exc}") from exc

    def verify_signed_by(self, issuer: AmdCaCert) -> None:
        """Check this certificate's signature under ``issuer`` (RSASSA-PSS, B.1).

        Raises:
            ChainError: CERTIFYING_ID is not the issuer's KEY_ID.
            SignatureError: the signature does not verify.
        """
        if self.certifying_id != issuer.key_id:
            raise ChainError(
                f"the {self.role}'s CERTIFYING_ID is {self.certifying_id.hex()}, the "
                f"{issuer.role}'s KEY_ID is {issuer.key_id.hex()}")
        hash_algorithm = _hash_for_bits(issuer.modulus_bits)
        if not _rsa_verifies(issuer.public_key(), self.signature, self.signed_bytes,
                             hash_algorithm):
            raise SignatureError(
                f"the {self.role} (key id {self.key_id.hex()}) signature does not verify under "
                f"the {issuer.role} key (key id {issuer.key_id.hex()}, RSA-PSS "
                f"{hash_algorithm.name})")

    @classmethod
    def build(cls, *, key: rsa.RSAPublicKey, key_id: bytes, usage: Usage,
              issuer_key: rsa.RSAPrivateKey, certifying_id: bytes) -> Self:
        """A certificate signed with ``issuer_key`` (emulators and tests)."""
        numbers = key.public_numbers()
        bits = key.key_size
        unsigned = cls(key_id=key_id, certifying_id=certifying_id, key_usage=int(usage),
                       pubexp_bits=bits, modulus_bits=bits, pubexp=numbers.e,
                       modulus=numbers.n, signature=b"")
        hash_algorithm = _hash_for_bits(issuer_key.key_size)
        signature = issuer_key.sign(unsigned.signed_bytes, _pss(hash_algorithm), hash_algorithm)
        return replace(unsigned, signature=signature[::-1])


def ca_cert_size(data: bytes) -> int:
    """The size of the AMD CA certificate that ``data`` starts with, from its header.

    Raises:
        UnsupportedVersionError, MalformedEvidenceError: the header is not a valid one.
    """
    head = CA_HEADER.unpack(data)
    if head["version"] != CA_VERSION:
        raise UnsupportedVersionError(
            f"AMD CA certificate VERSION is {head['version']}; only {CA_VERSION} is defined")
    if head["key_usage"] not in (Usage.ARK, Usage.ASK):
        raise MalformedEvidenceError(
            f"AMD CA certificate KEY_USAGE is {_usage_name(head['key_usage'])}; expected "
            f"ARK (0x0) or ASK (0x13)")
    CA_HEADER.check_zero(data)
    for name in ("pubexp_bits", "modulus_bits"):
        if head[name] not in RSA_BITS:
            raise MalformedEvidenceError(
                f"AMD CA certificate {name.upper()} is {head[name]}; expected 2048 or 4096")
    size: int = 0x40 + head["pubexp_bits"] // 8 + 2 * (head["modulus_bits"] // 8)
    return size


def _rsa_verifies(key: rsa.RSAPublicKey, signature_le: bytes, message: bytes,
                  hash_algorithm: hashes.HashAlgorithm) -> bool:
    size = (key.key_size + 7) // 8
    if len(signature_le) < size or any(signature_le[size:]):
        return False
    try:
        key.verify(signature_le[:size][::-1], message, _pss(hash_algorithm), hash_algorithm)
    except InvalidSignature:
        return False
    return True


# --- the SEV certificate format (55766 Appendix C) -------------------------------------------

SEV_CERT_SIZE: Final = 0x824
SEV_SIGNED_SIZE: Final = 0x414
SEV_VERSION: Final = 1
PUBKEY_SIZE: Final = 0x404
SIG_SIZE: Final = 0x200
COORD_SIZE: Final = 72  # ECC coordinates and r, s: 72-byte little-endian (C.2, C.4)
SEV_LAYOUT: Final = FieldTable("SEV certificate", (
    ("version", 0x000, 4, "I"),
    ("api_major", 0x004, 1, "B"),
    ("api_minor", 0x005, 1, "B"),
    ("_reserved_006", 0x006, 2, "x"),
    ("usage", 0x008, 4, "I"),
    ("algo", 0x00C, 4, "I"),
    ("pubkey", 0x010, PUBKEY_SIZE, "s"),
    ("sig1_usage", 0x414, 4, "I"),
    ("sig1_algo", 0x418, 4, "I"),
    ("sig1", 0x41C, SIG_SIZE, "s"),
    ("sig2_usage", 0x61C, 4, "I"),
    ("sig2_algo", 0x620, 4, "I"),
    ("sig2", 0x624, SIG_SIZE, "s"),
), size=SEV_CERT_SIZE)

#: ECC curve ids (55766 Table 127) → (curve, coordinate bytes).
CURVES: Final[Mapping[int, tuple[type[ec.EllipticCurve], int]]] = {
    1: (ec.SECP256R1, 32),
    2: (ec.SECP384R1, 48),
}
_CURVE_IDS: Final = {"secp256r1": 1, "secp384r1": 2}
_PUBKEY_USAGES: Final = frozenset({Usage.OCA, Usage.PEK, Usage.PDH, Usage.CEK})
_SIG_USAGES: Final = frozenset({Usage.ASK, Usage.OCA, Usage.PEK, Usage.CEK})

SevPublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


@dataclass(frozen=True, slots=True)
class SigSlot:
    """One of the two signature slots: who signed (usage), how (algo), the signature."""

    usage: int = Usage.INVALID
    algo: int = Algo.NONE
    signature: bytes = bytes(SIG_SIZE)

    @property
    def empty(self) -> bool:
        return self.usage == Usage.INVALID

    def check(self, which: str) -> None:
        if self.usage not in _SIG_USAGES and self.usage != Usage.INVALID:
            raise MalformedEvidenceError(
                f"SEV certificate {which}_USAGE is {_usage_name(self.usage)}; expected an "
                f"issuer usage (ASK, OCA, PEK, CEK) or 0x1000 (empty)")
        if self.empty:
            if self.algo != Algo.NONE or any(self.signature):
                raise MalformedEvidenceError(
                    f"SEV certificate {which} is empty (usage 0x1000) but carries algo "
                    f"{self.algo:#x} or signature bytes")
            return
        if self.algo not in _RSA_ALGOS | _ECDSA_ALGOS:
            raise MalformedEvidenceError(
                f"SEV certificate {which}_ALGO is {self.algo:#x}; expected an RSA or ECDSA "
                "algorithm (0x1, 0x2, 0x101, 0x102)")
        if self.algo in _ECDSA_ALGOS and any(self.signature[2 * COORD_SIZE:]):
            raise MalformedEvidenceError(
                f"SEV certificate {which}: bytes after the ECDSA R and S must be zero")


@dataclass(frozen=True, slots=True)
class SevCert:
    """A SEV certificate (0x824 bytes): a versioned public key with two signature slots."""

    api_major: int
    api_minor: int
    usage: int
    algo: int
    pubkey: bytes  # the 0x404-byte PUBKEY field, as encoded
    sig1: SigSlot = field(default_factory=SigSlot)
    sig2: SigSlot = field(default_factory=SigSlot)
    version: int = SEV_VERSION

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Parse exactly one SEV certificate.

        Raises:
            UnsupportedVersionError: VERSION is not 1.
            MalformedEvidenceError: size, usage, algorithm, key encoding or reserved bytes.
        """
        if len(data) != SEV_CERT_SIZE:
            raise MalformedEvidenceError(
                f"SEV certificate is {len(data)} bytes; expected {SEV_CERT_SIZE} (0x824)")
        v = SEV_LAYOUT.unpack(data)
        if v["version"] != SEV_VERSION:
            raise UnsupportedVersionError(
                f"SEV certificate VERSION is {v['version']}; only {SEV_VERSION} is defined")
        SEV_LAYOUT.check_zero(data)
        cert = cls(api_major=v["api_major"], api_minor=v["api_minor"], usage=v["usage"],
                   algo=v["algo"], pubkey=v["pubkey"],
                   sig1=SigSlot(v["sig1_usage"], v["sig1_algo"], v["sig1"]),
                   sig2=SigSlot(v["sig2_usage"], v["sig2_algo"], v["sig2"]))
        cert._check()
        return cert

    def _check(self) -> None:
        if self.usage not in _PUBKEY_USAGES:
            raise MalformedEvidenceError(
                f"SEV certificate PUBKEY_USAGE is {_usage_name(self.usage)}; expected OCA, PEK, "
                "PDH or CEK (0x1001-0x1004)")
        if self.algo not in _RSA_ALGOS | _ECDSA_ALGOS | _ECDH_ALGOS:
            raise MalformedEvidenceError(
                f"SEV certificate PUBKEY_ALGO is {self.algo:#x}; expected one of "
                + ", ".join(f"{a.value:#x}" for a in Algo if a != Algo.NONE))
        decode_public_key(self.pubkey, self.algo)
        self.sig1.check("SIG1")
        self.sig2.check("SIG2")

    def to_bytes(self) -> bytes:
        return SEV_LAYOUT.pack({
            "version": self.version, "api_major": self.api_major, "api_minor": self.api_minor,
            "usage": self.usage, "algo": self.algo, "pubkey": self.pubkey,
            "sig1_usage": self.sig1.usage, "sig1_algo": self.sig1.algo, "sig1": self.sig1.signature,
            "sig2_usage": self.sig2.usage, "sig2_algo": self.sig2.algo, "sig2": self.sig2.signature,
        })

    @property
    def signed_bytes(self) -> bytes:
        """``cert[0x000:0x414]``: the version, API version, usage, algo and public key."""
        return self.to_bytes()[:SEV_SIGNED_SIZE]

    @property
    def name(self) -> str:
        try:
            return Usage(self.usage).name
        except ValueError:
            return f"{self.usage:#x}"

    def public_key(self) -> SevPublicKey:
        """Raises MalformedEvidenceError when the key field is no valid key."""
        return decode_public_key(self.pubkey, self.algo)

    def slot(self, signer: Usage) -> SigSlot | None:
        """The signature slot whose usage names ``signer``."""
        for slot in (self.sig1, self.sig2):
            if slot.usage == signer:
                return slot
        return None

    @classmethod
    def build(cls, key: SevPublicKey, *, usage: Usage, algo: Algo, api_major: int = 0,
              api_minor: int = 0) -> Self:
        """An unsigned certificate for ``key`` (both slots empty, as a GODH is)."""
        return cls(api_major=api_major, api_minor=api_minor, usage=int(usage), algo=int(algo),
                   pubkey=encode_public_key(key))

    def signed(self, signer_usage: Usage, algo: Algo, key: Any, *, slot: int = 1) -> Self:
        """A copy with signature slot ``slot`` filled: ``key`` (an RSA or EC private key)
        signs :attr:`signed_bytes` and the slot names ``signer_usage``."""
        signature = sign_bytes(key, algo, self.signed_bytes)
        filled = SigSlot(int(signer_usage), int(algo), signature)
        return replace(self, sig1=filled) if slot == 1 else replace(self, sig2=filled)


def decode_public_key(raw: bytes, algo: int) -> SevPublicKey:
    """The key in a PUBKEY field (C.2 ECC: curve ‖ QX ‖ QY; C.3 RSA: bits ‖ e ‖ n).

    Raises:
        MalformedEvidenceError: unknown curve or size, non-zero padding, not a valid key.
    """
    if len(raw) != PUBKEY_SIZE:
        raise MalformedEvidenceError(f"SEV public key is {len(raw)} bytes, not {PUBKEY_SIZE}")
    if algo in _RSA_ALGOS:
        return _decode_rsa(raw)
    curve_id = _le(raw[:4])
    if curve_id not in CURVES:
        raise MalformedEvidenceError(
            f"SEV public key CURVE is {curve_id}; expected 1 (P-256) or 2 (P-384)")
    curve, size = CURVES[curve_id]
    qx, qy = raw[4:4 + COORD_SIZE], raw[4 + COORD_SIZE:4 + 2 * COORD_SIZE]
    if any(qx[size:]) or any(qy[size:]) or any(raw[4 + 2 * COORD_SIZE:]):
        raise MalformedEvidenceError(
            f"SEV public key: bytes beyond the {size}-byte coordinates must be zero")
    try:
        return ec.EllipticCurvePublicNumbers(_le(qx), _le(qy), curve()).public_key()
    except ValueError as exc:
        raise MalformedEvidenceError(f"SEV public key is not a point on {curve.name}") from exc


def _decode_rsa(raw: bytes) -> rsa.RSAPublicKey:
    bits = _le(raw[:4])
    if bits not in RSA_BITS:
        raise MalformedEvidenceError(f"SEV RSA key MODULUS_SIZE is {bits}; expected 2048 or 4096")
    try:
        return rsa.RSAPublicNumbers(_le(raw[4:516]), _le(raw[516:1028])).public_key()
    except ValueError as exc:
        raise MalformedEvidenceError(f"SEV RSA key is invalid: {exc}") from exc


def encode_public_key(key: SevPublicKey) -> bytes:
    """The PUBKEY field for ``key`` (ECC P-256/P-384 or RSA 2048/4096)."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return (key.key_size.to_bytes(4, "little") + numbers.e.to_bytes(512, "little")
                + numbers.n.to_bytes(512, "little"))
    curve_id = _CURVE_IDS.get(key.curve.name)
    if curve_id is None:
        raise MisuseError(f"SEV keys are P-256 or P-384, not {key.curve.name}")
    point = key.public_numbers()
    body = (curve_id.to_bytes(4, "little") + point.x.to_bytes(COORD_SIZE, "little")
            + point.y.to_bytes(COORD_SIZE, "little"))
    return body.ljust(PUBKEY_SIZE, b"\0")


def sign_bytes(key: Any, algo: Algo, message: bytes) -> bytes:
    """A signature-slot value: ``key`` signs ``message`` with ``algo`` (LE encodings)."""
    hash_algorithm = _hash_for_algo(algo)
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(message, _pss(hash_algorithm), hash_algorithm)[::-1]
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hash_algorithm)))
        signature = r.to_bytes(COORD_SIZE, "little") + s.to_bytes(COORD_SIZE, "little")
    else:
        raise MisuseError(f"cannot sign a SEV certificate with {type(key).__name__}")
    return signature.ljust(SIG_SIZE, b"\0")


def verify_slot(cert: SevCert, signer: Usage, key: SevPublicKey, signer_name: str) -> None:
    """Check the signature in ``cert``'s slot for ``signer`` under ``key``.

    Raises:
        ChainError: no slot names ``signer``, or its algorithm does not fit the key.
        SignatureError: the signature does not verify.
    """
    slot = cert.slot(signer)
    if slot is None:
        raise ChainError(
            f"the {cert.name} has no signature slot for the {signer.name} (slots name "
            f"{_usage_name(cert.sig1.usage)} and {_usage_name(cert.sig2.usage)})")
    hash_algorithm = _hash_for_algo(slot.algo)
    if isinstance(key, rsa.RSAPublicKey):
        if slot.algo not in _RSA_ALGOS:
            raise ChainError(f"the {cert.name}'s {signer.name} signature is algo {slot.algo:#x}, "
                             "but the signer's key is RSA")
        ok = _rsa_verifies(key, slot.signature, cert.signed_bytes, hash_algorithm)
    else:
        if slot.algo not in _ECDSA_ALGOS:
            raise ChainError(f"the {cert.name}'s {signer.name} signature is algo {slot.algo:#x}, "
                             "but the signer's key is ECDSA")
        ok = ecdsa_le_verifies(key, slot.signature, cert.signed_bytes, hash_algorithm)
    if not ok:
        raise SignatureError(
            f"the {cert.name}'s signature does not verify under the {signer_name} key "
            f"({hash_algorithm.name})")


def ecdsa_le_verifies(key: ec.EllipticCurvePublicKey, signature: bytes, message: bytes,
                      hash_algorithm: hashes.HashAlgorithm) -> bool:
    """An ECDSA signature in AMD's form (R and S, 72 bytes each, little-endian) verifies."""
    r, s = _le(signature[:COORD_SIZE]), _le(signature[COORD_SIZE:2 * COORD_SIZE])
    if not (r and s):
        return False
    try:
        key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hash_algorithm))
    except InvalidSignature:
        return False
    return True


# --- chains ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SevChain:
    """A platform's chain; ``ask``/``ark`` are None when the input carried only the SEV part."""

    pdh: SevCert
    pek: SevCert
    oca: SevCert
    cek: SevCert
    ask: AmdCaCert | None = None
    ark: AmdCaCert | None = None

    def to_export(self) -> bytes:
        """``sevctl export`` bytes: PDH ‖ PEK ‖ OCA ‖ CEK [‖ ASK ‖ ARK]."""
        sev = b"".join(c.to_bytes() for c in (self.pdh, self.pek, self.oca, self.cek))
        if self.ask is None or self.ark is None:
            return sev
        return sev + self.ask.to_bytes() + self.ark.to_bytes()

    def to_qemu(self) -> dict[str, str]:
        """QEMU's ``query-sev-capabilities`` fields ``pdh`` and ``cert-chain``."""
        chain = b"".join(c.to_bytes() for c in (self.pek, self.oca, self.cek))
        return {"pdh": base64.b64encode(self.pdh.to_bytes()).decode(),
                "cert-chain": base64.b64encode(chain).decode()}


#: Largest input accepted: four SEV certificates and two 4096-bit CA certificates.
MAX_CHAIN_SIZE: Final = 4 * SEV_CERT_SIZE + 2 * (0x40 + 3 * 512)


def parse_chain(data: bytes) -> SevChain:
    """A chain from ``sevctl export`` bytes, with (``--full``) or without the CA chain.

    Raises:
        MalformedEvidenceError: not PDH ‖ PEK ‖ OCA ‖ CEK [‖ ASK ‖ ARK].
    """
    if len(data) > MAX_CHAIN_SIZE:
        raise MalformedEvidenceError(
            f"SEV chain is {len(data)} bytes, over the {MAX_CHAIN_SIZE} of a full export")
    if len(data) < 4 * SEV_CERT_SIZE:
        raise MalformedEvidenceError(
            f"SEV chain is {len(data)} bytes; PDH ‖ PEK ‖ OCA ‖ CEK alone is "
            f"{4 * SEV_CERT_SIZE}")
    pdh, pek, oca, cek = (_sev_at(data, i, role)
                          for i, role in enumerate(("PDH", "PEK", "OCA", "CEK")))
    rest = data[4 * SEV_CERT_SIZE:]
    if not rest:
        return SevChain(pdh, pek, oca, cek)
    ask = _ca_at(rest, "ASK")
    ark = _ca_at(rest[len(ask.to_bytes()):], "ARK")
    if len(ask.to_bytes()) + len(ark.to_bytes()) != len(rest):
        raise MalformedEvidenceError(
            f"SEV chain has {len(rest)} bytes after the CEK; ASK ‖ ARK take "
            f"{len(ask.to_bytes()) + len(ark.to_bytes())}")
    return SevChain(pdh, pek, oca, cek, ask=ask, ark=ark)


def _sev_at(data: bytes, index: int, role: str) -> SevCert:
    chunk = data[index * SEV_CERT_SIZE:(index + 1) * SEV_CERT_SIZE]
    try:
        return SevCert.parse(chunk)
    except MalformedEvidenceError as exc:
        raise type(exc)(f"{role} (certificate {index + 1} of the chain): {exc.detail}") from exc


def _ca_at(data: bytes, role: str) -> AmdCaCert:
    try:
        return AmdCaCert.parse(data[:ca_cert_size(data)])
    except MalformedEvidenceError as exc:
        raise type(exc)(f"{role} of the CA chain: {exc.detail}") from exc


def chain_from_qemu(pdh: str, cert_chain: str) -> SevChain:
    """A chain from ``query-sev-capabilities``: base64 ``pdh`` and ``cert-chain``
    (PEK ‖ OCA ‖ CEK).

    Raises:
        MalformedEvidenceError: bad base64 or sizes.
    """
    pdh_bytes = _b64(pdh, "pdh")
    rest = _b64(cert_chain, "cert-chain")
    if len(pdh_bytes) != SEV_CERT_SIZE or len(rest) != 3 * SEV_CERT_SIZE:
        raise MalformedEvidenceError(
            f"query-sev-capabilities pdh is {len(pdh_bytes)} bytes and cert-chain "
            f"{len(rest)}; expected {SEV_CERT_SIZE} and {3 * SEV_CERT_SIZE} (PEK ‖ OCA ‖ CEK)")
    return parse_chain(pdh_bytes + rest)


def chain_from_fields(fields: Mapping[str, Any]) -> SevChain:
    """A chain from JSON fields: ``{"chain": base64 of sevctl export [--full]}`` or QEMU's
    ``{"pdh": ..., "cert-chain": ...}``.

    Raises:
        MalformedEvidenceError: neither form, or the form's bytes do not parse.
    """
    if "chain" in fields and "pdh" not in fields:
        return parse_chain(_b64(fields["chain"], "chain"))
    if "pdh" in fields and "cert-chain" in fields and "chain" not in fields:
        return chain_from_qemu(fields["pdh"], fields["cert-chain"])
    raise MalformedEvidenceError(
        "a SEV platform chain is {\"chain\": base64 of `sevctl export --full`} or QEMU's "
        "{\"pdh\", \"cert-chain\"} (base64)")


def _b64(text: Any, name: str) -> bytes:
    if not isinstance(text, str):
        raise MalformedEvidenceError(f"{name} must be a base64 string, not {type(text).__name__}")
    if len(text) > 2 * MAX_CHAIN_SIZE:
        raise MalformedEvidenceError(f"{name} is {len(text)} characters, too long for a chain")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedEvidenceError(f"{name} is not base64: {exc}") from exc


# --- chain verification --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SevRoot:
    """One product's trust anchor: its ARK and ASK in AMD CA format."""

    product: str
    ark: AmdCaCert
    ask: AmdCaCert
    emulated: bool = False
    """True for test PKIs from :mod:`veritee.testing`; results say so."""


@dataclass(frozen=True, slots=True)
class VerifiedPlatform:
    """What a verified platform chain establishes."""

    product: str
    pdh_public_key: ec.EllipticCurvePublicKey
    pek_api: tuple[int, int]
    pdh_api: tuple[int, int]
    cek_id: str
    """SHA-256 (hex) of the CEK's PUBKEY field: names the chip's endorsement key."""
    emulated: bool = False


def verify_platform_chain(chain: SevChain, *, roots: Sequence[SevRoot] | None = None,
                          product: str | None = None) -> VerifiedPlatform:
    """Verify ARK → ASK → CEK → PEK (← OCA) → PDH against pinned roots.

    ``roots`` defaults to AMD's pinned roots (:func:`veritee.tee.snp.sevroots.pinned_roots`).
    Without ``product`` the product is the one whose ASK signed the CEK. A chain that
    carries its own ARK must carry a pinned one, byte for byte.

    Raises:
        MisuseError: ``product`` names no root in ``roots``.
        UntrustedRootError: the ARK is not pinned, or no pinned ASK signed the CEK.
        ChainError: a certificate in the wrong place, a wrong usage or algorithm, a missing
            signature slot, a KEY_ID mismatch, the CEK signed by another product's ASK.
        SignatureError: a signature does not verify under its issuer's key.
        MalformedEvidenceError: a public key in the chain is invalid.
    """
    all_roots = _default_roots() if roots is None else tuple(roots)
    _check_positions(chain)
    root = _select_root(chain, all_roots, product)
    cek_key = _ecdsa_key(chain.cek)
    oca_key = _ecdsa_key(chain.oca)
    verify_slot(chain.oca, Usage.OCA, oca_key, "OCA's own")
    verify_slot(chain.pek, Usage.CEK, cek_key, "CEK")
    verify_slot(chain.pek, Usage.OCA, oca_key, "OCA")
    pek_key = _ecdsa_key(chain.pek)
    verify_slot(chain.pdh, Usage.PEK, pek_key, "PEK")
    if chain.pdh.algo not in _ECDH_ALGOS:
        raise ChainError(f"the PDH's PUBKEY_ALGO is {chain.pdh.algo:#x}, not ECDH")
    pdh_key = chain.pdh.public_key()
    assert isinstance(pdh_key, ec.EllipticCurvePublicKey)  # ECDH algos decode as EC keys
    return VerifiedPlatform(
        product=root.product, pdh_public_key=pdh_key,
        pek_api=(chain.pek.api_major, chain.pek.api_minor),
        pdh_api=(chain.pdh.api_major, chain.pdh.api_minor),
        cek_id=hashlib.sha256(chain.cek.pubkey).hexdigest(), emulated=root.emulated)


def _default_roots() -> tuple[SevRoot, ...]:
    from veritee.tee.snp import sevroots  # noqa: PLC0415 - sevroots imports this module

    return sevroots.pinned_roots()


_POSITIONS: Final = (("pdh", Usage.PDH), ("pek", Usage.PEK), ("oca", Usage.OCA),
                     ("cek", Usage.CEK))


def _check_positions(chain: SevChain) -> None:
    for name, usage in _POSITIONS:
        cert: SevCert = getattr(chain, name)
        if cert.usage != usage:
            raise ChainError(f"the certificate in the {usage.name} position has usage "
                             f"{_usage_name(cert.usage)}, expected {_usage_name(usage)}")
    for ca, usage in ((chain.ask, Usage.ASK), (chain.ark, Usage.ARK)):
        if ca is not None and ca.key_usage != usage:
            raise ChainError(f"the certificate in the {usage.name} position has KEY_USAGE "
                             f"{_usage_name(ca.key_usage)}, expected {_usage_name(usage)}")


def _ecdsa_key(cert: SevCert) -> SevPublicKey:
    if cert.algo in _ECDH_ALGOS:
        raise ChainError(f"the {cert.name}'s key is an ECDH key (algo {cert.algo:#x}); it "
                         "cannot sign")
    return cert.public_key()


def _select_root(chain: SevChain, roots: tuple[SevRoot, ...],
                 product: str | None) -> SevRoot:
    candidates = tuple(r for r in roots if product is None or r.product == product)
    if not candidates:
        names = ", ".join(sorted({r.product for r in roots})) or "none"
        raise MisuseError(f"no SEV root for product {product!r} (roots: {names})")
    if chain.ark is not None:
        # The signed part (header, key) is compared, and the chain's own self-signature
        # checked: RSA-PSS signatures are randomised, so two genuine copies of one ARK may
        # differ in their signature bytes (the emulated roots are signed in each process).
        ark = chain.ark.signed_bytes
        candidates = tuple(r for r in candidates if r.ark.signed_bytes == ark)
        if candidates:
            try:
                chain.ark.verify_signed_by(chain.ark)
            except SignatureError as exc:
                raise UntrustedRootError(
                    f"the chain's ARK (key id {chain.ark.key_id.hex()}) has a pinned ARK's "
                    "key but its self-signature does not verify: it is not a pinned ARK"
                ) from exc
        else:
            raise UntrustedRootError(
                f"the chain's ARK (key id {chain.ark.key_id.hex()}, sha256 "
                f"{chain.ark.sha256[:16]}…) is not a pinned ARK")
    for root in candidates:
        ask = _check_ca(root, chain.ask)
        if _cek_signed_by(chain.cek, ask):
            return root
    raise _cek_error(chain, roots, candidates)


def _check_ca(root: SevRoot, given_ask: AmdCaCert | None) -> AmdCaCert:
    root.ark.verify_signed_by(root.ark)
    ask = root.ask if given_ask is None else given_ask
    ask.verify_signed_by(root.ark)
    return ask


def _cek_signed_by(cek: SevCert, ask: AmdCaCert) -> bool:
    slot = cek.slot(Usage.ASK)
    if slot is None:
        raise ChainError(f"the CEK has no ASK signature slot (slots name "
                         f"{_usage_name(cek.sig1.usage)} and {_usage_name(cek.sig2.usage)})")
    if slot.algo not in _RSA_ALGOS:
        raise ChainError(f"the CEK's ASK signature is algo {slot.algo:#x}, not RSA")
    return _rsa_verifies(ask.public_key(), slot.signature, cek.signed_bytes,
                         _hash_for_algo(slot.algo))


def _cek_error(chain: SevChain, roots: tuple[SevRoot, ...],
               candidates: tuple[SevRoot, ...]) -> EvidenceError:
    """Why no candidate root's ASK signed the CEK."""
    tried = ", ".join(r.product for r in candidates)
    for other in roots:
        if other not in candidates and _cek_signed_by(chain.cek, other.ask):
            return ChainError(f"the CEK is signed by the {other.product} ASK, not by the "
                              f"{tried} ASK the chain names")
    if chain.ark is not None or chain.ask is not None:
        return SignatureError(f"the CEK's signature does not verify under the {tried} ASK")
    return UntrustedRootError(f"the CEK is signed by none of the pinned ASKs ({tried})")


__all__ = [
    "CURVES",
    "SEV_CERT_SIZE",
    "Algo",
    "AmdCaCert",
    "SevCert",
    "SevChain",
    "SevRoot",
    "SigSlot",
    "Usage",
    "VerifiedPlatform",
    "ca_cert_size",
    "chain_from_fields",
    "chain_from_qemu",
    "decode_public_key",
    "encode_public_key",
    "parse_chain",
    "sign_bytes",
    "verify_platform_chain",
    "verify_slot",
]
