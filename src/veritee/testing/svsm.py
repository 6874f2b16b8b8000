"""An emulated SVSM vTPM on SEV-SNP (``snp-svsm-vtpm``) — TEST ONLY.

The vTPM's EK (RSA-2048, the TCG L-1 template's attributes, policy and AES-128-CFB) and AK
(RSA-2048 restricted signing, RSASSA-SHA256) are committed test keys
(``data/keys/svsm-vtpm-{ek,ak}.pem``); the SNP report comes from the SNP emulator
(:mod:`veritee.testing.snp`) at VMPL 0 with ``REPORT_DATA = SHA-512(nonce ‖ manifest)``. The
guest's side of the broker's challenge is :meth:`SvsmEmulator.activate` (its vTPM's
TPM2_ActivateCredential); :meth:`SvsmEmulator.auth_extra` is what its ``auth`` request
carries.

Negative knobs (:data:`KNOB_ERRORS`) each break one thing and name the error a correct
verifier raises.
"""

from __future__ import annotations

import base64
import errno
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar, Final, Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from veritee import errors
from veritee.tee.snp.layout import SIGNED_SIZE, SnpReport, parse_report
from veritee.tee.svsm import credential, keys, manifest
from veritee.tee.svsm.evidence import REPORT_FIELDS
from veritee.tee.svsm.verify import CredentialKey, quote_nonce
from veritee.tee.tpm.structures import (
    AK_ATTRIBUTES,
    EK_ATTRIBUTES,
    TPM_ALG_AES,
    TPM_ALG_CFB,
    PcrSelection,
    build_attest,
    build_public,
    build_signature,
    name_of,
    pcr_digest,
)
from veritee.testing import Emulated, pki, tpm
from veritee.testing.snp import SnpEmulator
from veritee.testing.snp import emulated_roots as snp_emulated_roots

#: The TCG EK template L-1 authPolicy (PolicySecret(TPM_RH_ENDORSEMENT)), EK Credential
#: Profile 2.0 Table 3; coconut-svsm ``ek_templates.rs``.
EK_POLICY: Final = bytes.fromhex(
    "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
#: The key *K* of the emulated broker's activation challenges (public: test only).
EMULATED_CREDENTIAL_KEY: Final = hashlib.sha256(b"veritee emulated SVSM credential key").digest()
#: The emulated challenge nonce (a KBS nonce is base64 of 32 random bytes).
DEFAULT_CHALLENGE_NONCE: Final = base64.b64encode(
    hashlib.sha256(b"veritee emulated KBS nonce").digest()).decode()
PCR_INDICES: Final = tuple(range(8))
FIRMWARE_VERSION: Final = 0x2023_0801_0000_0000

Knob = Literal["foreign_ak", "wrong_manifest", "vmpl3", "binding_broken", "wrong_activation",
               "no_activation", "stale_quote", "tampered_quote", "duplicable_ak"]

#: Each knob and the error a correct verifier raises for the evidence it produces.
KNOB_ERRORS: dict[str, type[errors.VeriteeError]] = {
    # A valid quote by an AK of the attacker's, beside the credential the genuine vTPM
    # activated for the genuine AK.
    "foreign_ak": errors.BindingError,
    # The manifest names another EK than the one REPORT_DATA binds.
    "wrong_manifest": errors.BindingError,
    # The report was requested by the guest OS at VMPL 3, not by the SVSM.
    "vmpl3": errors.BindingError,
    # REPORT_DATA = SHA-512(another nonce ‖ manifest).
    "binding_broken": errors.BindingError,
    # The activated credential is not the one the broker made.
    "wrong_activation": errors.BindingError,
    # No activation at all: the AK is not proven (undecided).
    "no_activation": errors.CollateralMissingError,
    # The quote's extraData is for another nonce.
    "stale_quote": errors.BindingError,
    # A byte of the signed TPMS_ATTEST changed after signing.
    "tampered_quote": errors.SignatureError,
    # The AK lacks fixedTPM: a key that can leave its TPM proves nothing by activation.
    "duplicable_ak": errors.BindingError,
}
KNOBS: tuple[str, ...] = tuple(KNOB_ERRORS)


@functools.cache
def _test_key(name: str) -> rsa.RSAPrivateKey:
    key = pki.load_key(name)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def emulated_roots() -> tuple[Any, ...]:
    """The emulated AMD roots and the emulated broker's credential key."""
    return (*snp_emulated_roots(), CredentialKey(EMULATED_CREDENTIAL_KEY, emulated=True))


def ek_public(key: rsa.RSAPrivateKey | None = None) -> bytes:
    """The vTPM EK's TPMT_PUBLIC (the vTPM service manifest, version 0)."""
    key = key or _test_key("svsm-vtpm-ek")
    return build_public(key.public_key(), attributes=EK_ATTRIBUTES, auth_policy=EK_POLICY,
                        scheme="null", symmetric=(TPM_ALG_AES, 128, TPM_ALG_CFB))


def ak_public(key: rsa.RSAPrivateKey | None = None, *, attributes: int = AK_ATTRIBUTES) -> bytes:
    """An AK's TPMT_PUBLIC (RSASSA-SHA256 restricted signing key)."""
    key = key or _test_key("svsm-vtpm-ak")
    return build_public(key.public_key(), attributes=attributes)


def default_pcrs() -> tuple[bytes, ...]:
    return tuple(hashlib.sha256(b"veritee emulated PCR %d" % i).digest() for i in PCR_INDICES)


@dataclass
class SvsmEmulator:
    """An emulated SNP guest whose SVSM runs a vTPM. Each knob breaks exactly one thing."""

    knob: Knob | None = None
    snp: SnpEmulator = field(default_factory=SnpEmulator)
    credential_key: bytes = EMULATED_CREDENTIAL_KEY
    challenge_nonce: str = DEFAULT_CHALLENGE_NONCE
    pcrs: tuple[bytes, ...] = field(default_factory=default_pcrs)
    now: datetime = field(default_factory=pki.now_utc)

    def __post_init__(self) -> None:
        if self.knob is not None and self.knob not in KNOB_ERRORS:
            raise ValueError(f"unknown knob {self.knob!r}; known: {', '.join(KNOBS)}")
        self.snp = replace(self.snp, vmpl=3 if self.knob == "vmpl3" else self.snp.vmpl,
                           now=self.now)

    # -- the vTPM's keys --

    @property
    def ek_key(self) -> rsa.RSAPrivateKey:
        return _test_key("svsm-vtpm-ek")

    @property
    def ak_key(self) -> rsa.RSAPrivateKey:
        return _test_key("svsm-vtpm-ak")

    @property
    def ek_public(self) -> bytes:
        return ek_public(self.ek_key)

    @property
    def ak_public(self) -> bytes:
        attributes = AK_ATTRIBUTES & ~0x2 if self.knob == "duplicable_ak" else AK_ATTRIBUTES
        return ak_public(self.ak_key, attributes=attributes)

    @property
    def ak_name(self) -> bytes:
        return name_of(self.ak_public)

    @property
    def manifest(self) -> bytes:
        """The single-service vTPM manifest, version 0: the EK's TPMT_PUBLIC."""
        return self.ek_public

    # -- the broker's challenge, both sides --

    def auth_extra(self) -> dict[str, str]:
        """The ``extra-params`` of the guest's KBS ``auth`` request."""
        return {"ek-public": self.ek_public.hex(), "ak-public": self.ak_public.hex()}

    def challenge(self) -> dict[str, Any]:
        """What the (emulated) broker adds to its challenge (:func:`credential.challenge_extra`)."""
        if self.knob == "duplicable_ak":  # a broker refuses such an AK; make it by hand
            ek = keys.parse_ek(self.ek_public)
            secret = credential.activation_secret(
                nonce=self.challenge_nonce.encode(), ek_name=ek.name, ak_name=self.ak_name,
                key=self.credential_key)
            id_object, encrypted = credential.make_credential(ek, self.ak_name, secret)
            return {"credential": base64.b64encode(id_object).decode(),
                    "secret": base64.b64encode(encrypted).decode(),
                    "ak-name": self.ak_name.hex()}
        return credential.challenge_extra(self.auth_extra(), self.challenge_nonce.encode(),
                                          self.credential_key)

    def activate(self, challenge: Mapping[str, Any]) -> bytes:
        """The vTPM's TPM2_ActivateCredential(AK, EK) on the broker's challenge.

        Raises:
            BindingError: the credential was not made for this EK and AK (as the TPM's
                TPM_RC_INTEGRITY).
        """
        id_object = base64.b64decode(challenge["credential"])
        encrypted = base64.b64decode(challenge["secret"])
        return credential.activate_credential(self.ek_key, self.ak_name, id_object, encrypted)

    # -- evidence --

    def quote(self, nonce: bytes) -> dict[str, Any]:
        """A TPM2_Quote of the sha256 PCRs 0-7 by the AK (the foreign one for ``foreign_ak``),
        in Trustee's TPM attester shape."""
        key = _test_key("svsm-foreign-ak") if self.knob == "foreign_ak" else self.ak_key
        extra = quote_nonce(bytes(64) if self.knob == "stale_quote" else nonce)
        message = build_attest(
            qualified_signer=name_of(b"veritee emulated endorsement hierarchy"),
            extra_data=extra, clock=1_000_000, reset_count=1, restart_count=0, safe=True,
            firmware_version=FIRMWARE_VERSION,
            pcr_select=[PcrSelection("sha256", PCR_INDICES)],
            pcr_digest=pcr_digest(self.pcrs, "sha256"))
        raw = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        if self.knob == "tampered_quote":
            message = message[:-1] + bytes([message[-1] ^ 1])
        return {"message": base64.b64encode(message).decode(),
                "signature": base64.b64encode(build_signature("rsassa", "sha256", raw)).decode(),
                "pcrs": [p.hex() for p in self.pcrs]}

    def evidence(self, nonce: bytes, *, with_nonce: bool = True,
                 challenge: Mapping[str, Any] | None = None,
                 challenge_nonce: str | None = None) -> dict[str, Any]:
        """The JSON evidence of :mod:`veritee.tee.svsm.evidence` for the 64-byte SVSM
        ``nonce`` (the broker's expected report data), the challenge answered: a broker's
        ``challenge`` (its ``extra-params``) made for ``challenge_nonce``, else the emulated
        broker's own (:meth:`challenge`, for :attr:`challenge_nonce`)."""
        if len(nonce) != manifest.NONCE_SIZE:
            raise ValueError(f"the SVSM nonce is 64 bytes, got {len(nonce)}")
        bound_nonce = bytes(64) if self.knob == "binding_broken" else nonce
        report_data = manifest.expected_report_data(bound_nonce, self.manifest)
        shown = self.manifest
        if self.knob == "wrong_manifest":
            shown = ek_public(_test_key("svsm-foreign-ak"))
        ak = ak_public(_test_key("svsm-foreign-ak")) if self.knob == "foreign_ak" \
            else self.ak_public
        document: dict[str, Any] = {
            "sev_snp_attestation": self.snp.extended_report(report_data).hex(),
            "vtpm_service_manifest": base64.b64encode(shown).decode(),
            "vtpm_service_manifest_version": 0,
            "ak_public": base64.b64encode(ak).decode(),
            "tpm_quote": self.quote(nonce),
        }
        if with_nonce:
            document["nonce"] = nonce.hex()
        if self.knob != "no_activation":
            secret = self.activate(self.challenge() if challenge is None else challenge)
            if self.knob == "wrong_activation":
                secret = bytes(b ^ 0x5A for b in secret)
            document["activation"] = {
                "nonce": self.challenge_nonce if challenge_nonce is None else challenge_nonce,
                "credential": base64.b64encode(secret).decode()}
        return document

    def go_tpm_tools(self, nonce: bytes, *, quote_nonce_value: bytes = b"gotpm nonce") -> bytes:
        """go-tpm-tools' ``SevSnpSvsmAttestation`` protobuf for the SVSM ``nonce`` (its quote
        carries go-tpm-tools' own nonce, its SNP report go-sev-guest's named fields)."""
        report = parse_report(self.snp.report(
            manifest.expected_report_data(nonce, self.manifest)))
        attest = build_attest(
            qualified_signer=name_of(b"veritee emulated endorsement hierarchy"),
            extra_data=quote_nonce_value, firmware_version=FIRMWARE_VERSION,
            pcr_select=[PcrSelection("sha256", PCR_INDICES)],
            pcr_digest=pcr_digest(self.pcrs, "sha256"))
        raw = self.ak_key.sign(attest, padding.PKCS1v15(), hashes.SHA256())
        quote = tpm.pb_quote(attest, build_signature("rsassa", "sha256", raw), "sha256",
                             dict(zip(PCR_INDICES, self.pcrs, strict=True)))
        chain = b"".join(tpm.pb_bytes(number, self.snp.chain[role])
                         for number, role in ((1, "vek"), (2, "ask"), (3, "ark")))
        snp = tpm.pb_bytes(1, _report_proto(report)) + tpm.pb_bytes(2, chain)
        return (tpm.pb_bytes(1, tpm.pb_attestation(self.ak_public, [quote]))
                + tpm.pb_bytes(2, snp) + tpm.pb_bytes(3, self.manifest)
                + tpm.pb_bytes(4, b"0"))


def _report_proto(report: SnpReport) -> bytes:
    """go-sev-guest's ``sevsnp.Report`` of ``report`` (proto/sevsnp.proto field numbers)."""
    out = b""
    fms = (((report.cpuid_fam_id - 0xF) << 20 | 0xF << 8) if report.cpuid_fam_id > 0xF
           else report.cpuid_fam_id << 8)
    fms |= (report.cpuid_mod_id >> 4) << 16 | (report.cpuid_mod_id & 0xF) << 4
    fms |= report.cpuid_step
    for number, name in enumerate(REPORT_FIELDS, start=1):
        if name == "signature":
            out += tpm.pb_bytes(number, report.raw[SIGNED_SIZE:SIGNED_SIZE + 512])
        elif name == "cpuid1eax_fms":
            out += tpm.pb_uint(number, fms if report.has_cpuid else 0)
        else:
            value = getattr(report, name)
            if isinstance(value, bytes) and name.endswith("_tcb"):
                value = int.from_bytes(value, "little")
            out += (tpm.pb_bytes(number, value) if isinstance(value, bytes)
                    else tpm.pb_uint(number, value))
    return out




# -- a fake configfs-tsm kernel under an SVSM ------------------------------------------------------


@dataclass
class FakeSvsmTsm:
    """configfs-tsm of an SEV-SNP guest above VMPL 0, in memory (a
    :class:`veritee.attester.tsm.TsmFs`), as ``drivers/virt/coco/tsm.c`` and ``sev-guest``
    behave: every write advances ``generation``; with ``service_provider`` = ``svsm`` the
    outblob is the SVSM's VMPL 0 report over SHA-512(inblob ‖ manifest), ``manifestblob`` the
    vTPM manifest (``manifest``: the EK's TPMT_PUBLIC) and ``auxblob`` empty (an SVSM returns
    no certificates); without it, a plain report at the guest's VMPL over the inblob with the
    host's certificate table. ``svsm=False`` hides the service attributes (a guest at VMPL 0,
    or a kernel without SVSM support)."""

    manifest: bytes
    snp: SnpEmulator = field(default_factory=SnpEmulator)
    svsm: bool = True
    provider: str = "sev_guest"
    guest_vmpl: int = 3
    entries: dict[Any, dict[str, Any]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    SERVICE_ATTRIBUTES: ClassVar[frozenset[str]] = frozenset(
        {"service_provider", "service_guid", "service_manifest_version"})

    def __post_init__(self) -> None:
        #: The SVSM's reports (VMPL 0) and the guest OS's own (its VMPL), one machine.
        self._at_vmpl0 = replace(self.snp, vmpl=0)
        self._at_guest = replace(self.snp, vmpl=self.guest_vmpl)

    def is_dir(self, path: Any) -> bool:
        return path in self.entries or any(path in (e.parent, *e.parent.parents)
                                           for e in self.entries) or path.name == "report"

    def listdir(self, path: Any) -> list[str]:
        return [p.name for p in self.entries if p.parent == path]

    def mkdir(self, path: Any) -> None:
        if path in self.entries:
            raise FileExistsError(errno.EEXIST, "File exists")
        self.entries[path] = {"generation": 0, "inblob": b""}

    def rmdir(self, path: Any) -> None:
        del self.entries[path]

    def read(self, path: Any) -> bytes:
        entry = self._entry(path)
        self.log.append(f"read {path.name}")
        if path.name == "provider":
            return f"{self.provider}\n".encode()
        if path.name == "generation":
            return f"{entry['generation']}\n".encode()
        if path.name == "outblob":
            return self._outblob(entry)
        if path.name == "auxblob":
            return b"" if self._svsm_report(entry) else self._at_guest.cert_table()
        if path.name == "manifestblob" and self.svsm:
            self._outblob(entry)
            return self.manifest if self._svsm_report(entry) else b""
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")

    def write(self, path: Any, data: bytes) -> None:
        entry = self._entry(path)
        self.log.append(f"write {path.name}")
        if path.name in self.SERVICE_ATTRIBUTES and not self.svsm:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory")
        if path.name not in {"inblob", "privlevel", *self.SERVICE_ATTRIBUTES}:
            raise PermissionError(errno.EACCES, "Permission denied")
        entry[path.name] = data
        entry["generation"] += 1

    def _svsm_report(self, entry: Mapping[str, Any]) -> bool:
        return "service_provider" in entry

    def _outblob(self, entry: Mapping[str, Any]) -> bytes:
        """sev_guest's ``sev_report_new``: 64 bytes of inblob; ``svsm`` or nothing."""
        inblob = entry["inblob"]
        if len(inblob) != manifest.NONCE_SIZE:
            raise OSError(errno.EINVAL, "Invalid argument")
        if not self._svsm_report(entry):
            return self._at_guest.report(inblob)
        if entry["service_provider"].strip() != b"svsm":
            raise OSError(errno.EINVAL, "Invalid argument")
        guid = entry.get("service_guid", b"").strip().decode()
        version = int(entry.get("service_manifest_version", b"0").strip() or 0)
        if guid != str(manifest.VTPM_GUID) or version != 0:
            raise OSError(errno.EINVAL, "Invalid argument")  # SVSM_ERR_INVALID_PARAMETER
        return self._at_vmpl0.report(manifest.expected_report_data(inblob, self.manifest))

    def _entry(self, path: Any) -> dict[str, Any]:
        entry = self.entries.get(path.parent)
        if entry is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory")
        return entry


# -- ``veritee emulate snp-svsm-vtpm`` -------------------------------------------------------------


@dataclass(frozen=True)
class SvsmEmulatorCli:
    """The :class:`veritee.testing.Emulator` of ``snp-svsm-vtpm``: at most one defect knob."""

    tee: str = "snp-svsm-vtpm"

    @property
    def knobs(self) -> dict[str, str]:
        return {name: f"defect: verification fails with {error.__name__}"
                for name, error in KNOB_ERRORS.items()}

    def emulate(self, *, report_data: bytes | None, host_data: bytes | None,
                knobs: Sequence[str]) -> Emulated:
        if host_data is not None and len(host_data) != 32:
            raise ValueError(f"--host-data is {len(host_data)} bytes; SNP HOST_DATA is 32")
        if report_data is not None and len(report_data) != 64:
            raise ValueError(f"--report-data is {len(report_data)} bytes; the SVSM nonce is 64")
        unknown = [k for k in knobs if k not in KNOB_ERRORS]
        if unknown or len(knobs) > 1:
            raise ValueError(f"knobs {list(knobs)}: give at most one of {', '.join(KNOBS)}")
        snp = SnpEmulator(host_data=host_data) if host_data is not None else SnpEmulator()
        emulator = SvsmEmulator(knob=knobs[0] if knobs else None, snp=snp)  # type: ignore[arg-type]
        document = emulator.evidence(report_data if report_data is not None else bytes(64))
        return Emulated(json.dumps(document, indent=1).encode() + b"\n", "svsm-json")


EMULATOR = SvsmEmulatorCli()

__all__ = ["DEFAULT_CHALLENGE_NONCE", "EMULATED_CREDENTIAL_KEY", "EMULATOR", "KNOBS",
           "KNOB_ERRORS", "FakeSvsmTsm", "SvsmEmulator", "SvsmEmulatorCli", "ak_public",
           "ek_public", "emulated_roots"]
