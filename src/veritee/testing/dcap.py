"""An emulated Intel DCAP platform (TDX and SGX): quotes in Intel's formats signed by a test
Intel PKI, collateral in Intel PCS formats signed by a test TCB Signing key, and a fake PCS.

TEST ONLY. The certificates carry Intel's names (QVL checks names by substring, intel-dcap.md
§2.1) but are built on the committed test keys ``data/keys/dcap-*.pem``; their root is not the
pinned Intel SGX Root CA, so a verifier trusts it only when the operator enables emulated roots
(:func:`emulated_roots`), and its claims then say ``emulated: true``.

What is emulated (sections of intel-dcap.md):

* the PKI (§2.1, §2.2): Intel SGX Root CA → Intel SGX PCK Platform CA / Processor CA → Intel
  SGX PCK Certificate with the SGX extension; Intel SGX TCB Signing issued by the root; CRLs
  of the root and of both PCK CAs. All ECDSA P-256 with AKI, SKI, CRL DP, key usage and basic
  constraints; CRLs with CRL number and AKI. Every signature is deterministic ECDSA (RFC 6979)
  and certificate validity is fixed (``pki.LONG_AGO`` .. ``pki.FAR_AHEAD``), so certificates
  (and the emulated root's fingerprint) are the same in every process;
* a QE (§1.6, §2.4 steps 13–14): its report signed by the PCK leaf key, binding the attestation
  key as ``SHA256(attestation_key || qe_auth_data) || 0^32``;
* a TDX module and a TD (§1.4, §1.5; TEE_TCB_SVN ``04 01 07`` so module identity ``TDX_01``
  applies, §2.5) with a CC event log whose replay gives RTMR0–3 (§3.2); an SGX enclave (§1.3);
* quotes v4 (TDX, default), v5 (TD 1.0 or TD 1.5 body; SGX body), v3 (SGX, default), with
  certification data type 6 around type 5 where the version wants it (§1.2, §1.6);
* collateral (§2.3) relative to the emulator's ``now``: TCB Info v3 (``SGX``/``TDX``) and QE
  identity v2 (``QE``/``TD_QE``) as PCS bodies with their issuer-chain headers, and the
  combined JSON of dcap-qvl's ``QuoteCollateralV3``; a fake PCS (§2.10) serving them.

Negative knobs (:data:`KNOB_ERRORS`) each break one thing and name the error a correct
verifier raises; settings (``debug``, ``tcb_out_of_date``, versions, ...) change claims only.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import struct
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from veritee import errors
from veritee._der import oid_content
from veritee.collateral.base import Response
from veritee.evidence import TsmReport
from veritee.tee.dcap import pcs
from veritee.tee.dcap.evidence import TSM_PROVIDER
from veritee.tee.dcap.pck import SGX_EXTENSION_OID
from veritee.tee.dcap.quote import (
    ATT_KEY_ECDSA_P256,
    BODY_DESCRIPTOR,
    BODY_SGX,
    BODY_TD10,
    BODY_TD15,
    CERT_PCK_CHAIN,
    HEADER,
    INTEL_QE_VENDOR_ID,
    SGX_DEBUG,
    SGX_INIT,
    SGX_MODE64BIT,
    SGX_REPORT,
    TD_DEBUG,
    TD_REPORT_10,
    TD_REPORT_15,
    TD_SEPT_VE_DISABLE,
    TEE_TYPE_SGX,
    TEE_TYPE_TDX,
    CertificationData,
    build_quote,
    build_signature_data,
    pack_fields,
)
from veritee.tee.dcap.roots import IntelRoot
from veritee.testing import Emulated, pki
from veritee.x509 import parse_cert

Tee = Literal["tdx", "sgx"]
Ca = Literal["platform", "processor"]
TEES: Final[tuple[Tee, ...]] = ("tdx", "sgx")
CAS: Final[tuple[Ca, ...]] = ("platform", "processor")

#: Intel PCS API v4 (§2.10): its base, the Root CA's CRL distribution point (§2.1) and the
#: issuer-chain headers, as the verifier's PCS client names them.
PCS_BASE_URL: Final = pcs.PCS_BASE_URL
ROOT_CA_CRL_URL: Final = pcs.ROOT_CA_CRL_URL
TCB_INFO_CHAIN_HEADER: Final = pcs.TCB_INFO_CHAIN
IDENTITY_CHAIN_HEADER: Final = pcs.IDENTITY_CHAIN
PCK_CRL_CHAIN_HEADER: Final = pcs.PCK_CRL_CHAIN

ROOT_CN: Final = "Intel SGX Root CA"
CA_CN: Final[Mapping[Ca, str]] = {"platform": "Intel SGX PCK Platform CA",
                                  "processor": "Intel SGX PCK Processor CA"}
PCK_CN: Final = "Intel SGX PCK Certificate"
TCB_SIGNING_CN: Final = "Intel SGX TCB Signing"

# -- the emulated platform's identity -----------------------------------------------------------

#: FMSPCs no real platform family uses (so emulated collateral never shadows a real one).
FMSPC: Final[Mapping[Tee, bytes]] = {"tdx": bytes.fromhex("eeee0f000000"),
                                     "sgx": bytes.fromhex("eeee0a000000")}
#: The FMSPC of the TCB Info the ``wrong_fmspc`` knob serves.
OTHER_FMSPC: Final = bytes.fromhex("eeee0b000000")
PCE_ID: Final = bytes(2)
#: SGX TCB COMP01..16 SVN of the PCK certificate and of every TCB level (§2.2).
TCB_COMPONENTS: Final = (4, 4, 2, 2, 3, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0)
#: The PCESVN the PCK certificate carries for each platform TCB status the emulator offers;
#: the TCB Info's levels differ in PCESVN only on the SGX side (see :data:`TCB_LEVELS`).
PCESVN: Final[Mapping[str, int]] = {"UpToDate": 13, "OutOfDate": 11, "Revoked": 5}
#: TEE_TCB_SVN (§1.4): TDX module SVN 4, module major version 1 (identity ``TDX_01``), late
#: microcode SVN 7.
TEE_TCB_SVN: Final = bytes([4, 1, 7]) + bytes(13)
PPID: Final = hashlib.sha256(b"veritee emulated PPID").digest()[:16]
PLATFORM_INSTANCE_ID: Final = hashlib.sha256(b"veritee emulated platform").digest()[:16]
QE_ID: Final = hashlib.sha256(b"veritee emulated QE ID").digest()[:16]
#: The Intel QE's authentication data (§1.6: bytes 00 01 .. 1f).
QE_AUTH_DATA: Final = bytes(range(32))

DEFAULT_MR_TD: Final = hashlib.sha384(b"veritee emulated TD").digest()
DEFAULT_MR_SEAM: Final = hashlib.sha384(b"veritee emulated TDX module").digest()
DEFAULT_MR_ENCLAVE: Final = hashlib.sha256(b"veritee emulated enclave").digest()
DEFAULT_MR_SIGNER: Final = hashlib.sha256(b"veritee emulated enclave signer").digest()
ENCLAVE_ISV_PROD_ID: Final = 7
ENCLAVE_ISV_SVN: Final = 3
#: XFAM of a typical TD (§1.5: ``e7 02 06 00 ..``) and an enclave's XFRM (x87, SSE).
XFAM: Final = bytes.fromhex("e702060000000000")
XFRM: Final = bytes.fromhex("0300000000000000")


@dataclass(frozen=True)
class QeIdentity:
    """The emulated QE (§2.3 "Enclave identity v2", §1.7: ``QE`` ISVPRODID 1, ``TD_QE`` 2)."""

    id: str
    isv_prod_id: int
    isv_svn: int
    levels: tuple[tuple[int, str, str, tuple[str, ...]], ...]
    """(isvsvn, tcbDate, tcbStatus, advisoryIDs), newest first."""

    @property
    def mr_signer(self) -> bytes:
        return hashlib.sha256(b"veritee emulated QE signer " + self.id.encode()).digest()

    @property
    def mr_enclave(self) -> bytes:
        return hashlib.sha256(b"veritee emulated QE " + self.id.encode()).digest()


QE: Final[Mapping[Tee, QeIdentity]] = {
    "sgx": QeIdentity("QE", 1, 8, (
        (8, "2024-03-13T00:00:00Z", "UpToDate", ()),
        (6, "2021-11-10T00:00:00Z", "OutOfDate", ("INTEL-SA-00615",)))),
    "tdx": QeIdentity("TD_QE", 2, 4, (
        (4, "2024-03-13T00:00:00Z", "UpToDate", ()),
        (2, "2023-02-15T00:00:00Z", "OutOfDate", ("INTEL-SA-00837",)))),
}
#: QE report ATTRIBUTES: INIT | MODE64BIT | PROVISIONKEY, XFRM ``e7`` (§1.5); under the
#: identity's mask ``FBFF..FF 00..00`` it equals ``11 00 ..``.
QE_ATTRIBUTES: Final = bytes.fromhex("1500000000000000e700000000000000")
IDENTITY_ATTRIBUTES: Final = "11000000000000000000000000000000"
IDENTITY_ATTRIBUTES_MASK: Final = "FBFFFFFFFFFFFFFF0000000000000000"

#: The platform TCB levels of both TCB Infos, newest first: (status, pcesvn, TDX
#: TEE_TCB_SVN components 0..2, tcbDate, advisoryIDs). A PCK certificate with the PCESVN of
#: :data:`PCESVN` matches exactly the level of that status (§2.5).
TCB_LEVELS: Final = (
    ("UpToDate", 13, (4, 0, 7), "2024-03-13T00:00:00Z", ()),
    ("OutOfDate", 11, (2, 0, 5), "2023-08-09T00:00:00Z", ("INTEL-SA-00837",)),
    ("Revoked", 5, (2, 0, 3), "2018-01-04T00:00:00Z", ("INTEL-SA-00106", "INTEL-SA-00115")),
)
#: The ``TDX_01`` module identity's levels: (isvsvn, tcbDate, tcbStatus).
MODULE_LEVELS: Final = ((4, "2024-03-13T00:00:00Z", "UpToDate"),
                        (2, "2023-08-09T00:00:00Z", "OutOfDate"))
TCB_EVALUATION_DATA_NUMBER: Final = 17

# -- knobs ------------------------------------------------------------------------------------

Knob = Literal["bad_qe_binding", "wrong_attestation_key", "tampered", "bad_qe_signature",
               "revoked_pck", "expired_collateral", "tcb_revoked", "wrong_fmspc",
               "untrusted_root", "tampered_event"]

#: Each defect knob and the error a correct verifier raises for what it produces:
#:
#: * ``bad_qe_binding`` — the QE report's REPORTDATA binds another attestation key; both
#:   signatures verify, so it is two values that disagree: BindingError (§2.4 step 14).
#: * ``wrong_attestation_key`` — the quote is signed by a key other than the one it carries
#:   (and the QE vouches for): SignatureError (step 17).
#: * ``tampered`` — one byte of the body changed after signing: SignatureError (step 17).
#: * ``bad_qe_signature`` — the QE report is signed by a key other than the PCK leaf's:
#:   SignatureError (step 13).
#: * ``revoked_pck`` — the PCK CRL (served and in the endorsements) lists the leaf:
#:   RevokedError (step 8).
#: * ``expired_collateral`` — the TCB Info's nextUpdate is a day before ``now``: ExpiredError
#:   (step 3; CONTRACT: collateral past nextUpdate is rejected).
#: * ``tcb_revoked`` — the PCK certificate's PCESVN matches only the Revoked TCB level.
#:   errors.py has no rejected-TCB class; QVL's ``STATUS_TCB_REVOKED`` is terminal and means
#:   Intel revoked what the platform runs, so RevokedError (as ``tcb.py`` raises it).
#: * ``wrong_fmspc`` — the TCB Info is for another FMSPC. Verifiers pick TCB Info by the PCK's
#:   FMSPC (PCS ``tcb?fmspc=``, §2.4 step 10), so they find none for the quote:
#:   CollateralMissingError (``undecided``). A verifier made to use this very TCB Info would
#:   see a mismatch (BindingError) instead.
#: * ``untrusted_root`` — the quote's PCK chain ends in a root named "Intel SGX Root CA" on
#:   another key (the leaf is the genuine emulated one): UntrustedRootError (step 2).
#: * ``tampered_event`` (TDX) — one event's digest in the CC event log changed after the
#:   RTMRs were computed, so replay disagrees with RTMR2: BindingError (§3.2).
KNOB_ERRORS: Final[Mapping[str, type[errors.VeriteeError]]] = {
    "bad_qe_binding": errors.BindingError,
    "wrong_attestation_key": errors.SignatureError,
    "tampered": errors.SignatureError,
    "bad_qe_signature": errors.SignatureError,
    "revoked_pck": errors.RevokedError,
    "expired_collateral": errors.ExpiredError,
    "tcb_revoked": errors.RevokedError,
    "wrong_fmspc": errors.CollateralMissingError,
    "untrusted_root": errors.UntrustedRootError,
    "tampered_event": errors.BindingError,
}
TDX_ONLY_KNOBS: Final = frozenset({"tampered_event"})
KNOBS: Final = tuple(KNOB_ERRORS)


def knob_errors(tee: Tee) -> dict[str, type[errors.VeriteeError]]:
    """The defect knobs that apply to ``tee`` and their errors."""
    return {k: e for k, e in KNOB_ERRORS.items() if tee == "tdx" or k not in TDX_ONLY_KNOBS}


# -- keys, signatures, names ------------------------------------------------------------------

_ECDSA: Final = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


@functools.cache
def dcap_key(name: str) -> ec.EllipticCurvePrivateKey:
    """A committed P-256 test key (``data/keys/dcap-<name>.pem``), loaded once per process
    (the keys are constants of the package)."""
    key = pki.load_key(f"dcap-{name}")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def raw_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """Deterministic ECDSA P-256 / SHA-256 over ``data`` as ``r || s`` (§1.6)."""
    r, s = decode_dss_signature(key.sign(data, _ECDSA))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def public_xy(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The public key as ``x || y`` (64 bytes, no 0x04 prefix), as quotes carry it."""
    point = key.public_key().public_bytes(serialization.Encoding.X962,
                                          serialization.PublicFormat.UncompressedPoint)
    return point[1:]


def intel_name(common_name: str) -> x509.Name:
    """An X.509 name in Intel's shape (QVL ``ROOT_CA_SUBJECT``, §2.1)."""
    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Intel Corporation"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
    ])


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# -- a small DER encoder (X.690) for the SGX extension -------------------------------------------


def _tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def _oid(dotted: str) -> bytes:
    return _tlv(0x06, oid_content(dotted))


def _int(value: int, tag: int = 0x02) -> bytes:
    """A non-negative INTEGER (or ENUMERATED with ``tag`` 0x0A), minimal two's complement."""
    return _tlv(tag, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _seq(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def _entry(suffix: str, value: bytes) -> bytes:
    """SEQUENCE { OID 1.2.840.113741.1.13.1.<suffix>, value } (§2.2)."""
    return _seq(_oid(f"{SGX_EXTENSION_OID}.{suffix}"), value)


def _octets(value: bytes) -> bytes:
    return _tlv(0x04, value)


def _boolean(value: bool) -> bytes:
    return _tlv(0x01, b"\xff" if value else b"\x00")


# -- the test PKI (§2.1, §2.2) -------------------------------------------------------------------


@dataclass(frozen=True)
class PckFacts:
    """What the PCK leaf's SGX extension certifies (§2.2). Platform CA leaves also carry the
    Platform Instance ID and the Configuration."""

    ca: Ca
    fmspc: bytes
    pcesvn: int = PCESVN["UpToDate"]
    comp_svns: tuple[int, ...] = TCB_COMPONENTS
    ppid: bytes = PPID
    pce_id: bytes = PCE_ID
    #: (dynamicPlatform, cachedKeys, SMTEnabled) of platform-CA leaves.
    configuration: tuple[bool, bool, bool] = (False, True, True)

    @property
    def cpusvn(self) -> bytes:
        return bytes(self.comp_svns)

    @property
    def sgx_type(self) -> int:
        """1 (Scalable) for multi-package platforms (platform CA), 0 (Standard) otherwise."""
        return 1 if self.ca == "platform" else 0

    @property
    def platform_instance_id(self) -> bytes | None:
        return PLATFORM_INSTANCE_ID if self.ca == "platform" else None

    @property
    def serial(self) -> int:
        """A fixed serial per set of facts (20 bytes at most, positive)."""
        digest = hashlib.sha256(repr(self).encode()).digest()
        return int.from_bytes(digest[:19], "big") | 1


def sgx_extension(facts: PckFacts) -> bytes:
    """The DER value of the SGX extension (OID 1.2.840.113741.1.13.1, §2.2)."""
    tcb = [_entry(f"2.{i}", _int(svn)) for i, svn in enumerate(facts.comp_svns, 1)]
    tcb += [_entry("2.17", _int(facts.pcesvn)), _entry("2.18", _octets(facts.cpusvn))]
    items = [_entry("1", _octets(facts.ppid)), _entry("2", _seq(*tcb)),
             _entry("3", _octets(facts.pce_id)), _entry("4", _octets(facts.fmspc)),
             _entry("5", _int(facts.sgx_type, 0x0A))]
    if facts.platform_instance_id is not None:
        flags = [_entry(f"7.{n}", _boolean(flag))
                 for n, flag in enumerate(facts.configuration, 1)]
        items += [_entry("6", _octets(facts.platform_instance_id)), _entry("7", _seq(*flags))]
    return _seq(*items)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca, content_commitment=not ca, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False)


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
                 issuer_key: ec.EllipticCurvePrivateKey, serial: int, *,
                 path_length: int | None, crl_url: str,
                 extra: Sequence[x509.ExtensionType] = ()) -> x509.Certificate:
    """A certificate in Intel's profile (§2.1): AKI, CRL DP, SKI, key usage, basic
    constraints (``path_length`` None: not a CA)."""
    ca = path_length is not None
    builder = (
        x509.CertificateBuilder()
        .subject_name(intel_name(subject)).issuer_name(intel_name(issuer))
        .public_key(key.public_key()).serial_number(serial)
        .not_valid_before(pki.LONG_AGO).not_valid_after(pki.FAR_AHEAD)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_key.public_key()), critical=False)
        .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(crl_url)], None, None, None)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(_key_usage(ca=ca), critical=True)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    )
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(issuer_key, hashes.SHA256(), ecdsa_deterministic=True)


_SERIAL: Final = 0x5645524954454500  # "VERITEE\0"


def _root_key(foreign: bool) -> ec.EllipticCurvePrivateKey:
    return dcap_key("foreign-root" if foreign else "root")


@functools.cache
def root_cert(foreign: bool = False) -> x509.Certificate:
    """The emulated Intel SGX Root CA (``foreign``: one on a key that nothing pins)."""
    key = _root_key(foreign)
    return _certificate(ROOT_CN, key, ROOT_CN, key, _SERIAL + (0x10 if foreign else 1),
                        path_length=1, crl_url=ROOT_CA_CRL_URL)


@functools.cache
def ca_cert(ca: Ca, foreign: bool = False) -> x509.Certificate:
    """The PCK Platform or Processor CA, issued by the (emulated or foreign) root."""
    serial = _SERIAL + (2 if ca == "platform" else 3) + (0x10 if foreign else 0)
    return _certificate(CA_CN[ca], dcap_key(f"pck-{ca}-ca"), ROOT_CN, _root_key(foreign),
                        serial, path_length=0, crl_url=ROOT_CA_CRL_URL)


@functools.cache
def tcb_signing_cert() -> x509.Certificate:
    """Intel SGX TCB Signing, issued by the root; it signs TCB Info and identities (§2.3)."""
    return _certificate(TCB_SIGNING_CN, dcap_key("tcb-signing"), ROOT_CN, dcap_key("root"),
                        _SERIAL + 4, path_length=None, crl_url=ROOT_CA_CRL_URL)


def pck_crl_url(ca: Ca, base_url: str = PCS_BASE_URL) -> str:
    """The PCK CRL of ``ca`` (the leaf's CRL DP, §2.1)."""
    return pcs.pck_crl_url(ca, base_url=base_url)


@functools.cache
def pck_leaf(facts: PckFacts) -> x509.Certificate:
    """The PCK certificate with the SGX extension of ``facts``, issued by its CA."""
    extension = x509.UnrecognizedExtension(x509.ObjectIdentifier(SGX_EXTENSION_OID),
                                           sgx_extension(facts))
    return _certificate(PCK_CN, dcap_key("pck"), CA_CN[facts.ca], dcap_key(f"pck-{facts.ca}-ca"),
                        facts.serial, path_length=None, crl_url=pck_crl_url(facts.ca),
                        extra=(extension,))


def emulated_roots() -> tuple[x509.Certificate, ...]:
    """The emulated Intel SGX Root CA, for a verifier told to trust emulated roots.

    ``cryptography`` certificate objects (``public_bytes(DER)`` gives the DER; the verifier's
    ``veritee.x509.parse_cert`` takes that); :func:`emulated_root_pem` gives the PEM.
    """
    return (root_cert(),)


def emulated_anchors() -> tuple[IntelRoot, ...]:
    """The emulated roots as the DCAP verifier's trust anchors (``emulated=True``): the
    descriptors' ``emulated_roots`` slot."""
    anchors = []
    for cert in emulated_roots():
        parsed = parse_cert(cert.public_bytes(serialization.Encoding.DER))
        assert parsed is not None
        anchors.append(IntelRoot(parsed, emulated=True))
    return tuple(anchors)


def emulated_root_pem() -> bytes:
    """The emulated root(s) as PEM text."""
    return b"".join(pem(cert) for cert in emulated_roots())


def build_crl(issuer_cn: str, issuer_key: ec.EllipticCurvePrivateKey, *, number: int,
              now: datetime, valid_days: float, revoked: Sequence[int] = ()) -> bytes:
    """A DER CRL with CRL number and AKI (§2.1), listing ``revoked`` serials."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(intel_name(issuer_cn))
        .last_update(now - pki.days(1)).next_update(now + pki.days(valid_days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_key.public_key()), critical=False)
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial)
            .revocation_date(now - pki.days(2)).build())
    crl = builder.sign(issuer_key, hashes.SHA256(), ecdsa_deterministic=True)
    return crl.public_bytes(serialization.Encoding.DER)


# -- the CC event log (§3.2) -------------------------------------------------------------------

SHA384_ALG_ID: Final = 0x000C
EV_NO_ACTION: Final = 0x03
EV_SEPARATOR: Final = 0x04
EV_EVENT_TAG: Final = 0x06
EV_IPL: Final = 0x0D
EV_EFI_VARIABLE_DRIVER_CONFIG: Final = 0x80000001
EV_EFI_BOOT_SERVICES_APPLICATION: Final = 0x80000003
EV_EFI_ACTION: Final = 0x80000007
EV_EFI_HANDOFF_TABLES2: Final = 0x8000000B
_EFI_GLOBAL_VARIABLE: Final = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
_TD_HOB_GUID: Final = uuid.UUID("7739f24c-93d7-11d4-9a3a-0090273fc14d")  # EFI_HOB_LIST_GUID
#: The Linux EFI stub's tagged-event ID for the initrd (``LINUX_EFI_INITRD_MEDIA``).
LINUX_INITRD_EVENT_ID: Final = 0x8F3B22ED
KERNEL_CMDLINE: Final = b"/vmlinuz console=hvc0 root=/dev/vda1 veritee.emulated=1"
#: Which default event ``tampered_event`` changes (the kernel command line, MR 3 = RTMR2).
TAMPERED_EVENT_INDEX: Final = 5


@dataclass(frozen=True)
class CcEvent:
    """One ``TCG_PCR_EVENT2`` with one SHA-384 digest; ``mr_index`` is the CC MR index
    (RTMR[i] = MR index i + 1)."""

    mr_index: int
    event_type: int
    digest: bytes
    data: bytes

    def to_bytes(self) -> bytes:
        head = struct.pack("<IIIH", self.mr_index, self.event_type, 1, SHA384_ALG_ID)
        return head + self.digest + struct.pack("<I", len(self.data)) + self.data


def spec_id_event() -> bytes:
    """The first record: a legacy ``TCG_PCR_EVENT`` (MR 0, EV_NO_ACTION, 20 zero bytes)
    carrying ``Spec ID Event03`` that declares SHA-384 (48 bytes) as the only algorithm."""
    spec = (b"Spec ID Event03\0" + struct.pack("<IBBBB", 0, 0, 2, 0, 2)
            + struct.pack("<IHH", 1, SHA384_ALG_ID, 48) + b"\0")
    return struct.pack("<II", 0, EV_NO_ACTION) + bytes(20) + struct.pack("<I", len(spec)) + spec


def _measured(mr_index: int, event_type: int, data: bytes) -> CcEvent:
    """An event whose digest is the SHA-384 of its data (the data is what was measured)."""
    return CcEvent(mr_index, event_type, hashlib.sha384(data).digest(), data)


def _variable(name: str, value: bytes) -> bytes:
    """``UEFI_VARIABLE_DATA`` of an EFI global variable."""
    encoded = name.encode("utf-16-le")
    return (_EFI_GLOBAL_VARIABLE.bytes_le + struct.pack("<QQ", len(name), len(value))
            + encoded + value)


def _image_load(path: str) -> bytes:
    """``UEFI_IMAGE_LOAD_EVENT`` with a file-path device path (UEFI 2.10 §10.3.5.4)."""
    text = (path + "\0").encode("utf-16-le")
    device_path = struct.pack("<BBH", 4, 4, 4 + len(text)) + text + b"\x7f\xff\x04\x00"
    return struct.pack("<QQQQ", 0x7E000000, 0x12000, 0, len(device_path)) + device_path


def default_events() -> tuple[CcEvent, ...]:
    """A short TDVF-and-Linux boot: TD HOB, SecureBoot, separator (RTMR0); the boot loader and
    ExitBootServices (RTMR1); the kernel command line and initrd (RTMR2). RTMR3 stays zero."""
    hob = b"\x09" + b"TdHob\0\0\0\0" + struct.pack("<Q", 1) + _TD_HOB_GUID.bytes_le + bytes(8)
    return (
        CcEvent(1, EV_EFI_HANDOFF_TABLES2,
                hashlib.sha384(b"veritee emulated TD HOB").digest(), hob),
        _measured(1, EV_EFI_VARIABLE_DRIVER_CONFIG, _variable("SecureBoot", b"\x00")),
        _measured(1, EV_SEPARATOR, bytes(4)),
        CcEvent(2, EV_EFI_BOOT_SERVICES_APPLICATION,
                hashlib.sha384(b"veritee emulated boot loader").digest(),
                _image_load("\\EFI\\BOOT\\BOOTX64.EFI")),
        _measured(2, EV_EFI_ACTION, b"Exit Boot Services Invocation"),
        _measured(3, EV_IPL, KERNEL_CMDLINE + b"\0"),
        CcEvent(3, EV_EVENT_TAG, hashlib.sha384(b"veritee emulated initrd").digest(),
                struct.pack("<II", LINUX_INITRD_EVENT_ID, 13) + b"Linux initrd\0"),
    )


def build_event_log(events: Sequence[CcEvent], *, area: int = 4096) -> bytes:
    """The log as the CCEL log area holds it: the Spec ID record, the events, then 0xFF
    (erased memory) up to a multiple of ``area`` bytes."""
    log = spec_id_event() + b"".join(event.to_bytes() for event in events)
    return log + b"\xff" * (-len(log) % area)


def rtmrs_of(events: Sequence[CcEvent]) -> tuple[bytes, bytes, bytes, bytes]:
    """RTMR0–3 from ``events``: ``RTMR[i] = SHA384(RTMR[i] || digest)`` from 48 zero bytes,
    for events of MR index i + 1 (§3.2; EV_NO_ACTION is not extended)."""
    rtmrs = [bytes(48)] * 4
    for event in events:
        if event.event_type != EV_NO_ACTION and 1 <= event.mr_index <= 4:
            i = event.mr_index - 1
            rtmrs[i] = hashlib.sha384(rtmrs[i] + event.digest).digest()
    return rtmrs[0], rtmrs[1], rtmrs[2], rtmrs[3]


# -- collateral (§2.3) ---------------------------------------------------------------------------


def pcs_date(instant: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, to the second, as PCS writes dates."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def compact_json(value: Any) -> str:
    """The compact serialisation PCS signs (QVL's re-serialisation, §2.3)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class SignedDocument:
    """A signed PCS JSON document: the compact text of ``member`` and its ``r || s``."""

    member: str
    """``tcbInfo`` or ``enclaveIdentity``."""
    text: str
    signature: bytes

    @property
    def value(self) -> Any:
        return json.loads(self.text)

    @property
    def body(self) -> bytes:
        """The response body exactly as PCS returns it."""
        return (f'{{"{self.member}":{self.text},"signature":"{self.signature.hex()}"}}'
                .encode())


def sign_document(member: str, value: Mapping[str, Any],
                  key: ec.EllipticCurvePrivateKey | None = None) -> SignedDocument:
    """Sign the compact JSON of ``value`` (by default with the test TCB Signing key)."""
    text = compact_json(value)
    return SignedDocument(member, text, raw_signature(key or dcap_key("tcb-signing"),
                                                      text.encode()))


_SGX_COMPONENT_NAMES: Final[Mapping[int, Mapping[str, str]]] = {
    0: {"category": "BIOS", "type": "Early Microcode Update"},
    1: {"category": "OS/VMM", "type": "SGX Late Microcode Update"},
    2: {"category": "OS/VMM", "type": "TXT SINIT"},
    3: {"category": "BIOS"}, 4: {"category": "BIOS"}, 5: {"category": "BIOS"},
    7: {"category": "OS/VMM", "type": "SEAMLDR ACM"},
}
_TDX_COMPONENT_NAMES: Final[Mapping[int, Mapping[str, str]]] = {
    0: {"category": "OS/VMM", "type": "TDX Module"},
    1: {"category": "OS/VMM", "type": "TDX Module"},
    2: {"category": "OS/VMM", "type": "TDX Late Microcode Update"},
}


def _components(svns: Sequence[int],
                names: Mapping[int, Mapping[str, str]]) -> list[dict[str, Any]]:
    return [{"svn": svn, **names.get(i, {})} for i, svn in enumerate(svns)]


def _tcb_level(level: tuple[Any, ...], tdx: bool) -> dict[str, Any]:
    status, pcesvn, tdx_svns, date, advisories = level
    tcb: dict[str, Any] = {
        "sgxtcbcomponents": _components(TCB_COMPONENTS, _SGX_COMPONENT_NAMES if tdx else {}),
        "pcesvn": pcesvn,
    }
    if tdx:
        tcb["tdxtcbcomponents"] = _components(list(tdx_svns) + [0] * 13, _TDX_COMPONENT_NAMES)
    out: dict[str, Any] = {"tcb": tcb, "tcbDate": date, "tcbStatus": status}
    if advisories:
        out["advisoryIDs"] = list(advisories)
    return out


#: tdxModule / a tdxModuleIdentities entry's identity: Intel's module (MRSIGNERSEAM zero,
#: SEAM_ATTRIBUTES zero; §2.3, §2.4 step 12).
_MODULE: Final[Mapping[str, str]] = {"mrsigner": "00" * 48, "attributes": "0000000000000000",
                                     "attributesMask": "FFFFFFFFFFFFFFFF"}


def _module_identities() -> list[dict[str, Any]]:
    levels = [{"tcb": {"isvsvn": svn}, "tcbDate": date, "tcbStatus": status}
              for svn, date, status in MODULE_LEVELS]
    return [{"id": f"TDX_{TEE_TCB_SVN[1]:02X}", **_MODULE, "tcbLevels": levels}]


def tcb_info_value(tee: Tee, *, fmspc: bytes, issued: datetime,
                   next_update: datetime) -> dict[str, Any]:
    """A TCB Info v3 (§2.3) in PCS's key order; TDX adds tdxModule and its identities."""
    tdx = tee == "tdx"
    value: dict[str, Any] = {
        "id": tee.upper(), "version": 3, "issueDate": pcs_date(issued),
        "nextUpdate": pcs_date(next_update), "fmspc": fmspc.hex().upper(),
        "pceId": PCE_ID.hex(), "tcbType": 0,
        "tcbEvaluationDataNumber": TCB_EVALUATION_DATA_NUMBER,
    }
    if tdx:
        value["tdxModule"] = dict(_MODULE)
        value["tdxModuleIdentities"] = _module_identities()
    value["tcbLevels"] = [_tcb_level(level, tdx) for level in TCB_LEVELS]
    return value


def qe_identity_value(tee: Tee, *, issued: datetime, next_update: datetime) -> dict[str, Any]:
    """A QE identity v2 (``QE`` for SGX, ``TD_QE`` for TDX; §2.3) in PCS's key order."""
    qe = QE[tee]
    levels = []
    for svn, date, status, advisories in qe.levels:
        level: dict[str, Any] = {"tcb": {"isvsvn": svn}, "tcbDate": date, "tcbStatus": status}
        if advisories:
            level["advisoryIDs"] = list(advisories)
        levels.append(level)
    return {
        "id": qe.id, "version": 2, "issueDate": pcs_date(issued),
        "nextUpdate": pcs_date(next_update),
        "tcbEvaluationDataNumber": TCB_EVALUATION_DATA_NUMBER,
        "miscselect": "00000000", "miscselectMask": "FFFFFFFF",
        "attributes": IDENTITY_ATTRIBUTES, "attributesMask": IDENTITY_ATTRIBUTES_MASK,
        "mrsigner": qe.mr_signer.hex().upper(), "isvprodid": qe.isv_prod_id,
        "tcbLevels": levels,
    }


def issuer_chain_header(*certs: x509.Certificate) -> str:
    """An issuer-chain header value: the PEM chain, URL-encoded (§2.3)."""
    return urllib.parse.quote(b"".join(pem(c) for c in certs), safe="")


# -- the emulated machine -------------------------------------------------------------------------

_VERSIONS: Final[Mapping[Tee, tuple[int, ...]]] = {"tdx": (4, 5), "sgx": (3, 5)}
_BODIES: Final = {"td10": BODY_TD10, "td15": BODY_TD15}
_COLLATERAL_DAYS: Final = 30


@dataclass
class DcapEmulator:
    """An emulated TDX or SGX platform, its QE, and a TD or enclave. Each knob breaks
    exactly one thing; ``debug`` and ``tcb_out_of_date`` are settings (claims, no error)."""

    tee: Tee = "tdx"
    version: int | None = None
    """4 (TDX) or 3 (SGX) by default; 5 for either."""
    body: Literal["td10", "td15"] | None = None
    """The TD report of a v5 TDX quote (default td15); v4 is td10."""
    ca: Ca | None = None
    """The PCK CA (default: platform for TDX, processor for SGX)."""
    mr_td: bytes = DEFAULT_MR_TD
    mr_config_id: bytes = bytes(48)
    mr_enclave: bytes = DEFAULT_MR_ENCLAVE
    mr_signer: bytes = DEFAULT_MR_SIGNER
    debug: bool = False
    tcb_out_of_date: bool = False
    knob: Knob | None = None
    now: datetime = field(default_factory=pki.now_utc)

    def __post_init__(self) -> None:
        if self.tee not in TEES:
            raise ValueError(f"tee is {self.tee!r}; emulated are {', '.join(TEES)}")
        if self.knob is not None and self.knob not in knob_errors(self.tee):
            raise ValueError(f"unknown knob {self.knob!r} for {self.tee}; known: "
                             f"{', '.join(knob_errors(self.tee))}")
        if self.quote_version not in _VERSIONS[self.tee]:
            raise ValueError(f"{self.tee} quotes are version "
                             f"{' or '.join(map(str, _VERSIONS[self.tee]))}, not {self.version}")
        self._check_body()
        self._check_sizes()

    def _check_body(self) -> None:
        if self.body is not None and (self.tee == "sgx" or self.body not in _BODIES):
            raise ValueError(f"body={self.body} does not apply to {self.tee} "
                             "(TDX bodies: td10, td15)")
        if self.body == "td15" and self.quote_version == 4:
            raise ValueError("a version 4 quote carries a TD 1.0 body; td15 needs version=5")
        if self.ca is not None and self.ca not in CAS:
            raise ValueError(f"ca={self.ca!r}: the PCK CA is {' or '.join(CAS)}")

    def _check_sizes(self) -> None:
        sizes = {"mr_td": (self.mr_td, 48), "mr_config_id": (self.mr_config_id, 48),
                 "mr_enclave": (self.mr_enclave, 32), "mr_signer": (self.mr_signer, 32)}
        for name, (value, size) in sizes.items():
            if len(value) != size:
                raise ValueError(f"{name} is {len(value)} bytes; it must be {size}")

    # -- what the emulator is --

    @property
    def quote_version(self) -> int:
        return self.version if self.version is not None else (4 if self.tee == "tdx" else 3)

    @property
    def body_type(self) -> int:
        if self.tee == "sgx":
            return BODY_SGX
        if self.quote_version == 4:
            return BODY_TD10
        return _BODIES[self.body or "td15"]

    @property
    def pck_ca(self) -> Ca:
        return self.ca or ("platform" if self.tee == "tdx" else "processor")

    @property
    def tcb_status(self) -> str:
        """The platform TCB status a QVL-rule verifier reaches (§2.5)."""
        if self.knob == "tcb_revoked":
            return "Revoked"
        return "OutOfDate" if self.tcb_out_of_date else "UpToDate"

    @property
    def qe(self) -> QeIdentity:
        return QE[self.tee]

    @property
    def facts(self) -> PckFacts:
        return PckFacts(self.pck_ca, FMSPC[self.tee], PCESVN[self.tcb_status])

    @property
    def fmspc(self) -> bytes:
        return self.facts.fmspc

    # -- certificates and keys --

    @property
    def pck_chain(self) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
        """(leaf, PCK CA, root) as the quote carries them."""
        foreign = self.knob == "untrusted_root"
        return pck_leaf(self.facts), ca_cert(self.pck_ca, foreign), root_cert(foreign)

    @property
    def pck_chain_pem(self) -> bytes:
        return b"".join(pem(cert) for cert in self.pck_chain)

    @property
    def pck_key(self) -> ec.EllipticCurvePrivateKey:
        return dcap_key("pck")

    @property
    def attestation_key(self) -> ec.EllipticCurvePrivateKey:
        """The QE's attestation key (the one the quote carries)."""
        return dcap_key("attestation")

    # -- the QE and the quote --

    def qe_report(self) -> bytes:
        """The QE's SGX report (§1.3), REPORTDATA = SHA256(attestation key || auth data) ||
        0^32 (§2.4 step 14); ``bad_qe_binding`` binds another key instead."""
        bound = dcap_key("wrong") if self.knob == "bad_qe_binding" else self.attestation_key
        report_data = hashlib.sha256(public_xy(bound) + QE_AUTH_DATA).digest() + bytes(32)
        return pack_fields(SGX_REPORT, {
            "cpu_svn": self.facts.cpusvn, "attributes": QE_ATTRIBUTES,
            "mr_enclave": self.qe.mr_enclave, "mr_signer": self.qe.mr_signer,
            "isv_prod_id": self.qe.isv_prod_id, "isv_svn": self.qe.isv_svn,
            "report_data": report_data,
        })

    def qe_report_signature(self, qe_report: bytes) -> bytes:
        key = dcap_key("wrong") if self.knob == "bad_qe_signature" else self.pck_key
        return raw_signature(key, qe_report)

    def header(self) -> bytes:
        """The 48-byte header (§1.1); v3 fills qe_svn/pce_svn, v4/v5 leave them reserved."""
        v3 = self.quote_version == 3
        return pack_fields(HEADER, {
            "version": self.quote_version, "att_key_type": ATT_KEY_ECDSA_P256,
            "tee_type": TEE_TYPE_TDX if self.tee == "tdx" else TEE_TYPE_SGX,
            "qe_svn": self.qe.isv_svn if v3 else 0, "pce_svn": self.facts.pcesvn if v3 else 0,
            "qe_vendor_id": INTEL_QE_VENDOR_ID, "user_data": QE_ID + bytes(4),
        })

    def report_body(self, report_data: bytes) -> bytes:
        """The TD report (1.0 or 1.5, §1.4) or the enclave's SGX report (§1.3)."""
        if self.tee == "sgx":
            return self._enclave_report(report_data)
        fields: dict[str, Any] = {
            "tee_tcb_svn": TEE_TCB_SVN, "mr_seam": DEFAULT_MR_SEAM,
            "td_attributes": self.td_attributes, "xfam": XFAM, "mr_td": self.mr_td,
            "mr_config_id": self.mr_config_id, "report_data": report_data,
            **{f"rtmr{i}": rtmr for i, rtmr in enumerate(self.rtmrs)},
        }
        if self.body_type == BODY_TD15:
            fields["tee_tcb_svn2"] = TEE_TCB_SVN
            return pack_fields(TD_REPORT_15, fields)
        return pack_fields(TD_REPORT_10, fields)

    @property
    def td_attributes(self) -> bytes:
        """SEPT_VE_DISABLE, and DEBUG with ``debug`` (§1.5)."""
        value = TD_SEPT_VE_DISABLE | (TD_DEBUG if self.debug else 0)
        return value.to_bytes(8, "little")

    @property
    def enclave_attributes(self) -> bytes:
        """INIT | MODE64BIT, and DEBUG with ``debug``; then XFRM (§1.5)."""
        flags = SGX_INIT | SGX_MODE64BIT | (SGX_DEBUG if self.debug else 0)
        return flags.to_bytes(8, "little") + XFRM

    def _enclave_report(self, report_data: bytes) -> bytes:
        return pack_fields(SGX_REPORT, {
            "cpu_svn": self.facts.cpusvn, "attributes": self.enclave_attributes,
            "mr_enclave": self.mr_enclave, "mr_signer": self.mr_signer,
            "isv_prod_id": ENCLAVE_ISV_PROD_ID, "isv_svn": ENCLAVE_ISV_SVN,
            "report_data": report_data,
        })

    def signed_bytes(self, report_data: bytes) -> bytes:
        """header || [v5 body descriptor] || body: what the attestation key signs (§1.2)."""
        return self._signed(self.report_body(report_data))

    def _signed(self, body: bytes) -> bytes:
        descriptor = b""
        if self.quote_version == 5:
            descriptor = BODY_DESCRIPTOR.struct.pack(self.body_type, len(body))
        return self.header() + descriptor + body

    def quote(self, report_data: bytes = bytes(64)) -> bytes:
        """A signed quote with the PCK chain as certification data (type 5, inside type 6
        for v4/v5; §1.6)."""
        if len(report_data) != 64:
            raise ValueError(f"report_data is {len(report_data)} bytes; it must be 64")
        body = self.report_body(report_data)
        wrong = self.knob == "wrong_attestation_key"
        signature = raw_signature(dcap_key("wrong") if wrong else self.attestation_key,
                                  self._signed(body))
        if self.knob == "tampered":  # after signing: the first byte of MRTD / MRENCLAVE
            body = _flip(body, 136 if self.tee == "tdx" else 64)
        return build_quote(self.header(), body, self._signature_data(signature))

    def _signature_data(self, signature: bytes) -> bytes:
        qe_report = self.qe_report()
        return build_signature_data(
            version=self.quote_version, signature=signature,
            attestation_key=public_xy(self.attestation_key), qe_report=qe_report,
            qe_report_signature=self.qe_report_signature(qe_report),
            qe_auth_data=QE_AUTH_DATA,
            certification=CertificationData(CERT_PCK_CHAIN, self.pck_chain_pem))

    # -- the event log --

    @cached_property
    def events(self) -> tuple[CcEvent, ...]:
        return default_events()

    @property
    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        """RTMR0–3 replayed from the genuine event log (what the TD report holds)."""
        return rtmrs_of(self.events)

    def event_log(self) -> bytes:
        """The CCEL log; ``tampered_event`` changes one digest after the RTMRs were taken."""
        events = list(self.events)
        if self.knob == "tampered_event":
            event = events[TAMPERED_EVENT_INDEX]
            events[TAMPERED_EVENT_INDEX] = replace(event, digest=_flip(event.digest, 0))
        return build_event_log(events)

    # -- collateral --

    @property
    def _issued(self) -> datetime:
        return self.now.replace(microsecond=0) - pki.days(1)

    @cached_property
    def tcb_info(self) -> SignedDocument:
        """The signed TCB Info; ``expired_collateral`` ends its window a day before now,
        ``wrong_fmspc`` issues it for :data:`OTHER_FMSPC`."""
        issued = self._issued
        if self.knob == "expired_collateral":
            issued -= pki.days(_COLLATERAL_DAYS)
        fmspc = OTHER_FMSPC if self.knob == "wrong_fmspc" else self.fmspc
        return sign_document("tcbInfo", tcb_info_value(
            self.tee, fmspc=fmspc, issued=issued,
            next_update=issued + pki.days(_COLLATERAL_DAYS)))

    @cached_property
    def qe_identity(self) -> SignedDocument:
        issued = self._issued
        return sign_document("enclaveIdentity", qe_identity_value(
            self.tee, issued=issued, next_update=issued + pki.days(_COLLATERAL_DAYS)))

    @cached_property
    def root_crl(self) -> bytes:
        """The Root CA CRL (DER), listing nothing."""
        return build_crl(ROOT_CN, dcap_key("root"), number=1, now=self.now, valid_days=365)

    def pck_crl(self, ca: Ca | None = None) -> bytes:
        """The PCK CRL of ``ca`` (default: the leaf's); ``revoked_pck`` lists the leaf."""
        return self._pck_crls[ca or self.pck_ca]

    @cached_property
    def _pck_crls(self) -> dict[Ca, bytes]:
        revoked = [self.facts.serial] if self.knob == "revoked_pck" else []
        return {ca: build_crl(CA_CN[ca], dcap_key(f"pck-{ca}-ca"), number=1, now=self.now,
                              valid_days=_COLLATERAL_DAYS,
                              revoked=revoked if ca == self.pck_ca else ())
                for ca in CAS}

    @property
    def tcb_signing_chain(self) -> tuple[x509.Certificate, x509.Certificate]:
        return tcb_signing_cert(), root_cert()

    @property
    def pck_crl_chain(self) -> tuple[x509.Certificate, x509.Certificate]:
        """The PCK CA and the root (the emulated ones, whatever the quote carries)."""
        return ca_cert(self.pck_ca), root_cert()

    def combined_collateral(self) -> dict[str, str]:
        """dcap-qvl's ``QuoteCollateralV3`` (its field order; CRLs and signatures as hex)."""
        tcb_chain = b"".join(pem(c) for c in self.tcb_signing_chain).decode()
        return {
            "pck_crl_issuer_chain": b"".join(pem(c) for c in self.pck_crl_chain).decode(),
            "root_ca_crl": self.root_crl.hex(), "pck_crl": self.pck_crl().hex(),
            "tcb_info_issuer_chain": tcb_chain, "tcb_info": self.tcb_info.text,
            "tcb_info_signature": self.tcb_info.signature.hex(),
            "qe_identity_issuer_chain": tcb_chain, "qe_identity": self.qe_identity.text,
            "qe_identity_signature": self.qe_identity.signature.hex(),
        }

    def pcs_files(self) -> tuple[tuple[str, bytes], ...]:
        """``(suffix, bytes)`` of the PCS bodies, each with ``<name>.issuer-chain.pem``
        beside it (the offline-directory convention), and the Root CA CRL."""
        tcb_chain = b"".join(pem(c) for c in self.tcb_signing_chain)
        tcb = f".tcb-{self.tee}-{self.tcb_info.value['fmspc'].lower()}.json"
        qe = f".qe-identity-{self.tee}.json"
        crl = f".pckcrl-{self.pck_ca}.der"
        return ((tcb, self.tcb_info.body), (f"{tcb}.issuer-chain.pem", tcb_chain),
                (qe, self.qe_identity.body), (f"{qe}.issuer-chain.pem", tcb_chain),
                (crl, self.pck_crl()),
                (f"{crl}.issuer-chain.pem", b"".join(pem(c) for c in self.pck_crl_chain)),
                (".rootcacrl.der", self.root_crl))

    # -- wire forms --

    def coco_evidence(self, report_data: bytes = bytes(64)) -> dict[str, Any]:
        """The Confidential Containers attester's JSON: TDX ``{cc_eventlog, quote}``, SGX
        ``{quote}`` (base64)."""
        quote = base64.b64encode(self.quote(report_data)).decode()
        if self.tee == "sgx":
            return {"quote": quote}
        return {"cc_eventlog": base64.b64encode(self.event_log()).decode(), "quote": quote}

    def configfs_tsm(self, report_data: bytes = bytes(64)) -> dict[str, str]:
        """What Linux configfs-tsm returns for a TD (provider ``tdx_guest``, no auxblob)."""
        return TsmReport(self.quote(report_data), b"", TSM_PROVIDER).to_json()

    def variant(self, **changes: Any) -> DcapEmulator:
        return replace(self, **changes)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


# -- a fake Intel PCS (§2.10) ----------------------------------------------------------------------


#: PCS answers carry their issuer chains in headers (:attr:`Response.headers`).
PcsResponse = Response


@dataclass
class FakePcs:
    """Serves emulated collateral at Intel PCS v4 URLs (and the Root CA CRL at its CRL DP);
    a :class:`~veritee.collateral.base.Fetcher`.

    ``GET {base_url}/{sgx|tdx}/certification/v4/tcb?fmspc=…`` (404 for an FMSPC it has no
    TCB Info for), ``…/qe/identity``, ``/sgx/certification/v4/pckcrl?ca=…[&encoding=der]``
    (PEM without ``encoding=der``). Answers are :class:`PcsResponse` with the issuer-chain
    headers. ``fail_status`` answers every request with that status; ``requests`` records
    every URL asked for.
    """

    base_url: str = PCS_BASE_URL
    root_crl_url: str = ROOT_CA_CRL_URL
    fail_status: int | None = None
    requests: list[str] = field(default_factory=list)
    _routes: dict[str, PcsResponse] = field(default_factory=dict)

    def add(self, emulator: DcapEmulator) -> None:
        """Serve ``emulator``'s collateral (its TCB Info under the FMSPC it names)."""
        tcb_chain = issuer_chain_header(*emulator.tcb_signing_chain)
        fmspc = emulator.tcb_info.value["fmspc"].lower()
        self._put(f"/{emulator.tee}/certification/v4/tcb?fmspc={fmspc}",
                  emulator.tcb_info.body, {TCB_INFO_CHAIN_HEADER: tcb_chain})
        self._put(f"/{emulator.tee}/certification/v4/qe/identity", emulator.qe_identity.body,
                  {IDENTITY_CHAIN_HEADER: tcb_chain})
        for ca in CAS:
            self._add_pck_crl(ca, emulator.pck_crl(ca))
        self._routes["root"] = PcsResponse(200, emulator.root_crl, 86400,
                                           {"Content-Type": "application/pkix-crl"})

    def _add_pck_crl(self, ca: Ca, der: bytes) -> None:
        chain = issuer_chain_header(ca_cert(ca), root_cert())
        crl = x509.load_der_x509_crl(der)
        for encoding, body in (("der", der), ("pem", crl.public_bytes(
                serialization.Encoding.PEM))):
            self._put(f"/sgx/certification/v4/pckcrl?ca={ca}&encoding={encoding}", body,
                      {PCK_CRL_CHAIN_HEADER: chain})

    def _put(self, route: str, body: bytes, headers: Mapping[str, str]) -> None:
        kind = "application/json" if body[:1] == b"{" else "application/pkix-crl"
        self._routes[route] = PcsResponse(200, body, 3600, {"Content-Type": kind, **headers})

    def serve(self, url: str, response: PcsResponse | None) -> None:
        """Answer ``url`` with ``response`` instead (None: 404)."""
        route = self._route(url)
        if route is None:
            raise ValueError(f"{url} is not a URL this fake PCS serves")
        if response is None:
            self._routes.pop(route, None)
        else:
            self._routes[route] = response

    def get(self, url: str) -> Response:
        self.requests.append(url)
        if self.fail_status is not None:
            return PcsResponse(self.fail_status, b"")
        route = self._route(url)
        if route == "":
            return PcsResponse(400, b'{"error":"Invalid request parameters"}')
        found = self._routes.get(route) if route else None
        return found or PcsResponse(404, b"Not Found")

    def _route(self, url: str) -> str | None:
        """The route of ``url``; None: not ours; "": ours, with bad parameters."""
        if url == self.root_crl_url:
            return "root"
        if not url.startswith(self.base_url + "/"):
            return None
        path, _, query = url[len(self.base_url):].partition("?")
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
        if path.endswith("/tcb"):
            fmspc = params.get("fmspc", "").lower()
            valid = len(fmspc) == 12 and all(c in "0123456789abcdef" for c in fmspc)
            return f"{path}?fmspc={fmspc}" if valid else ""
        if path.endswith("/pckcrl"):
            ca, encoding = params.get("ca", "").lower(), params.get("encoding", "pem")
            return f"{path}?ca={ca}&encoding={encoding}" if ca in CAS else ""
        return path


# -- ``veritee emulate tdx`` / ``veritee emulate sgx`` ---------------------------------------------

FORMS: Final[Mapping[Tee, tuple[str, ...]]] = {"tdx": ("coco", "raw", "configfs-tsm"),
                                               "sgx": ("raw", "coco")}
COLLATERAL_MODES: Final = ("combined", "pcs", "none")
_HEX_SETTINGS: Final[Mapping[Tee, Mapping[str, int]]] = {
    "tdx": {"mr_td": 48}, "sgx": {"mr_enclave": 32, "mr_signer": 32}}
_FLAGS: Final = ("debug", "tcb_out_of_date")


@dataclass(frozen=True)
class DcapEmulatorCli:
    """The :class:`veritee.testing.Emulator` of ``tdx`` or ``sgx``: settings as knobs, at most
    one defect knob. The collateral comes beside the evidence as endorsements (by default one
    ``.collateral.json`` in dcap-qvl's shape), so that an offline verifier can decide."""

    tee: Tee

    @property
    def knobs(self) -> dict[str, str]:
        return {**_setting_help(self.tee),
                **{name: f"defect: verification fails with {error.__name__}"
                   for name, error in knob_errors(self.tee).items()}}

    def emulate(self, *, report_data: bytes | None, host_data: bytes | None,
                knobs: Sequence[str]) -> Emulated:
        changes, form, mode = _settings(self.tee, knobs)
        if host_data is not None:
            changes["mr_config_id"] = _host_data(self.tee, host_data)
        if report_data is not None and len(report_data) != 64:
            raise ValueError(f"--report-data is {len(report_data)} bytes; "
                             f"{self.tee.upper()} REPORTDATA is 64")
        emulator = DcapEmulator(**changes)
        data = bytes(64) if report_data is None else report_data
        return Emulated(_evidence(emulator, data, form), form, _endorsements(emulator, mode))


def _setting_help(tee: Tee) -> dict[str, str]:
    versions = _VERSIONS[tee]
    out = {
        "version=N": f"quote version {versions[0]} (default) or {versions[1]}",
        "ca=NAME": "the PCK CA: platform or processor (default "
                   f"{'platform' if tee == 'tdx' else 'processor'})",
        "debug": "set the DEBUG attribute of the " + ("TD" if tee == "tdx" else "enclave"),
        "tcb_out_of_date": "a PCK certificate whose TCB matches the OutOfDate level "
                           "(verified, tcb_status OutOfDate, with advisory IDs)",
        "form=NAME": f"wire form: {', '.join(FORMS[tee])} (default {FORMS[tee][0]})",
        "collateral=MODE": "endorsements beside the evidence: combined (one dcap-qvl "
                           "collateral JSON, default), pcs (PCS bodies, issuer chains, "
                           "CRLs) or none",
    }
    if tee == "tdx":
        out["body=NAME"] = "TD report of a version 5 quote: td15 (default) or td10"
    out |= {f"{name}=HEX": f"the {size}-byte {name.upper()}"
            for name, size in _HEX_SETTINGS[tee].items()}
    return out


def _settings(tee: Tee, knobs: Sequence[str]) -> tuple[dict[str, Any], str, str]:
    """DcapEmulator fields, the wire form and the collateral mode from ``knobs``."""
    changes: dict[str, Any] = {"tee": tee}
    chosen = {"form": FORMS[tee][0], "collateral": COLLATERAL_MODES[0]}
    choices = {"form": FORMS[tee], "collateral": COLLATERAL_MODES, "ca": CAS,
               "version": tuple(map(str, _VERSIONS[tee]))}
    if tee == "tdx":
        choices["body"] = tuple(_BODIES)
    for knob in knobs:
        name, equals, value = knob.partition("=")
        if not equals and name in knob_errors(tee):
            if "knob" in changes:
                raise ValueError(f"one defect knob at a time ({changes['knob']} and {name})")
            changes["knob"] = name
        elif not equals and name in _FLAGS:
            changes[name] = True
        elif equals and name in choices:
            _choose(chosen, changes, name, value, choices[name])
        elif equals and name in _HEX_SETTINGS[tee]:
            changes[name] = pki.hex_of(value, _HEX_SETTINGS[tee][name], name)
        else:
            raise ValueError(f"unknown knob {knob!r} for {tee} (see --list-knobs)")
    return changes, chosen["form"], chosen["collateral"]


def _choose(chosen: dict[str, str], changes: dict[str, Any], name: str, value: str,
            allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: choose one of {', '.join(allowed)}")
    if name in chosen:
        chosen[name] = value
    else:
        changes[name] = int(value) if name == "version" else value


def _host_data(tee: Tee, host_data: bytes) -> bytes:
    if tee == "sgx":
        raise ValueError("--host-data: an SGX quote has no init-data field (bind init-data "
                         "through --report-data)")
    if len(host_data) != 48:
        raise ValueError(f"--host-data is {len(host_data)} bytes; TDX MRCONFIGID is 48")
    return host_data




def _evidence(emulator: DcapEmulator, report_data: bytes, form: str) -> bytes:
    if form == "raw":
        return emulator.quote(report_data)
    document = (emulator.configfs_tsm(report_data) if form == "configfs-tsm"
                else emulator.coco_evidence(report_data))
    return json.dumps(document, indent=1).encode() + b"\n"


def _endorsements(emulator: DcapEmulator, mode: str) -> tuple[tuple[str, bytes], ...]:
    if mode == "none":
        return ()
    if mode == "pcs":
        return emulator.pcs_files()
    combined = json.dumps(emulator.combined_collateral(), indent=1).encode() + b"\n"
    return ((".collateral.json", combined),)


#: The emulators ``veritee emulate tdx`` and ``veritee emulate sgx`` use (the descriptors'
#: ``emulator`` slots: ``veritee.testing.dcap:TDX_EMULATOR`` / ``:SGX_EMULATOR``).
TDX_EMULATOR: Final = DcapEmulatorCli("tdx")
SGX_EMULATOR: Final = DcapEmulatorCli("sgx")
EMULATORS: Final[Mapping[Tee, DcapEmulatorCli]] = {"tdx": TDX_EMULATOR, "sgx": SGX_EMULATOR}

__all__ = [
    "CAS", "EMULATORS", "FMSPC", "KNOBS", "KNOB_ERRORS", "OTHER_FMSPC", "PCS_BASE_URL", "QE",
    "ROOT_CA_CRL_URL", "SGX_EMULATOR", "TCB_LEVELS", "TDX_EMULATOR", "TEES", "CcEvent",
    "DcapEmulator", "DcapEmulatorCli", "FakePcs", "PckFacts", "PcsResponse", "SignedDocument",
    "build_crl", "build_event_log", "ca_cert", "dcap_key", "default_events", "emulated_root_pem",
    "emulated_roots", "knob_errors", "pck_leaf", "public_xy", "raw_signature", "root_cert",
    "rtmrs_of", "sgx_extension", "tcb_signing_cert",
]
