"""The SEV / SEV-ES guest owner's side of a launch: session, measurement, secret.

Sources: AMD "Secure Encrypted Virtualization API" (55766) §6.1 LAUNCH_START (session
blob, TEK/TIK wrapping, KDF of §2.2.3 = NIST SP 800-108 counter mode with HMAC-SHA256),
§6.5 LAUNCH_MEASURE, §6.6 LAUNCH_SECRET; Linux ``efi_secret`` for the secret table;
cross-read with virtee/sev ``session`` and virtee/sevctl (research note amd-sev.md §3.3,
§3.5, §3.6).

Key material is an argument everywhere (``tek=``, ``tik=``, ``nonce=``, ``wrap_iv=``,
``godh_key=``, ``iv=``): given, the result is reproducible; left out, it is random.
"""

from __future__ import annotations

import hmac
import os
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Self

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from veritee.errors import BindingError, MalformedEvidenceError, MisuseError, SignatureError
from veritee.tee.snp.sevcert import Algo, SevCert, Usage

KEY_SIZE: Final = 16

# --- KDF and wrapping (55766 §2.2.3, §6.1) ---------------------------------------------------


def kdf(key: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """NIST SP 800-108 KDF in counter mode, PRF HMAC-SHA256:
    ``K_i = HMAC(key, u32le(i) ‖ label ‖ 0x00 ‖ context ‖ u32le(8·length))``."""
    if not 0 < length <= 32 * 255:
        raise MisuseError(f"KDF output length {length} is out of range")
    out = b""
    tail = b"\0" + context + struct.pack("<I", 8 * length)
    for i in range(1, -(-length // 32) + 1):
        out += hmac.digest(key, struct.pack("<I", i) + label + tail, "sha256")
    return out[:length]


def master_secret(shared: bytes, nonce: bytes) -> bytes:
    """``KDF(Z, "sev-master-secret", NONCE, 16)``."""
    return kdf(shared, b"sev-master-secret", nonce, KEY_SIZE)


def kek_kik(master: bytes) -> tuple[bytes, bytes]:
    """The key-encryption and key-integrity keys derived from the master secret."""
    return kdf(master, b"sev-kek", b"", KEY_SIZE), kdf(master, b"sev-kik", b"", KEY_SIZE)


def aes128_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-128-CTR with a 16-byte initial counter block (encryption = decryption)."""
    _need(key, KEY_SIZE, "AES key")
    _need(iv, 16, "IV")
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def wrap_transport_keys(tek: bytes, tik: bytes, *, kek: bytes, kik: bytes,
                        wrap_iv: bytes) -> tuple[bytes, bytes]:
    """``(WRAP_TK, WRAP_MAC)``: ``AES-128-CTR(KEK, WRAP_IV)(TEK ‖ TIK)`` and its HMAC under KIK."""
    _need(tek, KEY_SIZE, "TEK")
    _need(tik, KEY_SIZE, "TIK")
    wrapped = aes128_ctr(kek, wrap_iv, tek + tik)
    return wrapped, hmac.digest(kik, wrapped, "sha256")


def policy_mac(tik: bytes, policy: int) -> bytes:
    """``HMAC-SHA256(TIK, POLICY u32 LE)``."""
    return hmac.digest(tik, _u32(policy, "policy"), "sha256")


def _need(value: bytes, size: int, name: str) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        got = len(value) if isinstance(value, bytes) else type(value).__name__
        raise MisuseError(f"{name} must be {size} bytes, got {got}")


def _random(value: bytes | None) -> bytes:
    return os.urandom(16) if value is None else value


def _u32(value: int, name: str) -> bytes:
    if not isinstance(value, int) or not 0 <= value < 2**32:
        raise MisuseError(f"{name} must be a u32, got {value!r}")
    return struct.pack("<I", value)


# --- the session blob and the GODH certificate -------------------------------------------------

SESSION_SIZE: Final = 128


@dataclass(frozen=True, slots=True)
class SessionBlob:
    """LAUNCH_START's session data (55766 Table 45): what QEMU takes as ``session-file``."""

    nonce: bytes
    wrap_tk: bytes
    wrap_iv: bytes
    wrap_mac: bytes
    policy_mac: bytes

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Raises MalformedEvidenceError unless ``data`` is 128 bytes."""
        if len(data) != SESSION_SIZE:
            raise MalformedEvidenceError(
                f"SEV session blob is {len(data)} bytes; expected {SESSION_SIZE}")
        return cls(data[0:16], data[16:48], data[48:64], data[64:96], data[96:128])

    def to_bytes(self) -> bytes:
        return self.nonce + self.wrap_tk + self.wrap_iv + self.wrap_mac + self.policy_mac


def godh_certificate(key: ec.EllipticCurvePublicKey) -> SevCert:
    """The guest owner's Diffie-Hellman certificate: usage PDH, ECDH, signatures empty."""
    return SevCert.build(key, usage=Usage.PDH, algo=Algo.ECDH_SHA256)


@dataclass(frozen=True, slots=True)
class OwnerSession:
    """A launch session as the guest owner keeps it (TEK and TIK are secrets)."""

    godh_cert: bytes
    blob: bytes
    tek: bytes
    tik: bytes
    policy: int


def create_session(pdh: ec.EllipticCurvePublicKey, policy: int, *, tek: bytes | None = None,
                   tik: bytes | None = None, nonce: bytes | None = None,
                   wrap_iv: bytes | None = None,
                   godh_key: ec.EllipticCurvePrivateKey | None = None) -> OwnerSession:
    """A session for the platform whose (verified) PDH public key is ``pdh``.

    Raises:
        MisuseError: key material of the wrong size, or a PDH that is not an EC key.
    """
    if not isinstance(pdh, ec.EllipticCurvePublicKey):
        raise MisuseError(f"the PDH is an EC public key, not {type(pdh).__name__}")
    if godh_key is None:
        godh_key = ec.generate_private_key(pdh.curve)
    tek, tik, nonce, wrap_iv = (_random(v) for v in (tek, tik, nonce, wrap_iv))
    _need(nonce, 16, "nonce")
    kek, kik = kek_kik(master_secret(godh_key.exchange(ec.ECDH(), pdh), nonce))
    wrapped, mac = wrap_transport_keys(tek, tik, kek=kek, kik=kik, wrap_iv=wrap_iv)
    blob = SessionBlob(nonce, wrapped, wrap_iv, mac, policy_mac(tik, policy))
    godh = godh_certificate(godh_key.public_key()).to_bytes()
    return OwnerSession(godh, blob.to_bytes(), tek, tik, policy)


def new_session(pdh: ec.EllipticCurvePublicKey, policy: int, *, tek: bytes | None = None,
                tik: bytes | None = None, **keys: Any) -> tuple[bytes, bytes]:
    """``(GODH certificate, session blob)`` of :func:`create_session` (QEMU's
    ``dh-cert-file`` and ``session-file``, before base64)."""
    session = create_session(pdh, policy, tek=tek, tik=tik, **keys)
    return session.godh_cert, session.blob


def open_session(pdh_key: ec.EllipticCurvePrivateKey, godh_cert: bytes, blob: bytes,
                 policy: int) -> tuple[bytes, bytes]:
    """The firmware's side of LAUNCH_START: ``(TEK, TIK)`` unwrapped from ``blob``.

    Raises:
        MalformedEvidenceError: the GODH certificate or blob does not parse, or the GODH
            is no ECDH key on the PDH's curve.
        SignatureError: WRAP_MAC does not verify (another PDH, or a tampered blob).
        BindingError: POLICY_MAC is not the MAC of ``policy`` (the host changed the policy).
    """
    godh = SevCert.parse(godh_cert)
    session = SessionBlob.parse(blob)
    if godh.usage != Usage.PDH or godh.algo not in (Algo.ECDH_SHA256, Algo.ECDH_SHA384):
        raise MalformedEvidenceError(
            f"the GODH certificate has usage {godh.usage:#x} and algo {godh.algo:#x}; "
            "expected PDH (0x1003) with ECDH")
    owner = godh.public_key()
    if not isinstance(owner, ec.EllipticCurvePublicKey) or owner.curve.name != pdh_key.curve.name:
        raise MalformedEvidenceError(f"the GODH key is not on the PDH's curve {pdh_key.curve.name}")
    kek, kik = kek_kik(master_secret(pdh_key.exchange(ec.ECDH(), owner), session.nonce))
    if not hmac.compare_digest(hmac.digest(kik, session.wrap_tk, "sha256"), session.wrap_mac):
        raise SignatureError("the session's WRAP_MAC does not verify: the session was not made "
                             "for this platform's PDH, or it was altered")
    keys = aes128_ctr(kek, session.wrap_iv, session.wrap_tk)
    tek, tik = keys[:KEY_SIZE], keys[KEY_SIZE:]
    if not hmac.compare_digest(policy_mac(tik, policy), session.policy_mac):
        raise BindingError(f"the session's POLICY_MAC is not the MAC of policy {policy:#x}: the "
                           "session was made for another guest policy")
    return tek, tik


# --- LAUNCH_MEASURE (55766 §6.5) --------------------------------------------------------------

MEASURE_CONTEXT: Final = 0x04


def launch_measure(tik: bytes, api_major: int, api_minor: int, build_id: int,  # noqa: PLR0917
                   policy: int, launch_digest: bytes, mnonce: bytes) -> bytes:
    """``HMAC-SHA256(TIK, 0x04 ‖ API_MAJOR ‖ API_MINOR ‖ BUILD ‖ POLICY ‖ LD ‖ MNONCE)``.

    Raises:
        MisuseError: a field out of range or of the wrong size.
    """
    _need(tik, KEY_SIZE, "TIK")
    _need(launch_digest, 32, "launch digest")
    _need(mnonce, 16, "MNONCE")
    for name, value in (("api_major", api_major), ("api_minor", api_minor),
                        ("build_id", build_id)):
        if not isinstance(value, int) or not 0 <= value <= 255:
            raise MisuseError(f"{name} must be a byte, got {value!r}")
    message = (bytes((MEASURE_CONTEXT, api_major, api_minor, build_id))
               + _u32(policy, "policy") + launch_digest + mnonce)
    return hmac.digest(tik, message, "sha256")


def check_launch_measure(measure: bytes, *, tik: bytes, api_major: int, api_minor: int,
                         build_id: int, policy: int, launch_digest: bytes,
                         mnonce: bytes) -> None:
    """Check a relayed MEASURE in constant time.

    Raises:
        MalformedEvidenceError: ``measure`` is not 32 bytes.
        SignatureError: it is not the MAC of these fields under ``tik``.
    """
    if len(measure) != 32:
        raise MalformedEvidenceError(f"MEASURE is {len(measure)} bytes, not 32")
    expected = launch_measure(tik, api_major, api_minor, build_id, policy, launch_digest,
                              mnonce)
    if not hmac.compare_digest(expected, measure):
        raise SignatureError(
            f"LAUNCH_MEASURE {measure.hex()} is not the measurement of launch digest "
            f"{launch_digest.hex()} (API {api_major}.{api_minor} build {build_id}, policy "
            f"{policy:#x}) under this session's TIK")


# --- LAUNCH_SECRET (55766 §6.6) ---------------------------------------------------------------

HEADER_SIZE: Final = 52
SECRET_CONTEXT: Final = 0x01
FLAG_COMPRESSED: Final = 0x1


@dataclass(frozen=True, slots=True)
class SecretPacket:
    """QEMU's ``sev-inject-launch-secret`` ``packet-header`` (52 bytes) and ``secret``."""

    header: bytes
    ciphertext: bytes

    @property
    def flags(self) -> int:
        return int.from_bytes(self.header[:4], "little")

    @property
    def iv(self) -> bytes:
        return self.header[4:20]

    @property
    def mac(self) -> bytes:
        return self.header[20:52]


def secret_mac(tik: bytes, flags: int, iv: bytes, ciphertext: bytes, measure: bytes) -> bytes:
    """``HMAC-SHA256(TIK, 0x01 ‖ FLAGS ‖ IV ‖ GUEST_LEN ‖ TRANS_LEN ‖ CIPHERTEXT ‖ MEASURE)``
    with both lengths the ciphertext's (CTR, no compression)."""
    length = _u32(len(ciphertext), "secret length")
    message = (bytes((SECRET_CONTEXT,)) + _u32(flags, "flags") + iv + length + length
               + ciphertext + measure)
    return hmac.digest(tik, message, "sha256")


def secret_packet(tek: bytes, tik: bytes, measure: bytes, table: bytes, *,
                  iv: bytes | None = None, flags: int = 0) -> SecretPacket:
    """Encrypt ``table`` for the launch whose LAUNCH_MEASURE is ``measure``.

    Raises:
        MisuseError: key material of the wrong size, or flags other than 0.
    """
    if flags != 0:
        raise MisuseError(f"only FLAGS 0 is supported (no compression), got {flags:#x}")
    _need(measure, 32, "MEASURE")
    iv = _random(iv)
    ciphertext = aes128_ctr(tek, iv, table)
    header = _u32(flags, "flags") + iv + secret_mac(tik, flags, iv, ciphertext, measure)
    return SecretPacket(header, ciphertext)


def open_secret_packet(tek: bytes, tik: bytes, measure: bytes, header: bytes,
                       ciphertext: bytes) -> bytes:
    """The firmware's side of LAUNCH_SECRET: check the MAC, then decrypt.

    Raises:
        MalformedEvidenceError: a header that is not 52 bytes, or unsupported FLAGS.
        SignatureError: the MAC does not verify under ``tik`` for ``measure``.
    """
    if len(header) != HEADER_SIZE:
        raise MalformedEvidenceError(
            f"LAUNCH_SECRET header is {len(header)} bytes; expected {HEADER_SIZE}")
    packet = SecretPacket(header, ciphertext)
    if packet.flags != 0:
        raise MalformedEvidenceError(
            f"LAUNCH_SECRET FLAGS is {packet.flags:#x}; only 0 (uncompressed) is supported")
    expected = secret_mac(tik, packet.flags, packet.iv, ciphertext, measure)
    if not hmac.compare_digest(expected, packet.mac):
        raise SignatureError("the LAUNCH_SECRET MAC does not verify: not made with this "
                             "launch's TIK and LAUNCH_MEASURE")
    return aes128_ctr(tek, packet.iv, ciphertext)


# --- the secret table (Linux efi_secret "Structure of the EFI secret area") -----------------

TABLE_GUID: Final = uuid.UUID("1e74f542-71dd-4d66-963e-ef4287ff173b")
ENTRY_HEADER: Final = 20  # GUID (bytes_le) ‖ u32 LE length (header included)
#: A secret area is at most a page in OVMF; tables larger than this are refused.
MAX_TABLE_SIZE: Final = 0x10000


def build_secret_table(entries: Sequence[tuple[uuid.UUID, bytes]]) -> bytes:
    """The table: header GUID ‖ u32 total ‖ entries (GUID ‖ u32 len ‖ data), zero-padded
    to a multiple of 16.

    The total length written is sevctl's: header plus entries, *before* padding.
    :func:`parse_secret_table` also accepts the padded total the CoCo scripts write.

    Raises:
        MisuseError: a repeated or non-UUID GUID, or a table over 64 KiB.
    """
    body = b""
    seen: set[uuid.UUID] = set()
    for guid, data in entries:
        if not isinstance(guid, uuid.UUID) or guid in seen or guid == TABLE_GUID:
            raise MisuseError(f"secret table entry GUID {guid!r} is not a new UUID")
        seen.add(guid)
        body += guid.bytes_le + struct.pack("<I", ENTRY_HEADER + len(data)) + bytes(data)
    total = ENTRY_HEADER + len(body)
    if total > MAX_TABLE_SIZE:
        raise MisuseError(f"secret table is {total} bytes, over {MAX_TABLE_SIZE}")
    table = TABLE_GUID.bytes_le + struct.pack("<I", total) + body
    return table + bytes(-len(table) % 16)


def parse_secret_table(data: bytes) -> list[tuple[uuid.UUID, bytes]]:
    """The entries of a secret table (either total-length convention; trailing zeros allowed).

    Raises:
        MalformedEvidenceError: a wrong header GUID, a total or entry length that does not
            fit, a repeated GUID, or non-zero bytes after the entries.
    """
    if len(data) > MAX_TABLE_SIZE:
        raise MalformedEvidenceError(f"secret table is {len(data)} bytes, over {MAX_TABLE_SIZE}")
    if len(data) < ENTRY_HEADER:
        raise MalformedEvidenceError(f"secret table is {len(data)} bytes, shorter than its "
                                     f"{ENTRY_HEADER}-byte header")
    guid = uuid.UUID(bytes_le=data[:16])
    if guid != TABLE_GUID:
        raise MalformedEvidenceError(f"secret table header GUID is {guid}, expected {TABLE_GUID}")
    total = int.from_bytes(data[16:20], "little")
    if not ENTRY_HEADER <= total <= len(data):
        raise MalformedEvidenceError(
            f"secret table total length is {total}; the table is {len(data)} bytes")
    entries, end = _entries(data, total)
    if total - end >= 16 or any(data[end:]):
        raise MalformedEvidenceError(
            f"secret table: {len(data) - end} bytes after the last entry (at {end}) must be "
            "zero padding shorter than 16 bytes within the total length")
    return entries


def _entries(data: bytes, total: int) -> tuple[list[tuple[uuid.UUID, bytes]], int]:
    entries: list[tuple[uuid.UUID, bytes]] = []
    at = ENTRY_HEADER
    while total - at >= ENTRY_HEADER and any(data[at:at + ENTRY_HEADER]):
        guid = uuid.UUID(bytes_le=data[at:at + 16])
        length = int.from_bytes(data[at + 16:at + 20], "little")
        if not ENTRY_HEADER <= length <= total - at:
            raise MalformedEvidenceError(
                f"secret table entry {guid} at {at} has length {length}; "
                f"{total - at} bytes remain of the total {total}")
        if guid in (g for g, _ in entries):
            raise MalformedEvidenceError(f"secret table entry {guid} appears twice")
        entries.append((guid, data[at + ENTRY_HEADER:at + length]))
        at += length
    return entries, at


# --- the SEV guest policy (55766 §3 Table 2) ------------------------------------------------

_POLICY_BITS: Final = ("nodbg", "noks", "es", "nosend", "domain", "sev")
_POLICY_RESERVED: Final = 0x0000FFC0


@dataclass(frozen=True, slots=True)
class SevPolicy:
    """The SEV guest policy (u32): flags in bits 0-5, minimum API in bits 16-31."""

    nodbg: bool = False
    noks: bool = False
    es: bool = False
    nosend: bool = False
    domain: bool = False
    sev: bool = False
    api_major: int = 0
    api_minor: int = 0

    @classmethod
    def from_int(cls, value: int) -> Self:
        """Raises MalformedEvidenceError for a value out of u32 or with reserved bits set."""
        if not isinstance(value, int) or not 0 <= value < 2**32:
            raise MalformedEvidenceError(f"SEV policy must be a u32, got {value!r}")
        if value & _POLICY_RESERVED:
            raise MalformedEvidenceError(
                f"SEV policy {value:#x} sets reserved bits {value & _POLICY_RESERVED:#x}")
        flags = {name: bool(value >> bit & 1) for bit, name in enumerate(_POLICY_BITS)}
        return cls(**flags, api_major=value >> 16 & 0xFF, api_minor=value >> 24 & 0xFF)

    def to_int(self) -> int:
        value = sum(1 << bit for bit, name in enumerate(_POLICY_BITS) if getattr(self, name))
        return value | (self.api_major & 0xFF) << 16 | (self.api_minor & 0xFF) << 24

    def to_claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {name: getattr(self, name) for name in _POLICY_BITS}
        claims["debug_allowed"] = not self.nodbg
        claims["min_api"] = f"{self.api_major}.{self.api_minor}"
        return claims


__all__ = [
    "HEADER_SIZE",
    "TABLE_GUID",
    "OwnerSession",
    "SecretPacket",
    "SessionBlob",
    "SevPolicy",
    "aes128_ctr",
    "build_secret_table",
    "check_launch_measure",
    "create_session",
    "godh_certificate",
    "kdf",
    "kek_kik",
    "launch_measure",
    "master_secret",
    "new_session",
    "open_secret_packet",
    "open_session",
    "parse_secret_table",
    "policy_mac",
    "secret_mac",
    "secret_packet",
    "wrap_transport_keys",
]
