"""An emulated SEV-SNP platform: real-format reports signed by a test AMD PKI, and a fake KDS.

TEST ONLY. The emulated ARK/ASK/ASVK (``data/snp-roots.pem``) are built on the committed test
keys; the verifier trusts them only when the operator enables emulated roots, and its claims
then say ``emulated: true``.

Negative knobs (:data:`KNOBS`) produce evidence with one defect each, and
:data:`KNOB_ERRORS` names the error a correct verifier raises for it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509 import ObjectIdentifier, UnrecognizedExtension

from veritee import errors
from veritee.collateral.base import Response
from veritee.evidence import TsmReport
from veritee.tee.snp import certs as amd_oids
from veritee.tee.snp import certtable, kds
from veritee.tee.snp.evidence import TSM_PROVIDER
from veritee.tee.snp.kds import KDS_BASE_URL
from veritee.tee.snp.layout import (
    REPORT_SIZE,
    SIGNED_SIZE,
    Product,
    TcbVersion,
    pack_fields,
    parse_report,
)
from veritee.tee.snp.roots import AmdRoot
from veritee.testing import Emulated, pki

PRODUCTS: tuple[Product, ...] = ("milan", "genoa", "turin")
SIGNERS = ("vcek", "vlek")
VERSIONS = (2, 3, 4, 5)
_TITLE = {"milan": "Milan", "genoa": "Genoa", "turin": "Turin"}
_SERIAL_BASE = {"milan": 0x10000, "genoa": 0x20000, "turin": 0x30000}
_CPUID = {"milan": (0x19, 0x01, 1), "genoa": (0x19, 0x11, 1), "turin": (0x1A, 0x02, 0)}
#: The REPORTED_TCB of each emulated product line (and the TCB its VCEK certifies).
DEFAULT_TCB: dict[str, dict[str, int]] = {
    "milan": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
    "genoa": {"bootloader": 10, "tee": 0, "snp": 23, "microcode": 84},
    "turin": {"bootloader": 1, "tee": 0, "snp": 2, "microcode": 71, "fmc": 0},
}
DEFAULT_MEASUREMENT = hashlib.sha384(b"veritee emulated SNP guest").digest()

Knob = Literal["wrong_key", "tcb_mismatch", "chip_id_mismatch", "unsupported_version",
               "tampered", "expired_cert", "revoked", "foreign_ark", "unsigned",
               "mask_chip_key", "not_yet_valid_cert", "tcb_reserved"]

#: Each knob and the error a correct verifier raises for the evidence it produces.
KNOB_ERRORS: dict[str, type[errors.VeriteeError]] = {
    "wrong_key": errors.SignatureError,
    "tcb_mismatch": errors.BindingError,
    "chip_id_mismatch": errors.BindingError,
    "unsupported_version": errors.UnsupportedVersionError,
    "tampered": errors.SignatureError,
    "expired_cert": errors.ExpiredError,
    "not_yet_valid_cert": errors.ExpiredError,
    "revoked": errors.RevokedError,
    "foreign_ark": errors.UntrustedRootError,
    "unsigned": errors.SignatureError,
    "mask_chip_key": errors.SignatureError,
    # A reserved byte of REPORTED_TCB set, in a report the genuine VCEK/VLEK signs (which
    # certifies that byte as 0).
    "tcb_reserved": errors.BindingError,
}
#: A reserved byte of TCB_VERSION per product line (Milan/Genoa: 2–5, Turin: 4–6).
TCB_RESERVED_BYTE = {"milan": 3, "genoa": 3, "turin": 5}
KNOBS: tuple[str, ...] = tuple(KNOB_ERRORS)


# -- the emulated AMD roots --------------------------------------------------------------------


@functools.cache
def _test_key(name: str) -> Any:
    """A committed test key, loaded once per process (RSA-4096 checks cost ~0.1 s a key).

    The keys are constants of the package, so keeping them is not state a test could see.
    """
    return pki.load_key(name)



def _root_pem_path() -> Any:
    return pki.data_path("snp-roots.pem")


def build_root_pem() -> bytes:
    """Build the emulated ARK/ASK/ASVK certificates of every product (run once, committed)."""
    out = [b"# TEST ONLY: emulated AMD roots built on veritee/testing/data/keys (not AMD's)\n"]
    for product in PRODUCTS:
        title = _TITLE[product]
        ark_key = _test_key(f"snp-{product}-ark")
        base = _SERIAL_BASE[product]
        ark = pki.ca_cert(f"ARK-{title}", ark_key, f"ARK-{title}", ark_key, base,
                          f"{KDS_BASE_URL}/vcek/v1/{title}/crl")
        ask = pki.ca_cert(f"SEV-{title}", _test_key(f"snp-{product}-ask"), f"ARK-{title}",
                          ark_key, base + 1, f"{KDS_BASE_URL}/vcek/v1/{title}/crl")
        asvk = pki.ca_cert(f"SEV-VLEK-{title}", _test_key(f"snp-{product}-asvk"),
                           f"ARK-{title}", ark_key, base + 0x101,
                           f"{KDS_BASE_URL}/vlek/v1/{title}/crl")
        out += [c.public_bytes(serialization.Encoding.PEM) for c in (ark, ask, asvk)]
    return b"".join(out)


@dataclass(frozen=True)
class _Roots:
    certs: dict[str, x509.Certificate]  # by CN

    @classmethod
    def load(cls) -> _Roots:
        loaded = x509.load_pem_x509_certificates(_root_pem_path().read_bytes())
        return cls({str(c.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value): c
                    for c in loaded})

    def get(self, cn: str) -> x509.Certificate:
        return self.certs[cn]


def emulated_roots() -> tuple[AmdRoot, ...]:
    """The emulated roots as trust anchors (``emulated=True``)."""
    roots = _Roots.load()
    pem = _root_pem_path().read_bytes()

    def fp(cn: str) -> str:
        return hashlib.sha256(roots.get(cn).public_bytes(serialization.Encoding.DER)).hexdigest()

    return tuple(
        AmdRoot(p, fp(f"ARK-{_TITLE[p]}"), fp(f"SEV-{_TITLE[p]}"), fp(f"SEV-VLEK-{_TITLE[p]}"),
                emulated=True, pem=pem)
        for p in PRODUCTS
    )


# -- the emulated platform ---------------------------------------------------------------------


def default_chip_id(product: str, seed: bytes = b"") -> bytes:
    chip = hashlib.sha512(b"veritee emulated chip " + product.encode() + seed).digest()
    return chip[:8] + bytes(56) if product == "turin" else chip


@dataclass
class SnpEmulator:
    """An emulated SNP machine and guest. Each knob breaks exactly one thing."""

    product: Product = "milan"
    signer: Literal["vcek", "vlek"] = "vcek"
    version: int = 3
    measurement: bytes = DEFAULT_MEASUREMENT
    host_data: bytes = bytes(32)
    policy: int = 0x30000
    vmpl: int = 0
    guest_svn: int = 0
    platform_info: int = 0x25
    chip_seed: bytes = b""
    tcb: dict[str, int] | None = None
    knob: Knob | None = None
    now: datetime = field(default_factory=pki.now_utc)

    def __post_init__(self) -> None:
        if self.knob is not None and self.knob not in KNOB_ERRORS:
            raise ValueError(f"unknown knob {self.knob!r}; known: {', '.join(KNOBS)}")

    # -- identity --

    @property
    def title(self) -> str:
        return _TITLE[self.product]

    @property
    def reported_tcb(self) -> TcbVersion:
        return TcbVersion.compose(**(self.tcb or DEFAULT_TCB[self.product]))

    @property
    def chip_id(self) -> bytes:
        if self.signer == "vlek":
            return bytes(64)
        return default_chip_id(self.product, self.chip_seed)

    # -- certificates --

    @cached_property
    def _roots(self) -> _Roots:
        return _Roots.load()

    @cached_property
    def vek_key(self) -> ec.EllipticCurvePrivateKey:
        key = _test_key(f"snp-{self.product}-{self.signer}")
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    @cached_property
    def chain(self) -> dict[str, bytes]:
        """DER certificates by role: ``vek``, ``ask`` (or ASVK), ``ark``."""
        intermediate_cn = f"SEV-VLEK-{self.title}" if self.signer == "vlek" else f"SEV-{self.title}"
        intermediate_role = "asvk" if self.signer == "vlek" else "ask"
        intermediate_key = _test_key(f"snp-{self.product}-{intermediate_role}")
        ark = self._roots.get(f"ARK-{self.title}")
        intermediate = self._roots.get(intermediate_cn)
        if self.knob == "foreign_ark":
            foreign = _test_key("snp-foreign-ark")
            ark = pki.ca_cert(f"ARK-{self.title}", foreign, f"ARK-{self.title}", foreign, 7)
            intermediate = pki.ca_cert(intermediate_cn, intermediate_key, f"ARK-{self.title}",
                                       foreign, 8)
        vek = self._build_vek(intermediate_cn, intermediate_key)
        der = serialization.Encoding.DER
        return {"vek": vek, "ask": intermediate.public_bytes(der), "ark": ark.public_bytes(der)}

    def _build_vek(self, issuer_cn: str, issuer_key: Any) -> bytes:
        tcb = dict(self.tcb or DEFAULT_TCB[self.product])
        if self.knob == "tcb_mismatch":
            tcb["snp"] += 1
        not_before, not_after = self.now - pki.days(1), self.now + pki.days(7 * 365)
        if self.knob == "expired_cert":
            not_before, not_after = self.now - pki.days(400), self.now - pki.days(1)
        if self.knob == "not_yet_valid_cert":
            not_before, not_after = self.now + pki.days(1), self.now + pki.days(400)
        builder = (
            x509.CertificateBuilder()
            .subject_name(pki.amd_name("SEV-VLEK" if self.signer == "vlek" else "SEV-VCEK"))
            .issuer_name(pki.amd_name(issuer_cn))
            .public_key(self.vek_key.public_key())
            .serial_number(1)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
        )
        for oid, value in self._vek_extensions(tcb):
            builder = builder.add_extension(UnrecognizedExtension(ObjectIdentifier(oid), value),
                                            critical=False)
        return pki.with_serial_zero(pki.sign_pss(builder, issuer_key), issuer_key)

    def _vek_extensions(self, tcb: dict[str, int]) -> list[tuple[str, bytes]]:
        turin = self.product == "turin"
        exts = [
            (amd_oids.OID_STRUCT_VERSION, _der_int(1 if turin else 0)),
            (amd_oids.OID_PRODUCT_NAME, _der_ia5(self.title if turin else f"{self.title}-B0")),
            (amd_oids.OID_BL_SPL, _der_int(tcb["bootloader"])),
            (amd_oids.OID_TEE_SPL, _der_int(tcb["tee"])),
            (amd_oids.OID_SNP_SPL, _der_int(tcb["snp"])),
        ]
        spls = amd_oids.OID_SPL_4_7[1:] if turin else amd_oids.OID_SPL_4_7
        exts += [(oid, _der_int(0)) for oid in spls]
        exts.append((amd_oids.OID_UCODE_SPL, _der_int(tcb["microcode"])))
        if turin:
            exts.append((amd_oids.OID_FMC_SPL, _der_int(tcb.get("fmc", 0))))
        if self.signer == "vcek":
            hwid = self.chip_id[:8] if turin else self.chip_id
            if self.knob == "chip_id_mismatch":
                hwid = bytes([hwid[0] ^ 0xFF]) + hwid[1:]
            exts.append((amd_oids.OID_HWID, hwid))
        else:
            exts.append((amd_oids.OID_CSP_ID, _der_ia5("CN=emulated-cloud.veritee.test")))
        return exts

    def crl(self, *, revoke_intermediate: bool | None = None) -> bytes:
        """A CRL from the (emulated) ARK; lists the ASK/ASVK when the knob is ``revoked``."""
        revoke = self.knob == "revoked" if revoke_intermediate is None else revoke_intermediate
        ark_key = _test_key(f"snp-{self.product}-ark")
        intermediate = x509.load_der_x509_certificate(self.chain["ask"])
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(pki.amd_name(f"ARK-{self.title}"))
            .last_update(self.now - pki.days(1))
            .next_update(self.now + pki.days(30))
        )
        if revoke:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(intermediate.serial_number)
                .revocation_date(self.now - pki.days(1))
                .build()
            )
        crl = builder.sign(ark_key, hashes.SHA384(), rsa_padding=pki.PSS_SHA384)
        return crl.public_bytes(serialization.Encoding.DER)

    def endorsements(self) -> list[bytes]:
        """Collateral a verifier needs beyond the evidence (a CRL for the ``revoked`` knob)."""
        return [self.crl()] if self.knob == "revoked" else []

    # -- reports --

    def report(self, report_data: bytes = bytes(64)) -> bytes:
        """A signed ATTESTATION_REPORT (1184 bytes)."""
        if len(report_data) != 64:
            raise ValueError("report_data must be 64 bytes")
        version = 6 if self.knob == "unsupported_version" else self.version
        family, model, stepping = _CPUID[self.product] if version >= 3 else (0, 0, 0)
        signing_key = {"vcek": 0, "vlek": 1}[self.signer]
        signer_info = (7 if self.knob == "unsigned" else signing_key) << 2
        if self.knob == "mask_chip_key":
            signer_info |= 2
        tcb = self.reported_tcb.raw
        reported = tcb
        if self.knob == "tcb_reserved":
            at = TCB_RESERVED_BYTE[self.product]
            reported = tcb[:at] + b"\x01" + tcb[at + 1:]
        fields: dict[str, int | bytes] = {
            "version": version, "guest_svn": self.guest_svn, "policy": self.policy,
            "family_id": bytes(16), "image_id": bytes(16), "vmpl": self.vmpl,
            "signature_algo": 1, "current_tcb": tcb, "platform_info": self.platform_info,
            "signer_info": signer_info, "report_data": report_data,
            "measurement": self.measurement, "host_data": self.host_data,
            "id_key_digest": bytes(48), "author_key_digest": bytes(48),
            "report_id": hashlib.sha256(b"report id" + self.chip_seed).digest(),
            "report_id_ma": b"\xff" * 32, "reported_tcb": reported,
            "cpuid_fam_id": family, "cpuid_mod_id": model, "cpuid_step": stepping,
            "chip_id": self.chip_id, "committed_tcb": tcb,
            "current_build": 40, "current_minor": 55, "current_major": 1,
            "committed_build": 40, "committed_minor": 55, "committed_major": 1,
            "launch_tcb": tcb,
            "launch_mit_vector": 1 if version >= 5 else 0,
            "current_mit_vector": 1 if version >= 5 else 0,
            "signature_r": bytes(72), "signature_s": bytes(72),
        }
        unsigned = pack_fields(fields)
        if self.knob in ("unsigned", "mask_chip_key"):
            return unsigned
        key = _test_key("snp-wrong-vek") if self.knob == "wrong_key" else self.vek_key
        der_sig = key.sign(unsigned[:SIGNED_SIZE], ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der_sig)
        signed = (unsigned[:SIGNED_SIZE] + r.to_bytes(72, "little") + s.to_bytes(72, "little")
                  + unsigned[SIGNED_SIZE + 144:])
        if self.knob == "tampered":
            signed = signed[:0x90] + bytes([signed[0x90] ^ 1]) + signed[0x91:]
        assert len(signed) == REPORT_SIZE
        return signed

    def cert_table(self) -> bytes:
        vek_guid = certtable.GUID_VLEK if self.signer == "vlek" else certtable.GUID_VCEK
        return certtable.build_cert_table([
            (certtable.GUID_ARK, self.chain["ark"]),
            (certtable.GUID_ASK, self.chain["ask"]),
            (vek_guid, self.chain["vek"]),
        ])

    def extended_report(self, report_data: bytes = bytes(64)) -> bytes:
        """The report followed by its certificate table (``SNP_GET_EXT_REPORT``)."""
        return self.report(report_data) + self.cert_table()

    def configfs_tsm(self, report_data: bytes = bytes(64)) -> dict[str, str]:
        """What Linux configfs-tsm returns, as the JSON evidence tools store."""
        return TsmReport(self.report(report_data), self.cert_table(), TSM_PROVIDER).to_json()

    def coco_evidence(self, report_data: bytes = bytes(64)) -> dict[str, Any]:
        """The Confidential Containers SNP attester's JSON (serde field names of virtee/sev)."""
        return coco_json(self.report(report_data), self.chain, self.signer,
                         turin=self.product == "turin")

    def variant(self, **changes: Any) -> SnpEmulator:
        return replace(self, **changes)


def coco_json(report: bytes, chain: dict[str, bytes], signer: str, *,
              turin: bool) -> dict[str, Any]:
    """Serialise ``report`` the way virtee/sev's serde derive does (byte arrays as lists)."""
    rep = parse_report(report)

    def tcb(raw: bytes) -> dict[str, Any]:
        t = TcbVersion.decode(raw, turin=turin)
        return {"fmc": t.fmc, "bootloader": t.bootloader, "tee": t.tee, "snp": t.snp,
                "microcode": t.microcode}

    body: dict[str, Any] = {
        "version": rep.version, "guest_svn": rep.guest_svn, "policy": rep.policy,
        "family_id": list(rep.family_id), "image_id": list(rep.image_id), "vmpl": rep.vmpl,
        "sig_algo": rep.signature_algo, "current_tcb": tcb(rep.current_tcb),
        "plat_info": rep.platform_info, "key_info": rep.signer_info,
        "report_data": list(rep.report_data), "measurement": list(rep.measurement),
        "host_data": list(rep.host_data), "id_key_digest": list(rep.id_key_digest),
        "author_key_digest": list(rep.author_key_digest), "report_id": list(rep.report_id),
        "report_id_ma": list(rep.report_id_ma), "reported_tcb": tcb(rep.reported_tcb),
        "cpuid_fam_id": rep.cpuid_fam_id if rep.has_cpuid else None,
        "cpuid_mod_id": rep.cpuid_mod_id if rep.has_cpuid else None,
        "cpuid_step": rep.cpuid_step if rep.has_cpuid else None,
        "chip_id": list(rep.chip_id), "committed_tcb": tcb(rep.committed_tcb),
        "current_build": rep.current_build, "current_minor": rep.current_minor,
        "current_major": rep.current_major, "committed_build": rep.committed_build,
        "committed_minor": rep.committed_minor, "committed_major": rep.committed_major,
        "launch_tcb": tcb(rep.launch_tcb),
        "launch_mit_vector": rep.launch_mit_vector if rep.version >= 5 else None,
        "current_mit_vector": rep.current_mit_vector if rep.version >= 5 else None,
        "signature": {"r": list(rep.signature_r), "s": list(rep.signature_s)},
    }
    kinds = {"vek": signer.upper(), "ask": "ASK", "ark": "ARK"}
    return {"attestation_report": body,
            "cert_chain": [{"cert_type": kinds[k], "data": list(v)} for k, v in chain.items()]}


# -- a fake AMD KDS ----------------------------------------------------------------------------


@dataclass
class FakeKds:
    """Serves emulated VCEKs, chains and CRLs at real KDS URLs; a :class:`Fetcher`.

    ``fail_status`` answers every request with that status (e.g. 429, 503); ``requests``
    records every URL asked for.
    """

    fail_status: int | None = None
    requests: list[str] = field(default_factory=list)
    _bodies: dict[str, bytes] = field(default_factory=dict)
    on_request: Callable[[str], None] | None = None

    def add(self, emulator: SnpEmulator) -> None:
        product = emulator.product
        if emulator.signer == "vcek":
            turin = product == "turin"
            hwid = emulator.chip_id[:8] if turin else emulator.chip_id
            url = kds.vcek_url(product, hwid, emulator.reported_tcb.components())
            self._bodies[url] = emulator.chain["vek"]
        pem = b"".join(x509.load_der_x509_certificate(emulator.chain[r]).public_bytes(
            serialization.Encoding.PEM) for r in ("ask", "ark"))
        self._bodies[kds.chain_url(product, emulator.signer)] = pem
        self._bodies[kds.crl_url(product, emulator.signer)] = emulator.crl()

    def serve(self, url: str, body: bytes | None) -> None:
        """Answer ``url`` with ``body`` (None: 404), e.g. another CRL than the emulator's."""
        if body is None:
            self._bodies.pop(url, None)
        else:
            self._bodies[url] = body

    def get(self, url: str) -> Response:
        self.requests.append(url)
        if self.on_request is not None:
            self.on_request(url)
        if self.fail_status is not None:
            return Response(self.fail_status, b"")
        body = self._bodies.get(url)
        if body is None:
            return Response(404, b"Not Found")
        return Response(200, body, max_age=86400)


def _der_int(value: int) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return bytes([0x02, len(body)]) + body


def _der_ia5(text: str) -> bytes:
    return bytes([0x16, len(text)]) + text.encode("ascii")


# -- ``veritee emulate snp`` ------------------------------------------------------------------

_POLICY_DEBUG = 1 << 19
_POLICY_MIGRATE_MA = 1 << 18
_FORMS = ("extended", "report", "configfs-tsm", "coco")


@dataclass(frozen=True)
class SnpEmulatorCli:
    """The :class:`veritee.testing.Emulator` of SEV-SNP: settings as ``name=value`` knobs,
    at most one defect knob (:data:`KNOBS`)."""

    tee: str = "snp"

    @property
    def knobs(self) -> dict[str, str]:
        settings = {
            "product=NAME": "milan (default), genoa or turin",
            "signer=NAME": "vcek (default) or vlek (a VLEK-signed report)",
            "version=N": "report version 2 to 5 (default 3)",
            "vmpl=N": "the VMPL of the requesting context, 0 to 3 (default 0)",
            "measurement=HEX": "the 48-byte launch measurement (default: the demo image's)",
            "debug": "set the guest policy's DEBUG bit",
            "migrate_ma": "set the guest policy's MIGRATE_MA bit",
            "form=NAME": "extended (report + certificate table, default), report, "
                         "configfs-tsm (JSON) or coco (Confidential Containers attester JSON)",
        }
        defects = {name: f"defect: verification fails with {error.__name__}"
                   for name, error in KNOB_ERRORS.items()}
        return {**settings, **defects}

    def emulate(self, *, report_data: bytes | None, host_data: bytes | None,
                knobs: Sequence[str]) -> Emulated:
        changes, form = _settings(knobs)
        if host_data is not None:
            if len(host_data) != 32:
                raise ValueError(f"--host-data is {len(host_data)} bytes; SNP HOST_DATA is 32")
            changes["host_data"] = host_data
        if report_data is not None and len(report_data) != 64:
            raise ValueError(f"--report-data is {len(report_data)} bytes; SNP REPORT_DATA is 64")
        emulator = SnpEmulator(**changes)
        data = report_data if report_data is not None else bytes(64)
        if form == "report":
            blob = emulator.report(data)
        elif form == "extended":
            blob = emulator.extended_report(data)
        else:
            document = (emulator.configfs_tsm(data) if form == "configfs-tsm"
                        else emulator.coco_evidence(data))
            blob = json.dumps(document, indent=1).encode() + b"\n"
        extra = tuple((".crl.der", crl) for crl in emulator.endorsements())
        return Emulated(blob, form, extra)


def _settings(knobs: Sequence[str]) -> tuple[dict[str, Any], str]:
    """SnpEmulator fields and the wire form from ``knobs``."""
    changes: dict[str, Any] = {}
    form = "extended"
    policy = 0x30000
    for knob in knobs:
        name, _, value = knob.partition("=")
        if name in KNOB_ERRORS and not value:
            if "knob" in changes:
                raise ValueError(f"one defect knob at a time ({changes['knob']} and {name})")
            changes["knob"] = name
        elif name == "debug" and not value:
            policy |= _POLICY_DEBUG
        elif name == "migrate_ma" and not value:
            policy |= _POLICY_MIGRATE_MA
        elif name == "form" and value in _FORMS:
            form = value
        elif name in ("product", "signer") and value in (PRODUCTS if name == "product"
                                                         else SIGNERS):
            changes[name] = value
        elif name in ("version", "vmpl") and value.isdigit():
            changes[name] = _bounded(name, int(value), *((2, 5) if name == "version" else (0, 3)))
        elif name == "measurement" and value:
            changes["measurement"] = pki.hex_of(value, 48, "measurement")
        else:
            raise ValueError(f"unknown knob {knob!r} (see --list-knobs)")
    changes["policy"] = policy
    return changes, form


def _bounded(name: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ValueError(f"{name}={value} is outside {low}..{high}")
    return value




#: The emulator ``veritee emulate snp`` uses (the descriptor's ``emulator``).
EMULATOR = SnpEmulatorCli()


if __name__ == "__main__":  # python -m veritee.testing.snp: rebuild the committed roots
    _root_pem_path().write_bytes(build_root_pem())
    print(f"wrote {_root_pem_path()}")
