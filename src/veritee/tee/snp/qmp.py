"""A small client of QEMU's machine protocol (QMP) over a UNIX socket, for the SEV host.

QMP (QEMU ``docs/interop/qmp-spec``) is one JSON object per line: the server greets first
(``{"QMP": {"version", "capabilities"}}``), the client must send ``qmp_capabilities`` before
any other command, and each command (``{"execute", "arguments", "id"}``) gets one reply,
``{"return": ...}`` or ``{"error": {"class", "desc"}}``, echoing the ``id``. Asynchronous
events (``{"event", "data", "timestamp"}``) may arrive between replies; they are skipped.

Only the commands of the SEV/SEV-ES pre-attestation flow have typed helpers
(QEMU ``qapi/misc-target.json``): ``query-sev``, ``query-sev-capabilities``,
``query-sev-launch-measure``, ``sev-inject-launch-secret``, ``cont`` and ``query-status``.

Every read and write has a deadline and every line a size limit, so a QEMU that hangs or
sends garbage gives a typed error, never a hang: :class:`QmpUnavailableError` (no socket,
no permission, nothing listening, no answer in time), :class:`QmpProtocolError` (a reply
that is not QMP) and :class:`QmpCommandError` (QEMU answered an ``error``).
"""

from __future__ import annotations

import base64
import binascii
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from veritee.attester.errors import CollectorError, CollectorUnavailableError
from veritee.errors import MisuseError

#: Seconds one command (its write and its reply) may take.
DEFAULT_TIMEOUT: Final = 10.0
#: The longest line accepted from QEMU; SEV replies are a few kilobytes.
MAX_LINE: Final = 1 << 20
#: Events skipped while waiting for one reply before the server is deemed broken.
MAX_EVENTS: Final = 10_000
#: The measurement query-sev-launch-measure returns: MEASURE(32) || MNONCE(16) (SEV API §6.5).
MEASUREMENT_SIZE: Final = 48
#: The LAUNCH_SECRET packet header: FLAGS u32 || IV(16) || MAC(32) (SEV API §6.6).
PACKET_HEADER_SIZE: Final = 52
_TEXT_LIMIT: Final = 300


class QmpError(CollectorError):
    """QEMU's QMP socket could not be used for what was asked."""


class QmpUnavailableError(QmpError, CollectorUnavailableError):
    """No QMP server answered: no socket, no permission, nothing listening, or no reply in
    time."""


class QmpTimeoutError(QmpUnavailableError):
    """QEMU did not answer within the timeout."""


class QmpProtocolError(QmpError):
    """What QEMU sent is not QMP (not JSON, too long, cut short, or the wrong shape)."""


class QmpCommandError(QmpError):
    """QEMU answered a command with an ``error`` reply; ``error_class`` and ``desc`` hold it."""

    def __init__(self, command: str, error_class: str, desc: str) -> None:
        super().__init__(f"QEMU refused {command}: {error_class}: {desc}")
        self.command = command
        self.error_class = error_class
        self.desc = desc


# -- the typed replies ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SevInfo:
    """``query-sev`` (QMP ``SevInfo``): the guest's SEV launch as QEMU sees it."""

    enabled: bool
    api_major: int
    api_minor: int
    build_id: int
    policy: int
    state: str
    """``uninit``, ``launch-update``, ``launch-secret`` (measured, waiting for a secret or
    ``cont``), ``running``, ``send-update`` or ``receive-update``."""
    handle: int | None
    sev_type: str | None = None
    """``sev``, ``sev-es`` or ``sev-snp`` (QEMU 9.1+; None from older QEMU)."""

    @classmethod
    def from_qmp(cls, reply: Any) -> SevInfo:
        """The fields of a ``query-sev`` return value.

        Raises:
            QmpProtocolError: a field is missing or out of range.
        """
        info = _object(reply, "query-sev")
        sev_type = info.get("sev-type")
        if sev_type is not None and not isinstance(sev_type, str):
            raise QmpProtocolError(f"query-sev: sev-type is {_show(sev_type)}, not text")
        snp = sev_type == "sev-snp"
        enabled = info.get("enabled")
        if not isinstance(enabled, bool):
            raise QmpProtocolError(f"query-sev: enabled is {_show(enabled)}, not a boolean")
        state = info.get("state")
        if not isinstance(state, str):
            raise QmpProtocolError(f"query-sev: state is {_show(state)}, not text")
        handle = None if snp else _int(info, "handle", 2**32, "query-sev")
        return cls(enabled=enabled, api_major=_int(info, "api-major", 256, "query-sev"),
                   api_minor=_int(info, "api-minor", 256, "query-sev"),
                   build_id=_int(info, "build-id", 256, "query-sev"),
                   policy=_int(info, "snp-policy" if snp else "policy",
                               2**64 if snp else 2**32, "query-sev"),
                   state=_clean(state), handle=handle, sev_type=sev_type and _clean(sev_type))


@dataclass(frozen=True, slots=True)
class SevCapabilities:
    """``query-sev-capabilities`` (QMP ``SevCapability``): the platform's PDH, its chain
    PEK ‖ OCA ‖ CEK and the first CPU's id (to fetch the signed CEK from AMD's KDS).

    Unpacks as ``pdh, cert_chain, cpu0_id = caps``.
    """

    pdh: bytes
    cert_chain: bytes
    cpu0_id: bytes
    cbitpos: int | None = None
    reduced_phys_bits: int | None = None

    def __iter__(self) -> Iterator[bytes]:
        return iter((self.pdh, self.cert_chain, self.cpu0_id))

    @classmethod
    def from_qmp(cls, reply: Any) -> SevCapabilities:
        """Raises: QmpProtocolError: a field is missing or not base64."""
        caps = _object(reply, "query-sev-capabilities")
        what = "query-sev-capabilities"
        optional = {k: _int(caps, k, 64, what) if k in caps else None
                    for k in ("cbitpos", "reduced-phys-bits")}
        return cls(pdh=_b64(caps, "pdh", what), cert_chain=_b64(caps, "cert-chain", what),
                   cpu0_id=_b64(caps, "cpu0-id", what) if "cpu0-id" in caps else b"",
                   cbitpos=optional["cbitpos"],
                   reduced_phys_bits=optional["reduced-phys-bits"])


def launch_measurement(reply: Any) -> bytes:
    """The 48 bytes MEASURE ‖ MNONCE of a ``query-sev-launch-measure`` return value.

    Raises:
        QmpProtocolError: ``data`` is missing, not base64, or not 48 bytes.
    """
    data = _b64(_object(reply, "query-sev-launch-measure"), "data", "query-sev-launch-measure")
    if len(data) != MEASUREMENT_SIZE:
        raise QmpProtocolError(f"query-sev-launch-measure: data is {len(data)} bytes; the "
                               f"launch measurement is {MEASUREMENT_SIZE} (MEASURE ‖ MNONCE)")
    return data


# -- the wire --------------------------------------------------------------------------------------


def parse_message(line: bytes) -> dict[str, Any]:
    """One QMP line as a JSON object.

    Raises:
        QmpProtocolError: not UTF-8, not JSON, nested too deep, or not an object.
    """
    try:
        document = json.loads(line.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise QmpProtocolError(f"QEMU sent a line that is not JSON ({_show(line[:80])}): is "
                               "the socket QEMU's QMP socket (-qmp unix:PATH,server=on)?"
                               ) from exc
    if not isinstance(document, dict):
        raise QmpProtocolError(f"QEMU sent {_show(document)}, not a JSON object")
    return document


def reply_value(message: dict[str, Any], command: str) -> Any:
    """The ``return`` of a reply to ``command``.

    Raises:
        QmpCommandError: the reply is an ``error``.
        QmpProtocolError: neither a ``return`` nor an ``error`` of QMP's shape.
    """
    if "return" in message:
        return message["return"]
    error = message.get("error")
    if isinstance(error, dict) and isinstance(error.get("class"), str):
        desc = error.get("desc")
        raise QmpCommandError(command, _clean(error["class"]),
                              _clean(desc if isinstance(desc, str) else ""))
    raise QmpProtocolError(f"QEMU's reply to {command} has neither 'return' nor 'error': "
                           f"{_show(message)}")


class QmpClient:
    """One QMP session over the UNIX socket at ``path`` (``-qmp unix:PATH,server=on,wait=off``).

    Use it as a context manager: entering connects, reads the greeting and negotiates
    capabilities; leaving closes the socket. ``timeout`` bounds each command.
    """

    def __init__(self, path: str | Path, *, timeout: float = DEFAULT_TIMEOUT,
                 max_line: int = MAX_LINE) -> None:
        self.path = str(path)
        self.timeout = timeout
        self.max_line = max_line
        self.greeting: dict[str, Any] | None = None
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._next_id = 0

    # -- the session --

    def connect(self) -> dict[str, Any]:
        """Connect, read the greeting and send ``qmp_capabilities``; returns the greeting.

        Raises:
            QmpUnavailableError: no socket, no permission, nothing listening, no greeting in
                time.
            QmpProtocolError: the greeting or the negotiation reply is not QMP's.
            QmpCommandError: QEMU refused the capabilities negotiation.
        """
        self.close()
        self._sock = _connect(self.path, self.timeout)
        return self.handshake()

    def handshake(self) -> dict[str, Any]:
        """Read the greeting and negotiate capabilities on the connected socket; returns the
        greeting. Raises what :meth:`connect` raises."""
        try:
            greeting = self._read_message(time.monotonic() + self.timeout, "the greeting")
            if not isinstance(greeting.get("QMP"), dict):
                raise QmpProtocolError(f"{self.path} greeted with {_show(greeting)}, not QMP's "
                                       "greeting: is it QEMU's -qmp socket?")
            self.greeting = greeting
            self.execute("qmp_capabilities")
        except BaseException:
            self.close()
            raise
        return greeting

    @classmethod
    def over(cls, sock: socket.socket, *, timeout: float = DEFAULT_TIMEOUT,
             max_line: int = MAX_LINE) -> QmpClient:
        """A client over an already connected socket (not yet greeted: call :meth:`handshake`)."""
        client = cls("<socket>", timeout=timeout, max_line=max_line)
        client._sock = sock
        return client

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buffer = b""

    def __enter__(self) -> QmpClient:
        self.connect()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run ``command`` and return its ``return`` value (events before it are skipped).

        Raises:
            QmpCommandError: QEMU answered an ``error`` (its class and description).
            QmpUnavailableError: not connected, the connection broke, or no reply in time.
            QmpProtocolError: the reply is not QMP's.
        """
        self._next_id += 1
        request: dict[str, Any] = {"execute": command, "id": self._next_id}
        if arguments is not None:
            request["arguments"] = arguments
        deadline = time.monotonic() + self.timeout
        self._send(request, deadline, command)
        for _ in range(MAX_EVENTS):
            message = self._read_message(deadline, f"the reply to {command}")
            if "event" in message:
                continue
            if message.get("id") != self._next_id:
                raise QmpProtocolError(f"QEMU's reply to {command} carries id "
                                       f"{_show(message.get('id'))}, not {self._next_id}")
            return reply_value(message, command)
        raise QmpProtocolError(f"QEMU sent {MAX_EVENTS} events and no reply to {command}")

    # -- the SEV commands --

    def query_sev(self) -> SevInfo:
        """``query-sev``. Raises what :meth:`execute` raises."""
        return SevInfo.from_qmp(self.execute("query-sev"))

    def query_sev_capabilities(self) -> SevCapabilities:
        """``query-sev-capabilities``. Raises what :meth:`execute` raises."""
        return SevCapabilities.from_qmp(self.execute("query-sev-capabilities"))

    def query_sev_launch_measure(self) -> bytes:
        """``query-sev-launch-measure``: MEASURE(32) ‖ MNONCE(16). Raises what
        :meth:`execute` raises."""
        return launch_measurement(self.execute("query-sev-launch-measure"))

    def inject_launch_secret(self, header: bytes, secret: bytes, gpa: int | None = None) -> None:
        """``sev-inject-launch-secret``: the LAUNCH_SECRET packet (52-byte header and the
        encrypted secret table); without ``gpa`` QEMU writes it where OVMF's footer says.

        Raises:
            MisuseError: the header is not 52 bytes, the secret is empty, ``gpa`` not a u64.
            QmpCommandError: QEMU or the firmware refused the packet (e.g. a MAC that does
                not match this launch, or the guest is no longer in state launch-secret).
            QmpUnavailableError, QmpProtocolError: as :meth:`execute`.
        """
        if len(header) != PACKET_HEADER_SIZE:
            raise MisuseError(f"the packet header is {len(header)} bytes; LAUNCH_SECRET's is "
                              f"{PACKET_HEADER_SIZE}")
        if not secret:
            raise MisuseError("the launch secret is empty")
        arguments: dict[str, Any] = {"packet-header": base64.b64encode(header).decode(),
                                     "secret": base64.b64encode(secret).decode()}
        if gpa is not None:
            if not 0 <= gpa < 2**64:
                raise MisuseError(f"gpa is {gpa}; a guest physical address is a u64")
            arguments["gpa"] = gpa
        self.execute("sev-inject-launch-secret", arguments)

    def cont(self) -> None:
        """``cont``: resume the guest (QEMU finishes the SEV launch first)."""
        self.execute("cont")

    def query_status(self) -> dict[str, Any]:
        """``query-status``: ``{"status": "prelaunch" | "paused" | "running" | ...,
        "running": bool}``."""
        return _object(self.execute("query-status"), "query-status")

    # -- lines --

    def _send(self, request: dict[str, Any], deadline: float, command: str) -> None:
        sock = self._connected()
        try:
            sock.settimeout(_remaining(deadline, command))
            sock.sendall(json.dumps(request).encode() + b"\n")
        except TimeoutError as exc:
            raise QmpTimeoutError(f"QEMU did not take {command} within {self.timeout:g} s "
                                  f"({self.path})") from exc
        except OSError as exc:
            raise QmpUnavailableError(f"sending {command} to {self.path}: "
                                      f"{exc.strerror or exc}; is QEMU still running?") from exc

    def _read_message(self, deadline: float, what: str) -> dict[str, Any]:
        return parse_message(self._read_line(deadline, what))

    def _read_line(self, deadline: float, what: str) -> bytes:
        while True:
            line, newline, rest = self._buffer.partition(b"\n")
            if newline:
                self._buffer = rest
                if len(line) > self.max_line:
                    raise self._oversized(what)
                return line
            if len(self._buffer) > self.max_line:
                raise self._oversized(what)
            self._buffer += self._recv(deadline, what)

    def _recv(self, deadline: float, what: str) -> bytes:
        sock = self._connected()
        try:
            sock.settimeout(_remaining(deadline, what))
            chunk = sock.recv(65536)
        except TimeoutError as exc:
            self.close()
            raise QmpTimeoutError(f"QEMU sent no {what} within {self.timeout:g} s "
                                  f"({self.path}): is the VM hung?") from exc
        except OSError as exc:
            self.close()
            raise QmpUnavailableError(f"reading {what} from {self.path}: "
                                      f"{exc.strerror or exc}") from exc
        if not chunk:
            partial = bool(self._buffer)
            self.close()
            if partial:
                raise QmpProtocolError(f"QEMU closed {self.path} in the middle of {what}")
            raise QmpUnavailableError(f"QEMU closed {self.path} before {what}: did it exit?")
        return chunk

    def _oversized(self, what: str) -> QmpProtocolError:
        self.close()
        return QmpProtocolError(f"{what} is longer than {self.max_line} bytes: not a reply of "
                                "QEMU's SEV commands")

    def _connected(self) -> socket.socket:
        if self._sock is None:
            raise QmpUnavailableError(f"not connected to {self.path} (use the client as a "
                                      "context manager, or call connect())")
        return self._sock


def _connect(path: str, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    hint = "start QEMU with -qmp unix:PATH,server=on,wait=off and pass that PATH"
    try:
        sock.connect(path)
    except FileNotFoundError as exc:
        sock.close()
        raise QmpUnavailableError(f"no QMP socket at {path}: {hint}") from exc
    except PermissionError as exc:
        sock.close()
        raise QmpUnavailableError(f"no permission to open the QMP socket {path}: run as the "
                                  "user QEMU runs as (or root)") from exc
    except ConnectionRefusedError as exc:
        sock.close()
        raise QmpUnavailableError(f"nothing listens on {path}: QEMU has exited or its QMP "
                                  f"server is elsewhere; {hint}") from exc
    except TimeoutError as exc:
        sock.close()
        raise QmpTimeoutError(f"connecting to {path} took over {timeout:g} s") from exc
    except OSError as exc:  # not a socket, a path too long for AF_UNIX, ...
        sock.close()
        raise QmpUnavailableError(f"cannot connect to the QMP socket {path}: "
                                  f"{exc.strerror or exc}; {hint}") from exc
    return sock


def _remaining(deadline: float, what: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise QmpTimeoutError(f"QEMU did not complete {what} in time")
    return left


# -- fields ----------------------------------------------------------------------------------------


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise QmpProtocolError(f"{what} returned {_show(value)}, not an object")
    return value


def _int(fields: dict[str, Any], name: str, bound: int, what: str) -> int:
    value = fields.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < bound:
        raise QmpProtocolError(f"{what}: {name} is {_show(value)}, not an integer in "
                               f"0..{bound - 1}")
    return value


def _b64(fields: dict[str, Any], name: str, what: str) -> bytes:
    value = fields.get(name)
    if not isinstance(value, str):
        raise QmpProtocolError(f"{what}: {name} is {_show(value)}, not base64 text")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise QmpProtocolError(f"{what}: {name} is not base64 ({_show(value[:40])})") from exc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _clean(text: str) -> str:
    """Text from QEMU made safe to print: lone surrogates escaped, length bounded."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return safe if len(safe) <= _TEXT_LIMIT else safe[:_TEXT_LIMIT] + "…"


def _show(value: Any) -> str:
    try:
        text = repr(value)
    except RecursionError:
        text = f"<a deeply nested {type(value).__name__}>"
    return _clean(text[: _TEXT_LIMIT * 2])


__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_LINE",
    "MEASUREMENT_SIZE",
    "PACKET_HEADER_SIZE",
    "QmpClient",
    "QmpCommandError",
    "QmpError",
    "QmpProtocolError",
    "QmpTimeoutError",
    "QmpUnavailableError",
    "SevCapabilities",
    "SevInfo",
    "launch_measurement",
    "parse_message",
    "reply_value",
]
