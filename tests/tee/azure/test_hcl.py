"""The HCL report layout and its variable data: offsets, the builders' round trip, and a typed
error naming the field for each defect."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization

from veritee.errors import MalformedEvidenceError, UnsupportedVersionError
from veritee.tee.azure import hcl
from veritee.testing.azure import AzureEmulator, ak_key

VAR = hcl.build_var_data(ak_key().public_key(), vm_configuration={"secure-boot": True},
                         user_data=bytes(range(64)))
HW = bytes(range(256)) * 4 + bytes(160)


def test_the_layout_is_azures() -> None:
    assert (hcl.HW_REPORT_OFFSET, hcl.IGVM_OFFSET, hcl.VAR_DATA_OFFSET) == (0x20, 0x4C0, 0x4D4)
    report = hcl.build_hcl_report(HW, VAR, report_type="snp")
    assert report[:4] == b"HCLA" and len(report) == 2600
    assert report[0x20:0x4C0] == HW
    assert struct.unpack_from("<5I", report, 0x4C0)[2:] == (2, 1, len(VAR))
    assert report[0x4D4:0x4D4 + len(VAR)] == VAR


@pytest.mark.parametrize("report_type", ["snp", "tdx"])
def test_parse_round_trips_the_builders(report_type: str) -> None:
    raw = hcl.build_hcl_report(HW, VAR, report_type=report_type)  # type: ignore[arg-type]
    report = hcl.parse_hcl_report(raw)
    assert report.to_bytes() == raw
    assert report.report_type == report_type
    assert report.version == (1 if report_type == "snp" else 2)
    assert report.var_data == VAR and report.hw_report == HW
    assert report.var_data_sha256 == hashlib.sha256(VAR).digest()
    assert report.td_report == HW[:1024]


def test_the_emulators_reports_round_trip() -> None:
    for machine in ("snp", "tdx"):
        raw, _ = AzureEmulator(machine=machine).hcl_report(b"nonce")
        assert hcl.parse_hcl_report(raw).to_bytes() == raw


def test_var_data_gives_the_ak_and_configuration() -> None:
    var = hcl.parse_var_data(VAR)
    expected = ak_key().public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert var.ak_spki == expected
    assert var.key_ids == ("HCLAkPub",)
    assert var.vm_configuration == {"secure-boot": True}
    assert var.user_data == bytes(range(64))
    assert var.ek_spki is None


def _patch(raw: bytes, offset: int, value: int) -> bytes:
    return raw[:offset] + struct.pack("<I", value) + raw[offset + 4:]


BASE = hcl.build_hcl_report(HW, VAR, report_type="snp")

REPORT_DEFECTS: list[tuple[str, Callable[[], bytes], type[Exception], str]] = [
    ("truncated", lambda: BASE[:0x4D0], MalformedEvidenceError, "IgvmRequestData take"),
    ("bad_magic", lambda: b"HCLB" + BASE[4:], MalformedEvidenceError, "signature"),
    ("unknown_version", lambda: _patch(BASE, 4, 9), UnsupportedVersionError, "version is 9"),
    ("unknown_report_type", lambda: _patch(BASE, 0x4C8, 3), MalformedEvidenceError,
     "report_type is 3"),
    ("sha384_hash_type", lambda: _patch(BASE, 0x4CC, 2), UnsupportedVersionError,
     "report_data_hash_type is 2"),
    ("var_data_overruns", lambda: _patch(BASE, 0x4D0, 5000), MalformedEvidenceError,
     "variable_data_size is 5000"),
]


@pytest.mark.parametrize(("name", "build", "error", "text"), REPORT_DEFECTS,
                         ids=[d[0] for d in REPORT_DEFECTS])
def test_report_defects_are_typed(name: str, build: Callable[[], bytes],
                                  error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        hcl.parse_hcl_report(build())


def _var(**document: object) -> bytes:
    base = json.loads(VAR)
    base.update(document)
    return json.dumps(base).encode()


VAR_DEFECTS: list[tuple[str, bytes, str]] = [
    ("not_json", b"{not json", "not UTF-8 JSON"),
    ("not_utf8", b"\xff\xfe", "not UTF-8 JSON"),
    ("an_array", b"[]", "must be a JSON object"),
    ("no_keys", _var(keys=None), "'keys' must be a list"),
    ("no_ak", _var(keys=[{"kid": "HCLEkPub", "kty": "RSA"}]), "no key with kid 'HCLAkPub'"),
    ("ec_ak", _var(keys=[{"kid": "HCLAkPub", "kty": "EC"}]), "kty is 'EC'"),
    ("bad_modulus", _var(keys=[{"kid": "HCLAkPub", "kty": "RSA", "n": "!!", "e": "AQAB"}]),
     "HCLAkPub.n is not base64url"),
    ("tiny_modulus", _var(keys=[{"kid": "HCLAkPub", "kty": "RSA", "n": "AQAB", "e": "AQAB"}]),
     "modulus is 17 bits"),
    ("secure_boot_text", _var(**{"vm-configuration": {"secure-boot": "yes"}}),
     "secure-boot must be a bool"),
    ("vm_unique_id_number", _var(**{"vm-configuration": {"vmUniqueId": 7}}),
     "vmUniqueId must be a str"),
    ("vm_configuration_list", _var(**{"vm-configuration": []}), "must be an object"),
    ("user_data_number", _var(**{"user-data": 5}), "'user-data' must be hex"),
    ("user_data_not_hex", _var(**{"user-data": "zz"}), "'user-data' is not hex"),
    ("deep", b"[" * 100_000, "not UTF-8 JSON"),
]


@pytest.mark.parametrize(("name", "raw", "text"), VAR_DEFECTS, ids=[d[0] for d in VAR_DEFECTS])
def test_var_data_defects_are_malformed(name: str, raw: bytes, text: str) -> None:
    with pytest.raises(MalformedEvidenceError, match=text):
        hcl.parse_var_data(raw)
