"""``veritee emulate`` (CONTRACT §6): evidence in the TEE's usual wire form that verifies only
with --trust-emulated; knobs set fields or break one thing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from veritee.cli.main import main
from veritee.testing.snp import KNOB_ERRORS


def verify(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, object]:
    capsys.readouterr()
    main(["verify", "--tee", "snp", str(path), "--offline", "--json", *extra])
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


@pytest.mark.parametrize("form", ["extended", "report", "configfs-tsm", "coco"])
def test_every_form_verifies_only_when_emulated_roots_are_trusted(
        form: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "evidence"
    data = "ab" * 64
    assert main(["emulate", "snp", "--out", str(out), "--report-data", data,
                 "--host-data", "cd" * 32, "--knob", f"form={form}", "--knob", "vmpl=2"]) == 0
    trusted = verify(out, capsys, "--trust-emulated", "--report-data", data)
    if form == "report":  # a bare report: the VCEK is not in the evidence
        assert trusted["status"] == "undecided"
        return
    assert trusted["status"] == "verified", trusted
    claims = trusted["claims"]
    assert isinstance(claims, dict)
    assert claims["host_data"] == "cd" * 32 and claims["vmpl"] == 2 and claims["emulated"]
    refused = verify(out, capsys)
    assert refused["status"] == "rejected"
    assert refused["error"]["type"] == "UntrustedRootError"  # type: ignore[index]


@pytest.mark.parametrize("knob", sorted(KNOB_ERRORS))
def test_defect_knobs_give_their_error(knob: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "evidence.bin"
    assert main(["emulate", "snp", "--out", str(out), "--knob", knob]) == 0
    extra: list[str] = []
    if knob == "revoked":
        crl = Path(f"{out}.crl.der")
        assert crl.is_file()
        extra = ["--collateral", str(crl)]
    result = verify(out, capsys, "--trust-emulated", *extra)
    assert result["error"]["type"] == KNOB_ERRORS[knob].__name__  # type: ignore[index]


def test_list_knobs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulate", "snp", "--list-knobs", "--json"]) == 0
    knobs = json.loads(capsys.readouterr().out)["knobs"]
    assert {"vmpl=N", "debug", "tampered"} <= set(knobs)


@pytest.mark.parametrize(("args", "message"), [
    (["--knob", "nope"], "unknown knob 'nope'"),
    (["--knob", "vmpl=9"], "vmpl=9 is outside 0..3"),
    (["--knob", "tampered", "--knob", "wrong_key"], "one defect knob at a time"),
    (["--host-data", "00"], "--host-data is 1 bytes"),
    (["--report-data", "zz"], "--report-data is not hex"),
])
def test_bad_usage_is_named(args: list[str], message: str, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulate", "snp", "--out", str(tmp_path / "x"), *args, "--json"]) == 2
    assert message in json.loads(capsys.readouterr().out)["error"]["detail"]
    assert not (tmp_path / "x").exists()


def test_a_tee_without_an_emulator_or_no_out_is_bad_usage(capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    assert main(["emulate", "nope", "--out", "x"]) == 2
    assert main(["emulate", "snp"]) == 2
    assert "--out FILE is required" in capsys.readouterr().err
