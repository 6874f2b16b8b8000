"""The SGX collector against fakes: a Gramine ``/dev/attestation`` tree of plain files, and
Occlum's ``/dev/sgx`` behind a fake ioctl that checks the request numbers and reads and writes
the very buffers ``sgxioc_gen_dcap_quote_arg_t`` points at."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support.dcap_quotes import make_quote
from veritee.attester import CollectorError, CollectorUnavailableError
from veritee.attester.dcap import HardwareSgxCollector, collect_sgx, gramine, occlum
from veritee.errors import MisuseError
from veritee.tee.dcap.evidence import decode_dcap_evidence
from veritee.tee.dcap.quote import (
    parse_quote,
)

NONCE = bytes(range(64))


def gramine_tree(root: Path, quote: bytes, kind: str = "dcap") -> Path:
    """Gramine's pseudo-files as plain files; ``quote`` is what reading ``quote`` returns."""
    folder = root / gramine.ATTESTATION
    folder.mkdir(parents=True)
    (folder / "attestation_type").write_text(kind)
    (folder / "user_report_data").write_bytes(bytes(64))
    (folder / "quote").write_bytes(quote)
    return folder


# -- Gramine ---------------------------------------------------------------------------------------


def test_gramine_writes_the_report_data_then_reads_the_quote(tmp_path: Path) -> None:
    folder = gramine_tree(tmp_path, make_quote(NONCE, "sgx"))
    collected = collect_sgx(NONCE, root=tmp_path)
    assert collected.source == "gramine"
    assert (folder / "user_report_data").read_bytes() == NONCE
    got = decode_dcap_evidence(collected.to_json())
    assert (got.form, got.quote) == ("coco", make_quote(NONCE, "sgx"))
    assert json.loads(collected.to_json()) == collected.evidence()
    assert set(collected.evidence()) == {"quote"}


@pytest.mark.parametrize("kind", ["none", "epid", ""])
def test_gramine_without_dcap_says_set_the_manifest(tmp_path: Path,
                                                    kind: str) -> None:
    folder = gramine_tree(tmp_path, make_quote(NONCE, "sgx"), kind)
    with pytest.raises(CollectorUnavailableError,
                       match=f"attestation type is '{kind}'.*sgx.remote_attestation = \"dcap\""):
        collect_sgx(NONCE, root=tmp_path)
    assert (folder / "user_report_data").read_bytes() == bytes(64)  # nothing written


@pytest.mark.parametrize(
    ("name", "quote", "message"),
    [
        ("a stale quote", "stale", f"report data is {bytes(64).hex()}, not the {NONCE.hex()}"),
        ("a TDX quote", "tdx", "TEE type 'tdx', not 'sgx'"),
        ("a short quote", "short", "30 bytes that are not a DCAP quote"),
        ("no quote", "empty", "0 bytes that are not a DCAP quote"),
    ],
)
def test_gramine_answers_that_are_refused(tmp_path: Path, name: str,
                                          quote: str, message: str) -> None:
    data = {"stale": make_quote(bytes(64), "sgx"), "tdx": make_quote(NONCE, "tdx"),
            "short": b"\x03\x00\x02\x00" + bytes(26), "empty": b""}[quote]
    gramine_tree(tmp_path, data)
    with pytest.raises(CollectorError, match=message) as info:
        collect_sgx(NONCE, root=tmp_path)
    assert type(info.value) is CollectorError


def test_gramine_pseudo_file_errors(tmp_path: Path) -> None:
    folder = gramine_tree(tmp_path, make_quote(NONCE, "sgx"))
    (folder / "quote").unlink()
    with pytest.raises(CollectorError, match=r"reading .*quote: .*AESM"):
        collect_sgx(NONCE, root=tmp_path)
    (folder / "user_report_data").unlink()
    with pytest.raises(CollectorError, match=r"writing .*user_report_data"):
        collect_sgx(NONCE, root=tmp_path)


def test_gramine_is_chosen_before_occlum(tmp_path: Path) -> None:
    gramine_tree(tmp_path, make_quote(NONCE, "sgx"))
    (tmp_path / occlum.DEVICE).write_bytes(b"")
    fake = FakeOcclum()
    assert collect_sgx(NONCE, root=tmp_path, ioctl=fake).source == "gramine"
    assert fake.calls == []


# -- Occlum's /dev/sgx -----------------------------------------------------------------------------


class _GenQuoteArg(ctypes.Structure):
    _fields_ = [("report_data", ctypes.c_void_p), ("quote_len", ctypes.c_void_p),
                ("quote_buf", ctypes.c_void_p)]


def test_occlum_layout_and_ioctl_numbers() -> None:
    # dcap.h: _IOR('s', 7, uint32_t) and _IOWR('s', 8, sgxioc_gen_dcap_quote_arg_t); the
    # same numbers Occlum's Rust bindings spell out.
    assert occlum.GEN_QUOTE_ARG.size == ctypes.sizeof(_GenQuoteArg) == 24
    assert _GenQuoteArg.quote_buf.offset == 16
    assert occlum.SGXIOC_GET_DCAP_QUOTE_SIZE == 0x80047307
    assert occlum.SGXIOC_GEN_DCAP_QUOTE == 0xC0187308


@dataclass
class FakeOcclum:
    """Occlum's /dev/sgx DCAP commands, as an ``ioctl``."""

    padding: int = 0
    size_error: int | None = None
    gen_error: int | None = None
    size: int | None = None
    writes_length: int | None = None
    report_data: bytes | None = None
    calls: list[int] = field(default_factory=list)

    def quote(self, report_data: bytes) -> bytes:
        return bytes(make_quote(report_data, "sgx", padding=self.padding))

    def __call__(self, fd: int, request: int, arg: bytearray) -> int:
        self.calls.append(request)
        if request == occlum.SGXIOC_GET_DCAP_QUOTE_SIZE:
            assert len(arg) == 4
            if self.size_error is not None:
                raise OSError(self.size_error, os.strerror(self.size_error))
            size = len(self.quote(NONCE)) if self.size is None else self.size
            struct.pack_into("<I", arg, 0, size)
            return 0
        assert request == occlum.SGXIOC_GEN_DCAP_QUOTE and len(arg) == 24
        if self.gen_error is not None:
            raise OSError(self.gen_error, os.strerror(self.gen_error))
        data_at, length_at, buffer_at = struct.unpack("<QQQ", arg)
        self.report_data = ctypes.string_at(data_at, 64)
        length = ctypes.c_uint32.from_address(length_at)
        quote = self.quote(self.report_data)
        if length.value < len(quote):
            raise OSError(errno.EINVAL, "provided quote is too small")
        ctypes.memmove(buffer_at, quote, len(quote))
        if self.writes_length is not None:
            length.value = self.writes_length
        return 0


@pytest.fixture
def libos(tmp_path: Path) -> Path:
    (tmp_path / "dev").mkdir()
    (tmp_path / occlum.DEVICE).write_bytes(b"")
    return tmp_path


@pytest.mark.parametrize("padding", [0, 100])
def test_occlum_asks_the_size_then_the_quote(libos: Path,
                                             padding: int) -> None:
    fake = FakeOcclum(padding=padding)
    collected = HardwareSgxCollector(root=libos, ioctl=fake).collect(NONCE)
    assert collected.source == "occlum"
    assert fake.calls == [0x80047307, 0xC0187308] and fake.report_data == NONCE
    assert collected.quote == make_quote(NONCE, "sgx", padding=padding)
    assert parse_quote(collected.quote).trailing_bytes == padding


def test_occlum_quote_length_written_back_is_used(libos: Path) -> None:
    exact = len(make_quote(NONCE, "sgx"))
    fake = FakeOcclum(padding=50, writes_length=exact)
    assert collect_sgx(NONCE, root=libos, ioctl=fake).quote == make_quote(NONCE, "sgx")


@pytest.mark.parametrize(
    ("name", "change", "error", "message"),
    [
        ("no DCAP support", {"size_error": errno.ENOSYS}, CollectorUnavailableError,
         "does not answer SGXIOC_GET_DCAP_QUOTE_SIZE .*built without DCAP support"),
        ("generator not ready", {"gen_error": errno.EIO}, CollectorError,
         r"SGXIOC_GEN_DCAP_QUOTE on .* failed: .*errno 5; EIO"),
        ("size zero", {"size": 0}, CollectorError, "says a quote is 0 bytes"),
        ("size too large", {"size": 1 << 21}, CollectorError, "says a quote is 2097152 bytes"),
        ("buffer too small", {"size": 100}, CollectorError, "errno 22"),
        ("impossible length", {"writes_length": 1 << 16}, CollectorError,
         "says it wrote 65536 bytes into a"),
        ("a short quote", {"writes_length": 40}, CollectorError,
         "40 bytes that are not a DCAP quote"),
    ],
)
def test_occlum_errors(libos: Path, name: str, change: dict[str, Any],
                       error: type[Exception], message: str) -> None:
    fake = FakeOcclum(**change)
    with pytest.raises(error, match=message) as info:
        collect_sgx(NONCE, root=libos, ioctl=fake)
    assert type(info.value) is error


def test_an_sgx_host_is_not_an_enclave(tmp_path: Path) -> None:
    (tmp_path / "dev/sgx").mkdir(parents=True)  # the older DCAP driver's device folder
    with pytest.raises(CollectorUnavailableError, match=r"is a folder .*runs on an SGX host"):
        collect_sgx(NONCE, root=tmp_path, ioctl=FakeOcclum())


@pytest.mark.parametrize("host", [False, True])
def test_no_libos_names_both_paths(tmp_path: Path, host: bool) -> None:
    (tmp_path / "dev").mkdir()
    if host:
        (tmp_path / "dev/sgx_enclave").write_bytes(b"")
    with pytest.raises(CollectorUnavailableError) as info:
        collect_sgx(NONCE, root=tmp_path)
    detail = info.value.detail
    assert f"{tmp_path}/dev/attestation/attestation_type (Gramine)" in detail
    assert f"{tmp_path}/dev/sgx (Occlum, enclave-cc) are absent" in detail
    assert ("runs on an SGX host" in detail) is host


# -- the KBS client's view -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 32, 65])
def test_report_data_of_the_wrong_size_is_misuse(libos: Path,
                                                 size: int) -> None:
    fake = FakeOcclum()
    for call in (lambda: collect_sgx(bytes(size), root=libos, ioctl=fake),
                 lambda: occlum.occlum_quote(bytes(size), device=libos / occlum.DEVICE,
                                             ioctl=fake),
                 lambda: gramine.gramine_quote(bytes(size), root=libos)):
        with pytest.raises(MisuseError, match=f"report data is {size} bytes; SGX takes") \
                as info:
            call()
        assert type(info.value) is MisuseError
    assert fake.calls == []


def test_collectors_are_kbs_client_collectors(libos: Path) -> None:
    evidence = HardwareSgxCollector(root=libos, ioctl=FakeOcclum())(NONCE)
    got = decode_dcap_evidence(json.dumps({"primary_evidence": evidence}).encode())
    assert parse_quote(got.quote).report_data == NONCE
    assert parse_quote(got.quote).tee == "sgx"
