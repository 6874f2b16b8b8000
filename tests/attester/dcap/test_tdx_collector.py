"""The TDX collector against fakes: configfs-tsm (an in-memory TsmFs, and a real directory tree
under tmp_path), the sysfs CCEL files, and /dev/tdx_guest (a fake ioctl checking the request
number and the ``tdx_report_req`` packing of linux/tdx-guest.h)."""

from __future__ import annotations

import ctypes
import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import corpus_dir
from support.dcap_quotes import make_quote
from veritee.attester import CollectorError, CollectorUnavailableError
from veritee.attester.dcap import HardwareTdxCollector, TdxCollected, collect_tdx, tdxguest
from veritee.attester.dcap.acpi import LOG_AREA, TABLE
from veritee.attester.dcap.tdx import TSM_REPORTS
from veritee.attester.tsm import OsTsmFs
from veritee.errors import MisuseError
from veritee.tee.dcap import ccel
from veritee.tee.dcap.evidence import decode_dcap_evidence
from veritee.tee.dcap.quote import (
    TdReport,
    pack_fields,
    parse_quote,
)

NONCE = bytes(range(64))


LOG = b"\x00" * 32 + b"a crypto-agile log" + b"\xff" * 64  # opaque to the collector


def ccel_table(cc_type: int = ccel.CC_TYPE_TDX) -> bytes:
    table = bytearray(pack_fields(ccel.CCEL_TABLE, {
        "signature": b"CCEL", "length": ccel.CCEL_SIZE, "revision": 1, "cc_type": cc_type,
        "laml": 0x40000, "lasa": 0xBEDBF000}))
    table[9] = -sum(table) % 256
    return bytes(table)


def sysfs(root: Path, *, table: bytes | None = None, log: bytes | None = None,
          device: bool = False) -> Path:
    """A fake root: the CCEL files and /dev/tdx_guest as asked."""
    for relative, data in ((TABLE, table), (LOG_AREA, log)):
        if data is not None:
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(data)
    if device:
        (root / "dev").mkdir(exist_ok=True)
        (root / tdxguest.DEVICE).write_bytes(b"")
    return root


# -- a fake configfs-tsm kernel with the tdx_guest provider ----------------------------------------


@dataclass
class FakeTsm:
    """configfs-tsm in memory (a TsmFs): outblob is a quote over inblob."""

    root: Path
    quote: Any = None
    """A function from inblob to outblob (default: a TDX quote over it)."""
    provider: str = "tdx_guest"
    outblob_error: int | None = None
    configfs: bool = True
    entries: dict[Path, dict[str, Any]] = field(default_factory=dict)
    removed: int = 0

    @property
    def reports(self) -> Path:
        return self.root / TSM_REPORTS

    def is_dir(self, path: Path) -> bool:
        if not self.configfs:
            return False
        return path in self.entries or path in (self.reports, *self.reports.parents)

    def listdir(self, path: Path) -> list[str]:
        return ["tsm"] if self.configfs and path == self.reports.parent.parent else []

    def mkdir(self, path: Path) -> None:
        assert path.parent == self.reports
        self.entries[path] = {"generation": 0, "inblob": b""}

    def rmdir(self, path: Path) -> None:
        del self.entries[path]
        self.removed += 1

    def read(self, path: Path) -> bytes:
        entry = self.entries[path.parent]
        if path.name == "provider":
            return f"{self.provider}\n".encode()
        if path.name == "generation":
            return f"{entry['generation']}\n".encode()
        if path.name == "outblob":
            if self.outblob_error is not None:
                raise OSError(self.outblob_error, os.strerror(self.outblob_error))
            return bytes(self.quote(entry["inblob"]))
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")  # no auxblob

    def write(self, path: Path, data: bytes) -> None:
        assert path.name == "inblob", "tdx_guest takes no privlevel"
        entry = self.entries[path.parent]
        entry["inblob"], entry["generation"] = data, entry["generation"] + 1


@pytest.fixture
def kernel(tmp_path: Path) -> FakeTsm:
    return FakeTsm(tmp_path, quote=lambda inblob: make_quote(inblob, padding=3065))


def decoded(collected: TdxCollected) -> Any:
    return decode_dcap_evidence(collected.to_json())


def test_collects_the_quote_and_the_ccel(kernel: FakeTsm) -> None:
    sysfs(kernel.root, table=ccel_table(), log=LOG)
    collected = collect_tdx(NONCE, root=kernel.root, fs=kernel)
    assert collected.source == "configfs-tsm"
    assert parse_quote(collected.quote).report_data == NONCE
    assert (collected.cc_eventlog, collected.ccel_table) == (LOG, ccel_table())
    assert kernel.entries == {} and kernel.removed == 1
    evidence = decoded(collected)
    assert (evidence.form, evidence.quote, evidence.cc_eventlog) == ("coco", collected.quote,
                                                                     LOG)
    document = json.loads(collected.to_json())
    assert set(document) == {"cc_eventlog", "quote"}


def test_without_a_ccel_the_event_log_is_null(kernel: FakeTsm) -> None:
    collected = collect_tdx(NONCE, root=kernel.root, fs=kernel)
    assert collected.evidence()["cc_eventlog"] is None
    assert decoded(collected).cc_eventlog is None


@pytest.mark.parametrize(
    ("name", "table", "message"),
    [("neither file", None, r"TABLE and .*LOG_AREA are absent"),
     ("only the table", ccel_table(), r"log area .*LOG_AREA is absent .*CC type 2, log area "
                                      r"262144 bytes at 0xbedbf000"),
     ("a table that does not parse", b"CCEL", "the CCEL table does not parse")],
)
def test_a_required_event_log_says_what_is_missing(kernel: FakeTsm, name: str,
                                                   table: bytes | None, message: str) -> None:
    sysfs(kernel.root, table=table)
    pattern = message.replace("TABLE", str(TABLE)).replace("LOG_AREA", str(LOG_AREA))
    with pytest.raises(CollectorUnavailableError, match=pattern):
        collect_tdx(NONCE, root=kernel.root, fs=kernel, require_eventlog=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_ccel_says_run_as_root(kernel: FakeTsm) -> None:
    sysfs(kernel.root, log=LOG)
    (kernel.root / LOG_AREA).chmod(0)
    with pytest.raises(CollectorError, match="run as root"):
        collect_tdx(NONCE, root=kernel.root, fs=kernel)


# -- what configfs-tsm returned, and why it is refused ---------------------------------------------


@pytest.mark.parametrize(
    ("name", "change", "error", "message"),
    [
        ("another TEE's provider", {"provider": "sev_guest"}, CollectorUnavailableError,
         "provided by 'sev_guest', not 'tdx_guest'"),
        ("no quote from the host", {"outblob_error": errno.EIO}, CollectorError,
         "quote generation service"),
        ("a short quote", {"quote": lambda inblob: b"\x04\x00\x02\x00" + bytes(16)},
         CollectorError, "20 bytes that are not a DCAP quote: quote header is 20 bytes"),
        ("an empty outblob", {"quote": lambda inblob: b""}, CollectorError, "empty outblob"),
        ("an SGX quote", {"quote": lambda inblob: make_quote(inblob, "sgx")}, CollectorError,
         "TEE type 'sgx', not 'tdx'"),
        ("another writer's report data", {"quote": lambda inblob: make_quote(bytes(64))},
         CollectorError,
         f"report data is {bytes(64).hex()}, not the {NONCE.hex()} asked for"),
    ],
)
def test_configfs_tsm_answers_that_are_refused(kernel: FakeTsm, name: str,
                                               change: dict[str, Any], error: type[Exception],
                                               message: str) -> None:
    for key, value in change.items():
        setattr(kernel, key, value)
    with pytest.raises(error, match=message) as info:
        collect_tdx(NONCE, root=kernel.root, fs=kernel)
    assert type(info.value) is error
    assert kernel.entries == {}


@pytest.mark.parametrize(
    ("name", "configfs", "device", "message"),
    [
        ("nothing of TDX", True, False,
         r"not inside a TD: .*tsm/report is absent and so is .*dev/tdx_guest"),
        ("configfs not mounted", False, False, "configfs is not mounted: mount -t configfs none"),
        ("only the TDREPORT device", True, True,
         r"but .*dev/tdx_guest exists: this TD's kernel gives user space TDREPORTs but no "
         "quotes"),
    ],
)
def test_absent_configfs_tsm_says_what_to_do(tmp_path: Path, name: str, configfs: bool,
                                             device: bool, message: str) -> None:
    sysfs(tmp_path, device=device)
    fake = FakeTsm(tmp_path / "elsewhere", configfs=configfs)  # no tsm/report under tmp_path
    with pytest.raises(CollectorUnavailableError, match=message):
        collect_tdx(NONCE, root=tmp_path, fs=fake)


@pytest.mark.parametrize("size", [0, 32, 63, 65])
def test_report_data_of_the_wrong_size_is_misuse(kernel: FakeTsm, size: int) -> None:
    with pytest.raises(MisuseError, match=f"report data is {size} bytes; TDX takes exactly 64") \
            as info:
        collect_tdx(bytes(size), root=kernel.root, fs=kernel)
    assert type(info.value) is MisuseError
    assert kernel.entries == {}


# -- configfs-tsm on a real directory tree ---------------------------------------------------------


class KernelOnDisk(OsTsmFs):
    """OsTsmFs on a tmp_path tree, plus what the tdx_guest provider does behind the files."""

    def __init__(self) -> None:
        self.make_quote = make_quote

    def mkdir(self, path: Path) -> None:
        super().mkdir(path)
        (path / "provider").write_text("tdx_guest\n")
        (path / "generation").write_text("0\n")
        for name in ("inblob", "outblob"):
            (path / name).write_bytes(b"")

    def write(self, path: Path, data: bytes) -> None:
        super().write(path, data)
        generation = path.parent / "generation"
        generation.write_text(f"{int(generation.read_text()) + 1}\n")
        (path.parent / "outblob").write_bytes(make_quote(data))

    def rmdir(self, path: Path) -> None:
        for child in path.iterdir():
            child.unlink()
        super().rmdir(path)


def test_a_directory_tree_through_the_kbs_collector(tmp_path: Path) -> None:
    (tmp_path / TSM_REPORTS).mkdir(parents=True)
    sysfs(tmp_path, table=ccel_table(), log=LOG)
    collector = HardwareTdxCollector(root=tmp_path, fs=KernelOnDisk(),
                                     require_eventlog=True)
    evidence = collector(NONCE)  # what the KBS client sends as the evidence
    assert list((tmp_path / TSM_REPORTS).iterdir()) == []
    got = decode_dcap_evidence(json.dumps({"primary_evidence": evidence}).encode())
    assert parse_quote(got.quote).report_data == NONCE
    assert got.cc_eventlog == LOG


def test_the_corpus_td_quote_and_ccel_as_a_guest_would_send_them(tmp_path: Path) -> None:
    folder = corpus_dir("intel", "go-tdx-guest", "testing", "testdata", "ccel")
    nonce, quote = (folder / "nonce.dat").read_bytes(), (folder / "cos-113-tdx-quote.dat")
    sysfs(tmp_path, table=(folder / "ccel_table.dat").read_bytes(),
          log=(folder / "ccel_data.dat").read_bytes())
    fake = FakeTsm(tmp_path, quote=lambda inblob: quote.read_bytes())
    got = decode_dcap_evidence(collect_tdx(nonce, root=tmp_path, fs=fake).to_json())
    assert got.quote == quote.read_bytes()  # the 8000-byte buffer, padding kept
    assert got.cc_eventlog is not None
    body = parse_quote(got.quote).body
    assert isinstance(body, TdReport)
    ccel.verify_event_log(got.cc_eventlog, body.rtmrs)


# -- /dev/tdx_guest: TDX_CMD_GET_REPORT0 -----------------------------------------------------------


class _UapiReportReq(ctypes.Structure):
    _fields_ = [("reportdata", ctypes.c_uint8 * 64), ("tdreport", ctypes.c_uint8 * 1024)]


def test_uapi_layout_and_ioctl_number() -> None:
    # linux/tdx-guest.h: _IOWR('T', 1, struct tdx_report_req), 64 + 1024 bytes, no padding.
    assert tdxguest.REPORT_REQ.size == ctypes.sizeof(_UapiReportReq) == 1088
    assert _UapiReportReq.tdreport.offset == 64
    assert tdxguest.TDX_CMD_GET_REPORT0 == 0xC4405401


@dataclass
class FakeTdxGuest:
    """The tdx_guest driver as an ``ioctl``: TDG.MR.REPORT over the request's REPORTDATA."""

    fail: int | None = None
    report_type: int = 0x81
    echo: bool = True
    calls: list[int] = field(default_factory=list)

    def __call__(self, fd: int, request: int, arg: bytearray) -> int:
        assert isinstance(arg, bytearray) and len(arg) == 1088
        self.calls.append(request)
        if request != tdxguest.TDX_CMD_GET_REPORT0:
            raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
        if self.fail is not None:
            raise OSError(self.fail, os.strerror(self.fail))
        report = bytearray(1024)
        report[0] = self.report_type
        report[128:192] = arg[:64] if self.echo else bytes(64)
        report[512:520] = b"TDINFO.."
        arg[64:] = report
        return 0


@pytest.fixture
def device(tmp_path: Path) -> Path:
    return sysfs(tmp_path, device=True) / tdxguest.DEVICE


def test_td_report_from_the_device(device: Path) -> None:
    fake = FakeTdxGuest()
    report = tdxguest.td_report(NONCE, device=device, ioctl=fake)
    assert len(report) == 1024 and report[128:192] == NONCE and report[512:520] == b"TDINFO.."
    assert fake.calls == [0xC4405401]


def test_td_report_through_the_collector(tmp_path: Path) -> None:
    collector = HardwareTdxCollector(root=sysfs(tmp_path, device=True), ioctl=FakeTdxGuest())
    assert collector.td_report(NONCE)[128:192] == NONCE


@pytest.mark.parametrize(
    ("name", "fake", "error", "message"),
    [
        ("TDCALL fails", FakeTdxGuest(fail=errno.EIO), CollectorError,
         r"TDX_CMD_GET_REPORT0 on .* failed: .*errno 5; EIO"),
        ("bad operands", FakeTdxGuest(fail=errno.EINVAL), CollectorError, "errno 22"),
        ("not the TDX device", FakeTdxGuest(fail=errno.ENOTTY), CollectorUnavailableError,
         "not the upstream TDX guest device"),
        ("not a TDREPORT", FakeTdxGuest(report_type=0), CollectorError,
         "report of type 0x00, not a TDREPORT"),
        ("other REPORTDATA", FakeTdxGuest(echo=False), CollectorError, "not the .* asked for"),
    ],
)
def test_td_report_errors(device: Path, name: str, fake: FakeTdxGuest, error: type[Exception],
                          message: str) -> None:
    with pytest.raises(error, match=message) as info:
        tdxguest.td_report(NONCE, device=device, ioctl=fake)
    assert type(info.value) is error


def test_absent_device_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(CollectorUnavailableError, match=r"is absent: .*modprobe tdx_guest"):
        tdxguest.td_report(NONCE, device=tmp_path / tdxguest.DEVICE, ioctl=FakeTdxGuest())


@pytest.mark.skipif(os.geteuid() == 0, reason="root opens every file")
def test_device_permission_denied_says_run_as_root(device: Path) -> None:
    device.chmod(0o400)
    with pytest.raises(CollectorError, match="run as root"):
        tdxguest.td_report(NONCE, device=device, ioctl=FakeTdxGuest())


def test_td_report_refuses_report_data_of_the_wrong_size(device: Path) -> None:
    fake = FakeTdxGuest()
    with pytest.raises(MisuseError, match="report data is 48 bytes"):
        tdxguest.td_report(bytes(48), device=device, ioctl=fake)
    assert fake.calls == []
