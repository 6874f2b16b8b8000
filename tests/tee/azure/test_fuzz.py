"""Bad Azure vTPM input of every kind gives the specific typed error: the parsers only
malformed-evidence errors, the verifiers only evidence errors (or undecided, where a needed
input is missing) — never a misuse error, a crash or a pass.

Truncations, bit flips, oversized parts, wrong versions, wrong JSON types, lone surrogates and
deep nesting (STYLE §8).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee.collateral import CollateralFile, CollateralSource
from veritee.errors import EvidenceError, MalformedEvidenceError, UndecidedError
from veritee.evidence import Evidence, decode_evidence
from veritee.tee.azure.evidence import parse_azure_evidence
from veritee.tee.azure.hcl import (
    HW_REPORT_OFFSET,
    IGVM_OFFSET,
    VAR_DATA_OFFSET,
    parse_hcl_report,
    parse_var_data,
)
from veritee.tee.azure.verify import AzSnpVtpmVerifier, AzTdxVtpmVerifier
from veritee.testing.azure import (
    DEFAULT_REPORT_DATA,
    AzureEmulator,
    emulated_snp_roots,
    emulated_tdx_roots,
)

FUZZ = settings(deadline=None, max_examples=120,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@functools.cache
def emulator(machine: str) -> AzureEmulator:
    return AzureEmulator(machine=machine, version=2)  # type: ignore[arg-type]


@functools.cache
def genuine(machine: str) -> dict[str, Any]:
    return emulator(machine).evidence(DEFAULT_REPORT_DATA)


@functools.cache
def hcl_bytes(machine: str) -> bytes:
    return emulator(machine).hcl_report(DEFAULT_REPORT_DATA)[0]


@functools.cache
def verifier(machine: str) -> AzSnpVtpmVerifier | AzTdxVtpmVerifier:
    if machine == "snp":
        return AzSnpVtpmVerifier().with_roots(emulated_snp_roots())
    return AzTdxVtpmVerifier().with_roots(emulated_tdx_roots())


def verify(machine: str, document: Any) -> None:
    files = tuple(CollateralFile(f"c{s}", d, "collateral")
                  for s, d in emulator(machine).collateral())
    verifier(machine).verify(Evidence.from_json(document), report_data=DEFAULT_REPORT_DATA,
                             collateral=CollateralSource(files=files),
                             now=emulator(machine).now)


def only_malformed() -> contextlib.suppress:
    return contextlib.suppress(MalformedEvidenceError)


def only_evidence_errors() -> contextlib.suppress:
    return contextlib.suppress(EvidenceError, UndecidedError)


@pytest.mark.parametrize("machine", ["snp", "tdx"])
def test_every_truncation_of_the_hcl_report_is_malformed(machine: str) -> None:
    raw = hcl_bytes(machine)
    for end in (*range(0x4E0), *range(0x4E0, len(raw), 97)):
        with only_malformed():
            report = parse_hcl_report(raw[:end])
            parse_var_data(report.var_data)


@FUZZ
@given(st.data())
def test_bit_flips_in_the_hcl_report_are_malformed_or_parse(data: st.DataObject) -> None:
    raw = bytearray(hcl_bytes(data.draw(st.sampled_from(["snp", "tdx"]))))
    at = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[at // 8] ^= 1 << (at % 8)
    with only_malformed():
        parse_var_data(parse_hcl_report(bytes(raw)).var_data)


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_are_malformed(blob: bytes) -> None:
    with only_malformed():
        parse_var_data(parse_hcl_report(blob).var_data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)


def _paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(document, dict):
        for key, value in document.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(document, list) and len(document) <= 24:
        for index, value in enumerate(document):
            out += _paths(value, (*prefix, index))
    return out


def _replace(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(document)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


@FUZZ
@given(st.data())
def test_wrong_types_anywhere_in_the_json_are_typed(data: st.DataObject) -> None:
    machine = data.draw(st.sampled_from(["snp", "tdx"]))
    document = genuine(machine)
    path = data.draw(st.sampled_from(_paths(document)))
    mutated = _replace(document, path, data.draw(JSON_VALUES))
    with only_malformed():
        parse_azure_evidence(Evidence.from_json(mutated), machine=machine)  # type: ignore[arg-type]
    with only_evidence_errors():
        verify(machine, mutated)


@FUZZ
@given(st.data())
def test_bit_flips_through_the_verifier_are_rejected(data: st.DataObject) -> None:
    machine = data.draw(st.sampled_from(["snp", "tdx"]))
    document = copy.deepcopy(genuine(machine))
    field = data.draw(st.sampled_from(["message", "signature", "hcl_report", "pcr"]))
    if field == "hcl_report":
        raw = bytearray(hcl_bytes(machine))
        report = parse_hcl_report(bytes(raw))
        # What binds: the SNP report (signed) and the variable data (hashed into it). The
        # header, the TDREPORT and the padding after the variable data bind nothing.
        spans = [(VAR_DATA_OFFSET, VAR_DATA_OFFSET + len(report.var_data))]
        if machine == "snp":
            spans.append((HW_REPORT_OFFSET, IGVM_OFFSET))
        start, end = data.draw(st.sampled_from(spans))
        at = data.draw(st.integers(start * 8, end * 8 - 1))
        raw[at // 8] ^= 1 << (at % 8)
        document["hcl_report"] = base64.urlsafe_b64encode(bytes(raw)).decode()
    else:
        key = "pcrs" if field == "pcr" else field
        value = document["tpm_quote"][key]
        if field == "pcr":
            index = data.draw(st.integers(0, 23))
            raw = bytearray(bytes.fromhex(value[index]))
        else:
            raw = bytearray(bytes.fromhex(value))
        at = data.draw(st.integers(0, len(raw) * 8 - 1))
        raw[at // 8] ^= 1 << (at % 8)
        if field == "pcr":
            value[index] = raw.hex()
        else:
            document["tpm_quote"][key] = raw.hex()
    with pytest.raises(EvidenceError):
        verify(machine, document)


@pytest.mark.parametrize("machine", ["snp", "tdx"])
@pytest.mark.parametrize("case", ["surrogate", "deep", "oversized", "version", "empty"])
def test_hostile_documents_are_typed(machine: str, case: str) -> None:
    document: Any = copy.deepcopy(genuine(machine))
    if case == "surrogate":
        document["hcl_report"] = "\ud800" + document["hcl_report"]
    elif case == "deep":
        for _ in range(5000):
            document = {"primary_evidence": document}
    elif case == "oversized":
        document["tpm_quote"]["message"] = "00" * 5000
    elif case == "version":
        document["version"] = 99
    else:
        document = {}
    with pytest.raises(MalformedEvidenceError):
        parse_azure_evidence(Evidence.from_json(document), machine=machine)  # type: ignore[arg-type]


def test_deep_nesting_as_text_is_malformed() -> None:
    blob = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    with pytest.raises(MalformedEvidenceError):
        parse_azure_evidence(decode_evidence(blob), machine="snp")


def test_deep_var_data_is_malformed() -> None:
    with pytest.raises(MalformedEvidenceError):
        parse_var_data(json.dumps({"keys": []}).encode()[:-1] + b',"x":' + b"[" * 50_000)
