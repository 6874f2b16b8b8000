"""An emulated SEV or SEV-ES launch, end to end: the host's side (``veritee host``'s broker
client) driving an emulated firmware (:class:`~veritee.testing.snp.sev.SevFirmware`), and the
guest reading the injected secret back — for the demo and the tests, without hardware.

What the emulated VMM loads is what QEMU loads (research note amd-sev.md §3.2): the firmware
image, then the padded kernel-hashes table when a kernel is given, then (SEV-ES) one VMSA
per vCPU, so the launch digest is the one ``veritee measure sev`` / ``sev-es`` computes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final, Literal

from veritee.tee.snp import session
from veritee.tee.snp.launch import Configuration, KernelHashes, LaunchMeasurer
from veritee.tee.snp.ovmf import Ovmf, parse_ovmf
from veritee.tee.snp.vmsa import BSP_EIP, vcpu_signature, vmsa_page
from veritee.testing import Emulated
from veritee.testing.snp.ovmf import build_ovmf
from veritee.testing.snp.sev import SevFirmware

SevTee = Literal["sev", "sev-es"]
#: Guest policy bits (research note §3.5), as :class:`~veritee.tee.snp.session.SevPolicy`
#: encodes them.
NODBG, NOKS, ES = (session.SevPolicy(**{bit: True}).to_int() for bit in ("nodbg", "noks", "es"))


def default_policy(tee: SevTee) -> int:
    """No debugging, no key sharing, and ES for SEV-ES."""
    return NODBG | NOKS | (ES if tee == "sev-es" else 0)


@dataclass(frozen=True)
class EmulatedSevGuest:
    """One guest's launch inputs: firmware, kernel, initrd, command line, vCPUs, policy."""

    tee: SevTee = "sev"
    kernel: bytes = b"veritee emulated kernel"
    initrd: bytes = b"veritee emulated initrd"
    append: str = "console=ttyS0"
    vcpus: int = 2
    vcpu_type: str = "EPYC-v4"
    product: str = "rome"
    policy: int | None = None
    firmware: bytes = field(default_factory=build_ovmf, repr=False)

    @cached_property
    def ovmf(self) -> Ovmf:
        return parse_ovmf(self.firmware)

    @property
    def guest_policy(self) -> int:
        return default_policy(self.tee) if self.policy is None else self.policy

    @cached_property
    def hashes(self) -> KernelHashes:
        return KernelHashes.of(self.kernel, self.initrd, self.append)

    def launch_digest(self) -> bytes:
        """What ``veritee measure`` computes for this guest (the reference value)."""
        measurer = LaunchMeasurer(self.ovmf, kernel_hashes=self.hashes)
        configuration = Configuration(mode=self.tee, vcpus=self.vcpus,
                                      vcpu_type=self.vcpu_type, kernel=True)
        return measurer.measure(configuration).measurement

    def load(self, firmware: SevFirmware) -> None:
        """What the VMM hands to LAUNCH_UPDATE_DATA / LAUNCH_UPDATE_VMSA."""
        firmware.launch_update_data(self.firmware)
        firmware.launch_update_data(self.hashes.table())
        if self.tee == "sev-es":
            signature = vcpu_signature(self.vcpu_type)
            bsp = vmsa_page(BSP_EIP, vcpu_sig=signature, sev_features=0)
            ap = vmsa_page(self.ovmf.require_ap_reset_eip(), vcpu_sig=signature,
                           sev_features=0)
            firmware.launch_update_vmsa([bsp] + [ap] * (self.vcpus - 1))

    def launch(self, url: str, resources: list[str], *,
               firmware: SevFirmware | None = None) -> dict[uuid.UUID, bytes]:
        """The whole flow against the broker at ``url``: session, LAUNCH_START, the loads,
        LAUNCH_MEASURE, the relayed measurement, LAUNCH_SECRET; the secret table the guest
        finds, by GUID.

        Raises:
            BrokerRefusedError (and the other errors of ``veritee host``'s client): the
            broker refused a step.
        """
        from veritee.tee.snp.host_cli import SevBroker  # noqa: PLC0415 - HTTP loads here

        firmware = firmware or SevFirmware(self.product)
        broker = SevBroker(url, deadline=30)
        try:
            offer = broker.session(self.tee, self.guest_policy,
                                   {"chain": _b64(firmware.export_full())})
            firmware.launch_start(offer.godh_cert, offer.session, self.guest_policy)
            self.load(firmware)
            measure, mnonce = firmware.launch_measure()
            answer = broker.secret(self.relayed(offer.launch_id, firmware, measure + mnonce,
                                                resources))
        finally:
            broker.close()
        firmware.launch_secret(answer.header, answer.secret)
        return dict(session.parse_secret_table(firmware.secret_area))

    def relayed(self, launch_id: str, firmware: SevFirmware, measurement: bytes,
                resources: list[str]) -> dict[str, Any]:
        """The ``POST /sev/v0/secret`` body ``veritee host sev-launch`` sends."""
        return {"launch-id": launch_id, "measurement": _b64(measurement),
                "api-major": firmware.api_major, "api-minor": firmware.api_minor,
                "build-id": firmware.build_id, "policy": self.guest_policy,
                "resources": resources}


def _b64(data: bytes) -> str:
    import base64  # noqa: PLC0415

    return base64.b64encode(data).decode()




# -- `veritee emulate sev | sev-es`: a PEK-signed attestation report ------------------------

#: Defects a knob puts into the emulated evidence, and the error a verifier raises.
KNOBS: Final = {
    "bad_signature": "flip a bit of the report's signature (SignatureError)",
    "other_root": "a platform chain whose ARK is not pinned (UntrustedRootError)",
    "debug": "a guest policy that allows debugging (verifies; the policy refuses it)",
}


@dataclass(frozen=True)
class SevEmulator:
    """The :class:`veritee.testing.Emulator` of ``sev`` / ``sev-es``: an emulated launch of
    :class:`EmulatedSevGuest` on :class:`SevFirmware`, then the firmware's attestation
    report over ``--report-data`` (the 16-byte MNONCE, zeros by default), with the
    platform's chain: ``{"report", "chain"}``, as base64."""

    tee: SevTee

    @property
    def knobs(self) -> dict[str, str]:
        return dict(KNOBS)

    def emulate(self, *, report_data: bytes | None, host_data: bytes | None,
                knobs: Sequence[str]) -> Emulated:
        unknown = sorted(set(knobs) - set(KNOBS))
        if unknown:
            raise ValueError(f"unknown knob(s) {', '.join(unknown)}; known: "
                             f"{', '.join(KNOBS)}")
        if host_data is not None:
            raise ValueError(f"{self.tee} has no host data")
        mnonce = bytes(16) if report_data is None else report_data
        if len(mnonce) != 16:
            raise ValueError(f"--report-data is {len(mnonce)} bytes; a SEV report's MNONCE "
                             "is 16")
        policy = default_policy(self.tee) & ~NODBG if "debug" in knobs else None
        guest = EmulatedSevGuest(self.tee, policy=policy)
        firmware = SevFirmware(seed="other-platform" if "other_root" in knobs else
                               "platform-1")
        owner = session.create_session(firmware.keys.pdh.public_key(), guest.guest_policy)
        firmware.launch_start(owner.godh_cert, owner.blob, guest.guest_policy)
        guest.load(firmware)
        firmware.launch_measure()
        report = bytearray(firmware.attestation_report(mnonce))
        if "bad_signature" in knobs:
            report[0x40] ^= 1
        chain = firmware.export_full()
        if "other_root" in knobs:
            chain = _foreign_ark(chain)
        document = {"report": _b64(bytes(report)), "chain": _b64(chain)}
        return Emulated(json.dumps(document, indent=2).encode() + b"\n",
                        "SEV attestation report JSON")


def _foreign_ark(chain: bytes) -> bytes:
    """The chain with its ARK's KEY_ID changed (so it is no pinned or emulated ARK)."""
    from veritee.tee.snp.sevcert import parse_chain  # noqa: PLC0415

    parsed = parse_chain(chain)
    assert parsed.ark is not None
    ark = bytearray(parsed.ark.to_bytes())
    ark[0x04] ^= 0xFF
    return chain[: len(chain) - len(ark)] + bytes(ark)


SEV_EMULATOR = SevEmulator("sev")
SEV_ES_EMULATOR = SevEmulator("sev-es")

__all__ = ["SEV_EMULATOR", "SEV_ES_EMULATOR", "EmulatedSevGuest", "SevEmulator", "default_policy"]
