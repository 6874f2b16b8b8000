"""Trustee's Azure vTPM evidence JSON, v0, v1 and v2, for SNP and TDX machines: recognised by
content, and each defect a typed error that names what is wrong."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from typing import Any

import pytest

from veritee.errors import (
    MalformedEvidenceError,
    UnrecognizedEvidenceError,
    UnsupportedVersionError,
)
from veritee.evidence import Evidence, decode_evidence
from veritee.tee.azure.evidence import parse_azure_evidence
from veritee.testing.azure import DEFAULT_REPORT_DATA, AzureEmulator

MACHINES = ("snp", "tdx")


@functools.cache
def document(machine: str, version: int) -> dict[str, Any]:
    return AzureEmulator(machine=machine, version=version).evidence()  # type: ignore[arg-type]


@pytest.mark.parametrize("machine", MACHINES)
@pytest.mark.parametrize("version", [0, 1, 2])
def test_every_version_is_read(machine: str, version: int) -> None:
    doc = document(machine, version)
    wire = parse_azure_evidence(decode_evidence(json.dumps(doc).encode()),
                                machine=machine)  # type: ignore[arg-type]
    assert wire.version == version and wire.machine == machine
    assert wire.form == f"trustee-v{version}"
    assert len(wire.tpm_quote.pcrs) == 24 and len(wire.tpm_quote.signature) == 256
    assert wire.hcl_report[:4] == b"HCLA"
    if machine == "snp":
        assert wire.vcek is not None and wire.td_quote is None
        assert wire.vcek.startswith(b"-----BEGIN CERTIFICATE") == (version == 0)
    else:
        assert wire.td_quote is not None and wire.vcek is None


def test_v0_shapes_are_serdes_byte_lists() -> None:
    snp, tdx = document("snp", 0), document("tdx", 0)
    assert set(snp) == {"quote", "report", "vcek"}
    assert set(tdx) == {"tpm_quote", "hcl_report", "td_quote"}
    assert all(isinstance(b, int) for b in snp["report"][:8])
    assert set(snp["quote"]) == {"signature", "message", "pcrs"}


def test_v1_shape_is_hex_and_base64url() -> None:
    doc = document("snp", 1)
    assert set(doc) == {"version", "tpm_quote", "hcl_report", "vcek"}
    assert bytes.fromhex(doc["tpm_quote"]["message"])[:4] == b"\xffTCG"
    assert "+" not in doc["hcl_report"] and "/" not in doc["hcl_report"]


def test_primary_evidence_wrappers_are_unwrapped() -> None:
    wrapped = {"primary_evidence": json.dumps(document("snp", 2))}
    assert parse_azure_evidence(Evidence.from_json(wrapped), machine="snp").version == 2


@pytest.mark.parametrize(("found", "asked"), [("snp", "tdx"), ("tdx", "snp")])
def test_the_other_machines_evidence_names_its_tee(found: str, asked: str) -> None:
    with pytest.raises(UnrecognizedEvidenceError, match=f"--tee az-{found}-vtpm"):
        parse_azure_evidence(Evidence.from_json(document(found, 1)),
                             machine=asked)  # type: ignore[arg-type]


def _edit(machine: str, version: int, change: Callable[[dict[str, Any]], None]) -> Any:
    doc = copy.deepcopy(document(machine, version))
    change(doc)
    return doc


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for key in parents:
            target = target[key]
        target[last] = value
    return change


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.pop(key)


DEFECTS: list[tuple[str, str, int, Callable[[dict[str, Any]], None], type[Exception], str]] = [
    ("version_three", "snp", 1, _set("version", 3), UnsupportedVersionError, "version is 3"),
    ("version_zero_named", "snp", 1, _set("version", 0), UnsupportedVersionError, "version"),
    ("version_text", "snp", 1, _set("version", "1"), MalformedEvidenceError,
     "version must be an integer"),
    ("version_bool", "tdx", 1, _set("version", True), MalformedEvidenceError,
     "version must be an integer"),
    ("no_vcek_nor_td_quote", "snp", 1, _drop("vcek"), UnrecognizedEvidenceError,
     "one of vcek"),
    ("tpm_quote_list", "snp", 1, _set("tpm_quote", []), MalformedEvidenceError,
     "tpm_quote must be an object"),
    ("message_not_hex", "snp", 2, _set("tpm_quote.message", "xyz"), MalformedEvidenceError,
     "tpm_quote.message is not hex"),
    ("signature_number", "tdx", 1, _set("tpm_quote.signature", 5), MalformedEvidenceError,
     "tpm_quote.signature must be hex"),
    ("pcrs_short", "snp", 1, _set("tpm_quote.pcrs", ["00" * 32] * 23), MalformedEvidenceError,
     "holds 23 values"),
    ("pcr_sha1_size", "snp", 1, _set("tpm_quote.pcrs", ["00" * 20] * 24),
     MalformedEvidenceError, r"pcrs\[0\] is 20 bytes"),
    ("pcrs_missing", "snp", 0, _set("quote.pcrs", None), MalformedEvidenceError,
     "tpm_quote.pcrs must be a list"),
    ("hcl_report_not_b64", "snp", 1, _set("hcl_report", "***"), MalformedEvidenceError,
     "hcl_report is not base64url"),
    ("hcl_report_empty", "tdx", 1, _set("hcl_report", ""), MalformedEvidenceError,
     "hcl_report is empty"),
    ("v0_byte_out_of_range", "snp", 0, _set("report", [256]), MalformedEvidenceError,
     "outside 0..255"),
    ("vcek_object", "snp", 1, _set("vcek", {}), MalformedEvidenceError,
     "vcek must be base64url"),
    ("td_quote_huge", "tdx", 1, _set("td_quote", "AAAA" * 400_000), MalformedEvidenceError,
     "td_quote is 1200000 bytes"),
]


@pytest.mark.parametrize("defect", DEFECTS, ids=[d[0] for d in DEFECTS])
def test_defects_are_typed_and_named(defect: tuple[Any, ...]) -> None:
    _, machine, version, change, error, text = defect
    doc = _edit(machine, version, change)
    with pytest.raises(error, match=text):
        parse_azure_evidence(Evidence.from_json(doc), machine=machine)


def test_binary_evidence_is_unrecognized() -> None:
    raw, _ = AzureEmulator().hcl_report(DEFAULT_REPORT_DATA)
    with pytest.raises(UnrecognizedEvidenceError, match="carries no TPM quote"):
        parse_azure_evidence(decode_evidence(raw), machine="snp")


def test_a_json_array_is_unrecognized() -> None:
    with pytest.raises(UnrecognizedEvidenceError, match="must be a JSON object"):
        parse_azure_evidence(Evidence.from_json([1, 2]), machine="tdx")
