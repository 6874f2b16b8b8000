"""``veritee verify`` as users run it (CONTRACT.md §1): exit codes, JSON shape, errors.

Every invocation runs with VERITEE_OFFLINE=1 and a temporary cache, so nothing reaches the
network or the user's cache.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from typer.testing import CliRunner, Result

from conftest import corpus_dir, manifest
from veritee.cli import verify as verify_cli
from veritee.cli.main import app
from veritee.errors import MisuseError
from veritee.evidence import MAX_EVIDENCE_BYTES
from veritee.testing.snp import KNOB_ERRORS, KNOBS, FakeKds, SnpEmulator

SNP_CLAIMS = {
    "version", "product", "signer", "measurement", "report_data", "host_data",
    "id_key_digest", "author_key_digest", "chip_id", "vmpl", "policy", "guest_svn",
    "platform_info", "reported_tcb", "current_tcb", "committed_tcb", "launch_tcb",
}
TCB_PARTS = {"bootloader", "tee", "snp", "microcode"}
NONCE = bytes(range(64))

Invoke = Callable[..., Result]


@pytest.fixture
def invoke(tmp_path: Path) -> Invoke:
    """Run ``veritee <args>`` in-process, offline, with a private collateral cache."""
    runner = CliRunner()
    env = {"VERITEE_OFFLINE": "1", "VERITEE_CACHE_DIR": str(tmp_path / "cache")}

    def run(*args: str | Path, input: bytes | None = None) -> Result:
        return runner.invoke(app, [str(a) for a in args], env=env, input=input)

    return run


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, bytes], Path]:
    def put(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return put


def verdict(result: Result) -> dict[str, Any]:
    """The one JSON object on stdout (fails if there is anything else)."""
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    document: dict[str, Any] = json.loads(lines[0])
    assert set(document) == {"tee", "status", "error", "claims"}
    return document


def emulated(invoke: Invoke, path: Path, *extra: str | Path) -> Result:
    return invoke("verify", "--tee", "snp", "--trust-emulated", "--json", path, *extra)


# -- verified ----------------------------------------------------------------------------------


def test_emulated_extended_report_verifies(invoke: Invoke, write: Any) -> None:
    result = emulated(invoke, write("ev.bin", SnpEmulator().extended_report(NONCE)),
                      "--report-data", NONCE.hex())
    assert result.exit_code == 0, result.output
    out = verdict(result)
    assert (out["tee"], out["status"], out["error"]) == ("snp", "verified", None)
    claims = out["claims"]
    assert set(claims) >= SNP_CLAIMS
    for name in ("reported_tcb", "current_tcb", "committed_tcb", "launch_tcb"):
        assert set(claims[name]) >= TCB_PARTS
    assert claims["product"] == "milan" and claims["signer"] == "vcek"
    assert claims["report_data"] == NONCE.hex() and claims["emulated"] is True
    assert isinstance(claims["policy"], int) and isinstance(claims["vmpl"], int)


EVIDENCE_FORMS: dict[str, Callable[[SnpEmulator], bytes]] = {
    "hex": lambda e: e.extended_report(NONCE).hex().encode(),
    "0x-hex-with-newlines": lambda e: b"0x" + e.extended_report(NONCE).hex().encode() + b"\n",
    "base64": lambda e: base64.b64encode(e.extended_report(NONCE)),
    "configfs-tsm-json": lambda e: json.dumps(e.configfs_tsm(NONCE)).encode(),
    "coco-json": lambda e: json.dumps(e.coco_evidence(NONCE)).encode(),
}


@pytest.mark.parametrize("form", sorted(EVIDENCE_FORMS))
def test_every_evidence_form_verifies(invoke: Invoke, write: Any, form: str) -> None:
    result = emulated(invoke, write("ev", EVIDENCE_FORMS[form](SnpEmulator(product="genoa"))))
    assert result.exit_code == 0, result.output
    assert verdict(result)["claims"]["product"] == "genoa"


def test_evidence_from_stdin(invoke: Invoke) -> None:
    result = invoke("verify", "--tee", "snp", "--trust-emulated", "--json", "-",
                    input=SnpEmulator().extended_report())
    assert result.exit_code == 0, result.output
    assert verdict(result)["status"] == "verified"


def _fake_kds(emulator: SnpEmulator) -> FakeKds:
    """A fake AMD KDS serving ``emulator``'s certificates (given to ``verify``'s run)."""
    kds = FakeKds()
    kds.add(emulator)
    return kds


def _chain_pem(emulator: SnpEmulator) -> bytes:
    return b"".join(
        x509.load_der_x509_certificate(emulator.chain[role]).public_bytes(Encoding.PEM)
        for role in ("ask", "ark")
    )


def test_vcek_fetched_once_then_served_from_the_cache_offline(tmp_path: Path,
                                                              write: Any) -> None:
    emulator = SnpEmulator()
    kds = _fake_kds(emulator)
    request = verify_cli.Request(
        tee="snp", evidence=write("bare.bin", emulator.report()),
        endorsements=(write("chain.pem", _chain_pem(emulator)),), trust_emulated=True,
        cache_dir=tmp_path / "cache")
    online = verify_cli.run(request, fetcher=kds)
    assert online.status == "verified", online.error
    assert any("/vcek/v1/Milan/" in url for url in kds.requests)
    asked = len(kds.requests)
    offline = CliRunner().invoke(app, ["verify", "--tee", "snp", "--trust-emulated", "--json",
                                       "--offline", "--cache-dir", str(tmp_path / "cache"),
                                       str(request.evidence), "--endorsements",
                                       str(request.endorsements[0])])
    assert offline.exit_code == 0, offline.output
    assert len(kds.requests) == asked


def test_bare_emulated_report_with_a_fetched_vcek_verifies(tmp_path: Path, write: Any) -> None:
    emulator = SnpEmulator()
    outcome = verify_cli.run(verify_cli.Request(
        tee="snp", evidence=write("bare.bin", emulator.report()), trust_emulated=True,
        cache_dir=tmp_path / "cache"), fetcher=_fake_kds(emulator))
    assert outcome.status == "verified" and outcome.exit_code == 0, outcome.error


# -- rejected ----------------------------------------------------------------------------------


@pytest.mark.parametrize("knob", KNOBS)
def test_each_defect_is_rejected_with_its_error(invoke: Invoke, write: Any, knob: str) -> None:
    emulator = SnpEmulator(knob=knob)  # type: ignore[arg-type]
    extra: list[str | Path] = []
    for index, blob in enumerate(emulator.endorsements()):
        extra += ["--endorsements", write(f"endorsement{index}", blob)]
    result = emulated(invoke, write("ev.bin", emulator.extended_report()), *extra)
    assert result.exit_code == 1, result.output
    out = verdict(result)
    assert out["status"] == "rejected"
    assert out["error"]["type"] == KNOB_ERRORS[knob].__name__
    assert out["error"]["detail"]


def test_rejected_evidence_keeps_its_parsed_claims(invoke: Invoke, write: Any) -> None:
    out = verdict(emulated(invoke, write("ev.bin", SnpEmulator(knob="tampered").extended_report())))
    assert out["claims"]["product"] == "milan"
    assert set(out["claims"]) >= SNP_CLAIMS


def test_emulated_roots_are_not_trusted_by_default(invoke: Invoke, write: Any) -> None:
    result = invoke("verify", "--tee", "snp", "--json",
                    write("ev.bin", SnpEmulator().extended_report()))
    assert result.exit_code == 1
    assert verdict(result)["error"]["type"] == "UntrustedRootError"


GARBAGE = [(b"garbage", "UnrecognizedEvidenceError"), (b"\x00" * 3000, "UnsupportedVersionError"),
           (b"{\"not\": \"evidence\"}", "UnrecognizedEvidenceError"),
           (b"", "MalformedEvidenceError")]


@pytest.mark.parametrize(("blob", "error"), GARBAGE, ids=["text", "zeros", "json", "empty"])
def test_garbage_is_malformed_evidence(invoke: Invoke, write: Any, blob: bytes,
                                       error: str) -> None:
    result = emulated(invoke, write("garbage", blob))
    assert result.exit_code == 1, result.output
    out = verdict(result)
    assert out["status"] == "rejected"
    assert out["error"]["type"] == error
    assert out["claims"] == {}


def test_oversized_evidence_is_refused_without_reading_it_all(invoke: Invoke, write: Any) -> None:
    result = emulated(invoke, write("huge", bytes(MAX_EVIDENCE_BYTES + 4096)))
    assert result.exit_code == 1
    assert "limit" in verdict(result)["error"]["detail"]


def test_report_data_mismatch_is_a_binding_error(invoke: Invoke, write: Any) -> None:
    result = emulated(invoke, write("ev.bin", SnpEmulator().extended_report(NONCE)),
                      "--report-data", "0x" + bytes(64).hex())
    assert result.exit_code == 1
    out = verdict(result)
    assert out["error"]["type"] == "BindingError"
    assert NONCE.hex() in out["error"]["detail"]


# -- undecided ---------------------------------------------------------------------------------


def test_vlek_report_without_the_vlek_is_undecided(invoke: Invoke, write: Any) -> None:
    result = emulated(invoke, write("vlek.bin", SnpEmulator(signer="vlek").report()))
    assert result.exit_code == 3, result.output
    out = verdict(result)
    assert out["status"] == "undecided"
    assert out["error"]["type"] == "CollateralMissingError"
    assert out["claims"]["signer"] == "vlek"


def test_bare_vcek_report_offline_with_an_empty_cache_is_undecided(
        invoke: Invoke, write: Any) -> None:
    result = emulated(invoke, write("bare.bin", SnpEmulator().report()))
    assert result.exit_code == 3, result.output
    assert verdict(result)["error"]["type"] == "CollateralMissingError"


# -- bad usage ---------------------------------------------------------------------------------


def test_unknown_tee_is_usage(invoke: Invoke, write: Any) -> None:
    result = invoke("verify", "--tee", "nope", "--json", write("ev.bin", b"x"))
    assert result.exit_code == 2
    out = verdict(result)
    assert out["status"] == "error" and out["error"]["type"] == "UnknownTeeError"


@pytest.mark.parametrize("where", ["missing", "directory"])
def test_unreadable_evidence_is_usage(invoke: Invoke, tmp_path: Path, where: str) -> None:
    path = tmp_path / "nothing-here" if where == "missing" else tmp_path
    result = emulated(invoke, path)
    assert result.exit_code == 2
    assert verdict(result)["error"]["type"] == "MisuseError"


def test_unreadable_endorsement_is_usage(invoke: Invoke, write: Any, tmp_path: Path) -> None:
    result = emulated(invoke, write("ev.bin", SnpEmulator().extended_report()),
                      "--endorsements", tmp_path / "absent.pem")
    assert result.exit_code == 2
    assert verdict(result)["error"]["type"] == "MisuseError"


@pytest.mark.parametrize("value", ["zz", "0x123", "12 3"])
def test_bad_report_data_hex_is_usage(invoke: Invoke, write: Any, value: str) -> None:
    result = emulated(invoke, write("ev.bin", SnpEmulator().extended_report()),
                      "--report-data", value)
    assert result.exit_code == 2
    assert verdict(result)["status"] == "error"


def test_report_data_of_the_wrong_length_is_usage(invoke: Invoke, write: Any) -> None:
    result = emulated(invoke, write("ev.bin", SnpEmulator().extended_report()),
                      "--report-data", "0102")
    assert result.exit_code == 2
    assert verdict(result)["error"]["type"] == "MisuseError"


def test_unknown_option_is_usage(invoke: Invoke, write: Any) -> None:
    result = invoke("verify", "--tee", "snp", "--no-such-option", write("ev.bin", b"x"))
    assert result.exit_code == 2


def test_missing_tee_is_usage(invoke: Invoke, write: Any) -> None:
    assert invoke("verify", write("ev.bin", b"x")).exit_code == 2


# -- --at ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ("2024-05-01t12:00:00z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ("2024-05-01T14:00:00+02:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ("2024-05-01T07:30:00.250-04:30", datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)),
])
def test_at_accepts_rfc3339(text: str, expected: datetime) -> None:
    parsed = verify_cli.parse_at(text)
    assert parsed == expected and parsed.tzinfo == UTC


@pytest.mark.parametrize("text", ["2024-05-01T12:00:00", "2024-05-01", "yesterday", ""])
def test_at_refuses_naive_or_garbled_times(text: str) -> None:
    with pytest.raises(MisuseError):
        verify_cli.parse_at(text)


def test_at_decides_certificate_validity(invoke: Invoke, write: Any) -> None:
    emulator = SnpEmulator()
    path = write("ev.bin", emulator.extended_report())

    def at(when: datetime) -> Result:
        return emulated(invoke, path, "--at", when.isoformat())

    assert at(emulator.now).exit_code == 0
    late = at(emulator.now + timedelta(days=8 * 365))
    assert late.exit_code == 1 and verdict(late)["error"]["type"] == "ExpiredError"
    early = at(emulator.now - timedelta(days=2))
    assert early.exit_code == 1 and verdict(early)["error"]["type"] == "ExpiredError"


def test_naive_at_is_usage(invoke: Invoke, write: Any) -> None:
    result = emulated(invoke, write("ev.bin", SnpEmulator().extended_report()),
                      "--at", "2024-05-01T12:00:00")
    assert result.exit_code == 2
    assert "offset" in verdict(result)["error"]["detail"]


# -- human output ------------------------------------------------------------------------------


def test_human_output_shows_the_verdict_and_claims(invoke: Invoke, write: Any) -> None:
    result = invoke("verify", "--tee", "snp", "--trust-emulated",
                    write("ev.bin", SnpEmulator().extended_report()))
    assert result.exit_code == 0
    assert "VERIFIED" in result.stdout
    for name in ("measurement", "reported_tcb", "policy", "emulated"):
        assert name in result.stdout


@pytest.mark.parametrize(("emulator", "word", "code"), [
    (SnpEmulator(knob="wrong_key"), "REJECTED", 1),
    (SnpEmulator(signer="vlek"), "UNDECIDED", 3),
], ids=["rejected", "undecided"])
def test_human_output_names_the_failure(invoke: Invoke, write: Any, emulator: SnpEmulator,
                                        word: str, code: int) -> None:
    blob = emulator.report() if emulator.signer == "vlek" else emulator.extended_report()
    result = invoke("verify", "--tee", "snp", "--trust-emulated", write("ev.bin", blob))
    assert result.exit_code == code
    assert word in result.stdout
    assert "Traceback" not in result.output


def test_human_usage_error_goes_to_stderr(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("verify", "--tee", "snp", tmp_path / "absent")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "cannot read evidence" in result.stderr


def test_help_explains_forms_and_exit_codes(invoke: Invoke) -> None:
    result = invoke("verify", "--help")
    assert result.exit_code == 0
    for phrase in ("base64", "configfs-tsm", "Exit status", "undecided", "Example"):
        assert phrase in result.stdout


# -- real evidence (smoke) ---------------------------------------------------------------------


def test_real_go_sev_guest_attestation_verifies(invoke: Invoke) -> None:
    root = corpus_dir("amd")
    entry = next(e for e in manifest("amd") if e["file"] == "go-sev-guest/attestation.bin")
    result = invoke("verify", "--tee", "snp", "--json", root / "go-sev-guest/attestation.bin",
                    "--endorsements", root / "go-sev-guest/vcek.testcer",
                    "--endorsements", root / "go-sev-guest/milan.testcer")
    assert result.exit_code == 0, result.output
    claims = verdict(result)["claims"]
    assert claims["product"] == "milan" and claims["emulated"] is False
    assert claims["measurement"] == entry["extracted"]["measurement"]
    assert claims["report_data"] == entry["extracted"]["report_data"]
