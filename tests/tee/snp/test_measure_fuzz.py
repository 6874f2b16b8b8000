"""Hostile firmware images meet typed errors only (STYLE.md §8): truncated, bit-flipped and
oversized OVMF and SVSM images, random GUIDed tables and random SEV metadata, parsed and then
measured in every mode. The only exception allowed out is MalformedEvidenceError (with its
leaf UnsupportedVersionError)."""

from __future__ import annotations

import contextlib
import struct
import uuid
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee.errors import MalformedEvidenceError, MisuseError, UnsupportedVersionError
from veritee.tee.snp import ovmf as ovmf_module
from veritee.tee.snp.launch import (
    MAX_VCPUS,
    Configuration,
    KernelHashes,
    LaunchMeasurer,
    id_key_digest,
    parse_svsm,
)
from veritee.tee.snp.ovmf import MAX_IMAGE_SIZE, parse_ovmf
from veritee.testing.snp.ovmf import build_firmware, build_ovmf, build_svsm, metadata

SIZE = 16 << 10
BASE = build_ovmf(SIZE)
SVSM = build_svsm(8 << 10)
HASHES = KernelHashes.of(b"k", b"i", "c")
CONFIGS = [Configuration("snp", vcpus=2, kernel=True), Configuration("snp", vmm="ec2"),
           Configuration("snp", vmm="gce", kernel=True), Configuration("sev-es", vcpus=3),
           Configuration("sev-es", kernel=True), Configuration("sev", kernel=True),
           Configuration("sev")]
GUIDS = [ovmf_module.SEV_ES_RESET_BLOCK_GUID, ovmf_module.OVMF_SEV_METADATA_GUID,
         ovmf_module.SEV_HASH_TABLE_RV_GUID, ovmf_module.SEV_SECRET_GUID,
         ovmf_module.SEV_SNP_BOOT_BLOCK_GUID, ovmf_module.SVSM_INFO_GUID,
         uuid.UUID("12345678-1234-5678-9abc-def012345678")]
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def measure_everything(image: bytes, svsm: bytes | None = None) -> None:
    """Parse, read every table entry, and measure each configuration; typed errors only."""
    try:
        ovmf = parse_ovmf(image)
        ovmf.to_json()
        _ = ovmf.snp_boot_block, ovmf.svsm_info
    except MalformedEvidenceError:
        return
    measurer = LaunchMeasurer(ovmf, kernel_hashes=HASHES)
    for config in CONFIGS:
        with contextlib.suppress(MalformedEvidenceError):
            measurer.measure(config)
    if svsm is not None:
        with contextlib.suppress(MalformedEvidenceError):
            guest = LaunchMeasurer(ovmf, svsm=parse_svsm(svsm, ovmf, 0x1000))
            guest.measure(Configuration("snp", vcpus=2, svsm=True))


def test_the_base_images_measure() -> None:
    """The fuzz starts from images that measure in every mode."""
    ovmf = parse_ovmf(BASE)
    measurer = LaunchMeasurer(ovmf, kernel_hashes=HASHES, svsm=parse_svsm(SVSM, ovmf, 0x1000))
    for config in [*CONFIGS, Configuration("snp", svsm=True)]:
        assert measurer.measure(config).measurement


@FUZZ
@given(st.integers(0, SIZE), st.booleans())
def test_truncated(length: int, keep_end: bool) -> None:
    image = BASE[SIZE - length:] if keep_end else BASE[:length]
    measure_everything(image, SVSM[:length] if keep_end else None)


@FUZZ
@given(st.lists(st.tuples(st.integers(SIZE - 0x1000, SIZE - 1), st.integers(0, 7)),
                min_size=1, max_size=8), st.booleans())
def test_bit_flips_in_the_table_and_metadata(flips: list[tuple[int, int]], svsm: bool) -> None:
    image = bytearray(BASE)
    other = bytearray(SVSM)
    for at, bit in flips:
        image[at] ^= 1 << bit
        other[at - SIZE + len(SVSM)] ^= 1 << bit
    measure_everything(bytes(image) if not svsm else BASE, bytes(other) if svsm else SVSM)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_before_the_footer(tail: bytes) -> None:
    """Random entries behind a valid footer GUID, with a length field of any value."""
    footer = struct.pack("<H", len(tail) + 18) + ovmf_module.TABLE_FOOTER_GUID.bytes_le
    body = bytes(0x1000 - 32 - len(tail) - len(footer)) + tail + footer + bytes(32)
    measure_everything(body)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(GUIDS), st.binary(max_size=24)), max_size=6),
       st.lists(st.tuples(st.integers(0, 0x1000000).map(lambda g: g & ~0x7FF),
                          st.sampled_from([0, 0x800, 0x1000, 0x2000, 0x9000]),
                          st.sampled_from([0, 1, 2, 3, 4, 5, 0x10, 0x11, 0xFFFFFFFF])),
                max_size=6))
def test_random_tables_and_metadata(entries: list[tuple[uuid.UUID, bytes]],
                                    sections: list[tuple[int, int, int]]) -> None:
    image = build_firmware(SIZE, entries, sections=sections)
    measure_everything(image, image[:8 << 10])


@FUZZ
@given(st.binary(min_size=16, max_size=64), st.integers(0, 0xFFFFFFFF))
def test_random_metadata_header(header: bytes, distance: int) -> None:
    image = bytearray(BASE)
    image[SIZE - 0x1000:SIZE - 0x1000 + len(header)] = header
    measure_everything(bytes(image))
    entry = struct.pack("<I", distance)
    measure_everything(build_firmware(SIZE, [(ovmf_module.OVMF_SEV_METADATA_GUID, entry)]))


def test_oversized_image() -> None:
    with pytest.raises(MalformedEvidenceError, match="64 MiB"):
        parse_ovmf(bytes(MAX_IMAGE_SIZE + 0x1000))


def test_unknown_section_type_names_it_and_the_known_set() -> None:
    image = build_firmware(SIZE, [(ovmf_module.SEV_ES_RESET_BLOCK_GUID, struct.pack("<I", 0))],
                           sections=[(0x800000, 0x1000, 0x11)])
    ovmf = parse_ovmf(image)
    with pytest.raises(UnsupportedVersionError, match=r"type 0x11.*known: 0x1 SNP_SEC_MEM.*"
                                                      r"0x10 SNP_KERNEL_HASHES"):
        LaunchMeasurer(ovmf).measure(Configuration("snp"))
    # SEV and SEV-ES do not read the metadata: the same image measures.
    assert LaunchMeasurer(ovmf).measure(Configuration("sev-es")).measurement


def test_metadata_version_is_a_closed_set() -> None:
    block = metadata([(0x800000, 0x1000, 1)], version=2)
    image = bytearray(build_ovmf(SIZE))
    image[SIZE - 0x1000:SIZE - 0x1000 + len(block)] = block
    with pytest.raises(UnsupportedVersionError, match="version is 2"):
        parse_ovmf(bytes(image))


# (name, how to build the input, expected error)
MISUSE_CASES = [
    ("unknown-mode", lambda: Configuration("tdx"), MisuseError),  # type: ignore[arg-type]
    ("zero-vcpus", lambda: Configuration(vcpus=0), MisuseError),
    ("too-many-vcpus", lambda: Configuration(vcpus=MAX_VCPUS + 1), MisuseError),
    ("unknown-vcpu-type", lambda: Configuration(vcpu_type="EPYC-Zen9"), MisuseError),
    ("wide-vcpu-sig", lambda: Configuration(vcpu_sig=1 << 32), MisuseError),
    ("wide-guest-features", lambda: Configuration(guest_features=1 << 64), MisuseError),
    ("svsm-on-sev-es", lambda: Configuration("sev-es", svsm=True), MisuseError),
    ("svsm-on-ec2", lambda: Configuration(vmm="ec2", svsm=True), MisuseError),
    ("kernel-without-hashes",
     lambda: LaunchMeasurer(parse_ovmf(BASE)).measure(Configuration(kernel=True)), MisuseError),
    ("svsm-without-image",
     lambda: LaunchMeasurer(parse_ovmf(BASE)).measure(Configuration(svsm=True)), MisuseError),
    ("short-ovmf-hash", lambda: LaunchMeasurer(parse_ovmf(BASE), ovmf_hash=bytes(32)),
     MisuseError),
    ("ovmf-hash-for-sev", lambda: LaunchMeasurer(parse_ovmf(BASE), ovmf_hash=bytes(48))
     .measure(Configuration("sev")), MisuseError),
    ("odd-vars-size", lambda: parse_svsm(SVSM, parse_ovmf(BASE), 0x123), MisuseError),
    ("svsm-below-nothing", lambda: parse_svsm(SVSM, parse_ovmf(BASE), (1 << 32) - SIZE),
     MalformedEvidenceError),
    ("svsm-without-info", lambda: LaunchMeasurer(
        parse_ovmf(BASE), svsm=parse_svsm(BASE[:8 << 10], parse_ovmf(BASE), 0))
     .measure(Configuration(svsm=True)), MalformedEvidenceError),
    ("not-bytes", lambda: parse_ovmf("OVMF.fd"), MisuseError),  # type: ignore[arg-type]
    ("short-id-key", lambda: id_key_digest(bytes(0x403)), MalformedEvidenceError),
    ("p256-id-key", lambda: id_key_digest(b"\x01" + bytes(0x403)), MalformedEvidenceError),
    ("id-key-padding", lambda: id_key_digest(b"\x02" + bytes(0x402) + b"\x01"),
     MalformedEvidenceError),
    ("id-key-object", lambda: id_key_digest(object()), MisuseError),
]


@pytest.mark.parametrize(("name", "build", "error"), MISUSE_CASES,
                         ids=[c[0] for c in MISUSE_CASES])
def test_typed_errors(name: str, build: Callable[[], object], error: type[Exception]) -> None:
    with pytest.raises(error):
        build()


def test_kernel_hashes_table_layout() -> None:
    """Note §3.1: header GUID, u16 0xA8, three 50-byte entries, padded to 0xB0."""
    table = HASHES.table()
    assert len(table) == 0xB0
    assert table[16:18] == struct.pack("<H", 0xA8)
    assert [struct.unpack_from("<H", table, 18 + 50 * i + 16)[0] for i in range(3)] == [50] * 3
    assert table[0xA8:] == bytes(8)
