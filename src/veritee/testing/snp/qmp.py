"""A fake QEMU QMP server for a paused SEV or SEV-ES guest. TEST ONLY.

It speaks QMP's wire protocol (QEMU ``docs/interop/qmp-spec``) on a UNIX socket, from a
thread: the greeting, capabilities negotiation required before any other command, one
``{"return": ...}`` or ``{"error": {"class", "desc"}}`` per command echoing its ``id``, and
an event line before each reply when ``events`` is on (so a client must skip events). It
implements the commands of the SEV pre-attestation flow — ``query-sev``,
``query-sev-capabilities``, ``query-sev-launch-measure``, ``sev-inject-launch-secret``,
``cont``, ``query-status`` — over a pluggable :class:`SevFirmware` (an emulated SEV
firmware, or a stub).

The guest starts as QEMU leaves one started with ``-S`` once the firmware is loaded: SEV state
``launch-secret`` (measured), run state ``prelaunch``. ``cont`` finishes the launch (state
``running``); a secret can be injected only before.

Faults (:data:`FAULTS`) make it misbehave when a given command (or ``"greeting"``) comes:
``hang`` (never answer), ``garbage`` (a line that is not JSON), ``oversized`` (a line longer
than a client's limit), ``close`` (close in the middle of the reply), ``wrong-id`` (a reply
carrying another command's id).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Protocol

Fault = Literal["hang", "garbage", "oversized", "close", "wrong-id"]
FAULTS: Final[tuple[Fault, ...]] = ("hang", "garbage", "oversized", "close", "wrong-id")
#: The size of the line the ``oversized`` fault sends (over the client's default limit).
OVERSIZED: Final = (1 << 20) + 4096
#: The greeting of QEMU 9.2 (``version`` and ``capabilities`` as QEMU sends them).
GREETING: Final = {"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 9},
                                       "package": ""}, "capabilities": ["oob"]}}
_MAX_REQUEST: Final = 1 << 20


class SevFirmware(Protocol):
    """The SEV firmware behind a fake QEMU (SEV API: LAUNCH_MEASURE, LAUNCH_SECRET,
    PDH_CERT_EXPORT)."""

    api_major: int
    api_minor: int
    build_id: int
    policy: int

    def launch_measure(self) -> tuple[bytes, bytes]:
        """(MEASURE, MNONCE): 32 and 16 bytes."""
        ...

    def launch_secret(self, header: bytes, ciphertext: bytes) -> None:
        """Accept a LAUNCH_SECRET packet; raise (any exception) when its MAC does not verify."""
        ...

    def capabilities(self) -> tuple[bytes, bytes, bytes]:
        """(PDH, PEK ‖ OCA ‖ CEK, CPU0 id)."""
        ...


class FakeQmpServer:
    """A QEMU whose QMP socket is ``path`` (a fresh short path when not given).

    ``injected`` lists each (header, secret, gpa) the firmware accepted; ``commands`` each
    command received, in order; ``state`` is the SEV state ``query-sev`` reports.
    """

    def __init__(self, firmware: SevFirmware, *, path: str | Path | None = None,
                 faults: Mapping[str, Fault] | None = None, events: bool = True,
                 sev_es: bool | None = None, handle: int = 1, cbitpos: int = 51) -> None:
        self.firmware = firmware
        self._tmp = None if path is not None else tempfile.mkdtemp(prefix="qmp-")
        self.path = str(path) if path is not None else f"{self._tmp}/qmp.sock"
        self.faults = dict(faults or {})
        self.events = events
        self.sev_es = bool(firmware.policy & 0x4) if sev_es is None else sev_es
        self.handle = handle
        self.cbitpos = cbitpos
        self.state = "launch-secret"
        self.run_state = "prelaunch"
        self.injected: list[tuple[bytes, bytes, int | None]] = []
        self.commands: list[str] = []
        self._measurement: bytes | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._connections: list[socket.socket] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(8)
        self._listener.settimeout(0.05)
        self._thread = threading.Thread(target=self._accept, name="fake-qmp", daemon=True)
        self._thread.start()

    # -- lifetime --

    def close(self) -> None:
        """Stop serving, drop every connection and remove the socket (idempotent)."""
        self._stop.set()
        self._thread.join()
        self._listener.close()
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._connections.clear()
        with contextlib.suppress(OSError):
            Path(self.path).unlink()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> FakeQmpServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            with self._lock:
                self._connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    # -- one connection --

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self._converse(conn)
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
                conn.close()

    def _converse(self, conn: socket.socket) -> None:
        if self._misbehave(conn, "greeting", None):
            return
        self._send(conn, GREETING)
        negotiated = False
        for request in self._requests(conn):
            command = request.get("execute") if isinstance(request, dict) else None
            ident = request.get("id") if isinstance(request, dict) else None
            self.commands.append(str(command))
            if isinstance(command, str) and self._misbehave(conn, command, ident):
                return
            reply, negotiated = self._reply(request, negotiated)
            if ident is not None:
                reply["id"] = ident
            if self.events and negotiated and command != "qmp_capabilities":
                self._send(conn, _event("RTC_CHANGE", {"offset": 0, "qom-path": "/machine"}))
            self._send(conn, reply)

    def _requests(self, conn: socket.socket) -> Any:
        buffer = b""
        while not self._stop.is_set():
            line, newline, rest = buffer.partition(b"\n")
            if newline:
                buffer = rest
                try:
                    yield json.loads(line)
                except ValueError:
                    yield None
                continue
            if len(buffer) > _MAX_REQUEST:
                return
            try:
                conn.settimeout(0.05)
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return
            buffer += chunk

    def _misbehave(self, conn: socket.socket, command: str, ident: Any) -> bool:
        """Play the fault set for ``command``; True when the connection is to end."""
        fault = self.faults.get(command)
        if fault is None:
            return False
        conn.settimeout(5.0)
        if fault == "hang":
            self._stop.wait()
        elif fault == "garbage":
            conn.sendall(b"\x00\xffthis is not QMP\r\n")
        elif fault == "oversized":
            conn.sendall(b'{"return": "' + b"A" * OVERSIZED + b'"}\r\n')
        elif fault == "close":
            conn.sendall(b'{"return": {"enab')
        else:  # wrong-id
            self._send(conn, {"return": {}, "id": f"not-{ident}"})
        return True

    @staticmethod
    def _send(conn: socket.socket, message: Mapping[str, Any]) -> None:
        conn.settimeout(5.0)
        conn.sendall(json.dumps(message).encode() + b"\r\n")

    # -- the commands --

    def _reply(self, request: Any, negotiated: bool) -> tuple[dict[str, Any], bool]:
        if not isinstance(request, dict) or not isinstance(request.get("execute"), str):
            return _error("GenericError", "JSON parse error, expecting an object with "
                          "'execute'"), negotiated
        command = request["execute"]
        if command == "qmp_capabilities":
            if negotiated:
                return _error("CommandNotFound", "Capabilities negotiation is already "
                              "complete, command ignored"), True
            return {"return": {}}, True
        if not negotiated:
            return _error("CommandNotFound", "Expecting capabilities negotiation with "
                          "'qmp_capabilities'"), False
        handler = self._HANDLERS.get(command)
        if handler is None:
            return _error("CommandNotFound", f"The command {command} has not been found"), True
        arguments = request.get("arguments", {})
        if not isinstance(arguments, dict):
            return _error("GenericError", "Parameter 'arguments' expects a dict"), True
        with self._lock:
            return handler(self, arguments), True

    def _query_sev(self, _: dict[str, Any]) -> dict[str, Any]:
        fw = self.firmware
        return {"return": {"enabled": True, "api-major": fw.api_major, "api-minor": fw.api_minor,
                           "build-id": fw.build_id, "policy": fw.policy, "state": self.state,
                           "handle": self.handle, "sev-type": "sev-es" if self.sev_es else "sev"}}

    def _query_capabilities(self, _: dict[str, Any]) -> dict[str, Any]:
        pdh, chain, cpu0 = self.firmware.capabilities()
        return {"return": {"pdh": _b64(pdh), "cert-chain": _b64(chain), "cpu0-id": _b64(cpu0),
                           "cbitpos": self.cbitpos, "reduced-phys-bits": 1}}

    def _query_measure(self, _: dict[str, Any]) -> dict[str, Any]:
        if self.state not in ("launch-secret", "running"):
            return _error("GenericError", "SEV launch measurement is not available")
        if self._measurement is None:  # QEMU measures once, when the machine is ready
            measure, mnonce = self.firmware.launch_measure()
            self._measurement = measure + mnonce
        return {"return": {"data": _b64(self._measurement)}}

    def _inject(self, arguments: dict[str, Any]) -> dict[str, Any]:
        if self.state != "launch-secret":
            return _error("GenericError", "SEV: Not in correct state")
        header_text, secret_text = arguments.get("packet-header"), arguments.get("secret")
        gpa = arguments.get("gpa")
        if not isinstance(header_text, str) or not isinstance(secret_text, str) or not (
                gpa is None or isinstance(gpa, int)):
            return _error("GenericError", "Parameter 'packet-header' and 'secret' are required "
                          "strings; 'gpa' an integer")
        try:
            header = base64.b64decode(header_text, validate=True)
            secret = base64.b64decode(secret_text, validate=True)
        except (binascii.Error, ValueError):
            return _error("GenericError", "SEV: failed to decode base64")
        try:
            self.firmware.launch_secret(header, secret)
        except Exception as exc:  # the firmware's refusal, whatever it raises
            return _error("GenericError", "SEV: failed to inject secret: the firmware "
                          f"refused the packet ({type(exc).__name__})")
        self.injected.append((header, secret, gpa))
        return {"return": {}}

    def _cont(self, _: dict[str, Any]) -> dict[str, Any]:
        if self.state == "launch-secret":
            self.state = "running"  # LAUNCH_FINISH
        self.run_state = "running"
        return {"return": {}}

    def _query_status(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"return": {"status": self.run_state, "running": self.run_state == "running",
                           "singlestep": False}}

    _HANDLERS: Final = {
        "query-sev": _query_sev,
        "query-sev-capabilities": _query_capabilities,
        "query-sev-launch-measure": _query_measure,
        "sev-inject-launch-secret": _inject,
        "cont": _cont,
        "query-status": _query_status,
    }


def _error(error_class: str, desc: str) -> dict[str, Any]:
    return {"error": {"class": error_class, "desc": desc}}


def _event(name: str, data: Mapping[str, Any]) -> dict[str, Any]:
    now = time.time()
    return {"event": name, "data": dict(data),
            "timestamp": {"seconds": int(now), "microseconds": int(now % 1 * 1e6)}}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


__all__ = ["FAULTS", "GREETING", "OVERSIZED", "FakeQmpServer", "Fault", "SevFirmware"]
