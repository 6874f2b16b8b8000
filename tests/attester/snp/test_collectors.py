"""The SNP evidence collectors against fake kernels: configfs-tsm (an in-memory TsmFs and a
real directory tree in tmp_path) and /dev/sev-guest (a fake ioctl that reads and writes the
very buffers the uapi structures point at)."""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
import struct
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from veritee.attester import CollectorError, CollectorUnavailableError
from veritee.attester.snp import (
    EmulatedSnpCollector,
    HardwareSnpCollector,
    SnpCollected,
    collect_snp,
    sevguest,
)
from veritee.attester.tsm import OsTsmFs, tsm_report
from veritee.collateral import CollateralSource
from veritee.errors import MisuseError
from veritee.evidence import decode_evidence
from veritee.tee import get_verifier
from veritee.tee.snp import certtable
from veritee.testing.snp import FakeKds, SnpEmulator

NONCE = bytes(range(64))


@functools.cache
def emulator(product: str = "genoa") -> SnpEmulator:
    return SnpEmulator(product=product)  # type: ignore[arg-type]


def verified(collected: SnpCollected, *, fetcher: Any = None) -> dict[str, Any]:
    claims = get_verifier("snp", trust_emulated=True).verify(
        decode_evidence(collected.to_json()), report_data=NONCE,
        collateral=CollateralSource(fetcher=fetcher), now=emulator().now)
    return claims.to_dict()


# -- a fake configfs-tsm kernel ------------------------------------------------------------------


@dataclass
class FakeTsmKernel:
    """configfs-tsm as the kernel behaves, in memory (a :class:`TsmFs`)."""

    root: Path
    emu: SnpEmulator = field(default_factory=emulator)
    provider: str = "sev_guest"
    interfere: int = 0
    """How many outblob reads another writer spoils (it writes its own inblob first)."""
    denied: bool = False
    auxblob: bool = True
    privlevel_floor: int = 0
    wrong_report_data: bool = False
    entries: dict[Path, dict[str, Any]] = field(default_factory=dict)
    removed: list[Path] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def is_dir(self, path: Path) -> bool:
        return path in self.entries or path in (self.root, *self.root.parents)

    def listdir(self, path: Path) -> list[str]:
        return [p.name for p in self.entries if p.parent == path]

    def mkdir(self, path: Path) -> None:
        if self.denied:
            raise PermissionError(errno.EACCES, "Permission denied")
        if path.parent != self.root:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory")
        if path in self.entries:
            raise FileExistsError(errno.EEXIST, "File exists")
        self.entries[path] = {"generation": 0, "inblob": b""}
        self.log.append("mkdir")

    def rmdir(self, path: Path) -> None:
        del self.entries[path]
        self.removed.append(path)

    def read(self, path: Path) -> bytes:
        entry = self._entry(path)
        self.log.append(f"read {path.name}")
        if path.name == "provider":
            return f"{self.provider}\n".encode()
        if path.name == "generation":
            return f"{entry['generation']}\n".encode()
        if path.name == "outblob":
            if self.interfere:
                self.interfere -= 1
                entry["inblob"], entry["generation"] = b"\xee" * 64, entry["generation"] + 1
            data = entry["inblob"]
            if self.wrong_report_data:
                data = bytes(64)
            return self.emu.report(data.ljust(64, b"\x00"))
        if path.name == "auxblob" and self.auxblob:
            return self.emu.cert_table()
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")

    def write(self, path: Path, data: bytes) -> None:
        entry = self._entry(path)
        self.log.append(f"write {path.name}")
        if path.name == "privlevel" and int(data) < self.privlevel_floor:
            raise OSError(errno.EINVAL, "Invalid argument")
        if path.name not in ("inblob", "privlevel"):
            raise PermissionError(errno.EACCES, "Permission denied")
        entry[path.name] = data
        entry["generation"] += 1

    def _entry(self, path: Path) -> dict[str, Any]:
        entry = self.entries.get(path.parent)
        if entry is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory")
        return entry


ROOT = Path("/sys/kernel/config/tsm/report")


def test_tsm_report_writes_reads_checks_generation_and_removes_the_entry() -> None:
    kernel = FakeTsmKernel(ROOT)
    report = tsm_report(NONCE, root=ROOT, fs=kernel, provider="sev_guest", privlevel=1)
    assert report.provider == "sev_guest"
    assert report.outblob[0x50:0x90] == NONCE
    assert report.auxblob == kernel.emu.cert_table()
    assert report.generation == 2
    assert kernel.log == ["mkdir", "read provider", "read generation", "write inblob",
                          "write privlevel", "read outblob", "read auxblob", "read generation"]
    assert kernel.entries == {} and len(kernel.removed) == 1
    assert kernel.removed[0].parent == ROOT and kernel.removed[0].name.startswith("veritee-")


@pytest.mark.parametrize("spoiled", [1, 2])
def test_tsm_report_retries_when_another_writer_interferes(spoiled: int) -> None:
    kernel = FakeTsmKernel(ROOT, interfere=spoiled)
    report = tsm_report(NONCE, root=ROOT, fs=kernel, provider="sev_guest")
    assert report.outblob[0x50:0x90] == NONCE
    assert kernel.log.count("write inblob") == spoiled + 1
    assert kernel.entries == {}


def test_tsm_report_gives_up_after_its_attempts() -> None:
    kernel = FakeTsmKernel(ROOT, interfere=3)
    with pytest.raises(CollectorError, match="generation kept changing during 3 attempts"):
        tsm_report(NONCE, root=ROOT, fs=kernel, attempts=3)
    assert kernel.entries == {}


@pytest.mark.parametrize(
    ("name", "kernel", "call", "error", "message"),
    [
        ("permission denied", FakeTsmKernel(ROOT, denied=True), {}, CollectorError,
         "run as root"),
        ("another TEE", FakeTsmKernel(ROOT, provider="tdx_guest"), {"provider": "sev_guest"},
         CollectorUnavailableError, "provided by 'tdx_guest'"),
        ("privlevel below the floor", FakeTsmKernel(ROOT, privlevel_floor=2),
         {"privlevel": 1}, CollectorError, "privlevel_floor"),
        ("inblob too long", FakeTsmKernel(ROOT), {"inblob": bytes(65)}, CollectorError,
         "at most 64"),
        ("not mounted", FakeTsmKernel(Path("/elsewhere/a/b")), {}, CollectorUnavailableError,
         "not mounted"),
    ],
)
def test_tsm_report_errors(name: str, kernel: FakeTsmKernel, call: dict[str, Any],
                           error: type[Exception], message: str) -> None:
    inblob = call.pop("inblob", NONCE)
    with pytest.raises(error, match=message):
        tsm_report(inblob, root=ROOT, fs=kernel, **call)
    assert kernel.entries == {}


# -- configfs-tsm on a real directory tree -----------------------------------------------------


class KernelOnDisk(OsTsmFs):
    """OsTsmFs on a tmp_path tree, plus what the kernel does behind the files."""

    def __init__(self, emu: SnpEmulator) -> None:
        self.emu = emu

    def mkdir(self, path: Path) -> None:
        super().mkdir(path)  # the kernel creates every attribute with the entry
        (path / "provider").write_text("sev_guest\n")
        (path / "generation").write_text("0\n")
        for name in ("inblob", "privlevel", "outblob", "auxblob"):
            (path / name).write_bytes(b"")

    def write(self, path: Path, data: bytes) -> None:
        super().write(path, data)
        generation = path.parent / "generation"
        generation.write_text(f"{int(generation.read_text()) + 1}\n")
        inblob = (path.parent / "inblob").read_bytes()
        (path.parent / "outblob").write_bytes(self.emu.report(inblob))
        (path.parent / "auxblob").write_bytes(self.emu.cert_table())

    def rmdir(self, path: Path) -> None:
        for child in path.iterdir():
            child.unlink()
        super().rmdir(path)


def test_configfs_tsm_on_a_directory_tree(tmp_path: Path) -> None:
    root = tmp_path / "sys/kernel/config/tsm/report"
    root.mkdir(parents=True)
    collected = collect_snp(NONCE, tsm_root=root, device=tmp_path / "no-device",
                            fs=KernelOnDisk(emulator()), privlevel=0)
    assert collected.source == "configfs-tsm"
    assert list(root.iterdir()) == []
    claims = verified(collected)
    assert (claims["product"], claims["report_data"]) == ("genoa", NONCE.hex())


@pytest.mark.parametrize(
    ("name", "layout", "message"),
    [
        ("configfs not mounted", [], "configfs-tsm is not mounted at .*mount -t configfs none"),
        ("no tsm in configfs", ["sys/kernel/config/usb_gadget"], "lacks CONFIG_TSM_REPORTS"),
    ],
)
def test_missing_configfs_tsm_says_what_to_do(tmp_path: Path, name: str, layout: list[str],
                                              message: str) -> None:
    (tmp_path / "sys/kernel/config").mkdir(parents=True)
    for folder in layout:
        (tmp_path / folder).mkdir(parents=True)
    with pytest.raises(CollectorUnavailableError, match=message):
        tsm_report(NONCE, root=tmp_path / "sys/kernel/config/tsm/report")


# -- a fake /dev/sev-guest -----------------------------------------------------------------------


@dataclass
class FakeSevGuest:
    """The sev-guest driver and the firmware behind it, as an ``ioctl`` function."""

    emu: SnpEmulator = field(default_factory=emulator)
    extra_cert_bytes: int = 0
    status: int = 0
    fail: int | None = None
    exitinfo2: tuple[int, int] = (0, 0)
    calls: list[tuple[int, int]] = field(default_factory=list)

    def table(self) -> bytes:
        entries = [(certtable.GUID_ARK, self.emu.chain["ark"]),
                   (certtable.GUID_ASK, self.emu.chain["ask"]),
                   (certtable.GUID_VCEK, self.emu.chain["vek"])]
        if self.extra_cert_bytes:
            entries.append((uuid.UUID(int=7), b"\x01" * self.extra_cert_bytes))
        return certtable.build_cert_table(entries)

    def __call__(self, fd: int, request: int, arg: bytearray) -> int:
        version, req_addr, resp_addr, _ = sevguest.GUEST_REQUEST.unpack(arg)
        assert version == 1 and len(arg) == 32
        if self.fail is not None:
            struct.pack_into("<II", arg, 24, *self.exitinfo2)
            raise OSError(self.fail, os.strerror(self.fail))
        if request == sevguest.SNP_GET_EXT_REPORT:
            raw = ctypes.string_at(req_addr, sevguest.EXT_REPORT_REQ.size)
            user_data, vmpl, certs_addr, certs_len = sevguest.EXT_REPORT_REQ.unpack(raw)
            table = self.table()
            self.calls.append((request, certs_len))
            if certs_len < len(table):
                needed = -(-len(table) // 4096) * 4096
                ctypes.memmove(req_addr + 104, struct.pack("<I", needed), 4)
                struct.pack_into("<II", arg, 24, 0, sevguest.VMM_ERR_INVALID_LEN)
                raise OSError(errno.EIO, "Input/output error")
            ctypes.memmove(certs_addr, table, len(table))
        elif request == sevguest.SNP_GET_REPORT:
            raw = ctypes.string_at(req_addr, sevguest.REPORT_REQ.size)
            user_data, vmpl = sevguest.REPORT_REQ.unpack(raw)
            self.calls.append((request, 0))
        else:
            raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
        assert vmpl in (0, 1, 2, 3)
        response = sevguest.MSG_REPORT_RSP.pack(self.status, 1184) + self.emu.report(user_data)
        ctypes.memmove(resp_addr, response, len(response))
        return 0


@pytest.fixture
def device(tmp_path: Path) -> Path:
    path = tmp_path / "sev-guest"
    path.write_bytes(b"")
    return path


class _UapiGuestRequest(ctypes.Structure):
    _fields_ = [("msg_version", ctypes.c_uint8), ("req_data", ctypes.c_uint64),
                ("resp_data", ctypes.c_uint64), ("exitinfo2", ctypes.c_uint64)]


class _UapiReportReq(ctypes.Structure):
    _fields_ = [("user_data", ctypes.c_uint8 * 64), ("vmpl", ctypes.c_uint32),
                ("rsvd", ctypes.c_uint8 * 28)]


class _UapiExtReportReq(ctypes.Structure):
    _fields_ = [("data", _UapiReportReq), ("certs_address", ctypes.c_uint64),
                ("certs_len", ctypes.c_uint32)]


def test_uapi_layouts_and_ioctl_numbers() -> None:
    # The struct formats equal the C layouts (natural alignment) of linux/sev-guest.h.
    assert sevguest.GUEST_REQUEST.size == ctypes.sizeof(_UapiGuestRequest) == 32
    assert _UapiGuestRequest.req_data.offset == 8
    assert _UapiGuestRequest.exitinfo2.offset == 24
    assert sevguest.REPORT_REQ.size == ctypes.sizeof(_UapiReportReq) == 96
    assert sevguest.EXT_REPORT_REQ.size == ctypes.sizeof(_UapiExtReportReq) == 112
    assert _UapiExtReportReq.certs_address.offset == 96
    assert _UapiExtReportReq.certs_len.offset == 104
    assert sevguest.SNP_GET_REPORT == 0xC0205300
    assert sevguest.SNP_GET_EXT_REPORT == 0xC0205302


def test_extended_report_from_the_device(device: Path) -> None:
    fake = FakeSevGuest()
    got = sevguest.sev_guest_report(NONCE, device=device, ioctl=fake)
    assert got.report[0x50:0x90] == NONCE
    assert got.cert_table == fake.table()  # the zero tail of the buffer is cut off
    assert fake.calls == [(sevguest.SNP_GET_EXT_REPORT, sevguest.MAX_CERTS_LEN)]


def test_extended_report_grows_the_certificate_buffer(device: Path) -> None:
    fake = FakeSevGuest(extra_cert_bytes=20_000)
    got = sevguest.sev_guest_report(NONCE, device=device, ioctl=fake)
    assert got.cert_table == fake.table()
    assert [length for _, length in fake.calls] == [16384, 28672]


def test_plain_report_from_the_device(device: Path) -> None:
    fake = FakeSevGuest()
    got = sevguest.sev_guest_report(NONCE, device=device, ioctl=fake, extended=False, vmpl=2)
    assert got.cert_table == b""
    assert got.report[0x50:0x90] == NONCE
    assert fake.calls == [(sevguest.SNP_GET_REPORT, 0)]


@pytest.mark.parametrize(
    ("name", "fake", "error", "message"),
    [
        ("firmware refuses", FakeSevGuest(status=0x16), CollectorError, "status 0x16"),
        ("driver fails", FakeSevGuest(fail=errno.EIO, exitinfo2=(0x16, 0)), CollectorError,
         r"errno 5\), firmware error 0x16, VMM error 0x0"),
        ("busy host", FakeSevGuest(fail=errno.EAGAIN, exitinfo2=(0, 2)), CollectorError,
         "VMM error 0x2"),
        ("not the SNP device", FakeSevGuest(fail=errno.ENOTTY), CollectorUnavailableError,
         "not the SEV-SNP guest device"),
    ],
)
def test_device_errors(device: Path, name: str, fake: FakeSevGuest, error: type[Exception],
                       message: str) -> None:
    with pytest.raises(error, match=message):
        sevguest.sev_guest_report(NONCE, device=device, ioctl=fake)


def test_absent_device_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(CollectorUnavailableError,
                       match="is absent: this is not an SEV-SNP guest or the sev-guest module"):
        sevguest.sev_guest_report(NONCE, device=tmp_path / "sev-guest", ioctl=FakeSevGuest())


@pytest.mark.skipif(os.geteuid() == 0, reason="root opens every file")
def test_device_permission_denied_says_run_as_root(device: Path) -> None:
    device.chmod(0o400)
    with pytest.raises(CollectorError, match="run as root"):
        sevguest.sev_guest_report(NONCE, device=device, ioctl=FakeSevGuest())


@pytest.mark.parametrize(("data", "vmpl"), [(bytes(63), 0), (bytes(65), 0), (NONCE, 4)])
def test_device_refuses_bad_arguments(device: Path, data: bytes, vmpl: int) -> None:
    with pytest.raises(CollectorError):
        sevguest.sev_guest_report(data, device=device, vmpl=vmpl, ioctl=FakeSevGuest())


def test_device_collected_evidence_verifies(device: Path) -> None:
    collected = collect_snp(NONCE, tsm_root=Path("/nonexistent/tsm/report"), device=device,
                            fs=FakeTsmKernel(Path("/nowhere/x/y")), ioctl=FakeSevGuest())
    assert collected.source == "sev-guest"
    assert verified(collected)["report_data"] == NONCE.hex()


# -- collect_snp: which interface, and what comes out ----------------------------------------------


def test_configfs_tsm_is_preferred(device: Path) -> None:
    fake = FakeSevGuest()
    collected = collect_snp(NONCE, tsm_root=ROOT, device=device, fs=FakeTsmKernel(ROOT),
                            ioctl=fake)
    assert collected.source == "configfs-tsm"
    assert fake.calls == []


@pytest.mark.parametrize(
    ("name", "kernel"),
    [("configfs-tsm absent", FakeTsmKernel(Path("/elsewhere/x/y"))),
     ("configfs-tsm of another TEE", FakeTsmKernel(ROOT, provider="tdx_guest")),
     ("configfs-tsm not permitted", FakeTsmKernel(ROOT, denied=True))],
)
def test_falls_back_to_the_device(device: Path, name: str, kernel: FakeTsmKernel) -> None:
    collected = collect_snp(NONCE, tsm_root=ROOT, device=device, fs=kernel,
                            ioctl=FakeSevGuest())
    assert collected.source == "sev-guest"


def test_neither_interface_names_both(tmp_path: Path) -> None:
    with pytest.raises(CollectorUnavailableError) as info:
        collect_snp(NONCE, tsm_root=tmp_path / "sys/kernel/config/tsm/report",
                    device=tmp_path / "sev-guest")
    assert "configfs-tsm is not mounted" in info.value.detail
    assert "sev-guest is absent" in info.value.detail
    assert isinstance(info.value, MisuseError)


def test_one_refusal_and_one_absence_is_a_collector_error(tmp_path: Path) -> None:
    with pytest.raises(CollectorError) as info:
        collect_snp(NONCE, tsm_root=ROOT, device=tmp_path / "sev-guest",
                    fs=FakeTsmKernel(ROOT, denied=True))
    assert type(info.value) is CollectorError
    assert "run as root" in info.value.detail and "sev-guest is absent" in info.value.detail


def test_a_report_over_other_data_is_refused(device: Path) -> None:
    with pytest.raises(CollectorError, match=r"not the .* asked for"):
        collect_snp(NONCE, tsm_root=ROOT, device=device,
                    fs=FakeTsmKernel(ROOT, wrong_report_data=True))


@pytest.mark.parametrize(("data", "privlevel"), [(bytes(32), None), (bytes(65), None),
                                                 (NONCE, 4), (NONCE, -1)])
def test_collect_snp_refuses_bad_arguments(data: bytes, privlevel: int | None) -> None:
    with pytest.raises(MisuseError):
        collect_snp(data, privlevel=privlevel, fs=FakeTsmKernel(ROOT))


def test_without_host_certificates_the_vcek_comes_from_kds(device: Path) -> None:
    kernel = FakeTsmKernel(ROOT, auxblob=False)
    collected = collect_snp(NONCE, tsm_root=ROOT, device=device, fs=kernel)
    assert collected.cert_table == b""
    assert "auxblob" not in collected.evidence()
    kds = FakeKds()
    kds.add(emulator())
    assert verified(collected, fetcher=kds)["product"] == "genoa"
    vcek = [url for url in kds.requests if "/vcek/v1/Genoa/" in url and not url.endswith("/crl")]
    assert len(vcek) == 1 and "blSPL=" in vcek[0]
    assert set(kds.requests) - set(vcek) <= {"https://kdsintf.amd.com/vcek/v1/Genoa/crl"}


def test_collected_forms() -> None:
    collected = EmulatedSnpCollector(emulator("turin")).collect(NONCE)
    assert collected.source == "emulated"
    document = json.loads(collected.to_json())
    assert document == collected.evidence()
    assert set(document) == {"outblob", "auxblob", "provider"}
    assert document["provider"] == "sev_guest"
    assert collected.extended_report() == collected.report + collected.cert_table
    for blob in (collected.to_json(), collected.extended_report()):
        claims = get_verifier("snp", trust_emulated=True).verify(
            decode_evidence(blob), report_data=NONCE, collateral=CollateralSource(),
            now=emulator("turin").now)
        assert claims.to_dict()["product"] == "turin"


def test_collectors_are_kbs_client_collectors(device: Path) -> None:
    # KbsClient takes a function from the report data to the primary evidence JSON.
    emulated = EmulatedSnpCollector()
    hardware = HardwareSnpCollector(tsm_root=ROOT, device=device, fs=FakeTsmKernel(ROOT))
    for collector in (emulated, hardware):
        evidence = collector(NONCE)
        claims = get_verifier("snp", trust_emulated=True).verify(
            decode_evidence(json.dumps({"primary_evidence": evidence}).encode()),
            report_data=NONCE, collateral=CollateralSource(), now=emulator().now)
        assert claims.to_dict()["report_data"] == NONCE.hex()
    with pytest.raises(MisuseError):
        emulated(bytes(10))
