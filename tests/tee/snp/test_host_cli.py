"""``veritee host sev-session`` and ``sev-launch`` (the Typer ``APP``) against the fake QEMU
and a fake broker on loopback: success, the broker's refusals and their exit statuses,
retries of 503 answers, an unreachable broker, and bad usage."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from veritee.tee.snp import host_cli
from veritee.tee.snp.host_cli import APP, BrokerRefusedError, exit_code
from veritee.testing.network import SilentService
from veritee.testing.snp.qmp import FakeQmpServer

MEASURE, MNONCE = bytes(range(32)), bytes(range(100, 116))
HEADER = b"\x00" * 4 + bytes(range(48))
SECRET = bytes(range(64))
PDH, CHAIN, CPU0 = b"P" * 0x824, b"C" * (3 * 0x824), b"I" * 64
GUID = uuid.UUID("736869e5-84f0-4973-92ec-06879ce3da0b")
LAUNCH_ID = "launch-1.mac"


class StubFirmware:
    """A SEV-ES firmware that accepts the one packet header the fake broker answers."""

    api_major, api_minor, build_id, policy = 1, 55, 21, 0x5

    def launch_measure(self) -> tuple[bytes, bytes]:
        return MEASURE, MNONCE

    def launch_secret(self, header: bytes, ciphertext: bytes) -> None:
        if header != HEADER:
            raise ValueError("bad MAC")

    def capabilities(self) -> tuple[bytes, bytes, bytes]:
        return PDH, CHAIN, CPU0


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


SESSION = {"launch-id": LAUNCH_ID, "godh-cert": b64(b"G" * 0x824), "session": b64(b"S" * 128),
           "policy": 0x5, "expires-at": "2026-12-02T10:00:00+00:00"}
PACKET = {"packet-header": b64(HEADER), "secret": b64(SECRET),
          "entries": [{"resource": "default/luks/root", "guid": str(GUID)}]}


def problem(status: int, detail: str) -> tuple[int, dict[str, Any]]:
    return status, {"type": f"https://veritee.dev/problems/{status}", "title": "Refused",
                    "status": status, "detail": detail}


class FakeBroker:
    """Answers each path from a script of (status, body); the last answer repeats."""

    def __init__(self) -> None:
        self.script: dict[str, list[tuple[int, Any]]] = {
            "/sev/v0/session": [(200, SESSION)], "/sev/v0/secret": [(200, PACKET)]}
        self.requests: list[tuple[str, Any]] = []
        broker = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                broker.requests.append((self.path, body))
                answers = broker.script[self.path]
                status, document = answers.pop(0) if len(answers) > 1 else answers[0]
                data = document if isinstance(document, bytes) else json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def broker() -> Iterator[FakeBroker]:
    fake = FakeBroker()
    yield fake
    fake.close()


@pytest.fixture
def qemu() -> Iterator[FakeQmpServer]:
    with FakeQmpServer(StubFirmware()) as fake:
        yield fake


@pytest.fixture
def closed_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(APP, [str(a) for a in args])


def chain_file(tmp_path: Path) -> Path:
    path = tmp_path / "chain.bin"
    path.write_bytes(b"sevctl export --full bytes")
    return path


def session(url: str, tmp_path: Path, *extra: str | Path) -> Result:
    return run("sev-session", "--url", url, "--tee", "sev-es", "--policy", "0x5",
               "--out", tmp_path / "out", "--deadline", "2", *extra)


def launch_file(tmp_path: Path, **change: Any) -> Path:
    path = tmp_path / "launch.json"
    record = {"launch-id": LAUNCH_ID, "tee": "sev-es", "policy": 5,
              "expires-at": SESSION["expires-at"], **change}
    path.write_text(json.dumps(record))
    return path


def launch(url: str, qemu: FakeQmpServer, tmp_path: Path, *extra: str | Path) -> Result:
    return run("sev-launch", "--url", url, "--qmp", qemu.path, "--launch", launch_file(tmp_path),
               "--resource", "default/luks/root", "--deadline", "2", "--qmp-timeout", "2",
               *extra)


# -- sev-session ---------------------------------------------------------------------------------


def test_session_with_a_chain_writes_what_qemu_takes(broker: FakeBroker, tmp_path: Path) -> None:
    result = session(broker.url, tmp_path, "--chain", chain_file(tmp_path))
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert base64.b64decode((out / "godh.b64").read_text()) == b"G" * 0x824
    assert base64.b64decode((out / "session.b64").read_text()) == b"S" * 128
    assert json.loads((out / "launch.json").read_text()) == {
        "launch-id": LAUNCH_ID, "tee": "sev-es", "policy": 5, "expires-at": SESSION["expires-at"]}
    assert f"dh-cert-file={out}/godh.b64,session-file={out}/session.b64" in result.stdout
    assert "policy=0x5,cbitpos=CBITPOS" in result.stdout
    assert broker.requests == [("/sev/v0/session", {
        "tee": "sev-es", "policy": 5, "platform": {"chain": b64(b"sevctl export --full bytes")}})]


def test_session_from_qemus_capabilities(broker: FakeBroker, qemu: FakeQmpServer,
                                         tmp_path: Path) -> None:
    result = session(broker.url, tmp_path, "--qmp", qemu.path, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["status"] == "ok" and document["launch-id"] == LAUNCH_ID
    assert any("cbitpos=51,reduced-phys-bits=1" in a for a in document["qemu-args"])
    assert broker.requests[0][1]["platform"] == {"pdh": b64(PDH), "cert-chain": b64(CHAIN)}


def test_session_with_pdh_and_cert_chain(broker: FakeBroker, tmp_path: Path) -> None:
    (tmp_path / "pdh.cert").write_bytes(PDH)
    (tmp_path / "chain.cert").write_bytes(CHAIN)
    result = session(broker.url, tmp_path, "--pdh", tmp_path / "pdh.cert",
                     "--cert-chain", tmp_path / "chain.cert")
    assert result.exit_code == 0, result.output
    assert broker.requests[0][1]["platform"] == {"pdh": b64(PDH), "cert-chain": b64(CHAIN)}


def test_session_retries_503_then_succeeds(broker: FakeBroker, tmp_path: Path) -> None:
    broker.script["/sev/v0/session"] = [problem(503, "busy"), (200, SESSION)]
    result = session(broker.url, tmp_path, "--chain", chain_file(tmp_path))
    assert result.exit_code == 0, result.output
    assert len(broker.requests) == 2


def test_session_keeps_getting_503(broker: FakeBroker, tmp_path: Path) -> None:
    broker.script["/sev/v0/session"] = [problem(503, "busy")]
    result = run("sev-session", "--url", broker.url, "--tee", "sev", "--policy", "1", "--out",
                 tmp_path / "out", "--chain", chain_file(tmp_path), "--deadline", "0.5")
    assert result.exit_code == 3, result.output
    assert "gave up after" in result.stderr
    assert len(broker.requests) >= 2


def test_session_refused_by_the_chain_check(broker: FakeBroker, tmp_path: Path) -> None:
    broker.script["/sev/v0/session"] = [problem(401, "the platform chain: UntrustedRootError")]
    result = session(broker.url, tmp_path, "--chain", chain_file(tmp_path), "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["http-status"] == 401
    assert "UntrustedRootError" in result.stderr
    assert not (tmp_path / "out" / "launch.json").exists()


def test_session_with_an_unreachable_broker(closed_url: str, tmp_path: Path) -> None:
    result = run("sev-session", "--url", closed_url, "--tee", "sev", "--policy", "1", "--out",
                 tmp_path / "out", "--chain", chain_file(tmp_path), "--deadline", "0.5", "--json")
    assert result.exit_code == 3, result.output
    assert json.loads(result.stdout)["status"] == "undecided"


@pytest.mark.parametrize(("name", "answer"), [
    ("godh_short", {**SESSION, "godh-cert": b64(b"G" * 10)}),
    ("session_not_base64", {**SESSION, "session": "###"}),
    ("other_policy", {**SESSION, "policy": 7}),
    ("no_launch_id", {k: v for k, v in SESSION.items() if k != "launch-id"}),
    ("bad_expiry", {**SESSION, "expires-at": "tomorrow"}),
    ("not_an_object", [1, 2]),
    ("not_json", b"<html>"),
    ("deep_nesting", b"[" * 100_000 + b"]" * 100_000),
    ("lone_surrogate_id", {**SESSION, "launch-id": "\ud800"}),
])
def test_session_with_an_unusable_answer(broker: FakeBroker, tmp_path: Path, name: str,
                                         answer: Any) -> None:
    broker.script["/sev/v0/session"] = [(200, answer)]
    result = session(broker.url, tmp_path, "--chain", chain_file(tmp_path))
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("name", "args"), [
    ("no_platform", []),
    ("two_platforms", ["--chain", "CHAIN", "--qmp", "sock"]),
    ("pdh_alone", ["--pdh", "CHAIN"]),
    ("missing_chain_file", ["--chain", "absent.bin"]),
    ("empty_chain_file", ["--chain", "EMPTY"]),
    ("policy_not_hex", ["--chain", "CHAIN", "--policy", "zz"]),
    ("policy_over_u32", ["--chain", "CHAIN", "--policy", "0x100000000"]),
    ("es_bit_without_sev_es", ["--chain", "CHAIN", "--tee", "sev", "--policy", "0x5"]),
    ("sev_es_without_es_bit", ["--chain", "CHAIN", "--policy", "0x1"]),
    ("unknown_tee", ["--chain", "CHAIN", "--tee", "snp"]),
])
def test_session_usage_errors(broker: FakeBroker, tmp_path: Path, name: str,
                              args: list[str]) -> None:
    (tmp_path / "EMPTY").write_bytes(b"")
    given = [str(chain_file(tmp_path)) if a == "CHAIN" else str(tmp_path / a) if a in (
        "EMPTY", "absent.bin") else a for a in args]
    result = session(broker.url, tmp_path, *given)
    assert result.exit_code == 2, result.output
    assert broker.requests == []


def test_session_out_is_a_file(broker: FakeBroker, tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x")
    result = session(broker.url, tmp_path, "--chain", chain_file(tmp_path))
    assert result.exit_code == 2


def test_session_qemu_absent(broker: FakeBroker, tmp_path: Path) -> None:
    result = session(broker.url, tmp_path, "--qmp", tmp_path / "absent.sock")
    assert result.exit_code == 3
    assert "no QMP socket" in result.stderr


def test_session_with_a_broker_that_hangs(tmp_path: Path) -> None:
    started = time.monotonic()
    with SilentService() as silent:
        result = session(silent.url, tmp_path, "--chain", chain_file(tmp_path),
                         "--deadline", "0.5")
    assert result.exit_code == 3, result.output
    assert time.monotonic() - started < 5


def test_a_refusal_with_a_lone_surrogate_prints(broker: FakeBroker, tmp_path: Path) -> None:
    broker.script["/sev/v0/session"] = [problem(403, "denied \ud800 here")]
    result = session(broker.url, tmp_path, "--chain", chain_file(tmp_path), "--json")
    assert result.exit_code == 1, result.output
    assert "denied" in json.loads(result.stdout)["error"]["detail"]


# -- sev-launch ----------------------------------------------------------------------------------


def test_launch_relays_injects_and_resumes(broker: FakeBroker, qemu: FakeQmpServer,
                                           tmp_path: Path) -> None:
    digest = "AB" * 32
    result = launch(broker.url, qemu, tmp_path, "--launch-digest", digest)
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(GUID), "default/luks/root"]
    assert broker.requests == [("/sev/v0/secret", {
        "launch-id": LAUNCH_ID, "measurement": b64(MEASURE + MNONCE), "api-major": 1,
        "api-minor": 55, "build-id": 21, "policy": 5, "resources": ["default/luks/root"],
        "launch-digest": digest.lower()})]
    assert qemu.injected == [(HEADER, SECRET, None)]
    assert qemu.state == "running"


def test_launch_no_cont_json(broker: FakeBroker, qemu: FakeQmpServer, tmp_path: Path) -> None:
    result = launch(broker.url, qemu, tmp_path, "--no-cont", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "status": "ok", "launch-id": LAUNCH_ID, "resumed": False, "error": None,
        "entries": [{"resource": "default/luks/root", "guid": str(GUID)}]}
    assert qemu.state == "launch-secret" and qemu.injected


def test_launch_denied_by_policy(broker: FakeBroker, qemu: FakeQmpServer,
                                 tmp_path: Path) -> None:
    broker.script["/sev/v0/secret"] = [problem(403, "policy denies: debug allowed by policy")]
    result = launch(broker.url, qemu, tmp_path)
    assert result.exit_code == 1
    assert "refused:" in result.stderr and "debug allowed by policy" in result.stderr
    assert qemu.injected == [] and qemu.state == "launch-secret"


@pytest.mark.parametrize(("status", "code"), [(401, 1), (404, 1), (410, 1), (400, 2), (500, 3)])
def test_launch_problem_statuses(broker: FakeBroker, qemu: FakeQmpServer, tmp_path: Path,
                                 status: int, code: int) -> None:
    broker.script["/sev/v0/secret"] = [problem(status, f"status {status}")]
    result = launch(broker.url, qemu, tmp_path, "--json")
    assert result.exit_code == code
    assert json.loads(result.stdout)["error"]["detail"].endswith(f"status {status}")


def test_launch_with_a_broker_that_hangs(qemu: FakeQmpServer, tmp_path: Path) -> None:
    with SilentService() as silent:
        result = launch(silent.url, qemu, tmp_path, "--deadline", "0.5")
    assert result.exit_code == 3, result.output
    assert "not sent again" in result.stderr
    assert qemu.injected == []


def test_launch_retries_503(broker: FakeBroker, qemu: FakeQmpServer, tmp_path: Path) -> None:
    broker.script["/sev/v0/secret"] = [problem(503, "busy"), (200, PACKET)]
    result = launch(broker.url, qemu, tmp_path)
    assert result.exit_code == 0, result.output
    assert len(broker.requests) == 2 and qemu.injected


def test_launch_with_an_unreachable_broker(closed_url: str, qemu: FakeQmpServer,
                                           tmp_path: Path) -> None:
    result = launch(closed_url, qemu, tmp_path, "--deadline", "0.5")
    assert result.exit_code == 3, result.output
    assert qemu.injected == [] and qemu.state == "launch-secret"


def test_launch_packet_the_firmware_refuses(broker: FakeBroker, qemu: FakeQmpServer,
                                            tmp_path: Path) -> None:
    broker.script["/sev/v0/secret"] = [(200, {**PACKET, "packet-header": b64(b"\x01" * 52)})]
    result = launch(broker.url, qemu, tmp_path)
    assert result.exit_code == 3
    assert "failed to inject" in result.stderr
    assert qemu.state == "launch-secret"


@pytest.mark.parametrize(("name", "answer"), [
    ("header_51_bytes", {**PACKET, "packet-header": b64(b"h" * 51)}),
    ("secret_empty", {**PACKET, "secret": ""}),
    ("entries_missing", {k: v for k, v in PACKET.items() if k != "entries"}),
    ("entry_without_guid", {**PACKET, "entries": [{"resource": "default/luks/root"}]}),
    ("entry_of_another_resource", {**PACKET, "entries": [{"resource": "a/b/c",
                                                          "guid": str(GUID)}]}),
])
def test_launch_with_an_unusable_answer(broker: FakeBroker, qemu: FakeQmpServer,
                                        tmp_path: Path, name: str, answer: Any) -> None:
    broker.script["/sev/v0/secret"] = [(200, answer)]
    result = launch(broker.url, qemu, tmp_path)
    assert result.exit_code == 3, result.output
    assert qemu.injected == []


def test_launch_qemu_absent(broker: FakeBroker, tmp_path: Path) -> None:
    result = run("sev-launch", "--url", broker.url, "--qmp", tmp_path / "absent.sock",
                 "--launch", launch_file(tmp_path), "--resource", "default/luks/root")
    assert result.exit_code == 3
    assert broker.requests == []


def test_launch_qemu_hangs(broker: FakeBroker, tmp_path: Path) -> None:
    with FakeQmpServer(StubFirmware(), faults={"query-sev-launch-measure": "hang"}) as hung:
        result = launch(broker.url, hung, tmp_path, "--qmp-timeout", "0.3")
    assert result.exit_code == 3
    assert broker.requests == []


def test_launch_after_the_guest_runs(broker: FakeBroker, qemu: FakeQmpServer,
                                     tmp_path: Path) -> None:
    qemu.state = "running"
    result = launch(broker.url, qemu, tmp_path)
    assert result.exit_code == 2
    assert "not launch-secret" in result.stderr


@pytest.mark.parametrize(("args", "record"), [
    pytest.param([], {"policy": 7}, id="policy_mismatch"),
    pytest.param([], {"tee": "sev"}, id="tee_mismatch"),
    pytest.param(["--resource", "no-slashes"], {}, id="bad_resource"),
    pytest.param(["--resource", "default/luks/root"], {}, id="resource_twice"),
    pytest.param(["--launch-digest", "abc"], {}, id="bad_digest"),
    pytest.param([], {"tee": "tdx"}, id="launch_json_bad_tee"),
])
def test_launch_usage_errors(broker: FakeBroker, qemu: FakeQmpServer, tmp_path: Path,
                             args: list[str], record: dict[str, Any]) -> None:
    launch_file(tmp_path, **record)
    result = run("sev-launch", "--url", broker.url, "--qmp", qemu.path, "--launch",
                 tmp_path / "launch.json", "--resource", "default/luks/root", *args)
    assert result.exit_code == 2, result.output
    assert broker.requests == [] and qemu.injected == []


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1]", b"[" * 50_000, b"\xff"])
def test_launch_with_a_bad_launch_file(broker: FakeBroker, qemu: FakeQmpServer,
                                       tmp_path: Path, content: bytes) -> None:
    (tmp_path / "bad.json").write_bytes(content)
    result = run("sev-launch", "--url", broker.url, "--qmp", qemu.path, "--launch",
                 tmp_path / "bad.json", "--resource", "default/luks/root")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


# -- help and exit statuses ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["sev-session", "sev-launch"])
def test_help_explains_the_flow(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for words in ("POST /sev/v0/session", "sev-inject-launch-secret", "-S", "Example"):
        assert words in text


def test_missing_option_is_usage() -> None:
    assert run("sev-launch").exit_code == 2


def test_exit_codes_of_refusals() -> None:
    assert exit_code(BrokerRefusedError("x", http_status=403)) == 1
    assert exit_code(BrokerRefusedError("x", http_status=422)) == 2
    assert exit_code(BrokerRefusedError("x", http_status=502)) == 3


def test_the_module_imports_no_http_client() -> None:
    assert "httpx" not in vars(host_cli)
