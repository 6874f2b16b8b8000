"""The initial VMSA page of each vCPU, as SEV-ES and SEV-SNP launches measure it.

Sources: research note amd-sev.md §3.1 ("Initial VMSA", vCPU signatures, guest features, VMM
variants, SVSM mode); AMD64 APM vol. 2 table B-4 (the VMSA save-area layout); AMD CPUID
specification #25481 (``CPUID Fn0000_0001_EAX``, the family/model/stepping encoding); QEMU
``target/i386/cpu.c`` (the EPYC model names and their family, model and stepping).

The page is 4096 bytes, zero except the fields of :data:`SAVE_AREA`. Only the register state
a VMM puts in at reset differs between VMMs: QEMU (with KVM, host kernel 6.10 or newer), AWS
EC2 and Google GCE (see :data:`VMM_STATE`), and the SVSM's own VMSA, which starts in flat
32-bit protected mode at the SVSM's entry point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntFlag
from types import MappingProxyType
from typing import Final, Literal

from veritee.errors import MisuseError
from veritee.tee._layout import FieldTable, Row

VMSA_SIZE: Final = 0x1000
#: Where every BSP starts (the x86 reset vector).
BSP_EIP: Final = 0xFFFFFFF0
#: The PAT MSR's reset value (APM vol. 2 §A.3).
DEFAULT_G_PAT: Final = 0x0007040600070406

Vmm = Literal["qemu", "ec2", "gce"]
VMMS: Final[tuple[Vmm, ...]] = ("qemu", "ec2", "gce")

_SEGMENTS: Final = (("es", 0x00), ("cs", 0x10), ("ss", 0x20), ("ds", 0x30), ("fs", 0x40),
                    ("gs", 0x50), ("gdtr", 0x60), ("ldtr", 0x70), ("idtr", 0x80), ("tr", 0x90))
#: The VMSA fields an initial vCPU state sets (APM vol. 2 table B-4), as (name, offset,
#: struct code); every other byte of the page is zero.
_FIELDS: Final[tuple[tuple[str, int, str], ...]] = (
    *((f"{seg}_{part}", base + at, code) for seg, base in _SEGMENTS
      for part, at, code in (("selector", 0, "H"), ("attrib", 2, "H"), ("limit", 4, "I"),
                             ("base", 8, "Q"))),
    ("efer", 0x0D0, "Q"),
    ("cr4", 0x148, "Q"),
    ("cr0", 0x158, "Q"),
    ("dr7", 0x160, "Q"),
    ("dr6", 0x168, "Q"),
    ("rflags", 0x170, "Q"),
    ("rip", 0x178, "Q"),
    ("g_pat", 0x268, "Q"),
    ("rdx", 0x310, "Q"),
    ("sev_features", 0x3B0, "Q"),
    ("xcr0", 0x3E8, "Q"),
    ("mxcsr", 0x408, "I"),
    ("x87_fcw", 0x410, "H"),
)
_SIZES: Final = {"B": 1, "H": 2, "I": 4, "Q": 8}


def _with_reserved(fields: Sequence[tuple[str, int, str]], size: int) -> tuple[Row, ...]:
    """The sparse fields with the zero ranges between them as reserved rows."""
    rows: list[Row] = []
    at = 0
    for name, offset, code in fields:
        if offset > at:
            rows.append((f"zero_{at:#x}", at, offset - at, "x"))
        rows.append((name, offset, _SIZES[code], code))
        at = offset + _SIZES[code]
    if at < size:
        rows.append((f"zero_{at:#x}", at, size - at, "x"))
    return tuple(rows)


SAVE_AREA: Final = FieldTable("initial VMSA", _with_reserved(_FIELDS, VMSA_SIZE), size=VMSA_SIZE)


class GuestFeatures(IntFlag):
    """VMSA ``SEV_FEATURES`` bits (APM vol. 2 §15.35; virtee/sev ``GuestFeatures``)."""

    SNP_ACTIVE = 1 << 0
    VTOM = 1 << 1
    REFLECT_VC = 1 << 2
    RESTRICTED_INJECTION = 1 << 3
    ALTERNATE_INJECTION = 1 << 4
    DEBUG_SWAP = 1 << 5
    PREVENT_HOST_IBS = 1 << 6
    BTB_ISOLATION = 1 << 7
    VMPL_SSS = 1 << 8
    SECURE_TSC = 1 << 9
    VMGEXIT_PARAMETER = 1 << 10
    IBS_VIRTUALIZATION = 1 << 12
    VMSA_REG_PROT = 1 << 14
    SMT_PROTECTION = 1 << 15


#: sev-snp-measure's default since 0.0.10 (host kernels 6.8 and newer); 0x21 (with
#: DEBUG_SWAP) was the default of host kernels 6.6 and 6.7.
DEFAULT_GUEST_FEATURES: Final = int(GuestFeatures.SNP_ACTIVE)


def cpu_signature(family: int, model: int, stepping: int) -> int:
    """CPUID(1).EAX for a family, model and stepping (AMD CPUID spec #25481: a family of
    0xF or more is stored as 0xF plus an extended family)."""
    low_family, ext_family = (0xF, family - 0xF) if family > 0xF else (family, 0)
    return (ext_family << 20 | (model >> 4) << 16 | low_family << 8 | (model & 0xF) << 4
            | stepping & 0xF)


_NAPLES: Final = cpu_signature(0x17, 0x01, 2)
_ROME: Final = cpu_signature(0x17, 0x31, 0)
_MILAN: Final = cpu_signature(0x19, 0x01, 1)
_GENOA: Final = cpu_signature(0x19, 0x11, 0)
_TURIN: Final = cpu_signature(0x1A, 0x00, 0)

#: The EPYC models QEMU's ``-cpu`` accepts, with the CPUID(1).EAX each gives the guest (QEMU
#: ``target/i386/cpu.c``: a model's versions differ in features, not in signature). The
#: signature is the *virtual* CPU's, not the host's (virtee/sev issue #317).
VCPU_TYPES: Final[Mapping[str, int]] = MappingProxyType({
    "EPYC": _NAPLES, "EPYC-v1": _NAPLES, "EPYC-v2": _NAPLES, "EPYC-IBPB": _NAPLES,
    "EPYC-v3": _NAPLES, "EPYC-v4": _NAPLES,
    "EPYC-Rome": _ROME, "EPYC-Rome-v1": _ROME, "EPYC-Rome-v2": _ROME, "EPYC-Rome-v3": _ROME,
    "EPYC-Rome-v4": _ROME, "EPYC-Rome-v5": _ROME,
    "EPYC-Milan": _MILAN, "EPYC-Milan-v1": _MILAN, "EPYC-Milan-v2": _MILAN,
    "EPYC-Milan-v3": _MILAN,
    "EPYC-Genoa": _GENOA, "EPYC-Genoa-v1": _GENOA, "EPYC-Genoa-v2": _GENOA,
    "EPYC-Turin": _TURIN, "EPYC-Turin-v1": _TURIN,
})


def vcpu_signature(vcpu_type: str) -> int:
    """The signature of a QEMU EPYC model name.

    Raises:
        MisuseError: an unknown name (the message lists the known ones).
    """
    try:
        return VCPU_TYPES[vcpu_type]
    except KeyError:
        raise MisuseError(
            f"vCPU type {vcpu_type!r} is unknown; known: {', '.join(VCPU_TYPES)} (or give the "
            "signature, CPUID(1).EAX, as --vcpu-sig)") from None


@dataclass(frozen=True, slots=True)
class VmmState:
    """The reset state one VMM gives a vCPU, where VMMs differ (note §3.1)."""

    cs_attrib_bsp: int
    cs_attrib_ap: int
    ss_attrib: int
    tr_attrib: int
    #: None: RDX holds the vCPU signature; else this fixed value.
    rdx: int | None
    mxcsr: int
    x87_fcw: int
    g_pat: int = DEFAULT_G_PAT


VMM_STATE: Final[Mapping[Vmm, VmmState]] = MappingProxyType({
    # QEMU/KVM, host kernel 6.10 and newer (sev-snp-measure 0.0.10).
    "qemu": VmmState(0x9B, 0x9B, 0x93, 0x8B, None, 0x1F80, 0x037F),
    # AWS EC2 (sev-snp-measure 0.0.13): non-accessed CS for the BSP, RDX 0x600, no FPU state.
    "ec2": VmmState(0x9A, 0x9B, 0x92, 0x83, 0x600, 0, 0),
    # Google GCE (google/gce-tcb-verifier): its own PAT, RDX 0x600, no FPU state.
    "gce": VmmState(0x9B, 0x9B, 0x93, 0x8B, 0x600, 0, 0, g_pat=0x00070106),
})


def _check_u64(name: str, value: int) -> None:
    if not 0 <= value < 1 << 64:
        raise MisuseError(f"{name} is {value:#x}, outside 0..2^64-1")


def _real_mode_segments(cs_attrib: int, ss_attrib: int, tr_attrib: int,
                        eip: int) -> dict[str, int]:
    values: dict[str, int] = {}
    for seg, _ in _SEGMENTS:
        attrib = {"cs": cs_attrib, "ss": ss_attrib, "tr": tr_attrib, "ldtr": 0x82,
                  "gdtr": 0, "idtr": 0}.get(seg, 0x93)
        values |= {f"{seg}_selector": 0xF000 if seg == "cs" else 0, f"{seg}_attrib": attrib,
                   f"{seg}_limit": 0xFFFF, f"{seg}_base": eip & 0xFFFF0000 if seg == "cs" else 0}
    return values


def _common(rip: int, cr0: int, *, g_pat: int, rdx: int, sev_features: int, mxcsr: int,
            fcw: int) -> dict[str, int]:
    # EFER.SVME and CR4.MCE are what KVM sets; DR6/DR7/RFLAGS/XCR0 are their reset values.
    return {"efer": 0x1000, "cr4": 0x40, "cr0": cr0, "dr7": 0x400, "dr6": 0xFFFF0FF0,
            "rflags": 0x2, "rip": rip, "g_pat": g_pat, "rdx": rdx,
            "sev_features": sev_features, "xcr0": 0x1, "mxcsr": mxcsr, "x87_fcw": fcw}


def vmsa_page(eip: int, *, vcpu_sig: int, sev_features: int, vmm: Vmm = "qemu") -> bytes:
    """The initial VMSA of a vCPU starting in real mode at ``eip`` (:data:`BSP_EIP` for the
    BSP, the firmware's AP reset address for the others). ``sev_features`` is the guest
    features for SNP and 0 for SEV-ES.

    Raises:
        MisuseError: an unknown VMM or a value that does not fit its register.
    """
    state = VMM_STATE.get(vmm)
    if state is None:
        raise MisuseError(f"VMM type {vmm!r} is unknown; known: {', '.join(VMMS)}")
    for name, value in (("eip", eip), ("vcpu_sig", vcpu_sig), ("sev_features", sev_features)):
        _check_u64(name, value)
    if eip >= 1 << 32:
        raise MisuseError(f"a real-mode reset address is 32 bits, not {eip:#x}")
    cs_attrib = state.cs_attrib_bsp if eip == BSP_EIP else state.cs_attrib_ap
    values = _real_mode_segments(cs_attrib, state.ss_attrib, state.tr_attrib, eip)
    rdx = vcpu_sig if state.rdx is None else state.rdx
    values |= _common(eip & 0xFFFF, 0x10, g_pat=state.g_pat, rdx=rdx, sev_features=sev_features,
                      mxcsr=state.mxcsr, fcw=state.x87_fcw)
    return SAVE_AREA.pack(values)


#: The SVSM's flat 32-bit segments (selector, attributes, limit): coconut-svsm QEMU.
_SVSM_SEGMENTS: Final = {"es": (16, 0xC93, 0xFFFFFFFF), "cs": (8, 0xC9B, 0xFFFFFFFF),
                         "ss": (16, 0xC93, 0xFFFFFFFF), "ds": (16, 0xC93, 0xFFFFFFFF),
                         "fs": (16, 0xC93, 0xFFFFFFFF), "gs": (0, 0x93, 0xFFFF),
                         "gdtr": (0, 0, 0xFFFF), "ldtr": (0, 0x82, 0xFFFF),
                         "idtr": (0, 0, 0xFFFF), "tr": (0, 0x8B, 0xFFFF)}
#: The SVSM's VMSA runs with SNP_ACTIVE only.
SVSM_SEV_FEATURES: Final = int(GuestFeatures.SNP_ACTIVE)


def svsm_vmsa_page(eip: int, *, vcpu_sig: int) -> bytes:
    """The VMSA of every vCPU of an SVSM launch: protected mode (CR0.PE), flat segments,
    RIP at the SVSM's entry point ``eip``, SEV_FEATURES :data:`SVSM_SEV_FEATURES`.

    MXCSR is 0x1F80 and the x87 FCW 0: what the coconut-svsm QEMU measured on hardware
    (sev-snp-measure's ``snp:svsm`` fixtures reproduce that page).

    Raises:
        MisuseError: a value that does not fit its register.
    """
    _check_u64("eip", eip)
    _check_u64("vcpu_sig", vcpu_sig)
    values: dict[str, int] = {}
    for seg, (selector, attrib, limit) in _SVSM_SEGMENTS.items():
        values |= {f"{seg}_selector": selector, f"{seg}_attrib": attrib,
                   f"{seg}_limit": limit, f"{seg}_base": 0}
    values |= _common(eip, 0x11, g_pat=DEFAULT_G_PAT, rdx=vcpu_sig,
                      sev_features=SVSM_SEV_FEATURES, mxcsr=0x1F80, fcw=0)
    return SAVE_AREA.pack(values)


__all__ = [
    "BSP_EIP",
    "DEFAULT_GUEST_FEATURES",
    "SAVE_AREA",
    "VCPU_TYPES",
    "VMMS",
    "VMM_STATE",
    "VMSA_SIZE",
    "GuestFeatures",
    "Vmm",
    "VmmState",
    "cpu_signature",
    "svsm_vmsa_page",
    "vcpu_signature",
    "vmsa_page",
]
