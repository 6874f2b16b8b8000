"""An emulated TPM 2.0 with a measured boot, and a real software TPM (swtpm) for tests.

TEST ONLY. :class:`TpmEmulator` keeps PCR banks (sha1 and sha256 by default), extends them from
a TCG PC Client event log that it writes itself, and quotes them with an attestation key built
on the committed test keys (``data/keys/tpm-ak.pem``, RSA-2048, for RSASSA and RSA-PSS quotes;
``tpm-ak-p256.pem`` for ECDSA; ``tpm-ak-ca.pem`` issues GCE-style AK certificates). It writes
the evidence in every form the ``tpm`` verifier reads (CONTRACT §1.1): keylime's quote string,
Trustee's TPM attester JSON, go-tpm-tools' ``Attestation`` protobuf (one quote per bank, with
an AK certificate) and the bare event log. A verifier trusts the AK only when it is given the
AK's public key (or the test CA's certificate) as an endorsement, which is what
:data:`TPM_EMULATOR` writes beside the evidence.

Sources: TPM 2.0 Library Part 2 (``TPMS_ATTEST`` §10.12.12, ``TPMS_CLOCK_INFO`` §10.11.1,
``TPML_PCR_SELECTION`` §10.9.7, ``TPMT_SIGNATURE`` §11.3.4, ``TPMT_PUBLIC`` §12.2.4, names
§16 of Part 1); the TCG PC Client Platform Firmware Profile 1.05 §10 (``TCG_PCR_EVENT``,
``TCG_PCR_EVENT2``, ``TCG_EfiSpecIdEvent``, ``TCG_EfiStartupLocalityEvent``,
``UEFI_VARIABLE_DATA``, ``UEFI_IMAGE_LOAD_EVENT``) and §3.3.4 (PCR usage); the PC Client PTP
(PCRs 17-22 reset to all ones); se-pef-tpm-gpu.md §3.1-3.3, §3.6 (init data:
``PCR8 = SHA-256(0^32 || digest)``) and §3.7 (swtpm); tpm2-tools' PCR file as keylime reads
it (CONTRACT §1.1); go-tpm-tools ``proto/attest.proto`` (``Attestation``: ak_pub 1, quotes 2,
event_log 3, ak_cert 6, intermediate_certs 7) and ``proto/tpm.proto`` (``Quote``: quote 1,
raw_sig 2, pcrs 3; ``PCRs``: hash 1, pcrs 2 as map<uint32, bytes>).

Negative knobs (:data:`KNOB_ERRORS`; :func:`knob_error` where the form changes the error) each
break one thing and name the error a correct verifier raises; settings (form, AK kind, PCR
selection, banks, locality, init data) change claims only. :func:`emulated_anchors` gives the
emulated AKs and AK CA as trust anchors, for ``--trust-emulated``.

:class:`Swtpm` runs Debian's swtpm on loopback and drives it with tpm2-tools, so that tests can
check the verifier against quotes from a real TPM implementation; :meth:`Swtpm.available` says
whether the programs are installed, so tests skip cleanly without them.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Final, Literal, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID

from veritee import errors
from veritee.eventlog import (
    EV_EFI_ACTION,
    EV_EFI_BOOT_SERVICES_APPLICATION,
    EV_EFI_PLATFORM_FIRMWARE_BLOB,
    EV_EFI_VARIABLE_DRIVER_CONFIG,
    EV_IPL,
    EV_NO_ACTION,
    EV_S_CRTM_VERSION,
    EV_SEPARATOR,
)
from veritee.tee.tpm.anchors import TpmRoot
from veritee.tee.tpm.structures import (
    HASH_IDS,
    HASH_SIZES,
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_CERTIFY,
    TPM_ST_ATTEST_QUOTE,
    PcrSelection,
    SignatureAlg,
    build_attest,
    build_public,
    build_signature,
    name_of,
    pcr_digest,
)
from veritee.testing import Emulated, pki

AkKind = Literal["rsa", "rsa-pss", "ecdsa"]
Form = Literal["trustee", "keylime", "go-tpm-tools", "eventlog"]
AK_KINDS: Final[tuple[AkKind, ...]] = get_args(AkKind)
FORMS: Final[tuple[Form, ...]] = get_args(Form)

# -- TPM constants (TCG Algorithm Registry; TPM 2.0 Part 2 §6) ---------------------------------

#: The endorsement hierarchy's handle, the parent of the emulated AK's qualified name.
TPM_RH_ENDORSEMENT: Final = 0x4000000B
HASH_ALG: Final = HASH_IDS
DIGEST_SIZE: Final = HASH_SIZES
_CRYPTO_HASH: Final[Mapping[str, type[hashes.HashAlgorithm]]] = {
    "sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
    "sha512": hashes.SHA512}
#: PCRs of a PC Client TPM, and the DRTM ones that reset to all ones (PC Client PTP).
PCR_COUNT: Final = 24
DRTM_PCRS: Final = range(17, 23)
#: ``TPM2B_DATA`` holds at most a ``TPMT_HA``'s digest: the qualifying data is 0-64 bytes.
MAX_NONCE: Final = 64

_EFI_GLOBAL_VARIABLE: Final = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")

DEFAULT_CMDLINE: Final = b"BOOT_IMAGE=/boot/vmlinuz-6.1.0-veritee root=/dev/vda1 ro console=ttyS0"
DEFAULT_KERNEL: Final = b"/boot/vmlinuz-6.1.0-veritee"
DEFAULT_FIRMWARE_VERSION: Final = 0x2024050100010203
DEFAULT_SELECTION: Final[tuple[tuple[str, tuple[int, ...]], ...]] = (
    ("sha256", tuple(range(PCR_COUNT))),)


def digest(bank: str, data: bytes) -> bytes:
    """``H_bank(data)``."""
    return hashlib.new(bank, data).digest()


# -- the event log (PFP §10) -----------------------------------------------------------------------


@dataclass(frozen=True)
class TpmEvent:
    """One ``TCG_PCR_EVENT2``: the PCR, the type, the data, one digest per bank."""

    pcr: int
    type: int
    data: bytes
    digests: tuple[tuple[str, bytes], ...]

    def digest(self, bank: str) -> bytes:
        return dict(self.digests)[bank]

    def to_bytes(self) -> bytes:
        values = b"".join(struct.pack("<H", HASH_ALG[bank]) + value
                          for bank, value in self.digests)
        return (struct.pack("<III", self.pcr, self.type, len(self.digests)) + values
                + struct.pack("<I", len(self.data)) + self.data)


def measured(pcr: int, event_type: int, data: bytes, banks: Sequence[str], *,
             of: bytes | None = None) -> TpmEvent:
    """An event whose digests are the hashes of ``of`` (default: its own data)."""
    what = data if of is None else of
    return TpmEvent(pcr, event_type, data, tuple((b, digest(b, what)) for b in banks))


def spec_id_record(banks: Sequence[str]) -> bytes:
    """The first record: a legacy SHA-1 ``TCG_PCR_EVENT`` (PCR 0, EV_NO_ACTION, 20 zero
    bytes) carrying ``TCG_EfiSpecIdEvent`` "Spec ID Event03" for PC Client platforms, spec
    2.0 errata 0, UINTN of 8 bytes, one ``{algId, digestSize}`` per bank."""
    spec = (b"Spec ID Event03\0" + struct.pack("<IBBBB", 0, 0, 2, 0, 2)
            + struct.pack("<I", len(banks))
            + b"".join(struct.pack("<HH", HASH_ALG[b], DIGEST_SIZE[b]) for b in banks)
            + b"\0")
    return struct.pack("<II", 0, EV_NO_ACTION) + bytes(20) + struct.pack("<I", len(spec)) + spec


def startup_locality(locality: int, banks: Sequence[str]) -> TpmEvent:
    """The ``TCG_EfiStartupLocalityEvent`` (EV_NO_ACTION in PCR 0, zero digests): PCR 0 starts
    at ``locality`` in its last byte."""
    data = b"StartupLocality\0" + bytes([locality])
    return TpmEvent(0, EV_NO_ACTION, data, tuple((b, bytes(DIGEST_SIZE[b])) for b in banks))


def variable_data(name: str, value: bytes, guid: uuid.UUID = _EFI_GLOBAL_VARIABLE) -> bytes:
    """``UEFI_VARIABLE_DATA`` (PFP §10.4.4)."""
    return (guid.bytes_le + struct.pack("<QQ", len(name), len(value))
            + name.encode("utf-16-le") + value)


def image_load(path: str) -> bytes:
    """``UEFI_IMAGE_LOAD_EVENT`` with a file-path device path (UEFI 2.10 §10.3.5.4)."""
    text = (path + "\0").encode("utf-16-le")
    device_path = struct.pack("<BBH", 4, 4, 4 + len(text)) + text + b"\x7f\xff\x04\x00"
    return struct.pack("<QQQQ", 0x7E000000, 0xC00000, 0, len(device_path)) + device_path


def fit_init_data(init_data: bytes) -> bytes:
    """The init-data digest fitted to SHA-256 PCR 8's 32 bytes (a longer digest keeps its first
    32 bytes, a shorter one is zero-padded), as ``veritee.tee.tpm.policy`` fits it."""
    return init_data[:32] + bytes(max(0, 32 - len(init_data)))


def default_events(banks: Sequence[str], *, locality: int | None = None,
                   init_data: bytes | None = None, cmdline: bytes = DEFAULT_CMDLINE,
                   secure_boot: bool = True) -> tuple[TpmEvent, ...]:
    """A short UEFI + GRUB + Linux boot: the S-CRTM version and a firmware volume (PCR 0),
    SecureBoot (PCR 7), separators (PCRs 0-7), the boot loader and kernel images (PCR 4), the
    kernel command line (GRUB's ``kernel_cmdline:``, PCR 8) and the kernel file (PCR 9).

    ``init_data``: PCR 8 holds only the init-data event (its SHA-256 digest is the init-data
    digest fitted to 32 bytes, so ``PCR8 = SHA-256(0^32 || digest)``) and the command line moves
    to PCR 9. ``locality``: a StartupLocality event comes first.
    """
    m = functools.partial(measured, banks=banks)
    events: list[TpmEvent] = [] if locality is None else [startup_locality(locality, banks)]
    events += [
        m(0, EV_S_CRTM_VERSION, "veritee emulated firmware 1.0\0".encode("utf-16-le")),
        m(0, EV_EFI_PLATFORM_FIRMWARE_BLOB, struct.pack("<QQ", 0xFFC00000, 0x400000),
          of=b"veritee emulated firmware volume"),
        m(7, EV_EFI_VARIABLE_DRIVER_CONFIG,
          variable_data("SecureBoot", b"\x01" if secure_boot else b"\x00")),
        *(m(pcr, EV_SEPARATOR, bytes(4)) for pcr in range(8)),
        m(4, EV_EFI_ACTION, b"Calling EFI Application from Boot Option"),
        m(4, EV_EFI_BOOT_SERVICES_APPLICATION, image_load("\\EFI\\debian\\grubx64.efi"),
          of=b"veritee emulated boot loader image"),
        m(4, EV_EFI_BOOT_SERVICES_APPLICATION, image_load(DEFAULT_KERNEL.decode()),
          of=b"veritee emulated kernel image"),
        m(5, EV_EFI_ACTION, b"Exit Boot Services Invocation"),
    ]
    cmdline_pcr = 8
    if init_data is not None:
        fitted = fit_init_data(init_data)
        events.append(TpmEvent(8, EV_IPL, b"veritee init-data\0",
                               tuple((b, fitted if b == "sha256" else digest(b, fitted))
                                     for b in banks)))
        cmdline_pcr = 9
    events += [m(cmdline_pcr, EV_IPL, b"kernel_cmdline: " + cmdline + b"\0", of=cmdline),
               m(9, EV_IPL, DEFAULT_KERNEL + b"\0", of=b"veritee emulated kernel file")]
    return tuple(events)


def build_event_log(events: Iterable[TpmEvent], banks: Sequence[str]) -> bytes:
    """A crypto-agile log: the Spec ID record, then the events."""
    return spec_id_record(banks) + b"".join(event.to_bytes() for event in events)


def reset_pcrs(bank: str, locality: int = 0) -> list[bytes]:
    """A bank after TPM2_Startup: zeros, PCRs 17-22 all ones, PCR 0 ending in the locality."""
    size = DIGEST_SIZE[bank]
    values = [b"\xff" * size if i in DRTM_PCRS else bytes(size) for i in range(PCR_COUNT)]
    values[0] = bytes(size - 1) + bytes([locality])
    return values


def replay(events: Iterable[TpmEvent], banks: Sequence[str]) -> dict[str, list[bytes]]:
    """Every bank's 24 PCRs after the events (``PCR = H(PCR || digest)``; EV_NO_ACTION is not
    extended, a StartupLocality event sets PCR 0's start)."""
    events = tuple(events)
    locality = next((e.data[16] for e in events if e.type == EV_NO_ACTION and e.pcr == 0
                     and e.data.startswith(b"StartupLocality\0")), 0)
    pcrs = {bank: reset_pcrs(bank, locality) for bank in banks}
    for event in events:
        if event.type == EV_NO_ACTION:
            continue
        for bank, value in event.digests:
            pcrs[bank][event.pcr] = digest(bank, pcrs[bank][event.pcr] + value)
    return pcrs


# -- TPM structures (built by veritee.tee.tpm.structures) -----------------------------------------

_SCHEMES: Final[Mapping[AkKind, SignatureAlg]] = {"rsa": "rsassa", "rsa-pss": "rsapss",
                                                  "ecdsa": "ecdsa"}


def selections(selection: Sequence[tuple[str, Sequence[int]]]) -> tuple[PcrSelection, ...]:
    return tuple(PcrSelection(bank, tuple(sorted(indices))) for bank, indices in selection)


def ak_public(key: Any, kind: AkKind) -> bytes:
    """The AK's ``TPMT_PUBLIC``: tpm2_createak's restricted signing template, no symmetric
    algorithm, the scheme of ``kind`` with SHA-256."""
    return build_public(key, scheme=_SCHEMES[kind])


def qualified_name(parent_qn: bytes, name: bytes, name_alg: str = "sha256") -> bytes:
    """``QN = nameAlg || H(QN_parent || name)`` (Part 1 §16); a hierarchy's QN is its handle."""
    return struct.pack(">H", HASH_ALG[name_alg]) + digest(name_alg, parent_qn + name)


def sign_attest(key: Any, kind: AkKind, attest: bytes, sig_hash: str = "sha256") -> bytes:
    """``TPMT_SIGNATURE`` over ``H(attest)``: RSASSA (PKCS #1 v1.5), RSAPSS (salt as long as
    the digest, as TPMs make it) or ECDSA."""
    algorithm = _CRYPTO_HASH[sig_hash]()
    hashed = digest(sig_hash, attest)
    if kind == "ecdsa":
        raw = key.sign(hashed, ec.ECDSA(Prehashed(algorithm)))
    else:
        pad = padding.PKCS1v15() if kind == "rsa" else padding.PSS(
            mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)
        raw = key.sign(hashed, pad, Prehashed(algorithm))
    return build_signature(_SCHEMES[kind], sig_hash, raw)


# -- tpm2-tools' PCR file (CONTRACT §1.1) --------------------------------------------------------

_SELECTION_SLOTS: Final = 16
_DIGESTS_PER_LIST: Final = 8


def pcr_blob(selection: Sequence[tuple[str, Sequence[int]]],
             values: Sequence[bytes]) -> bytes:
    """The PCR file ``tpm2_quote -o`` writes: ``TPML_PCR_SELECTION`` as in memory (u32le count,
    16 × ``{u16le hash, u8 sizeofSelect, u8[4] select, pad}``), u32le count of ``TPML_DIGEST``,
    each u32le count + 8 × ``{u16le size, 64-byte buffer}``; ``values`` in selection order,
    eight to a list."""
    out = struct.pack("<I", len(selection))
    for slot in range(_SELECTION_SLOTS):
        if slot < len(selection):
            bank, indices = selection[slot]
            bitmap = bytearray(4)
            for i in indices:
                bitmap[i // 8] |= 1 << (i % 8)
            out += struct.pack("<HB", HASH_ALG[bank], 3) + bytes(bitmap) + b"\0"
        else:
            out += bytes(8)
    lists = [values[i:i + _DIGESTS_PER_LIST] for i in range(0, len(values), _DIGESTS_PER_LIST)]
    out += struct.pack("<I", len(lists))
    for chunk in lists:
        out += struct.pack("<I", len(chunk))
        for slot in range(_DIGESTS_PER_LIST):
            value = chunk[slot] if slot < len(chunk) else b""
            out += struct.pack("<H", len(value)) + value.ljust(64, b"\0")
    return out


def read_pcr_blob(blob: bytes) -> list[tuple[str, int, bytes]]:
    """``(bank, index, value)`` in selection order from a tpm2-tools PCR file (test helper;
    assumes a well-formed file)."""
    names = {v: k for k, v in HASH_ALG.items()}
    (count,) = struct.unpack_from("<I", blob, 0)
    wanted: list[tuple[str, int]] = []
    for slot in range(count):
        alg, size = struct.unpack_from("<HB", blob, 4 + 8 * slot)
        bitmap = int.from_bytes(blob[7 + 8 * slot:7 + 8 * slot + size], "little")
        wanted += [(names[alg], i) for i in range(8 * size) if bitmap >> i & 1]
    offset = 4 + 8 * _SELECTION_SLOTS
    (lists,) = struct.unpack_from("<I", blob, offset)
    offset += 4
    values: list[bytes] = []
    for _ in range(lists):
        (used,) = struct.unpack_from("<I", blob, offset)
        offset += 4
        for slot in range(_DIGESTS_PER_LIST):
            (size,) = struct.unpack_from("<H", blob, offset)
            if slot < used:
                values.append(blob[offset + 2:offset + 2 + size])
            offset += 66
    return [(bank, i, v) for (bank, i), v in zip(wanted, values, strict=True)]


# -- evidence forms ------------------------------------------------------------------------------


def keylime_quote(attest: bytes, signature: bytes, blob: bytes) -> bytes:
    """keylime's quote string ``r<b64 TPMS_ATTEST>:<b64 TPMT_SIGNATURE>:<b64 PCR file>``."""
    b64 = base64.b64encode
    return b"r" + b64(attest) + b":" + b64(signature) + b":" + b64(blob)


def trustee_json(attest: bytes, signature: bytes, values: Sequence[bytes], ak_spki: bytes,
                 eventlog: bytes | None = None) -> bytes:
    """Trustee's TPM attester JSON (CONTRACT §1.1 form 2)."""
    b64 = base64.b64encode
    document: dict[str, Any] = {
        "ak_public": b64(ak_spki).decode(),
        "tpm_quote": {"message": b64(attest).decode(), "signature": b64(signature).decode(),
                      "pcrs": [v.hex() for v in values]},
    }
    if eventlog is not None:
        document["eventlog"] = b64(eventlog).decode()
    return json.dumps(document, indent=1).encode() + b"\n"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def pb_bytes(number: int, value: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def pb_uint(number: int, value: int) -> bytes:
    """A varint protobuf field (wire type 0); proto3 leaves zero out."""
    return _varint(number << 3) + _varint(value) if value else b""


def pb_pcrs(bank: str, values: Mapping[int, bytes]) -> bytes:
    """``tpm.PCRs``: hash 1 (HashAlgo), pcrs 2 (map<uint32, bytes>, entries ascending). Map
    entries carry their key even when it is 0, as Go's and C++'s encoders write them."""
    entries = b"".join(pb_bytes(2, _varint(1 << 3) + _varint(i) + pb_bytes(2, values[i]))
                       for i in sorted(values))
    return pb_uint(1, HASH_ALG[bank]) + entries


def pb_quote(attest: bytes, signature: bytes, bank: str, values: Mapping[int, bytes]) -> bytes:
    """``tpm.Quote``: quote 1, raw_sig 2, pcrs 3."""
    return pb_bytes(1, attest) + pb_bytes(2, signature) + pb_bytes(3, pb_pcrs(bank, values))


def pb_attestation(ak_public: bytes, quotes: Iterable[bytes], *, event_log: bytes = b"",
                   ak_cert: bytes = b"", intermediates: Iterable[bytes] = ()) -> bytes:
    """``attest.Attestation``: ak_pub 1, quotes 2, event_log 3, ak_cert 6, intermediate_certs 7."""
    out = pb_bytes(1, ak_public) + b"".join(pb_bytes(2, q) for q in quotes)
    if event_log:
        out += pb_bytes(3, event_log)
    if ak_cert:
        out += pb_bytes(6, ak_cert)
    return out + b"".join(pb_bytes(7, cert) for cert in intermediates)


def spki_der(pem: bytes) -> bytes:
    key = serialization.load_pem_public_key(pem)
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


# -- the test keys and the AK certificate CA ------------------------------------------------------

#: The committed key of each AK kind (RSA-PSS quotes use the RSA key under a PSS template).
AK_KEY_FILES: Final[Mapping[AkKind, str]] = {"rsa": "tpm-ak", "rsa-pss": "tpm-ak",
                                             "ecdsa": "tpm-ak-p256"}
FOREIGN_AK: Final = "tpm-foreign-ak"
CA_KEY: Final = "tpm-ak-ca"
FOREIGN_CA_KEY: Final = "tpm-foreign-ca"
CA_CN: Final = "veritee emulated TPM AK CA"
AK_CN: Final = "veritee emulated TPM AK"


@functools.cache
def _test_key(name: str) -> Any:
    """A committed test key, loaded once per process (the keys are package constants)."""
    return pki.load_key(name)


def public_pem(key: Any) -> bytes:
    return bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "veritee test PKI"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not ca, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=ca, crl_sign=ca, encipher_only=False,
                         decipher_only=False)


@functools.cache
def ca_certificate(key_name: str = CA_KEY) -> bytes:
    """The self-signed AK CA certificate (DER; RSA PKCS #1 v1.5, so the same in every run)."""
    key = _test_key(key_name)
    cn = CA_CN if key_name == CA_KEY else "veritee foreign TPM AK CA"
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(0x7E57CA)
            .not_valid_before(pki.LONG_AGO).not_valid_after(pki.FAR_AHEAD)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def ak_certificate(ak: Any, ca_key_name: str = CA_KEY) -> bytes:
    """An AK certificate (DER) for ``ak``'s public key issued by the CA ``ca_key_name``."""
    ca = x509.load_der_x509_certificate(ca_certificate(ca_key_name))
    cert = (x509.CertificateBuilder().subject_name(_name(AK_CN)).issuer_name(ca.subject)
            .public_key(ak.public_key()).serial_number(0x7E57A0)
            .not_valid_before(pki.LONG_AGO).not_valid_after(pki.FAR_AHEAD)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .sign(_test_key(ca_key_name), hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def pem_cert(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def emulated_ak_pems() -> tuple[bytes, ...]:
    """The public keys of the emulated AKs (PEM), as endorsement files."""
    return tuple(dict.fromkeys(public_pem(_test_key(n)) for n in AK_KEY_FILES.values()))


def emulated_ca_pem() -> bytes:
    """The emulated AK CA's certificate (PEM), as an endorsement file."""
    return pem_cert(ca_certificate())


def emulated_anchors() -> tuple[TpmRoot, ...]:
    """The emulated AKs' keys and the emulated AK CA as the ``tpm`` verifier's trust anchors
    (``emulated=True``): the descriptor's ``emulated_roots`` slot."""
    return tuple(root for n, blob in enumerate((*emulated_ak_pems(), emulated_ca_pem()))
                 for root in TpmRoot.from_bytes(blob, f"emulated TPM anchor {n}",
                                                emulated=True))


# -- the emulated TPM ---------------------------------------------------------------------------

Knob = Literal["wrong_nonce", "pcr_changed", "bad_signature", "tampered_attest",
               "foreign_ak", "foreign_ca", "tampered_eventlog", "wrong_digest_hash",
               "bad_magic", "not_a_quote", "split_nonce"]

#: Each knob and the error a correct verifier raises for the evidence it produces (verified
#: with the genuine endorsement and the requested report data).
KNOB_ERRORS: Final[Mapping[str, type[errors.VeriteeError]]] = {
    # extraData is not the report data asked for.
    "wrong_nonce": errors.BindingError,
    # A PCR value reported beside the quote changed after quoting: pcrDigest disagrees.
    "pcr_changed": errors.BindingError,
    # The TPMT_SIGNATURE's last byte flipped.
    "bad_signature": errors.SignatureError,
    # The signed TPMS_ATTEST changed after signing (its clock).
    "tampered_attest": errors.SignatureError,
    # Signed by an AK nobody endorses (the evidence names that AK; the endorsement is the
    # genuine AK or CA). Other forms: FORM_KNOB_ERRORS.
    "foreign_ak": errors.UntrustedRootError,
    # go-tpm-tools: a foreign AK signs, certified by a CA nobody trusts.
    "foreign_ca": errors.UntrustedRootError,
    # An event's digests changed in the log: its PCR no longer replays to the quoted value.
    "tampered_eventlog": errors.BindingError,
    # pcrDigest computed with SHA-1 while the signature uses SHA-256 (or the reverse).
    "wrong_digest_hash": errors.BindingError,
    # A signed TPMS_ATTEST whose magic is not TPM_GENERATED_VALUE.
    "bad_magic": errors.MalformedEvidenceError,
    # A signed TPMS_ATTEST of type TPM_ST_ATTEST_CERTIFY (0x8017), not a quote.
    "not_a_quote": errors.MalformedEvidenceError,
    # go-tpm-tools: the last bank's quote carries another nonce than the first's.
    "split_nonce": errors.BindingError,
}
KNOBS: Final[tuple[str, ...]] = tuple(KNOB_ERRORS)
#: Where a knob's error depends on the form: the keylime form carries no AK, so a foreign
#: signer is a signature no supplied key verifies; go-tpm-tools' copied AK certificate
#: certifies another key than the one that signed.
FORM_KNOB_ERRORS: Final[Mapping[tuple[str, str], type[errors.VeriteeError]]] = {
    ("foreign_ak", "keylime"): errors.SignatureError,
    ("foreign_ak", "go-tpm-tools"): errors.BindingError,
}


#: Knobs that only make sense in one form (others are refused there).
FORM_ONLY_KNOBS: Final[Mapping[str, Form]] = {"foreign_ca": "go-tpm-tools",
                                              "split_nonce": "go-tpm-tools"}


def knob_error(knob: str, form: str) -> type[errors.VeriteeError]:
    """The error a correct verifier raises for ``knob``'s evidence in ``form``."""
    return FORM_KNOB_ERRORS.get((knob, form), KNOB_ERRORS[knob])


@dataclass(frozen=True)
class TpmQuote:
    """One quote: the signed ``TPMS_ATTEST``, its ``TPMT_SIGNATURE`` and the PCR values
    reported beside it (``(bank, index, value)`` in selection order)."""

    attest: bytes
    signature: bytes
    selection: tuple[tuple[str, tuple[int, ...]], ...]
    pcrs: tuple[tuple[str, int, bytes], ...]

    @property
    def values(self) -> list[bytes]:
        return [value for _, _, value in self.pcrs]

    def bank_values(self, bank: str) -> dict[int, bytes]:
        return {i: v for b, i, v in self.pcrs if b == bank}

    def pcr_blob(self) -> bytes:
        return pcr_blob(self.selection, self.values)


@dataclass(frozen=True)
class TpmEmulator:
    """An emulated TPM after a measured boot. Each knob breaks exactly one thing."""

    ak: AkKind = "rsa"
    banks: tuple[str, ...] = ("sha1", "sha256")
    """The PCR banks the TPM has and the event log records."""
    selection: tuple[tuple[str, tuple[int, ...]], ...] = DEFAULT_SELECTION
    """The PCRs a keylime or Trustee quote covers, ``((bank, indices), ...)``."""
    sig_hash: str = "sha256"
    locality: int | None = None
    """A StartupLocality event (PCR 0 starts at this locality); None: no such event."""
    init_data: bytes | None = None
    """An init-data digest measured into PCR 8 (:func:`default_events`)."""
    cmdline: bytes = DEFAULT_CMDLINE
    secure_boot: bool = True
    eventlog: bool = True
    """Whether the Trustee and go-tpm-tools forms carry the event log."""
    firmware_version: int = DEFAULT_FIRMWARE_VERSION
    clock: tuple[int, int, int, int] = (1_234_567_890, 3, 0, 1)
    """``TPMS_CLOCK_INFO``: clock (ms), resetCount, restartCount, safe."""
    extra_events: tuple[TpmEvent, ...] = ()
    """Events after the boot (e.g. an application's measurements)."""
    knob: Knob | None = None

    def __post_init__(self) -> None:
        if self.knob is not None and self.knob not in KNOB_ERRORS:
            raise ValueError(f"unknown knob {self.knob!r}; known: {', '.join(KNOBS)}")
        unknown = [b for b, _ in self.selection if b not in self.banks]
        if unknown:
            raise ValueError(f"selection names banks {unknown} the TPM lacks ({self.banks})")

    # -- keys --

    @property
    def ak_key(self) -> Any:
        return _test_key(AK_KEY_FILES[self.ak])

    @property
    def _foreign(self) -> bool:
        return self.knob in ("foreign_ak", "foreign_ca")

    @property
    def signing_key(self) -> Any:
        """The key that signs quotes: the AK, or a foreign one under ``foreign_ak`` and
        ``foreign_ca`` (so that no emulated anchor trusts it by its key)."""
        return _test_key(FOREIGN_AK) if self._foreign else self.ak_key

    @property
    def signing_kind(self) -> AkKind:
        return "rsa" if self._foreign and self.ak == "ecdsa" else self.ak

    @property
    def ak_pem(self) -> bytes:
        """The genuine AK's public key (PEM): the endorsement a verifier is given."""
        return public_pem(self.ak_key)

    @property
    def ak_public(self) -> bytes:
        """The ``TPMT_PUBLIC`` of the key that signs (what the evidence carries)."""
        return ak_public(self.signing_key.public_key(), self.signing_kind)

    @property
    def ak_name(self) -> bytes:
        return name_of(self.ak_public)

    @property
    def qualified_signer(self) -> bytes:
        return qualified_name(struct.pack(">I", TPM_RH_ENDORSEMENT), self.ak_name)

    def ak_cert(self) -> bytes:
        """The AK certificate (DER) the go-tpm-tools form carries: the genuine AK's (also
        under ``foreign_ak``, where a foreign key signs beside a copied certificate), or under
        ``foreign_ca`` the foreign AK's, issued by a CA nobody trusts."""
        if self.knob == "foreign_ca":
            return ak_certificate(self.signing_key, FOREIGN_CA_KEY)
        return ak_certificate(self.ak_key, CA_KEY)

    # -- the boot --

    @cached_property
    def events(self) -> tuple[TpmEvent, ...]:
        """The events the firmware and the boot loader measured (and the TPM extended)."""
        return default_events(self.banks, locality=self.locality, init_data=self.init_data,
                              cmdline=self.cmdline,
                              secure_boot=self.secure_boot) + self.extra_events

    @cached_property
    def pcrs(self) -> dict[str, list[bytes]]:
        """The TPM's PCRs: {bank: 24 values}."""
        return replay(self.events, self.banks)

    def event_log(self) -> bytes:
        """The log the OS reads (``binary_bios_measurements``); one event's digests changed
        under ``tampered_eventlog``."""
        events = list(self.events)
        if self.knob == "tampered_eventlog":
            at = next(i for i, e in enumerate(events)
                      if e.type == EV_EFI_BOOT_SERVICES_APPLICATION)
            events[at] = replace(events[at], digests=tuple(
                (b, digest(b, b"a kernel nobody measured")) for b, _ in events[at].digests))
        return build_event_log(events, self.banks)

    # -- quotes --

    def quote(self, nonce: bytes, selection: Sequence[tuple[str, Sequence[int]]] | None = None
              ) -> TpmQuote:
        """A quote over ``selection`` (default :attr:`selection`) with ``nonce`` as qualifying
        data, and the PCR values reported beside it."""
        if len(nonce) > MAX_NONCE:
            raise ValueError(f"the nonce is {len(nonce)} bytes; a TPM takes at most {MAX_NONCE}")
        chosen = tuple((bank, tuple(sorted(indices)))
                       for bank, indices in (selection or self.selection))
        quoted = tuple((bank, i, self.pcrs[bank][i]) for bank, indices in chosen
                       for i in indices)
        attest = self._attest(nonce, chosen, [v for _, _, v in quoted])
        signature = sign_attest(self.signing_key, self.signing_kind, attest, self.sig_hash)
        return self._break(TpmQuote(attest, signature, chosen, quoted))

    def _attest(self, nonce: bytes, chosen: Sequence[tuple[str, Sequence[int]]],
                values: Sequence[bytes]) -> bytes:
        digest_hash = self.sig_hash
        if self.knob == "wrong_digest_hash":
            digest_hash = "sha1" if self.sig_hash != "sha1" else "sha256"
        extra = other_nonce(nonce) if self.knob == "wrong_nonce" else nonce
        clock, reset_count, restart_count, safe = self.clock
        attest = build_attest(
            qualified_signer=self.qualified_signer, extra_data=extra, clock=clock,
            reset_count=reset_count, restart_count=restart_count, safe=bool(safe),
            firmware_version=self.firmware_version, pcr_select=selections(chosen),
            pcr_digest=pcr_digest(values, digest_hash),
            type=TPM_ST_ATTEST_CERTIFY if self.knob == "not_a_quote" else TPM_ST_ATTEST_QUOTE)
        if self.knob == "bad_magic":
            attest = struct.pack(">I", TPM_GENERATED_VALUE ^ 1) + attest[4:]
        return attest

    def _break(self, quote: TpmQuote) -> TpmQuote:
        """Apply the knobs that change a quote after it was signed."""
        if self.knob == "bad_signature":
            sig = quote.signature
            return replace(quote, signature=sig[:-1] + bytes([sig[-1] ^ 1]))
        if self.knob == "tampered_attest":
            attest = bytearray(quote.attest)
            attest[clock_offset(attest)] ^= 1
            return replace(quote, attest=bytes(attest))
        if self.knob == "pcr_changed":
            bank, index, value = quote.pcrs[0]
            changed = (bank, index, digest(bank, value + bytes(DIGEST_SIZE[bank])))
            return replace(quote, pcrs=(changed, *quote.pcrs[1:]))
        return quote

    # -- evidence forms --

    def keylime(self, nonce: bytes) -> bytes:
        """keylime's quote string over :attr:`selection`."""
        quote = self.quote(nonce)
        return keylime_quote(quote.attest, quote.signature, quote.pcr_blob())

    def trustee(self, nonce: bytes) -> bytes:
        """Trustee's TPM attester JSON over :attr:`selection`, with the event log."""
        quote = self.quote(nonce)
        return trustee_json(quote.attest, quote.signature, quote.values,
                            spki_der(public_pem(self.signing_key)),
                            self.event_log() if self.eventlog else None)

    def bank_quotes(self, nonce: bytes) -> list[TpmQuote]:
        """One quote of all 24 PCRs per bank (as GCE's go-tpm-tools attests)."""
        quotes = []
        for number, bank in enumerate(self.banks):
            last = number == len(self.banks) - 1
            this_nonce = other_nonce(nonce) if self.knob == "split_nonce" and last else nonce
            quotes.append(self.quote(this_nonce, ((bank, tuple(range(PCR_COUNT))),)))
        return quotes

    def go_tpm_tools(self, nonce: bytes) -> bytes:
        """go-tpm-tools' ``Attestation`` protobuf: the AK's TPMT_PUBLIC, one quote per bank,
        the event log and the AK certificate."""
        quotes = [pb_quote(q.attest, q.signature, q.selection[0][0],
                           q.bank_values(q.selection[0][0])) for q in self.bank_quotes(nonce)]
        return pb_attestation(self.ak_public, quotes,
                              event_log=self.event_log() if self.eventlog else b"",
                              ak_cert=self.ak_cert())

    def evidence(self, form: Form, nonce: bytes) -> bytes:
        """The evidence in ``form`` with ``nonce`` as the quotes' qualifying data."""
        if form == "keylime":
            return self.keylime(nonce)
        if form == "trustee":
            return self.trustee(nonce)
        if form == "go-tpm-tools":
            return self.go_tpm_tools(nonce)
        return self.event_log()

    def endorsements(self, form: Form) -> tuple[tuple[str, bytes], ...]:
        """Files a verifier is given beside the evidence: the AK public key, for the
        go-tpm-tools form the AK CA's certificate, for a bare event log nothing."""
        if form == "go-tpm-tools":
            return ((".ca.pem", emulated_ca_pem()),)
        if form == "eventlog":
            return ()
        return ((".ak.pem", self.ak_pem),)

    def variant(self, **changes: Any) -> TpmEmulator:
        return replace(self, **changes)


def other_nonce(nonce: bytes) -> bytes:
    """``nonce`` with its last bit flipped (one byte when it is empty)."""
    return nonce[:-1] + bytes([nonce[-1] ^ 1]) if nonce else b"\x01"


def clock_offset(attest: bytes | bytearray) -> int:
    """The offset of the clock's last byte in a ``TPMS_ATTEST``."""
    signer = int.from_bytes(attest[6:8], "big")
    extra = int.from_bytes(attest[8 + signer:10 + signer], "big")
    return 10 + signer + extra + 7


# -- ``veritee emulate tpm`` ----------------------------------------------------------------------


@dataclass(frozen=True)
class TpmEmulatorCli:
    """The :class:`veritee.testing.Emulator` of ``tpm``: settings as ``name=value`` knobs, at
    most one defect knob (:data:`KNOBS`). The report data is the quote's qualifying data
    (0-64 bytes, default 32 zero bytes); the host data is an init-data digest measured into
    PCR 8."""

    tee: str = "tpm"

    @property
    def knobs(self) -> dict[str, str]:
        settings = {
            "form=NAME": "trustee (Trustee's TPM attester JSON, default), keylime (quote "
                         "string), go-tpm-tools (Attestation protobuf, one quote per bank, "
                         "AK certificate) or eventlog (the bare event log)",
            "ak=KIND": "rsa (RSASSA-SHA256, default), rsa-pss or ecdsa (P-256)",
            "select=SPEC": "the quoted PCRs, e.g. sha256:0,1,7+sha1:0 (default sha256:0-23)",
            "banks=LIST": "the TPM's PCR banks, e.g. sha256 (default sha1,sha256)",
            "locality=N": "a StartupLocality event: PCR 0 starts at locality N (0-4)",
            "no_eventlog": "leave the event log out of the Trustee and go-tpm-tools forms",
            "secure_boot_off": "measure SecureBoot = 0",
        }
        defects = {name: f"defect: verification fails with {error.__name__}"
                   + _KNOB_NOTES.get(name, "") for name, error in KNOB_ERRORS.items()}
        return {**settings, **defects}

    def emulate(self, *, report_data: bytes | None, host_data: bytes | None,
                knobs: Sequence[str]) -> Emulated:
        changes, form = _settings(knobs)
        if host_data is not None:
            if not 1 <= len(host_data) <= 64:
                raise ValueError(f"--host-data is {len(host_data)} bytes; an init-data "
                                 "digest is 1-64 bytes")
            changes["init_data"] = host_data
        nonce = bytes(32) if report_data is None else report_data
        if len(nonce) > MAX_NONCE:
            raise ValueError(f"--report-data is {len(nonce)} bytes; a TPM quote's qualifying "
                             f"data is at most {MAX_NONCE}")
        knob = str(changes.get("knob"))
        if knob in FORM_ONLY_KNOBS and FORM_ONLY_KNOBS[knob] != form:
            raise ValueError(f"knob {knob} needs form={FORM_ONLY_KNOBS[knob]}")
        if knob == "tampered_eventlog" and (form == "keylime" or not changes.get("eventlog", 1)):
            raise ValueError("knob tampered_eventlog needs evidence with an event log (form "
                             "trustee, go-tpm-tools or eventlog, without no_eventlog)")
        emulator = TpmEmulator(**changes)
        return Emulated(emulator.evidence(form, nonce), form, emulator.endorsements(form))


_KNOB_NOTES: Final[Mapping[str, str]] = {
    "wrong_nonce": " when the verifier is given the report data (--report-data)",
    "foreign_ak": " (SignatureError in the keylime form, which names no AK; BindingError in "
                  "the go-tpm-tools form, whose AK certificate is the genuine AK's)",
    "foreign_ca": " (go-tpm-tools form only)",
    "split_nonce": " (go-tpm-tools form only)",
    "tampered_eventlog": " (forms with an event log)",
}


def parse_selection(spec: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``sha256:0,1,7+sha1:0-3`` as ``((bank, indices), ...)``.

    Raises:
        ValueError: an unknown bank or an index outside 0-23.
    """
    out = []
    for part in spec.split("+"):
        bank, _, indices = part.partition(":")
        if bank not in HASH_ALG or not indices:
            raise ValueError(f"select={spec!r}: {part!r} is not BANK:INDICES")
        chosen: set[int] = set()
        for item in indices.split(","):
            low, _, high = item.partition("-")
            if not low.isdigit() or (high and not high.isdigit()):
                raise ValueError(f"select={spec!r}: {item!r} is not an index or a range")
            chosen.update(range(int(low), int(high or low) + 1))
        if not chosen <= set(range(PCR_COUNT)):
            raise ValueError(f"select={spec!r}: PCR indices are 0-{PCR_COUNT - 1}")
        out.append((bank, tuple(sorted(chosen))))
    return tuple(out)


def _settings(knobs: Sequence[str]) -> tuple[dict[str, Any], Form]:
    """TpmEmulator fields and the form from ``knobs``."""
    changes: dict[str, Any] = {}
    form: Form = "trustee"
    for knob in knobs:
        name, _, value = knob.partition("=")
        if name in KNOB_ERRORS and not value:
            if "knob" in changes:
                raise ValueError(f"one defect knob at a time ({changes['knob']} and {name})")
            changes["knob"] = name
        elif name == "form" and value in FORMS:
            form = value
        elif name == "ak" and value in AK_KINDS:
            changes["ak"] = value
        elif name == "select" and value:
            changes["selection"] = parse_selection(value)
        elif name == "banks" and value and all(b in HASH_ALG for b in value.split(",")):
            changes["banks"] = tuple(value.split(","))
        elif name == "locality" and value.isdigit() and int(value) <= 4:
            changes["locality"] = int(value)
        elif name in ("no_eventlog", "secure_boot_off") and not value:
            changes["eventlog" if name == "no_eventlog" else "secure_boot"] = False
        else:
            raise ValueError(f"unknown knob {knob!r} (see --list-knobs)")
    if "banks" in changes and "selection" not in changes:
        changes["selection"] = ((changes["banks"][-1], tuple(range(PCR_COUNT))),)
    return changes, form


#: The emulator ``veritee emulate tpm`` uses (the descriptor's ``emulator`` slot:
#: ``veritee.testing.tpm:TPM_EMULATOR``).
TPM_EMULATOR: Final = TpmEmulatorCli()

# -- a real software TPM (swtpm) for tests -------------------------------------------------------

#: The programs :class:`Swtpm` runs (Debian packages ``swtpm``, ``swtpm-tools``, ``tpm2-tools``).
SWTPM_PROGRAMS: Final = ("swtpm", "swtpm_setup", "swtpm_localca", "tpm2_createek",
                         "tpm2_createak", "tpm2_quote", "tpm2_pcrextend", "tpm2_readpublic",
                         "tpm2_nvread", "tpm2_evictcontrol", "tpm2_flushcontext")
#: Seconds any one swtpm or tpm2-tools command may take (swtpm_setup creates RSA keys).
SWTPM_TIMEOUT: Final = 30.0
_AK_SCHEMES: Final[Mapping[AkKind, tuple[str, str]]] = {
    "rsa": ("rsa", "rsassa"), "rsa-pss": ("rsa", "rsapss"), "ecdsa": ("ecc", "ecdsa")}


class SwtpmError(RuntimeError):
    """swtpm or a tpm2-tools command failed (the message holds its standard error)."""


@dataclass(frozen=True)
class SwtpmAk:
    """An attestation key created in a :class:`Swtpm`."""

    context: Path
    pem: bytes
    """The public key (PEM SubjectPublicKeyInfo)."""
    public: bytes
    """Its ``TPMT_PUBLIC``."""
    name: bytes
    """Its TPM name (``nameAlg || H(TPMT_PUBLIC)``)."""
    kind: AkKind


@dataclass(frozen=True)
class SwtpmQuote:
    """What ``tpm2_quote -m -s -o`` wrote, and the AK that signed it."""

    attest: bytes
    """``TPMS_ATTEST`` (``-m``)."""
    signature: bytes
    """``TPMT_SIGNATURE`` (``-s``)."""
    pcr_blob: bytes
    """The PCR values in tpm2-tools' in-memory layout (``-o``; CONTRACT §1.1)."""
    ak: SwtpmAk
    nonce: bytes

    @property
    def pcrs(self) -> list[tuple[str, int, bytes]]:
        """``(bank, index, value)`` in selection order, read from :attr:`pcr_blob`."""
        return read_pcr_blob(self.pcr_blob)

    def keylime(self) -> bytes:
        """keylime's quote string."""
        return keylime_quote(self.attest, self.signature, self.pcr_blob)

    def trustee(self, eventlog: bytes | None = None) -> bytes:
        """Trustee's TPM attester JSON."""
        return trustee_json(self.attest, self.signature, [v for _, _, v in self.pcrs],
                            spki_der(self.ak.pem), eventlog)


def _free_port_pair() -> int:
    """A port P with P and P + 1 free on loopback (swtpm's server and control ports)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port >= 65535:
            continue
        with socket.socket() as first, socket.socket() as second:
            try:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise SwtpmError("found no two adjacent free loopback ports")


class Swtpm:
    """A throwaway swtpm TPM 2.0 on loopback, driven with tpm2-tools (se-pef-tpm-gpu.md §3.7).

    ``with Swtpm() as tpm:`` creates a state directory, manufactures the TPM there
    (``swtpm_setup``, with an EK certificate from swtpm-localca when ``ek_cert``), starts
    ``swtpm socket`` on two free loopback ports and stops it (by PID) on leaving, also after an
    exception. Every command is bounded by ``timeout`` seconds. Without a resource manager the
    TPM's three transient-object slots fill up, so every command is followed by
    ``tpm2_flushcontext -t`` and ``-s``.
    """

    def __init__(self, *, banks: Sequence[str] = ("sha1", "sha256"), ek_cert: bool = True,
                 timeout: float = SWTPM_TIMEOUT) -> None:
        self.banks = tuple(banks)
        self.ek_cert = ek_cert
        self.timeout = timeout
        self.port = 0
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._ek: Path | None = None
        self._aks = 0

    @classmethod
    def available(cls) -> bool:
        """True when every program :class:`Swtpm` runs is on ``PATH``."""
        return all(shutil.which(program) for program in SWTPM_PROGRAMS)

    @property
    def state(self) -> Path:
        if self._dir is None:
            raise SwtpmError("the swtpm is not running (use it as a context manager)")
        return Path(self._dir.name)

    @property
    def tcti(self) -> str:
        """The TCTI string tpm2-tools take (``TPM2TOOLS_TCTI``)."""
        return f"swtpm:host=127.0.0.1,port={self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def __enter__(self) -> Swtpm:
        self._dir = tempfile.TemporaryDirectory(prefix="veritee-swtpm-")
        try:
            self._manufacture()
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop swtpm (SIGTERM, then SIGKILL) and remove its state directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    # -- setup --

    def _manufacture(self) -> None:
        args = ["swtpm_setup", "--tpm2", "--tpmstate", str(self.state), "--overwrite",
                "--pcr-banks", ",".join(self.banks), "--config", str(self._setup_config())]
        if self.ek_cert:
            args += ["--create-ek-cert", "--create-platform-cert", "--lock-nvram"]
        self._run(args, tcti=False)

    def _setup_config(self) -> Path:
        """swtpm_setup's configuration, with a swtpm-localca of this state directory's own
        (created on first use), so that no system-wide CA state (``/var/lib/swtpm-localca``,
        root's) is read or written and parallel runs do not share one."""
        ca = self.state / "localca"
        ca.mkdir()
        (self.state / "swtpm-localca.conf").write_text(
            f"statedir = {ca}\nsigningkey = {ca}/signkey.pem\n"
            f"issuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n")
        (self.state / "swtpm-localca.options").write_text(
            "--platform-manufacturer veritee\n--platform-version 2.1\n"
            "--platform-model swtpm\n")
        tool = shutil.which("swtpm_localca") or "swtpm_localca"
        config = self.state / "swtpm_setup.conf"
        config.write_text(
            f"create_certs_tool = {tool}\n"
            f"create_certs_tool_config = {self.state / 'swtpm-localca.conf'}\n"
            f"create_certs_tool_options = {self.state / 'swtpm-localca.options'}\n")
        return config

    def _start(self) -> None:
        for _ in range(3):
            self.port = _free_port_pair()
            log = (self.state / "swtpm.log").open("ab")
            with log:
                self._process = subprocess.Popen(
                    ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={self.state}",
                     "--server", f"type=tcp,port={self.port},bindaddr=127.0.0.1",
                     "--ctrl", f"type=tcp,port={self.port + 1},bindaddr=127.0.0.1",
                     "--flags", "startup-clear"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            if self._wait_listening():
                return
            self._kill()
        raise SwtpmError(f"swtpm did not start: {self._log_tail()}")

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=5)

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + min(self.timeout, 10.0)
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def _log_tail(self) -> str:
        try:
            return (self.state / "swtpm.log").read_text(errors="replace")[-500:].strip()
        except OSError:
            return "(no log)"

    def _run(self, args: Sequence[str], *, tcti: bool = True) -> bytes:
        env = {**os.environ, "TPM2TOOLS_TCTI": self.tcti} if tcti else dict(os.environ)
        try:
            done = subprocess.run(
                list(args), cwd=self.state, env=env, capture_output=True,
                timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise SwtpmError(f"{args[0]} took longer than {self.timeout} s") from exc
        if done.returncode != 0:
            raise SwtpmError(f"{' '.join(args)} exited {done.returncode}: "
                             f"{done.stderr.decode(errors='replace').strip()[-800:]}")
        return done.stdout

    def tpm2(self, *args: str) -> bytes:
        """Run a tpm2-tools command against this TPM, then flush transient objects and
        sessions (their standard output is returned)."""
        try:
            return self._run(args)
        finally:
            self._flush()

    def _flush(self) -> None:
        for what in ("-t", "-s"):
            with contextlib.suppress(SwtpmError):
                self._run(["tpm2_flushcontext", what])

    # -- keys, PCRs, quotes --

    def create_ek(self) -> Path:
        """The RSA EK (TCG default template) as a saved context (created once)."""
        if self._ek is None:
            self.tpm2("tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub")
            self._ek = self.state / "ek.ctx"
        return self._ek

    def create_ak(self, kind: AkKind = "rsa", hash_alg: str = "sha256") -> SwtpmAk:
        """A restricted signing key under the EK (``tpm2_createak``)."""
        self.create_ek()
        self._aks += 1
        stem = f"ak{self._aks}"
        alg, scheme = _AK_SCHEMES[kind]
        self.tpm2("tpm2_createak", "-C", "ek.ctx", "-c", f"{stem}.ctx", "-G", alg, "-g",
                  hash_alg, "-s", scheme, "-n", f"{stem}.name", "-f", "pem", "-u",
                  f"{stem}.pem")
        self.tpm2("tpm2_readpublic", "-c", f"{stem}.ctx", "-f", "tpmt", "-o", f"{stem}.tpmt")
        return SwtpmAk(self.state / f"{stem}.ctx", (self.state / f"{stem}.pem").read_bytes(),
                       (self.state / f"{stem}.tpmt").read_bytes(),
                       (self.state / f"{stem}.name").read_bytes(), kind)

    def extend(self, index: int, digests: Mapping[str, bytes]) -> None:
        """``tpm2_pcrextend index:bank=hex,...``."""
        spec = ",".join(f"{bank}={value.hex()}" for bank, value in digests.items())
        self.tpm2("tpm2_pcrextend", f"{index}:{spec}")

    def quote(self, ak: SwtpmAk, nonce: bytes, selection: Mapping[str, Sequence[int]],
              *, hash_alg: str = "sha256") -> SwtpmQuote:
        """``tpm2_quote`` over ``selection`` ({bank: indices}) with ``nonce`` as qualifying
        data."""
        spec = "+".join(f"{bank}:{','.join(str(i) for i in indices)}"
                        for bank, indices in selection.items())
        self.tpm2("tpm2_quote", "-c", str(ak.context), "-l", spec, "-q", nonce.hex(),
                  "-m", "quote.msg", "-s", "quote.sig", "-o", "quote.pcrs", "-g", hash_alg,
                  f"--scheme={_AK_SCHEMES[ak.kind][1]}")
        attest, signature, blob = ((self.state / f"quote.{suffix}").read_bytes()
                                   for suffix in ("msg", "sig", "pcrs"))
        return SwtpmQuote(attest, signature, blob, ak, nonce)

    def ek_certificate(self) -> bytes | None:
        """The EK certificate swtpm_setup wrote to NV 0x01c00002 (DER), if any."""
        if not self.ek_cert:
            return None
        self.tpm2("tpm2_nvread", "0x01c00002", "-o", "ekcert.der")
        return (self.state / "ekcert.der").read_bytes()
