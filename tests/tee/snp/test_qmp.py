"""The QMP client against the fake QEMU: every SEV command, events skipped, error replies,
and a QEMU that hangs, sends garbage or closes mid-reply — typed errors, never a hang."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.errors import MisuseError
from veritee.tee.snp.qmp import (
    QmpClient,
    QmpCommandError,
    QmpError,
    QmpProtocolError,
    QmpTimeoutError,
    QmpUnavailableError,
    SevCapabilities,
    SevInfo,
    launch_measurement,
    parse_message,
    reply_value,
)
from veritee.testing.snp.qmp import FAULTS, GREETING, FakeQmpServer

MEASURE, MNONCE = bytes(range(32)), bytes(range(100, 116))
HEADER = b"\x00" * 4 + bytes(range(48))
PDH, CHAIN, CPU0 = b"P" * 0x824, b"C" * (3 * 0x824), b"I" * 64


class StubFirmware:
    """A SEV firmware that accepts one packet header (a stand-in for the MAC check)."""

    api_major, api_minor, build_id, policy = 1, 55, 21, 0x5

    def __init__(self) -> None:
        self.secrets: list[tuple[bytes, bytes]] = []

    def launch_measure(self) -> tuple[bytes, bytes]:
        return MEASURE, MNONCE

    def launch_secret(self, header: bytes, ciphertext: bytes) -> None:
        if header != HEADER:
            raise ValueError("bad MAC")
        self.secrets.append((header, ciphertext))

    def capabilities(self) -> tuple[bytes, bytes, bytes]:
        return PDH, CHAIN, CPU0


@pytest.fixture
def server() -> Iterator[FakeQmpServer]:
    with FakeQmpServer(StubFirmware()) as fake:
        yield fake


def client(server: FakeQmpServer, timeout: float = 2.0) -> QmpClient:
    return QmpClient(server.path, timeout=timeout)


# -- every command ---------------------------------------------------------------------------------


def test_greeting_and_negotiation(server: FakeQmpServer) -> None:
    with client(server) as vm:
        assert vm.greeting == GREETING
    assert server.commands == ["qmp_capabilities"]


def test_query_sev(server: FakeQmpServer) -> None:
    with client(server) as vm:
        info = vm.query_sev()
    assert info == SevInfo(enabled=True, api_major=1, api_minor=55, build_id=21, policy=0x5,
                           state="launch-secret", handle=1, sev_type="sev-es")


def test_query_sev_capabilities(server: FakeQmpServer) -> None:
    with client(server) as vm:
        caps = vm.query_sev_capabilities()
    pdh, chain, cpu0 = caps
    assert (pdh, chain, cpu0) == (PDH, CHAIN, CPU0)
    assert (caps.cbitpos, caps.reduced_phys_bits) == (51, 1)


def test_query_sev_launch_measure(server: FakeQmpServer) -> None:
    with client(server) as vm:
        assert vm.query_sev_launch_measure() == MEASURE + MNONCE


def test_inject_then_cont(server: FakeQmpServer) -> None:
    with client(server) as vm:
        vm.inject_launch_secret(HEADER, b"s" * 48, gpa=0x80_0000)
        assert vm.query_status()["status"] == "prelaunch"
        vm.cont()
        assert vm.query_status() == {"status": "running", "running": True, "singlestep": False}
        assert vm.query_sev().state == "running"
    assert server.injected == [(HEADER, b"s" * 48, 0x80_0000)]


def test_inject_without_gpa_sends_none(server: FakeQmpServer) -> None:
    with client(server) as vm:
        vm.inject_launch_secret(HEADER, b"s" * 16)
    assert server.injected == [(HEADER, b"s" * 16, None)]


def test_events_are_skipped_and_really_sent(server: FakeQmpServer) -> None:
    with socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(2)
        raw.connect(server.path)
        reader = raw.makefile("rb")
        assert "QMP" in json.loads(reader.readline())
        raw.sendall(b'{"execute": "qmp_capabilities"}\n{"execute": "query-status", "id": 7}\n')
        lines = [json.loads(reader.readline()) for _ in range(3)]
    assert lines[0] == {"return": {}}
    assert "event" in lines[1] and "timestamp" in lines[1]
    assert lines[2]["id"] == 7
    with client(server) as vm:  # the client sees only the replies
        for _ in range(3):
            assert vm.query_status()["running"] is False


def test_the_fake_requires_negotiation_first(server: FakeQmpServer) -> None:
    with socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(2)
        raw.connect(server.path)
        reader = raw.makefile("rb")
        reader.readline()
        raw.sendall(b'{"execute": "query-sev"}\n')
        reply = json.loads(reader.readline())
    assert reply["error"]["class"] == "CommandNotFound"


# -- error replies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "steps", "error_class", "desc"), [
    ("unknown_command", [("nosuch", None)], "CommandNotFound", "nosuch"),
    ("inject_after_cont", [("cont", None), ("inject", HEADER)], "GenericError",
     "Not in correct state"),
    ("bad_mac", [("inject", b"\x01" * 52)], "GenericError", "failed to inject"),
    ("negotiate_twice", [("qmp_capabilities", None)], "CommandNotFound", "already"),
])
def test_error_replies(server: FakeQmpServer, name: str, steps: list[tuple[str, Any]],
                       error_class: str, desc: str) -> None:
    with client(server) as vm, pytest.raises(QmpCommandError) as caught:
        for step, header in steps:
            if step == "inject":
                vm.inject_launch_secret(header, b"s" * 16)
            else:
                vm.execute(step)
    assert caught.value.error_class == error_class
    assert desc in caught.value.desc
    assert error_class in caught.value.detail


@pytest.mark.parametrize(("header", "secret", "gpa"), [
    (b"\x00" * 51, b"s", None), (HEADER, b"", None), (HEADER, b"s", -1), (HEADER, b"s", 2**64),
], ids=["short_header", "empty_secret", "negative_gpa", "gpa_over_u64"])
def test_inject_misuse(server: FakeQmpServer, header: bytes, secret: bytes,
                       gpa: int | None) -> None:
    with client(server) as vm, pytest.raises(MisuseError):
        vm.inject_launch_secret(header, secret, gpa)
    assert server.injected == []


# -- a QEMU that misbehaves ----------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "error"), [
    ("hang", QmpTimeoutError), ("garbage", QmpProtocolError), ("oversized", QmpProtocolError),
    ("close", QmpProtocolError), ("wrong-id", QmpProtocolError),
])
@pytest.mark.parametrize("on", ["greeting", "qmp_capabilities", "query-sev"])
def test_faults_give_typed_errors_quickly(fault: str, error: type[QmpError], on: str) -> None:
    assert fault in FAULTS
    started = time.monotonic()
    with FakeQmpServer(StubFirmware(), faults={on: fault}) as fake:
        vm = QmpClient(fake.path, timeout=0.3)
        with pytest.raises(error), vm:
            vm.query_sev()
    assert time.monotonic() - started < 3


def test_a_timeout_is_an_unavailable_error() -> None:
    assert issubclass(QmpTimeoutError, QmpUnavailableError)


def test_missing_socket(tmp_path: Path) -> None:
    with pytest.raises(QmpUnavailableError, match=r"no QMP socket.*-qmp unix"):
        QmpClient(tmp_path / "absent.sock").connect()


def test_nothing_listening(tmp_path: Path) -> None:
    path = Path("/tmp") / f"qmp-test-{time.monotonic_ns()}.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.close()  # the socket file stays, nobody listens
    try:
        with pytest.raises(QmpUnavailableError, match="nothing listens"):
            QmpClient(path).connect()
    finally:
        path.unlink()


def test_a_regular_file_is_not_a_socket(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(QmpUnavailableError):
        QmpClient(path).connect()


def test_not_connected() -> None:
    with pytest.raises(QmpUnavailableError, match="not connected"):
        QmpClient("unused").execute("query-sev")


def test_qemu_closing_between_commands(server: FakeQmpServer) -> None:
    with client(server) as vm:
        server.close()
        with pytest.raises(QmpUnavailableError):
            vm.query_sev()


# -- the reply parsers ---------------------------------------------------------------------------

SEV_INFO = {"enabled": True, "api-major": 0, "api-minor": 24, "build-id": 15, "policy": 1,
            "state": "launch-secret", "handle": 3}


@pytest.mark.parametrize(("name", "change"), [
    ("enabled_not_bool", {"enabled": 1}),
    ("api_major_bool", {"api-major": True}),
    ("api_minor_over_u8", {"api-minor": 256}),
    ("build_id_negative", {"build-id": -1}),
    ("policy_over_u32", {"policy": 2**32}),
    ("policy_missing", {"policy": None}),
    ("state_not_text", {"state": 3}),
    ("handle_float", {"handle": 1.0}),
    ("sev_type_not_text", {"sev-type": 2}),
])
def test_bad_query_sev_replies(name: str, change: dict[str, Any]) -> None:
    reply = {k: v for k, v in {**SEV_INFO, **change}.items() if v is not None}
    with pytest.raises(QmpProtocolError):
        SevInfo.from_qmp(reply)


def test_query_sev_of_older_and_snp_qemu() -> None:
    assert SevInfo.from_qmp(SEV_INFO).sev_type is None
    snp = {**SEV_INFO, "sev-type": "sev-snp", "snp-policy": 0x30000}
    del snp["policy"], snp["handle"]
    info = SevInfo.from_qmp(snp)
    assert (info.policy, info.handle, info.sev_type) == (0x30000, None, "sev-snp")


@pytest.mark.parametrize(("name", "reply"), [
    ("not_object", []),
    ("data_missing", {}),
    ("data_not_base64", {"data": "!!!!"}),
    ("data_47_bytes", {"data": base64.b64encode(b"x" * 47).decode()}),
    ("data_49_bytes", {"data": base64.b64encode(b"x" * 49).decode()}),
    ("data_lone_surrogate", {"data": "\ud800AAA"}),
])
def test_bad_launch_measure_replies(name: str, reply: Any) -> None:
    with pytest.raises(QmpProtocolError):
        launch_measurement(reply)


@pytest.mark.parametrize(("name", "reply"), [
    ("pdh_missing", {"cert-chain": "AAAA"}),
    ("chain_not_base64", {"pdh": "AAAA", "cert-chain": "A"}),
    ("cbitpos_bool", {"pdh": "AAAA", "cert-chain": "AAAA", "cbitpos": True}),
])
def test_bad_capability_replies(name: str, reply: Any) -> None:
    with pytest.raises(QmpProtocolError):
        SevCapabilities.from_qmp(reply)


@pytest.mark.parametrize(("name", "line"), [
    ("empty", b""),
    ("not_utf8", b"\xff\xfe{}"),
    ("array", b"[1, 2]"),
    ("nan", b'{"return": NaN}'),
    ("deep_nesting", b"[" * 100_000 + b"]" * 100_000),
    ("huge_integer", b'{"return": ' + b"9" * 5000 + b"}"),
    ("truncated", b'{"return": {"enab'),
])
def test_bad_lines(name: str, line: bytes) -> None:
    with pytest.raises(QmpProtocolError):
        parse_message(line)


def test_lone_surrogates_in_an_error_stay_printable() -> None:
    message = parse_message(b'{"error": {"class": "GenericError\\udc80", "desc": "x\\ud800"}}')
    with pytest.raises(QmpCommandError) as caught:
        reply_value(message, "query-sev")
    caught.value.detail.encode("utf-8")  # printable: no lone surrogate left


def test_a_reply_without_return_or_error() -> None:
    with pytest.raises(QmpProtocolError):
        reply_value({"id": 1}, "query-sev")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["return", "error", "class", "desc", "data", "pdh", "cert-chain",
                         "enabled", "state", "policy", "api-major", "sev-type", "x"]),
        inner, max_size=6),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode()))
def test_fuzz_parse_message_raises_only_protocol_errors(line: bytes) -> None:
    try:
        message = parse_message(line)
    except QmpProtocolError:
        return
    assert isinstance(message, dict)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_fuzz_reply_decoders_raise_only_qmp_errors(value: Any) -> None:
    for decode in (SevInfo.from_qmp, SevCapabilities.from_qmp, launch_measurement,
                   lambda v: reply_value(v if isinstance(v, dict) else {"x": v}, "c")):
        try:
            decode(value)
        except QmpError as exc:
            exc.detail.encode("utf-8")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=200) | st.sampled_from([
    json.dumps(GREETING).encode() + b"\r\n", b'{"return": {}, "id": 1}\r\n',
    b'{"event": "STOP"}\n', b"\n", b'{"return"']), max_size=6))
def test_fuzz_the_wire_gives_qmp_errors_only(chunks: list[bytes]) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    with ours, theirs:
        theirs.sendall(b"".join(chunks))
        theirs.close()
        vm = QmpClient.over(ours, timeout=0.5, max_line=256)
        try:
            vm.handshake()
            vm.query_sev()
        except QmpError:
            pass
