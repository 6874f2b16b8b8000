"""An emulated Azure confidential VM (SNP or TDX): an HCL report around a hardware report from
the SNP or DCAP emulator, variable data with a test HCLAkPub, a vTPM quote that key signed,
and Trustee's evidence JSON in versions 0, 1 and 2.

TEST ONLY. The hardware reports are signed by the test AMD / Intel PKIs of
:mod:`veritee.testing.snp` and :mod:`veritee.testing.dcap`; the vTPM keys are the committed
``data/keys/azure-*.pem``. The verifiers trust them only when the operator enables emulated
roots (:func:`emulated_snp_roots`, :func:`emulated_tdx_roots`).

Negative knobs (:data:`KNOB_ERRORS`) each break one link of the binding chain and name the
error a correct verifier raises.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final, Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from veritee import errors
from veritee.tee.azure.claims import INIT_DATA_PCR, init_data_pcr
from veritee.tee.azure.hcl import build_hcl_report, build_var_data, hcl_report_b64url
from veritee.tee.dcap.roots import IntelRoot
from veritee.tee.snp.roots import AmdRoot
from veritee.tee.tpm.structures import (
    PcrSelection,
    build_attest,
    build_public,
    name_of,
    pcr_digest,
)
from veritee.testing import Emulated, pki
from veritee.testing import dcap as dcap_emulation
from veritee.testing import snp as snp_emulation
from veritee.testing.dcap import DcapEmulator
from veritee.testing.snp import SnpEmulator

Machine = Literal["snp", "tdx"]
VERSIONS: Final = (0, 1, 2)
PCR_COUNT: Final = 24
#: The report data a quote carries unless told otherwise (any length up to 64 bytes).
DEFAULT_REPORT_DATA: Final = hashlib.sha256(b"veritee emulated Azure nonce").digest()
DEFAULT_VM_CONFIGURATION: Final[Mapping[str, Any]] = {
    "console-enabled": True, "root-cert-thumbprint": "veritee-emulated", "secure-boot": True,
    "tpm-enabled": True, "tpm-persisted": True,
    "vmUniqueId": "00000000-0000-4000-8000-000000a2ee00"}

Knob = Literal["unbound", "foreign_ak", "wrong_nonce", "vmpl1", "user_data_mismatch",
               "changed_pcr"]
#: Each knob and the error a correct verifier raises for the evidence it produces
#: (``wrong_nonce`` when the verifier is given the report data).
KNOB_ERRORS: Final[Mapping[str, type[errors.VeriteeError]]] = {
    # the variable data changed after the hardware report was made: its hash is not there
    "unbound": errors.BindingError,
    # the quote is signed by another key than HCLAkPub
    "foreign_ak": errors.SignatureError,
    # the quote's extraData is not the report data
    "wrong_nonce": errors.BindingError,
    # an SNP report requested at VMPL 1 (not by the HCL)
    "vmpl1": errors.BindingError,
    # v2: user-data does not begin with the report data
    "user_data_mismatch": errors.BindingError,
    # a PCR value changed after the quote was made: pcrDigest differs
    "changed_pcr": errors.BindingError,
}
KNOBS: Final = tuple(KNOB_ERRORS)
_SNP_ONLY: Final = frozenset({"vmpl1"})
_V2_ONLY: Final = frozenset({"user_data_mismatch"})


@functools.cache
def _key(name: str) -> rsa.RSAPrivateKey:
    """A committed test key, loaded once per process (a constant of the package)."""
    key = pki.load_key(name)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def ak_key() -> rsa.RSAPrivateKey:
    return _key("azure-ak")


def default_pcrs() -> tuple[bytes, ...]:
    """24 SHA-256 PCRs as a booted VM has them (PCR 8: init-data not measured, zero)."""
    pcrs = [hashlib.sha256(b"veritee emulated Azure PCR %d" % i).digest() for i in range(24)]
    pcrs[INIT_DATA_PCR] = bytes(32)
    return tuple(pcrs)


def _flip(data: bytes, at: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


@dataclass
class AzureEmulator:
    """An emulated Azure CVM. Each knob breaks exactly one link."""

    machine: Machine = "snp"
    version: int = 2
    knob: Knob | None = None
    pcrs: tuple[bytes, ...] = field(default_factory=default_pcrs)
    vm_configuration: Mapping[str, Any] = field(
        default_factory=lambda: dict(DEFAULT_VM_CONFIGURATION))
    snp: SnpEmulator | None = None
    tdx: DcapEmulator | None = None
    now: datetime = field(default_factory=pki.now_utc)

    def __post_init__(self) -> None:
        if self.knob is not None and self.knob not in KNOB_ERRORS:
            raise ValueError(f"unknown knob {self.knob!r}; known: {', '.join(KNOBS)}")
        if self.knob in _SNP_ONLY and self.machine != "snp":
            raise ValueError(f"knob {self.knob} applies to SNP machines only")
        if self.knob in _V2_ONLY and self.version != 2:
            raise ValueError(f"knob {self.knob} applies to version 2 evidence only")
        if self.version not in VERSIONS:
            raise ValueError(f"version {self.version}: choose one of {VERSIONS}")
        if len(self.pcrs) != PCR_COUNT or any(len(p) != 32 for p in self.pcrs):
            raise ValueError("pcrs must be 24 SHA-256 values")
        if self.snp is None:
            self.snp = SnpEmulator(vmpl=1 if self.knob == "vmpl1" else 0, now=self.now)
        if self.tdx is None:
            self.tdx = DcapEmulator(tee="tdx", now=self.now)

    # -- the HCL report --

    def user_data(self, report_data: bytes) -> bytes:
        """What the attester wrote to NV 0x01400002: v2 the report data (padded to 64),
        earlier versions nothing (zeros)."""
        value = report_data.ljust(64, b"\0") if self.version == 2 else bytes(64)
        return _flip(value) if self.knob == "user_data_mismatch" else value

    def var_data(self, report_data: bytes) -> bytes:
        return build_var_data(ak_key().public_key(), ek=_key("azure-ek").public_key(),
                              vm_configuration=self.vm_configuration,
                              user_data=self.user_data(report_data))

    def hardware_report(self, var_data: bytes) -> bytes:
        """The SNP report or TD quote, its REPORT_DATA = SHA-256(var data) ‖ 0^32."""
        bound = hashlib.sha256(var_data).digest() + bytes(32)
        if self.machine == "snp":
            assert self.snp is not None
            return self.snp.report(bound)
        assert self.tdx is not None
        return self.tdx.quote(bound)

    def hcl_report(self, report_data: bytes) -> tuple[bytes, bytes | None]:
        """The HCL report and (TDX) the TD quote beside it."""
        var = self.var_data(report_data)
        hardware = self.hardware_report(var)
        if self.knob == "unbound":  # the variable data changes after the report was made
            var = var.replace(b'"tpm-enabled":true', b'"tpm-enabled":false')
        if self.machine == "snp":
            return build_hcl_report(hardware, var, report_type="snp"), None
        td_report = _td_report(hashlib.sha256(var).digest() + bytes(32))
        return build_hcl_report(td_report, var, report_type="tdx"), hardware

    # -- the vTPM quote --

    @property
    def qualified_signer(self) -> bytes:
        """The AK's Name (a restricted RSASSA signing key under the owner hierarchy)."""
        return name_of(build_public(ak_key().public_key()))

    def tpm_quote(self, report_data: bytes) -> tuple[bytes, bytes, tuple[bytes, ...]]:
        """``(TPMS_ATTEST, raw RSASSA signature, PCRs)`` as the vTPM returns them."""
        pcrs = self.pcrs
        nonce = _flip(report_data) if self.knob == "wrong_nonce" else report_data
        selection = (PcrSelection("sha256", tuple(range(PCR_COUNT))),)
        attest = build_attest(qualified_signer=self.qualified_signer, extra_data=nonce,
                              clock=1_000_000, reset_count=2, firmware_version=0x20240101,
                              pcr_select=selection, pcr_digest=pcr_digest(pcrs, "sha256"))
        signer = _key("azure-foreign-ak") if self.knob == "foreign_ak" else ak_key()
        signature = signer.sign(attest, padding.PKCS1v15(), hashes.SHA256())
        if self.knob == "changed_pcr":
            pcrs = (*pcrs[:INIT_DATA_PCR + 1], _flip(pcrs[INIT_DATA_PCR + 1]),
                    *pcrs[INIT_DATA_PCR + 2:])
        return attest, signature, pcrs

    # -- Trustee's JSON --

    def evidence(self, report_data: bytes = DEFAULT_REPORT_DATA) -> dict[str, Any]:
        """Trustee's evidence JSON in :attr:`version`."""
        if len(report_data) > 64:
            raise ValueError(f"report data is {len(report_data)} bytes; a TPM nonce holds 64")
        hcl, td_quote = self.hcl_report(report_data)
        message, signature, pcrs = self.tpm_quote(report_data)
        if self.version == 0:
            return self._v0(hcl, td_quote, message, signature, pcrs)
        document: dict[str, Any] = {
            "version": self.version,
            "tpm_quote": {"signature": signature.hex(), "message": message.hex(),
                          "pcrs": [p.hex() for p in pcrs]},
            "hcl_report": hcl_report_b64url(hcl)}
        if td_quote is None:
            document["vcek"] = hcl_report_b64url(self._vcek())
        else:
            document["td_quote"] = hcl_report_b64url(td_quote)
        return document

    def _v0(self, hcl: bytes, td_quote: bytes | None, message: bytes, signature: bytes,
            pcrs: Sequence[bytes]) -> dict[str, Any]:
        quote = {"signature": list(signature), "message": list(message),
                 "pcrs": [list(p) for p in pcrs]}
        if td_quote is None:
            return {"quote": quote, "report": list(hcl), "vcek": _pem(self._vcek())}
        return {"tpm_quote": quote, "hcl_report": list(hcl), "td_quote": list(td_quote)}

    def _vcek(self) -> bytes:
        assert self.snp is not None
        return self.snp.chain["vek"]

    def collateral(self) -> tuple[tuple[str, bytes], ...]:
        """``(suffix, bytes)`` a verifier needs beside the evidence: TDX the Intel collateral
        (dcap-qvl's combined JSON); SNP nothing (the VCEK is in the evidence)."""
        if self.machine == "snp":
            return ()
        assert self.tdx is not None
        combined = json.dumps(self.tdx.combined_collateral(), indent=1).encode() + b"\n"
        return ((".collateral.json", combined),)

    def variant(self, **changes: Any) -> AzureEmulator:
        return replace(self, **changes)


def _pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n"


def _td_report(report_data: bytes) -> bytes:
    """A TDREPORT-shaped 1024 bytes (REPORTMACSTRUCT type 0x81, REPORTDATA at 128): the HCL
    keeps the TDREPORT it quoted; nothing verifies it outside the TD."""
    out = bytearray(1024)
    out[0] = 0x81
    out[128:192] = report_data
    return bytes(out)


# -- the emulated roots ---------------------------------------------------------------------------


def emulated_snp_roots() -> tuple[AmdRoot, ...]:
    """The emulated AMD roots (``az-snp-vtpm``'s hardware report)."""
    return snp_emulation.emulated_roots()


def emulated_tdx_roots() -> tuple[IntelRoot, ...]:
    """The emulated Intel root (``az-tdx-vtpm``'s TD quote)."""
    return dcap_emulation.emulated_anchors()


# -- ``veritee emulate az-snp-vtpm`` / ``az-tdx-vtpm`` ------------------------------------------


@dataclass(frozen=True)
class AzureEmulatorCli:
    """The :class:`veritee.testing.Emulator` of one Azure machine: ``version=N`` and at most
    one defect knob. ``--host-data`` is the init-data digest the attester measured into
    PCR 8."""

    tee: str
    machine: Machine

    @property
    def knobs(self) -> dict[str, str]:
        settings = {"version=N": "Trustee's evidence version 0, 1 or 2 (default 2)"}
        defects = {name: f"defect: verification fails with {error.__name__}"
                   for name, error in KNOB_ERRORS.items()
                   if self.machine == "snp" or name not in _SNP_ONLY}
        return {**settings, **defects}

    def emulate(self, *, report_data: bytes | None, host_data: bytes | None,
                knobs: Sequence[str]) -> Emulated:
        changes: dict[str, Any] = {"machine": self.machine}
        for knob in knobs:
            name, equals, value = knob.partition("=")
            if equals and name == "version" and value in ("0", "1", "2"):
                changes["version"] = int(value)
            elif not equals and name in self.knobs:
                if "knob" in changes:
                    raise ValueError(f"one defect knob at a time ({changes['knob']} and {name})")
                changes["knob"] = name
            else:
                raise ValueError(f"unknown knob {knob!r} for {self.tee} (see --list-knobs)")
        if host_data is not None:
            if len(host_data) != 32:
                raise ValueError(f"--host-data is {len(host_data)} bytes; the init-data digest "
                                 "measured into PCR 8 is 32 (SHA-256)")
            pcrs = list(default_pcrs())
            pcrs[INIT_DATA_PCR] = init_data_pcr(host_data)
            changes["pcrs"] = tuple(pcrs)
        data = DEFAULT_REPORT_DATA if report_data is None else report_data
        if len(data) > 64:
            raise ValueError(f"--report-data is {len(data)} bytes; a TPM nonce holds at most 64")
        emulator = AzureEmulator(**changes)
        blob = json.dumps(emulator.evidence(data), indent=1).encode() + b"\n"
        return Emulated(blob, f"trustee-v{emulator.version}", emulator.collateral())


#: The emulators ``veritee emulate`` uses (the descriptors' ``emulator`` slots).
AZ_SNP_EMULATOR: Final = AzureEmulatorCli("az-snp-vtpm", "snp")
AZ_TDX_EMULATOR: Final = AzureEmulatorCli("az-tdx-vtpm", "tdx")


__all__ = ["AZ_SNP_EMULATOR", "AZ_TDX_EMULATOR", "DEFAULT_REPORT_DATA", "KNOBS", "KNOB_ERRORS",
           "AzureEmulator", "AzureEmulatorCli", "ak_key", "default_pcrs", "emulated_snp_roots",
           "emulated_tdx_roots", "init_data_pcr"]
