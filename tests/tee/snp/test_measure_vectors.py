"""Launch digests against every vector of research note amd-sev.md §3.1–§3.3, on the corpus
fixtures read in place (skipped when the corpus is absent).

* ``corpus/amd/sev-snp-measure``: the last 4 KiB of edk2's AmdSev and OvmfX64 builds, which
  sev-snp-measure's own tests measure as whole images (the 11 vectors of §3.1).
* ``corpus/amd/sevctl``: sevctl's trimmed AmdSev OVMF, fake kernel and initrd, TIK and the
  VMSA pages of a 4-vCPU SEV-ES guest. §3.3 gives LAUNCH_MEASURE values, an HMAC under the
  TIK over the launch digest, so the digest our engine computes is checked through the HMAC.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from pathlib import Path

import pytest

from conftest import corpus_dir
from veritee.tee.snp.launch import (
    Configuration,
    KernelHashes,
    LaunchMeasurer,
    id_key_digest,
    launch_digest,
    sev_public_key_bytes,
    snp_ovmf_hash,
)
from veritee.tee.snp.ovmf import Ovmf, SectionType, parse_ovmf
from veritee.tee.snp.vmsa import BSP_EIP, VCPU_TYPES, vmsa_page

SNPM = ("amd", "sev-snp-measure")
SEVCTL = ("amd", "sevctl")
AMDSEV = "ovmf_AmdSev_suffix.bin"
OVMFX64 = "ovmf_OvmfX64_suffix.bin"
SEVCTL_OVMF = "OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9"
EMPTY = KernelHashes.of(b"", b"", "")
CONSOLE = KernelHashes.of(b"", b"", "console=ttyS0 loglevel=7")


def _firmware(folder: tuple[str, str], name: str) -> Ovmf:
    return parse_ovmf((corpus_dir(*folder) / name).read_bytes())


# (name, firmware, configuration, kernel hashes, expected): note §3.1's table, row by row.
SNP_MEASURE_VECTORS = [
    ("snp-1vcpu-empty-cmdline-gf21", AMDSEV, Configuration(kernel=True, guest_features=0x21),
     EMPTY, "329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683"
            "632b9b50e4e1d7fa41179ef98a7ef198"),
    ("snp-1vcpu-console-gf1", AMDSEV, Configuration(kernel=True, guest_features=0x1),
     CONSOLE, "6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362"
              "f390ef83a92046c042e706363b4b08fa"),
    ("snp-1vcpu-console-gf21", AMDSEV, Configuration(kernel=True, guest_features=0x21),
     CONSOLE, "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba"
              "7e534442e7e1e17895dfe778d0228977"),
    ("snp-4vcpu-empty-cmdline-gf21", AMDSEV,
     Configuration(vcpus=4, kernel=True, guest_features=0x21), EMPTY,
     "4953b1fb416fa874980e8442b3706d345926d5f38879134e00813c5d7abcbe78"
     "eafe7b422907be0b4698e2414a631942"),
    ("snp-no-kernel-gf21", AMDSEV, Configuration(guest_features=0x21), None,
     "e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf"
     "281a9278a4a2ebe0eed9f22adbcd0e2b"),
    ("snp-ovmfx64-no-kernel-gf21", OVMFX64, Configuration(guest_features=0x21), None,
     "28797ae0afaba4005a81e629acebfb59e6687949d6be44007cd5506823b0dd66"
     "f146aaae26ff291eed7b493d8a64c385"),
    ("seves-1vcpu", AMDSEV, Configuration("sev-es", kernel=True), EMPTY,
     "13810ae661ea11e2bb205621f582fee268f0367c8f97bc297b7fadef3e12002c"),
    ("seves-4vcpu", AMDSEV, Configuration("sev-es", vcpus=4, kernel=True), EMPTY,
     "0dccbcaba8e90b261bd0d2e1863a2f9da714768b7b2a19363cd6ae35aa90de91"),
    ("sev-console", AMDSEV, Configuration("sev", kernel=True), CONSOLE,
     "82a3ee5d537c3620628270c292ae30cb40c3c878666a7890ee7ef2a08fb535ff"),
    ("sev-ovmfx64-no-kernel", OVMFX64, Configuration("sev"), None,
     "b4c021e085fb83ceffe6571a3d357b4a98773c83c474e47f76c876708fe316da"),
]
OVMF_HASH = ("086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2"
             "c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74")


def test_snp_ovmf_hash() -> None:
    assert snp_ovmf_hash(_firmware(SNPM, AMDSEV)).hex() == OVMF_HASH


@pytest.mark.parametrize(("name", "firmware", "configuration", "hashes", "expected"),
                         SNP_MEASURE_VECTORS, ids=[v[0] for v in SNP_MEASURE_VECTORS])
def test_sev_snp_measure_vector(name: str, firmware: str, configuration: Configuration,
                                hashes: KernelHashes | None, expected: str) -> None:
    ovmf = _firmware(SNPM, firmware)
    assert launch_digest(ovmf, configuration, kernel_hashes=hashes).hex() == expected


@pytest.mark.parametrize(("name", "firmware", "configuration", "hashes", "expected"),
                         [v for v in SNP_MEASURE_VECTORS if v[2].mode == "snp" and v[1] == AMDSEV],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_vector_from_ovmf_hash(name: str, firmware: str, configuration: Configuration,
                               hashes: KernelHashes | None, expected: str) -> None:
    """--ovmf-hash: starting from the OVMF hash gives the same digests."""
    ovmf = _firmware(SNPM, firmware)
    digest = launch_digest(ovmf, configuration, kernel_hashes=hashes,
                           ovmf_hash=bytes.fromhex(OVMF_HASH))
    assert digest.hex() == expected


def test_vectors_in_one_sweep() -> None:
    """One measurer serves every AmdSev configuration, in any order, with the same results
    as measuring each alone (the shared firmware part and the vCPU chains)."""
    ovmf = _firmware(SNPM, AMDSEV)
    rows = [v for v in SNP_MEASURE_VECTORS if v[1] == AMDSEV and v[3] is not CONSOLE]
    measurer = LaunchMeasurer(ovmf, kernel_hashes=EMPTY)
    configurations = [row[2] for row in reversed(rows)]
    seen: list[tuple[int, int]] = []
    results = list(measurer.measure_many(configurations,
                                         progress=lambda d, t: seen.append((d, t))))
    assert [r.measurement.hex() for r in results] == [row[4] for row in reversed(rows)]
    assert seen == [(i, len(rows)) for i in range(1, len(rows) + 1)]


def test_corpus_firmware_tables() -> None:
    """Note §3.1's fixture facts: reset EIP, hashes and secret areas, metadata sections."""
    ovmf = _firmware(SNPM, AMDSEV)
    assert ovmf.ap_reset_eip == 0x0080B004
    assert ovmf.hashes_table == (0x810C00, 0x400)
    assert ovmf.secret_area == (0x810000, 0xC00)
    assert [(s.gpa, s.size, s.type) for s in ovmf.sections] == [
        (0x800000, 0x9000, 1), (0x80A000, 0x3000, 1), (0x80D000, 0x1000, 2),
        (0x80E000, 0x1000, 3), (0x80F000, 0x1000, 4), (0x810000, 0x1000, 0x10),
        (0x811000, 0xF000, 1)]
    assert ovmf.gpa == (1 << 32) - 0x1000
    plain = _firmware(SNPM, OVMFX64)
    assert not plain.has_section(SectionType.SNP_KERNEL_HASHES)


# -- sevctl: LAUNCH_MEASURE = HMAC-SHA256(TIK, 0x04 ‖ api ‖ build ‖ policy ‖ LD ‖ MNONCE) ----


def _measure(tik: bytes, api: tuple[int, int], build: int, policy: int, *, digest: bytes,
             mnonce: bytes) -> str:
    message = bytes([0x04, *api, build]) + struct.pack("<I", policy) + digest + mnonce
    return base64.b64encode(hmac.new(tik, message, hashlib.sha256).digest() + mnonce).decode()


MNONCE = base64.b64decode("wxP6tRHCFrFQWxsuqZA8QA==")


def _sevctl() -> tuple[Path, Ovmf, bytes]:
    folder = corpus_dir(*SEVCTL)
    return folder, parse_ovmf((folder / SEVCTL_OVMF).read_bytes()), (
        folder / "measurement" / "tik1.bin").read_bytes()


def test_sevctl_measure_of_given_digest() -> None:
    """Row 1: the HMAC itself, on the launch digest the vector gives."""
    _, _, tik = _sevctl()
    digest = base64.b64decode("xkvRAfyaSizgonxAjZIAkR8TmolUabBKQKb6KJCDDSM=")
    assert _measure(tik, (1, 40), 40, 0x03, digest=digest, mnonce=MNONCE) == (
        "lswbxWxI9gckya16JQvdFtpYmNO4b+3inAPpqsgoBI7DE/q1EcIWsVBbGy6pkDxA")


def test_sevctl_sev_digest_of_firmware() -> None:
    _, ovmf, tik = _sevctl()
    digest = launch_digest(ovmf, Configuration("sev"))
    assert _measure(tik, (1, 40), 40, 0x03, digest=digest, mnonce=MNONCE) == (
        "oMDewIouJSpbpNRHj7Mk3p08H2dPZQdsZMU14qIymBnDE/q1EcIWsVBbGy6pkDxA")


def test_sevctl_sev_digest_with_kernel() -> None:
    folder, ovmf, tik = _sevctl()
    hashes = KernelHashes.of((folder / "measurement" / "vmlinuz-fake").read_bytes(),
                             (folder / "measurement" / "initrd-fake").read_bytes(),
                             "foo bar baz fake kernel=cmdline")
    digest = launch_digest(ovmf, Configuration("sev", kernel=True), kernel_hashes=hashes)
    assert _measure(tik, (1, 40), 40, 0x03, digest=digest, mnonce=MNONCE) == (
        "h3auYbWQnVW7EGLWN4Hf9SN0oEYMPU2sK4bLnefWPwvDE/q1EcIWsVBbGy6pkDxA")


SEVES_EXPECTED = "/o0nzDKE5XgtVnUZWPhUea/WZYrTKLExR7KCwuMdbActvpWfXTFk21KMZIAAhQny"


def test_sevctl_seves_vector_with_its_vmsa_pages() -> None:
    """Row 4 (SEV-ES, 4 vCPUs), from the captured VMSA pages: OVMF ‖ vmsa0 ‖ 3 × vmsa1."""
    folder, ovmf, _ = _sevctl()
    tik = (folder / "measurement" / "tik1.bin").read_bytes()
    vmsa0, vmsa1 = ((folder / f"vmsa{i}.bin").read_bytes() for i in (0, 1))
    expected = base64.b64decode(SEVES_EXPECTED)
    digest = hashlib.sha256(ovmf.data + vmsa0 + vmsa1 * 3).digest()
    assert _measure(tik, (1, 49), 6, 0x05, digest=digest, mnonce=expected[32:]) == SEVES_EXPECTED


def test_sevctl_vmsa_pages_are_pre_6_10_qemu_pages() -> None:
    """The captured pages are QEMU's from before host kernel 6.10: the guest's vCPU model
    is EPYC-Milan (RDX 0xa00f11) and MXCSR and the x87 FCW are 0 (KVM since 6.10 puts
    0x1F80 and 0x037F there, as sev-snp-measure 0.0.10+ and this engine do). Zeroing those
    two fields in our pages gives the captured pages byte for byte, and the SEV-ES digest
    of them reproduces the vector."""
    folder, ovmf, tik = _sevctl()
    vmsa0, vmsa1 = ((folder / f"vmsa{i}.bin").read_bytes() for i in (0, 1))
    eip = ovmf.ap_reset_eip
    assert eip is not None
    ours = [vmsa_page(e, vcpu_sig=VCPU_TYPES["EPYC-Milan"], sev_features=0)
            for e in (BSP_EIP, eip)]
    differing = [at for at in range(0x1000) if ours[0][at] != vmsa0[at]]
    assert differing == [0x408, 0x409, 0x410, 0x411]
    old = [bytearray(page) for page in ours]
    for page in old:
        page[0x408:0x40C] = bytes(4)
        page[0x410:0x412] = bytes(2)
    assert (bytes(old[0]), bytes(old[1])) == (vmsa0, vmsa1)
    expected = base64.b64decode(SEVES_EXPECTED)
    digest = hashlib.sha256(ovmf.data + bytes(old[0]) + bytes(old[1]) * 3).digest()
    assert _measure(tik, (1, 49), 6, 0x05, digest=digest, mnonce=expected[32:]) == SEVES_EXPECTED


def test_sevctl_naples_vector() -> None:
    """Row 5 (virtee/sev): an all-empty launch digest, SHA-256 of nothing."""
    tik = bytes.fromhex("66320db73158a35a255d051758e95ed4")
    mnonce = bytes.fromhex("4fbe0bedbad6c86ae8f68971d103e554")
    got = base64.b64decode(_measure(tik, (0, 18), 15, 0, digest=hashlib.sha256().digest(),
                                    mnonce=mnonce))
    assert got[:32].hex() == "6faab2daae389bcd3405a05d6cafe33c0414f7bedd0bae19ba5f38b7fd1664ea"


# -- the ID key digest (note §3.7) ----------------------------------------------------------


def test_id_key_digest_matches_sev_snp_measure() -> None:
    ec = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ec")
    id_block = pytest.importorskip("sevsnpmeasure.id_block")
    key = ec.derive_private_key(0x1234567890ABCDEF, ec.SECP384R1())
    blob = sev_public_key_bytes(key.public_key())
    assert blob == id_block.marshal_ec_public_key(key)
    assert id_key_digest(blob) == id_key_digest(key.public_key()) == id_block.pub_to_digest(key)
