"""The TPM collector (``veritee.attester.tpm``) against a fake tpm2-tools on ``PATH`` (Python
scripts answering from the TPM emulator, logging each call), and against a real swtpm when
it is installed: the evidence is Trustee's TPM attester JSON and verifies; the TCTI comes
from the collector, ``TPM2TOOLS_TCTI`` or the device; contexts are flushed after every
command; missing tools, a missing TPM, a missing AK, a hung command and an unreadable event
log are typed errors that say what to do. The emulated collector is checked too."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from veritee.attester import CollectorError, CollectorUnavailableError
from veritee.attester.tpm import (
    DEFAULT_AK,
    HardwareTpmCollector,
    parse_selection,
    split_values,
)
from veritee.attester.tpm.emulated import EmulatedTpmCollector
from veritee.collateral import CollateralSource
from veritee.errors import MisuseError
from veritee.evidence import Evidence
from veritee.tee.tpm import structures
from veritee.tee.tpm.verify import TpmVerifier
from veritee.testing.tpm import Swtpm, TpmEmulator

NONCE = bytes(range(64))
NOW = datetime(2026, 6, 1, tzinfo=UTC)

#: One script serves every tool; it answers from the emulator (see the module docstring).
FAKE_TOOL = '''\
import json, os, sys, time
from pathlib import Path
from veritee.testing.tpm import TpmEmulator, parse_selection, spki_der

tool, args = Path(sys.argv[0]).name, sys.argv[1:]
with open(os.environ["FAKE_TPM_LOG"], "a") as log:
    log.write(json.dumps({"tool": tool, "args": args,
                          "tcti": os.environ.get("TPM2TOOLS_TCTI")}) + "\\n")
mode = os.environ.get("FAKE_TPM_MODE", "ok")
if mode == "sleep":
    time.sleep(30)
if mode == "no-ak":
    sys.stderr.write("ERROR:esys:src/tss2-esys/esys_tr.c:278:Esys_TR_FromTPMPublic_Finish() "
                     "Error ReadPublic ErrorCode (0x0000018b)\\nERROR: Unable to run " + tool)
    sys.exit(1)
opts = dict(zip(args[::2], args[1::2]))
emulator = TpmEmulator()
if tool == "tpm2_readpublic":
    Path(opts["-o"]).write_bytes(spki_der(emulator.ak_pem))
elif tool == "tpm2_quote":
    quote = emulator.quote(bytes.fromhex(opts["-q"]), parse_selection(opts["-l"]))
    Path(opts["-m"]).write_bytes(quote.attest)
    Path(opts["-s"]).write_bytes(quote.signature)
    assert opts["-F"] == "values"
    Path(opts["-o"]).write_bytes(b"".join(quote.values))
'''

#: tpm2_flushcontext, in shell (it runs twice after every command): logs its call.
FAKE_FLUSH = """#!/bin/sh
printf '{"tool": "tpm2_flushcontext", "args": ["%s"], "tcti": "%s"}\\n' "$1" \\
    "$TPM2TOOLS_TCTI" >> "$FAKE_TPM_LOG"
"""


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of fake tpm2-tools; calls are logged to ``calls.jsonl`` beside it."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("tpm2_quote", "tpm2_readpublic", "tpm2_flushcontext"):
        script = folder / tool
        script.write_text(FAKE_FLUSH if tool == "tpm2_flushcontext"
                          else f"#!{sys.executable}\n{FAKE_TOOL}")
        script.chmod(0o755)
    monkeypatch.setenv("FAKE_TPM_LOG", str(tmp_path / "calls.jsonl"))
    return folder


def _calls(tools: Path) -> list[dict[str, Any]]:
    path = tools.parent / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _collector(tools: Path, **changes: Any) -> HardwareTpmCollector:
    settings: dict[str, Any] = {"path": str(tools), "tcti": "swtpm:host=127.0.0.1,port=1",
                                "eventlog": tools.parent / "absent", "environ": dict(os.environ)}
    return HardwareTpmCollector(**{**settings, **changes})


def _verify(document: Any, *endorsements: bytes, report_data: bytes = NONCE) -> Any:
    return TpmVerifier().verify(Evidence.from_json(document), report_data=report_data,
                                collateral=CollateralSource.of(*endorsements), now=NOW)


# -- with the fake tools ---------------------------------------------------------------------------


def test_the_evidence_is_trustees_json_and_verifies(tools: Path, tmp_path: Path) -> None:
    log = tmp_path / "binary_bios_measurements"
    log.write_bytes(TpmEmulator().event_log())
    document = _collector(tools, eventlog=log)(NONCE)
    assert set(document) == {"ak_public", "tpm_quote", "eventlog"}
    attest = structures.parse_attest(base64.b64decode(document["tpm_quote"]["message"]))
    assert attest.extra_data == NONCE
    assert document["tpm_quote"]["pcrs"] == [v.hex() for v in TpmEmulator().pcrs["sha256"]]
    assert base64.b64decode(document["eventlog"]) == log.read_bytes()
    claims = _verify(document, TpmEmulator().ak_pem).to_dict()
    assert claims["extra_data"] == NONCE.hex()
    assert claims["eventlog_pcrs"]["sha256"]["7"] == claims["pcrs"]["sha256"]["7"]


def test_the_tools_get_the_ak_selection_and_nonce_and_contexts_are_flushed(tools: Path) -> None:
    _collector(tools, ak="ak.ctx", selection="sha1:0+sha256:0,7", hash_alg="sha256")(b"abc")
    calls = _calls(tools)
    assert [c["tool"] for c in calls] == ["tpm2_readpublic", "tpm2_flushcontext",
                                          "tpm2_flushcontext", "tpm2_quote",
                                          "tpm2_flushcontext", "tpm2_flushcontext"]
    assert [c["args"] for c in calls if c["tool"] == "tpm2_flushcontext"] == [["-t"], ["-s"]] * 2
    quote = next(c["args"] for c in calls if c["tool"] == "tpm2_quote")
    assert quote[:6] == ["-c", "ak.ctx", "-l", "sha1:0+sha256:0,7", "-q", "616263"]
    assert {c["tcti"] for c in calls} == {"swtpm:host=127.0.0.1,port=1"}


def test_the_default_ak_is_trustees_persistent_handle(tools: Path) -> None:
    _collector(tools)(b"")
    assert _calls(tools)[0]["args"][:2] == ["-c", DEFAULT_AK] == ["-c", "0x81010002"]


def test_the_tcti_comes_from_the_environment_then_the_device(tools: Path,
                                                             tmp_path: Path) -> None:
    environ = {**os.environ, "TPM2TOOLS_TCTI": "mssim:host=127.0.0.1,port=2321"}
    _collector(tools, tcti=None, environ=environ)(b"")
    assert _calls(tools)[-1]["tcti"] == "mssim:host=127.0.0.1,port=2321"
    device = tmp_path / "tpmrm0"
    device.write_bytes(b"")
    environ.pop("TPM2TOOLS_TCTI")
    _collector(tools, tcti=None, environ=environ, devices=(tmp_path / "none", device))(b"")
    assert _calls(tools)[-1]["tcti"] == f"device:{device}"


def test_no_tpm_is_a_typed_error_that_says_what_to_do(tools: Path, tmp_path: Path) -> None:
    environ = {"PATH": str(tools), "FAKE_TPM_LOG": str(tmp_path / "calls.jsonl")}
    collector = _collector(tools, tcti=None, environ=environ, devices=(tmp_path / "tpmrm0",))
    with pytest.raises(CollectorUnavailableError, match=r"no TPM.*TPM2TOOLS_TCTI"):
        collector(b"")


def test_missing_tpm2_tools_is_a_typed_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CollectorUnavailableError, match="tpm2-tools is not installed"):
        HardwareTpmCollector(path=str(empty), tcti="device:/dev/tpmrm0")(b"")


def test_a_missing_ak_says_how_to_provision_one(tools: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TPM_MODE", "no-ak")
    with pytest.raises(CollectorError, match=r"not in this TPM.*tpm2_createak") as caught:
        _collector(tools)(b"")
    assert "tpm2_readpublic failed" in caught.value.detail
    assert [c["tool"] for c in _calls(tools)][-2:] == ["tpm2_flushcontext"] * 2


def test_a_hung_command_times_out(tools: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TPM_MODE", "sleep")
    with pytest.raises(CollectorError, match=r"took longer than 0\.5 s"):
        _collector(tools, timeout=0.5)(b"")


def test_report_data_longer_than_64_bytes_is_misuse(tools: Path) -> None:
    with pytest.raises(MisuseError, match="at most 64"):
        _collector(tools)(bytes(65))
    assert _calls(tools) == []


@pytest.mark.parametrize(("require", "error"), [(False, None), (True, "no event log")])
def test_an_absent_event_log_is_left_out_unless_required(tools: Path, require: bool,
                                                         error: str | None) -> None:
    collector = _collector(tools, require_eventlog=require)
    if error is None:
        assert "eventlog" not in collector(b"")
    else:
        with pytest.raises(CollectorError, match=error):
            collector(b"")


def test_an_unreadable_event_log_is_an_error(tools: Path, tmp_path: Path) -> None:
    with pytest.raises(CollectorError, match="cannot read the event log"):
        _collector(tools, eventlog=tmp_path)(b"")  # a folder: read fails as EACCES would
    assert "eventlog" not in _collector(tools, eventlog=None)(b"")


@pytest.mark.parametrize("spec", ["md5:0", "sha256:24", "sha256:", "sha256:a", "sha256"])
def test_a_bad_selection_is_misuse(spec: str) -> None:
    with pytest.raises(MisuseError, match="PCR selection"):
        parse_selection(spec)


def test_pcr_values_are_split_by_bank_size() -> None:
    selection = parse_selection("sha1:0-1+sha256:7")
    assert selection == [("sha1", [0, 1]), ("sha256", [7])]
    values = b"\x01" * 20 + b"\x02" * 20 + b"\x03" * 32
    assert split_values(values, selection) == [b"\x01" * 20, b"\x02" * 20, b"\x03" * 32]
    with pytest.raises(CollectorError, match="72"):
        split_values(values[:-1], selection)


# -- with a real swtpm -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def swtpm() -> Iterator[tuple[Swtpm, bytes]]:
    if not Swtpm.available():
        pytest.skip("swtpm and tpm2-tools are not installed")
    with Swtpm() as tpm:
        ak = tpm.create_ak()
        tpm.tpm2("tpm2_evictcontrol", "-C", "o", "-c", str(ak.context), DEFAULT_AK)
        yield tpm, ak.pem


def test_a_real_tpm_is_collected_and_verifies(swtpm: tuple[Swtpm, bytes],
                                              tmp_path: Path) -> None:
    tpm, ak_pem = swtpm
    document = HardwareTpmCollector(tcti=tpm.tcti, eventlog=tmp_path / "none")(NONCE)
    claims = _verify(document, ak_pem).to_dict()
    assert claims["extra_data"] == NONCE.hex()
    assert sorted(claims["pcrs"]["sha256"], key=int) == [str(i) for i in range(24)]
    with pytest.raises(CollectorError, match="not in this TPM"):
        HardwareTpmCollector(tcti=tpm.tcti, ak="0x81010009", eventlog=None)(NONCE)


# -- the emulated collector ------------------------------------------------------------------------


def test_the_emulated_collector_gives_verifiable_trustee_json() -> None:
    document = EmulatedTpmCollector()(NONCE)
    claims = _verify(document, TpmEmulator().ak_pem).to_dict()
    assert claims["extra_data"] == NONCE.hex()
    assert json.loads(json.dumps(document)) == document
    with pytest.raises(MisuseError, match="at most 64"):
        EmulatedTpmCollector()(bytes(65))
