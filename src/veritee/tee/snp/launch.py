"""Launch digests of AMD SEV, SEV-ES and SEV-SNP guests, predicted from their artefacts.

Sources: research note amd-sev.md §3.1 (SNP: the PAGE_INFO chain, page types, the order a
VMM adds pages in, the EC2 and GCE variants, SVSM mode), §3.2 (SEV and SEV-ES), §3.7 (the ID
key digest); AMD SEV-SNP ABI specification §8.17 ``SNP_LAUNCH_UPDATE`` (Table 67, PAGE_INFO);
AMD SEV API specification ``LAUNCH_UPDATE_DATA``/``LAUNCH_UPDATE_VMSA``; QEMU
``target/i386/sev.c`` (the kernel-hashes table and its placement).

* SNP: ``LD = SHA-384(PAGE_INFO)`` per page, PAGE_INFO = ``LD_prev ‖ CONTENTS ‖ u16 0x70 ‖
  type ‖ 0 ‖ 0 0 0 ‖ 0 ‖ u64 GPA``: the firmware's pages, then its SEV metadata sections, then
  one VMSA per vCPU.
* SEV: ``SHA-256(firmware [‖ kernel-hashes table])``; SEV-ES adds each vCPU's VMSA page.

Sweeps are cheap: a :class:`LaunchMeasurer` computes the firmware part once, the metadata
part once per (kernel table, VMM), and then extends per vCPU, so measuring 64 vCPU counts
costs one firmware pass and 64 VMSA steps. Its caches live in the object (none are global).
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from veritee.errors import MalformedEvidenceError, MisuseError
from veritee.tee._layout import FieldTable
from veritee.tee.snp.ovmf import PAGE_SIZE, MetadataSection, Ovmf, SectionType, parse_ovmf
from veritee.tee.snp.vmsa import (
    BSP_EIP,
    DEFAULT_GUEST_FEATURES,
    VCPU_TYPES,
    VMM_STATE,
    VMMS,
    VMSA_SIZE,
    Vmm,
    svsm_vmsa_page,
    vcpu_signature,
    vmsa_page,
)

Mode = Literal["snp", "sev-es", "sev"]
MODES: Final[tuple[Mode, ...]] = ("snp", "sev-es", "sev")
#: Bounds that keep one request short (QEMU allows 255 vCPUs without x2APIC, 4096 with).
MAX_VCPUS: Final = 4096
LD_SIZE: Final = 48

# -- SNP page types and PAGE_INFO (SEV-SNP ABI §8.17, Table 67) --------------------------------

PAGE_TYPE_NORMAL: Final = 1
PAGE_TYPE_VMSA: Final = 2
PAGE_TYPE_ZERO: Final = 3
PAGE_TYPE_UNMEASURED: Final = 4
PAGE_TYPE_SECRETS: Final = 5
PAGE_TYPE_CPUID: Final = 6
#: The RMP records a VMSA page at GPA -1, page-aligned and cut to 52 bits.
VMSA_GPA: Final = 0xFFFFFFFFF000

PAGE_INFO: Final = FieldTable("SNP PAGE_INFO", (
    ("digest_cur", 0x00, 48, "s"),
    ("contents", 0x30, 48, "s"),
    ("length", 0x60, 2, "H"),
    ("page_type", 0x62, 1, "B"),
    ("imi_page", 0x63, 1, "B"),
    ("vmpl3_perms", 0x64, 1, "B"),
    ("vmpl2_perms", 0x65, 1, "B"),
    ("vmpl1_perms", 0x66, 1, "B"),
    ("reserved", 0x67, 1, "x"),
    ("gpa", 0x68, 8, "Q"),
), size=0x70)
#: The bytes after the two digests, for a page type and GPA (IMI and VMPL permissions 0).
_PAGE_INFO_TAIL: Final = struct.Struct("<HBBBBBxQ")
_ZEROS: Final = bytes(LD_SIZE)
_sha384 = hashlib.sha384


def _extend(ld: bytes, page_type: int, gpa: int, contents: bytes = _ZEROS) -> bytes:
    """One SNP_LAUNCH_UPDATE step: the new launch digest."""
    return _sha384(ld + contents + _PAGE_INFO_TAIL.pack(
        PAGE_INFO.size, page_type, 0, 0, 0, 0, gpa)).digest()


def extend_pages(ld: bytes, gpa: int, data: bytes) -> bytes:
    """``ld`` after NORMAL pages holding ``data`` (a whole number of pages) from ``gpa``."""
    view = memoryview(data)
    tail = _PAGE_INFO_TAIL.pack
    for at in range(0, len(data), PAGE_SIZE):
        contents = _sha384(view[at:at + PAGE_SIZE]).digest()
        ld = _sha384(ld + contents + tail(PAGE_INFO.size, PAGE_TYPE_NORMAL, 0, 0, 0, 0,
                                          gpa + at)).digest()
    return ld


def _extend_empty(ld: bytes, page_type: int, gpa: int, size: int) -> bytes:
    for at in range(0, size, PAGE_SIZE):
        ld = _extend(ld, page_type, gpa + at)
    return ld


# -- the kernel-hashes table (QEMU ``-kernel`` with kernel-hashes=on) --------------------------

HASH_TABLE_GUID: Final = uuid.UUID("9438d606-4f22-4cc9-b479-a793d411fd21")
CMDLINE_ENTRY_GUID: Final = uuid.UUID("97d02dd8-bd20-4c94-aa78-e7714d36ab2a")
INITRD_ENTRY_GUID: Final = uuid.UUID("44baf731-3a2f-4bd7-9af1-41e29169781d")
KERNEL_ENTRY_GUID: Final = uuid.UUID("4de79437-abd2-427f-b835-d5b172d2045b")
_ENTRY: Final = struct.Struct("<16sH32s")
_TABLE_HEAD: Final = struct.Struct("<16sH")
HASH_TABLE_SIZE: Final = _TABLE_HEAD.size + 3 * _ENTRY.size  # 0xA8
PADDED_HASH_TABLE_SIZE: Final = (HASH_TABLE_SIZE + 15) & ~15  # 0xB0


@dataclass(frozen=True, slots=True)
class KernelHashes:
    """The SHA-256 digests of a direct-boot kernel, initrd and command line."""

    kernel: bytes
    initrd: bytes
    cmdline: bytes

    @classmethod
    def of(cls, kernel: bytes, initrd: bytes, append: str | bytes) -> KernelHashes:
        """From the artefacts: an empty initrd stands for none; the command line is hashed
        with its terminating NUL (so ``""`` hashes ``b"\\0"``), as QEMU does."""
        line = append.encode() if isinstance(append, str) else bytes(append)
        return cls(hashlib.sha256(kernel).digest(), hashlib.sha256(initrd).digest(),
                   hashlib.sha256(line + b"\0").digest())

    def table(self) -> bytes:
        """The table QEMU writes into the firmware's hashes area, padded to 16 bytes."""
        raw = b"".join((
            _TABLE_HEAD.pack(HASH_TABLE_GUID.bytes_le, HASH_TABLE_SIZE),
            _ENTRY.pack(CMDLINE_ENTRY_GUID.bytes_le, _ENTRY.size, self.cmdline),
            _ENTRY.pack(INITRD_ENTRY_GUID.bytes_le, _ENTRY.size, self.initrd),
            _ENTRY.pack(KERNEL_ENTRY_GUID.bytes_le, _ENTRY.size, self.kernel),
        ))
        return raw.ljust(PADDED_HASH_TABLE_SIZE, b"\0")

    def page(self, offset: int) -> bytes:
        """The page holding the table at ``offset`` (SNP measures it as a NORMAL page)."""
        table = self.table()
        if not 0 <= offset <= PAGE_SIZE - len(table):
            raise MalformedEvidenceError(
                f"the kernel-hashes table at page offset {offset:#x} would cross its page")
        return bytes(offset) + table + bytes(PAGE_SIZE - offset - len(table))


def _hashes_area(ovmf: Ovmf) -> tuple[int, int]:
    gpa, size = ovmf.require_hashes_table()
    if size < PADDED_HASH_TABLE_SIZE:
        raise MalformedEvidenceError(
            f"{ovmf.what} kernel-hashes area is {size:#x} bytes, smaller than the "
            f"{PADDED_HASH_TABLE_SIZE:#x}-byte table (QEMU refuses it)")
    return gpa, size


# -- configurations and results ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Configuration:
    """One guest configuration to measure with the measurer's artefacts.

    ``vcpu_sig`` (CPUID(1).EAX), when given, overrides ``vcpu_type``. ``kernel`` says whether
    the kernel-hashes table is added (the measurer holds the hashes). ``svsm``: an SNP
    launch with the measurer's Coconut SVSM image below OVMF. SEV ignores the vCPU fields;
    SEV-ES ignores the guest features (its VMSAs carry 0).
    """

    mode: Mode = "snp"
    vcpus: int = 1
    vcpu_type: str | None = "EPYC-v4"
    vcpu_sig: int | None = None
    vmm: Vmm = "qemu"
    guest_features: int = DEFAULT_GUEST_FEATURES
    kernel: bool = False
    svsm: bool = False

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise MisuseError(f"launch configuration: {problem}")

    def _problem(self) -> str | None:
        checks = (
            (self.mode not in MODES, f"mode {self.mode!r} is unknown; known: "
             f"{', '.join(MODES)}"),
            (self.vmm not in VMMS, f"VMM type {self.vmm!r} is unknown; known: "
             f"{', '.join(VMMS)}"),
            (not 1 <= self.vcpus <= MAX_VCPUS, f"vcpus is {self.vcpus}, outside 1..{MAX_VCPUS}"),
            (not 0 <= self.guest_features < 1 << 64, f"guest features {self.guest_features:#x} "
             "do not fit 64 bits"),
            (self.vcpu_sig is not None and not 0 <= self.vcpu_sig < 1 << 32,
             f"vCPU signature {self.vcpu_sig!r} is not a 32-bit CPUID value"),
            (self.vcpu_sig is None and self.vcpu_type is not None
             and self.vcpu_type not in VCPU_TYPES, f"vCPU type {self.vcpu_type!r} is unknown; "
             f"known: {', '.join(VCPU_TYPES)}"),
            (self.svsm and self.mode != "snp", "SVSM mode is an SNP launch"),
            (self.svsm and self.vmm != "qemu", "SVSM mode is measured for QEMU only"),
            (self.svsm and self.kernel, "SVSM mode adds no kernel-hashes table"),
        )
        return next((message for failed, message in checks if failed), None)

    @property
    def signature(self) -> int:
        """The vCPU signature the VMSAs carry in RDX (where the VMM puts it there)."""
        if self.vcpu_sig is not None:
            return self.vcpu_sig
        if self.vcpu_type is None:
            if self.mode == "sev" or self.vmm != "qemu":
                return 0
            raise MisuseError("launch configuration: QEMU guests need a vCPU type or signature")
        return vcpu_signature(self.vcpu_type)

    def to_json(self) -> dict[str, Any]:
        """The configuration fields of CONTRACT.md §2's object (SEV: only the table)."""
        document: dict[str, Any] = {"kernel_hashes": self.kernel}
        if self.mode == "sev":
            return document
        document |= {"vcpus": self.vcpus, "vcpu_type": self.vcpu_type,
                     "vcpu_sig": f"{self.signature:#x}", "vmm_type": self.vmm}
        if self.mode == "snp":
            document |= {"guest_features": f"{self.guest_features:#x}", "svsm": self.svsm}
        return document


@dataclass(frozen=True, slots=True)
class LaunchDigest:
    """The launch digest one configuration gives: SNP's MEASUREMENT (48 bytes), or the
    SEV/SEV-ES digest that LAUNCH_MEASURE's HMAC covers (32 bytes)."""

    configuration: Configuration
    measurement: bytes

    def to_json(self) -> dict[str, Any]:
        """CONTRACT.md §2: ``{"platform", "measurement", ...configuration fields}``."""
        return {"platform": self.configuration.mode, "measurement": self.measurement.hex(),
                **self.configuration.to_json()}


Progress = Callable[[int, int], None]


# -- the measurer ------------------------------------------------------------------------------


def parse_svsm(data: bytes, ovmf: Ovmf, vars_size: int) -> Ovmf:
    """A Coconut SVSM image placed directly below OVMF and its ``vars_size``-byte variable
    store (sev-snp-measure ``snp:svsm``; coconut-svsm QEMU).

    Raises:
        MisuseError: a negative ``vars_size``.
        MalformedEvidenceError, UnsupportedVersionError: as :func:`parse_ovmf`.
    """
    if vars_size < 0 or vars_size % PAGE_SIZE:
        raise MisuseError(f"the OVMF_VARS size is {vars_size}, not a multiple of 4 KiB")
    return parse_ovmf(data, end_at=ovmf.gpa - vars_size, what="SVSM")


@dataclass(slots=True)
class _Chain:
    """The digests of one (base, VMSA pages) group for 1..``count`` vCPUs, extended on
    demand: SNP keeps the launch digest, SEV-ES the running SHA-256."""

    state: Any
    bsp: bytes
    ap: bytes
    snp: bool
    digests: list[bytes] = field(default_factory=list)

    def digest(self, vcpus: int) -> bytes:
        while len(self.digests) < vcpus:
            page = self.ap if self.digests else self.bsp
            if self.snp:
                self.state = _extend(self.state, PAGE_TYPE_VMSA, VMSA_GPA, page)
                self.digests.append(self.state)
            else:
                self.state.update(page)
                self.digests.append(self.state.copy().digest())
        return self.digests[vcpus - 1]


class LaunchMeasurer:
    """Launch digests of many configurations of one set of artefacts, sharing the work.

    ``ovmf_hash`` (SNP only) is the launch digest after the firmware's pages, as
    sev-snp-measure's ``--snp-ovmf-hash``: the firmware's pages are not hashed, but its
    table and metadata still come from ``ovmf``.
    """

    def __init__(self, ovmf: Ovmf, *, kernel_hashes: KernelHashes | None = None,
                 svsm: Ovmf | None = None, ovmf_hash: bytes | None = None) -> None:
        if ovmf_hash is not None and len(ovmf_hash) != LD_SIZE:
            raise MisuseError(f"an SNP OVMF hash is {LD_SIZE} bytes, not {len(ovmf_hash)}")
        self.ovmf = ovmf
        self.kernel_hashes = kernel_hashes
        self.svsm = svsm
        self.ovmf_hash = ovmf_hash
        self._ovmf_ld: bytes | None = None
        self._svsm_ld: bytes | None = None
        self._snp_bases: dict[tuple[bool, Vmm], bytes] = {}
        self._sev_bases: dict[bool, Any] = {}
        self._pages: dict[tuple[Any, ...], bytes] = {}
        self._chains: dict[tuple[Any, ...], _Chain] = {}

    # -- public ---------------------------------------------------------------------------

    def measure(self, configuration: Configuration) -> LaunchDigest:
        """The launch digest of one configuration.

        Raises:
            MisuseError: a configuration that needs an artefact this measurer lacks.
            MalformedEvidenceError, UnsupportedVersionError: firmware that cannot be measured
                this way (no reset block, no kernel-hashes support, an unknown section type).
        """
        return LaunchDigest(configuration, self._digest(configuration))

    def measure_many(self, configurations: Sequence[Configuration], *,
                     progress: Progress | None = None) -> Iterator[LaunchDigest]:
        """The launch digests of ``configurations``, in order; ``progress(done, total)``
        after each."""
        total = len(configurations)
        for done, configuration in enumerate(configurations, 1):
            yield self.measure(configuration)
            if progress is not None:
                progress(done, total)

    def snp_ovmf_hash(self) -> bytes:
        """The SNP launch digest after the firmware's pages (``--ovmf-hash``'s value)."""
        if self.ovmf_hash is not None:
            return self.ovmf_hash
        if self._ovmf_ld is None:
            self.ovmf.require_pages()
            self._ovmf_ld = extend_pages(_ZEROS, self.ovmf.gpa, self.ovmf.data)
        return self._ovmf_ld

    # -- the digests ----------------------------------------------------------------------------

    def _digest(self, config: Configuration) -> bytes:
        if config.kernel and self.kernel_hashes is None:
            raise MisuseError("the configuration adds a kernel-hashes table, but the measurer "
                              "was given no kernel hashes")
        if config.svsm and self.svsm is None:
            raise MisuseError("the configuration is an SVSM launch, but the measurer was given "
                              "no SVSM image")
        if config.mode == "sev":
            digest: bytes = self._sev_base(config.kernel).copy().digest()
            return digest
        return self._chain(config).digest(config.vcpus)

    def _chain(self, config: Configuration) -> _Chain:
        # EC2 and GCE put a fixed value in RDX: the vCPU model does not change their pages.
        fixed_rdx = not config.svsm and VMM_STATE[config.vmm].rdx is not None
        signature = 0 if fixed_rdx else config.signature
        features = config.guest_features if config.mode == "snp" else 0
        key = (config.mode, config.kernel, config.vmm, config.svsm, signature, features)
        chain = self._chains.get(key)
        if chain is None:
            snp = config.mode == "snp"
            if config.svsm:
                state: Any = self._svsm_base()
                bsp = ap = self._svsm_page(signature)
            else:
                state = (self._snp_base(config.kernel, config.vmm) if snp
                         else self._sev_base(config.kernel).copy())
                ap_eip = self.ovmf.require_ap_reset_eip()
                bsp = self._page(BSP_EIP, signature, features, config.vmm, snp)
                ap = self._page(ap_eip, signature, features, config.vmm, snp)
            chain = self._chains[key] = _Chain(state, bsp, ap, snp)
        return chain

    def _page(self, eip: int, signature: int, features: int, vmm: Vmm, snp: bool) -> bytes:
        """A VMSA page (SEV-ES) or its SHA-384 (SNP), cached per (eip, sig, features, vmm)."""
        key = (eip, signature, features, vmm, snp)
        page = self._pages.get(key)
        if page is None:
            page = vmsa_page(eip, vcpu_sig=signature, sev_features=features, vmm=vmm)
            page = self._pages[key] = _sha384(page).digest() if snp else page
        return page

    def _svsm_page(self, signature: int) -> bytes:
        svsm = self.svsm
        assert svsm is not None
        offset = svsm.svsm_info
        if offset is None:
            raise MalformedEvidenceError(
                "the SVSM image has no SVSM_INFO entry (a789a612-0597-4c4b-a49f-cbb1fe9d1ddd) "
                "in its GUIDed table: its entry point is unknown")
        key = ("svsm", svsm.gpa + offset, signature)
        page = self._pages.get(key)
        if page is None:
            page = self._pages[key] = _sha384(
                svsm_vmsa_page(svsm.gpa + offset, vcpu_sig=signature)).digest()
        return page

    def _snp_base(self, kernel: bool, vmm: Vmm) -> bytes:
        """The SNP launch digest after the firmware's pages and its metadata sections."""
        key = (kernel, vmm)
        base = self._snp_bases.get(key)
        if base is None:
            hashes = self.kernel_hashes if kernel else None
            base = _extend_metadata(self.snp_ovmf_hash(), self.ovmf, hashes, vmm)
            self._snp_bases[key] = base
        return base

    def _svsm_base(self) -> bytes:
        """SVSM mode: after OVMF's pages, the SVSM's pages and the SVSM's metadata sections
        (OVMF's own sections are the SVSM's business, not the VMM's)."""
        if self._svsm_ld is None:
            svsm = self.svsm
            assert svsm is not None
            svsm.require_pages()
            ld = extend_pages(self.snp_ovmf_hash(), svsm.gpa, svsm.data)
            self._svsm_ld = _extend_metadata(ld, svsm, None, "qemu")
        return self._svsm_ld

    def _sev_base(self, kernel: bool) -> Any:
        """The running SHA-256 over the firmware [and the kernel-hashes table]."""
        base = self._sev_bases.get(kernel)
        if base is None:
            if self.ovmf_hash is not None:
                raise MisuseError("an SNP OVMF hash cannot start a SEV or SEV-ES digest")
            base = hashlib.sha256(self.ovmf.data)
            if kernel:
                assert self.kernel_hashes is not None
                _hashes_area(self.ovmf)
                base.update(self.kernel_hashes.table())
            self._sev_bases[kernel] = base
        return base


def _extend_metadata(ld: bytes, image: Ovmf, hashes: KernelHashes | None, vmm: Vmm) -> bytes:
    """``ld`` after the pages of ``image``'s SEV metadata sections, as ``vmm`` adds them
    (note §3.1 step 2: EC2 adds the CPUID page last; GCE leaves SNP_SEC_MEM unmeasured)."""
    cpuid_last: list[MetadataSection] = []
    for section in image.sections:
        kind = _checked(section, image)
        if kind == SectionType.CPUID and vmm == "ec2":
            cpuid_last.append(section)
            continue
        ld = _extend_section(ld, section, kind, image, hashes=hashes, vmm=vmm)
    for section in cpuid_last:
        ld = _extend(ld, PAGE_TYPE_CPUID, section.gpa)
    if hashes is not None and not image.has_section(SectionType.SNP_KERNEL_HASHES):
        raise MalformedEvidenceError(
            f"{image.what} SEV metadata has no SNP_KERNEL_HASHES section: an SNP guest "
            "cannot measure --kernel with this firmware (use the AmdSev build)")
    return ld


def _checked(section: MetadataSection, image: Ovmf) -> SectionType:
    kind = section.checked_type()
    where = f"{image.what} SEV metadata section {kind.name} at GPA {section.gpa:#x}"
    if section.gpa % PAGE_SIZE:
        raise MalformedEvidenceError(f"{where} is not page aligned")
    if kind in (SectionType.SNP_SECRETS, SectionType.CPUID):
        if section.size != PAGE_SIZE:
            raise MalformedEvidenceError(
                f"{where} has size {section.size:#x}; it is one page ({PAGE_SIZE:#x})")
    elif section.size % PAGE_SIZE or not section.size:
        raise MalformedEvidenceError(
            f"{where} has size {section.size:#x}, not a positive number of pages")
    return kind


def _extend_section(ld: bytes, section: MetadataSection, kind: SectionType, image: Ovmf, *,
                    hashes: KernelHashes | None, vmm: Vmm) -> bytes:
    if kind == SectionType.SNP_SEC_MEM:
        page_type = PAGE_TYPE_UNMEASURED if vmm == "gce" else PAGE_TYPE_ZERO
        return _extend_empty(ld, page_type, section.gpa, section.size)
    if kind == SectionType.SNP_SECRETS:
        return _extend(ld, PAGE_TYPE_SECRETS, section.gpa)
    if kind == SectionType.CPUID:
        return _extend(ld, PAGE_TYPE_CPUID, section.gpa)
    if kind == SectionType.SNP_KERNEL_HASHES and hashes is not None:
        if section.size != PAGE_SIZE:
            raise MalformedEvidenceError(
                f"{image.what} SNP_KERNEL_HASHES section at GPA {section.gpa:#x} has size "
                f"{section.size:#x}; the table's page is one page")
        gpa, _ = _hashes_area(image)
        return extend_pages(ld, section.gpa, hashes.page(gpa & (PAGE_SIZE - 1)))
    # SVSM_CAA, and SNP_KERNEL_HASHES without a kernel: zero pages.
    return _extend_empty(ld, PAGE_TYPE_ZERO, section.gpa, section.size)


# -- one-shot helpers --------------------------------------------------------------------------


def snp_ovmf_hash(ovmf: Ovmf) -> bytes:
    """The SNP launch digest after ``ovmf``'s pages (sev-snp-measure ``snp:ovmf-hash``)."""
    return LaunchMeasurer(ovmf).snp_ovmf_hash()


def launch_digest(ovmf: Ovmf, configuration: Configuration, *,
                  kernel_hashes: KernelHashes | None = None, svsm: Ovmf | None = None,
                  ovmf_hash: bytes | None = None) -> bytes:
    """The launch digest of one configuration (see :class:`LaunchMeasurer`)."""
    measurer = LaunchMeasurer(ovmf, kernel_hashes=kernel_hashes, svsm=svsm,
                              ovmf_hash=ovmf_hash)
    return measurer.measure(configuration).measurement


# -- the ID key digest (SNP_LAUNCH_FINISH, note §3.7) ------------------------------------------

SEV_PUBLIC_KEY_SIZE: Final = 0x404
CURVE_P384: Final = 2
_COORDINATE: Final = 72


def sev_public_key_bytes(key: Any) -> bytes:
    """The 0x404-byte SEV-format form of a P-384 public key (``cryptography`` object):
    ``u32 curve = 2 ‖ QX[72] LE ‖ QY[72] LE ‖ zeros`` (SEV-SNP ABI, Table "ECDSA public key").

    Raises:
        MisuseError: not a P-384 public key.
    """
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415 - on use only

    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise MisuseError("an SNP ID or author key is an ECDSA P-384 public key")
    numbers = key.public_numbers()
    blob = (struct.pack("<I", CURVE_P384) + numbers.x.to_bytes(_COORDINATE, "little")
            + numbers.y.to_bytes(_COORDINATE, "little"))
    return blob.ljust(SEV_PUBLIC_KEY_SIZE, b"\0")


def id_key_digest(key: Any) -> bytes:
    """ID_KEY_DIGEST / AUTHOR_KEY_DIGEST: SHA-384 of the key's 0x404-byte SEV form. ``key``
    is that form (bytes) or a P-384 public key object.

    Raises:
        MalformedEvidenceError: bytes that are not a SEV-format P-384 public key.
        MisuseError: an object that is not a P-384 public key.
    """
    if isinstance(key, bytes | bytearray | memoryview):
        blob = bytes(key)
        _check_public_key(blob)
    else:
        blob = sev_public_key_bytes(key)
    return hashlib.sha384(blob).digest()


def _check_public_key(blob: bytes) -> None:
    if len(blob) != SEV_PUBLIC_KEY_SIZE:
        raise MalformedEvidenceError(
            f"a SEV-format public key is {SEV_PUBLIC_KEY_SIZE:#x} bytes, not {len(blob):#x}")
    curve = struct.unpack_from("<I", blob)[0]
    if curve != CURVE_P384:
        raise MalformedEvidenceError(f"SEV-format public key curve is {curve}, expected 2 "
                                     "(P-384)")
    tail = blob[4 + 2 * _COORDINATE:]
    if tail.count(0) != len(tail):
        raise MalformedEvidenceError("SEV-format public key: the bytes after QY must be zero")


__all__ = [
    "MAX_VCPUS",
    "MODES",
    "PADDED_HASH_TABLE_SIZE",
    "PAGE_INFO",
    "VMSA_GPA",
    "VMSA_SIZE",
    "Configuration",
    "KernelHashes",
    "LaunchDigest",
    "LaunchMeasurer",
    "Mode",
    "Progress",
    "extend_pages",
    "id_key_digest",
    "launch_digest",
    "parse_svsm",
    "sev_public_key_bytes",
    "snp_ovmf_hash",
]
