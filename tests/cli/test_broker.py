"""The broker-facing commands: attest, admin, policy test, against a broker on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from veritee.broker.config import Config, VerificationConfig
from veritee.cli.main import main
from veritee.server.local import LocalBroker, local_broker
from veritee.tee.snp.demo import tcb_minimums
from veritee.testing.snp import DEFAULT_MEASUREMENT, SnpEmulator


@pytest.fixture(scope="module")
def kbs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    data = tmp_path_factory.mktemp("cli-broker")
    config = Config(data_dir=str(data),
                    verification=VerificationConfig(trust_emulated=True, offline=True))
    with local_broker(config) as running:
        yield running


def _admin(kbs: LocalBroker, *args: str) -> int:
    return main(["admin", *args, "--url", kbs.url, "--data-dir", kbs.config.data_dir])


def test_admin_provisioning_then_guest_attests(kbs: LocalBroker, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"top secret")
    rv = tmp_path / "rv.toml"
    minimums = "".join(f"{name} = {entry['values']}\n"
                       for name, entry in tcb_minimums("test").items())
    rv.write_text(f'snp_launch_measurement = ["{DEFAULT_MEASUREMENT.hex()}"]\n'
                  f"allow_emulated = [true]\n{minimums}")
    assert _admin(kbs, "set-resource", "cli/key/one", str(secret)) == 0
    assert _admin(kbs, "add-reference-values", str(rv)) == 0
    capsys.readouterr()
    out = tmp_path / "released"
    code = main(["attest", "--url", kbs.url, "--tee", "snp", "--emulate",
                 "--resource", "cli/key/one", "--output", str(out)])
    assert code == 0
    assert out.read_bytes() == b"top secret"
    assert out.stat().st_mode & 0o777 == 0o600
    assert _admin(kbs, "audit", "--limit", "5", "--json") == 0
    events = json.loads(capsys.readouterr().out)
    assert any(e["kind"] == "release" and e["resource"] == "cli/key/one" for e in events)


def test_attest_refused_prints_the_reason(kbs: LocalBroker,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["attest", "--url", kbs.url, "--tee", "snp", "--emulate",
                 "--resource", "cli/key/absent", "--json"])
    captured = capsys.readouterr()
    assert code == 1
    result = json.loads(captured.out)
    assert result["released"] is False and result["error"]["type"] == "KbsClientError"


def test_attest_without_hardware_is_undecided(kbs: LocalBroker,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["attest", "--url", kbs.url, "--tee", "snp", "--resource", "a/b/c", "--json"])
    assert code == 3
    assert "sev-guest" in capsys.readouterr().err


def test_attest_unreachable_broker(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["attest", "--url", "http://127.0.0.1:9", "--tee", "snp", "--emulate",
                 "--resource", "a/b/c"])
    assert code == 3


def test_admin_token_is_refused_by_role(kbs: LocalBroker,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "token", "--data-dir", kbs.config.data_dir, "--role", "reader"]) == 0
    token = capsys.readouterr().out.strip()
    code = main(["admin", "audit", "--url", kbs.url, "--token", token])
    assert code == 1
    assert "HTTP 403 AdminAuthAccess: role 'reader' may not use" in capsys.readouterr().err


def test_admin_set_policy_refuses_bad_rego(kbs: LocalBroker, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.rego"
    bad.write_text("package policy\nallow if {\n")
    assert _admin(kbs, "set-policy", "resource", str(bad), "--json") == 1
    assert json.loads(capsys.readouterr().out)["error"]["title"] == "ParsePolicyError"


def test_policy_test_explains_a_foreign_measurement(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    other = bytes.fromhex("ab" * 48)
    evidence = tmp_path / "evidence.json"
    evidence.write_text(json.dumps(SnpEmulator(measurement=other).coco_evidence()))
    rv = tmp_path / "rv.json"
    rv.write_text(json.dumps({"snp_launch_measurement": [DEFAULT_MEASUREMENT.hex()],
                              "allow_emulated": [True], **tcb_minimums("test")}))
    code = main(["policy", "test", "--tee", "snp", str(evidence), "--reference-values", str(rv),
                 "--trust-emulated", "--offline", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 1
    assert result["status"] != "affirming"
    assert other.hex() in result["explanation"]
    failed = [c for c in result["checks"] if not c["held"]]
    assert [c["name"] for c in failed] == ["snp.measurement"]


def test_policy_test_affirming_exits_zero(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    evidence = tmp_path / "evidence.bin"
    evidence.write_bytes(SnpEmulator().extended_report())
    rv = tmp_path / "rv.json"
    rv.write_text(json.dumps({"snp_launch_measurement": [DEFAULT_MEASUREMENT.hex()],
                              "allow_emulated": [True], **tcb_minimums("test")}))
    code = main(["policy", "test", "--tee", "snp", str(evidence), "--reference-values", str(rv),
                 "--trust-emulated", "--offline"])
    assert code == 0
    assert "affirming" in capsys.readouterr().out


def test_policy_test_rejected_evidence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evidence = tmp_path / "evidence.bin"
    evidence.write_bytes(SnpEmulator(knob="tampered").extended_report())
    code = main(["policy", "test", "--tee", "snp", str(evidence), "--trust-emulated", "--offline",
                 "--json"])
    assert code == 1
    assert json.loads(capsys.readouterr().out)["error"]["type"] == "SignatureError"
