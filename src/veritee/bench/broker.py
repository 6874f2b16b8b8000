"""``veritee bench broker``: full KBS flows per second against the verification ceiling.

A flow is what one guest does to get one secret: ``POST /kbs/v0/auth``, then
``POST /kbs/v0/attest`` with emulated evidence (from the platform descriptor's
``broker_guest``, in the form that platform's guests send) bound to the challenge and
a fresh P-256 TEE key, then ``GET /kbs/v0/resource/...`` with the EAR token, and the JWE
decrypted and checked. Each flow is a new guest: a new TEE key, and a new TCP connection
(the last request says ``Connection: close``), which also spreads the flows over the
broker's workers.

The broker runs as it does in production, in a subprocess: :func:`veritee.server.run.run`
with one uvicorn worker per core, an SQLite store in a temporary data directory, emulated
roots trusted and no network. Reference values and the secret are provisioned through the
admin API. The load comes from this process: ``concurrency`` guests in one asyncio loop,
each with its own httpx client, running flows back to back for ``seconds``; latency is
measured per flow, from the first request to the checked plaintext.

The ceiling (``floor``) is verification alone — the same emulated evidence, one warm verifier
shared by two threads (the platform's own benchmark workload) — measured in the same run, in
slices between the load phases, while the broker is idle. ``ratio_to_floor`` is the best
flows/s over that ceiling: how much of the machine's verification capacity survives HTTP,
the store, appraisal, tokens and the JWE. The load client shares the machine's cores with
the broker, so the ratio counts the guests' own work (signing reports, decrypting) against
the broker; each level therefore also reports the CPU time per flow of the broker's
processes and of the guests (from /proc, on Linux), which stays meaningful on a busy machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any, Protocol

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

from veritee import binding
from veritee.bench.core import BenchResult, Figure, Settings, throughput
from veritee.broker.admin import mint_admin_token
from veritee.broker.config import Config, LimitsConfig, ServerConfig, VerificationConfig
from veritee.broker.jwe import concat_kdf
from veritee.encoding import b64url, b64url_decode
from veritee.errors import MisuseError
from veritee.server.run import run
from veritee.tee import Platform, get_platform, platforms

CONCURRENCY = (1, 8, 32)
CEILING_THREADS = 2
#: The broker's limits in this benchmark: every flow comes from one address, so the
#: per-client session budget is off; every other limit is the default.
BENCH_LIMITS = LimitsConfig(sessions_per_minute=0)
LIMITS_NOTE = "[limits] sessions_per_minute = 0 (one client address); other limits default"
SECRET_PATH = "bench/key/secret"
SECRET = b"veritee bench broker: the released secret"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
#: Warm-up before the first measurement (every worker compiles its policies and warms its
#: verifier cache on its first flows), at most this long.
WARMUP_SECONDS = 1.0


class BrokerBenchError(MisuseError):
    """The benchmark's broker did not start, or a flow that must succeed failed."""


# -- the broker in a subprocess ----------------------------------------------------------------


@dataclass(frozen=True)
class ServedBroker:
    url: str
    data_dir: Path
    pid: int
    workers: int


@contextlib.contextmanager
def served_broker(workers: int, overrides: dict[str, dict[str, Any]] | None = None, *,
                  seed: Callable[[Path], None] | None = None) -> Iterator[ServedBroker]:
    """A broker subprocess on a free loopback port; stopped (with its workers) on exit,
    on an error and on Ctrl-C. If this process dies, the broker sees its stdin close and
    stops itself. ``overrides``: configuration keys by section (``{"limits": {...}}``).
    ``seed`` is called with the (empty) data directory before the broker starts."""
    with tempfile.TemporaryDirectory(prefix="veritee-bench-") as tmp:
        data_dir = Path(tmp)
        if seed is not None:
            seed(data_dir)
        port = _free_port()
        spec = {"data_dir": str(data_dir), "port": port, "workers": workers,
                "overrides": overrides or {}}
        log_path = data_dir / "server.log"
        with log_path.open("wb") as log, _sigterm_as_exit():
            process = subprocess.Popen(
                [sys.executable, "-c", "from veritee.bench.broker import serve; serve()",
                 json.dumps(spec)],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                env=_clean_env(), start_new_session=True)
            try:
                url = f"http://127.0.0.1:{port}"
                _wait_healthy(url, process, log_path)
                yield ServedBroker(url, data_dir, process.pid, workers)
            finally:
                _stop(process)


def serve() -> None:
    """The subprocess: run the broker of the JSON spec in ``argv[1]`` until told to stop."""
    spec = json.loads(sys.argv[1])
    threading.Thread(target=_stop_when_parent_goes, daemon=True).start()
    config = Config(
        data_dir=spec["data_dir"],
        server=ServerConfig(host="127.0.0.1", port=spec["port"], workers=spec["workers"],
                            log_level="warning"),
        verification=VerificationConfig(trust_emulated=True, offline=True),
        limits=BENCH_LIMITS,
    )
    for section, values in spec.get("overrides", {}).items():
        changes = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        config = dataclasses.replace(
            config, **{section: dataclasses.replace(getattr(config, section), **changes)})
    try:
        run(config, None, notice=lambda _line: None)
    finally:
        _reap_resource_tracker()


def _reap_resource_tracker() -> None:
    """Stop and wait for multiprocessing's resource tracker (started with the workers), so
    that it does not outlive the broker as an orphan."""
    tracker = getattr(resource_tracker, "_resource_tracker", None)
    with contextlib.suppress(AttributeError, OSError, ChildProcessError):
        tracker._stop()  # type: ignore[union-attr]


def _stop_when_parent_goes() -> None:
    with contextlib.suppress(OSError):
        sys.stdin.buffer.read()
    os.kill(os.getpid(), signal.SIGTERM)


def _clean_env() -> dict[str, str]:
    """This environment without VERITEE_* settings, which would reconfigure the workers."""
    return {k: v for k, v in os.environ.items() if not k.startswith("VERITEE_")}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(base_url=url, timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BrokerBenchError(f"the broker exited ({process.returncode}) before it "
                                       f"served: {_tail(log_path)}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/healthz").status_code == 200:
                    return
            time.sleep(0.05)
    raise BrokerBenchError(f"the broker did not answer /healthz within {START_TIMEOUT:g} s: "
                           f"{_tail(log_path)}")


def _tail(path: Path, limit: int = 2000) -> str:
    return path.read_bytes()[-limit:].decode(errors="replace").strip() or "(no output)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the uvicorn supervisor (it stops its workers); SIGKILL to the process
    group this benchmark created if that does not end it in time."""
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """While the broker runs, SIGTERM unwinds this process (so the broker is stopped)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(_signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- provisioning --------------------------------------------------------------------------------


def provision(broker: ServedBroker, guest: Guest) -> None:
    """Reference values for the emulated guest and the secret, through the admin API."""
    key = serialization.load_pem_private_key(
        (broker.data_dir / "admin-key.pem").read_bytes(), password=None)
    token = mint_admin_token(key, now=datetime.now(UTC))
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=broker.url, headers=headers, timeout=30) as admin:
        _expect(admin.post("/kbs/v0/reference-value", json=guest.reference_values()),
                "reference values")
        _expect(admin.post(f"/kbs/v0/resource/{SECRET_PATH}", content=SECRET,
                           headers={"Content-Type": "application/octet-stream"}), "secret")


def _expect(response: httpx.Response, what: str) -> httpx.Response:
    if response.status_code != 200:
        raise BrokerBenchError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")
    return response


# -- the guests ------------------------------------------------------------------------------------


class Guest(Protocol):
    """The emulated guest side of the flows, as a platform's ``broker_guest`` provides it."""

    tee: str

    def reference_values(self) -> dict[str, Any]:
        """What the broker must hold for the guests to be affirming."""
        ...

    def evidence(self, report_data: bytes) -> Any:
        """Primary evidence bound to ``report_data`` (fresh, as the hardware would sign it)."""
        ...

    @property
    def vendor_url(self) -> str:
        """The vendor service the verifier asks for collateral (for ``bench hostile``)."""
        ...

    def forged_evidence(self, report_data: bytes) -> Any:
        """Evidence that makes the verifier ask :attr:`vendor_url` before it can refuse it
        (for ``bench hostile``'s flood)."""
        ...


def bench_platform(tee: str | None) -> Platform:
    """The platform whose guests drive the benchmark: ``tee``, or the first registered one
    that provides broker guests.

    Raises:
        MisuseError: ``tee`` provides none, or no platform does.
    """
    candidates = [p for p in platforms() if p.broker_guest is not None]
    chosen = [p for p in candidates if tee is None or p.tee == tee]
    if not chosen:
        offered = ", ".join(p.tee for p in candidates) or "none"
        raise MisuseError(f"no broker benchmark guests for TEE {tee!r}; offered by: {offered}")
    return chosen[0]


async def flow(client: httpx.AsyncClient, guest: Guest) -> float:
    """One full flow on ``client``; its latency in seconds.

    Raises:
        BrokerBenchError: a step did not answer 200, or the secret did not decrypt.
    """
    started = time.perf_counter()
    key = ec.generate_private_key(ec.SECP256R1())
    auth = _expect(await client.post("/kbs/v0/auth", json={"version": "0.4.0",
                                                           "tee": guest.tee}), "auth")
    runtime = {"tee-pubkey": jwk_of(key), "nonce": auth.json()["nonce"], "additional-evidence": ""}
    platform = get_platform(guest.tee)
    report_data = platform.report_data.expected(
        binding.runtime_data_digest(runtime, platform.hash_algorithm))
    attest = _expect(await client.post("/kbs/v0/attest", json={
        "runtime-data": runtime,
        "tee-evidence": {"primary_evidence": guest.evidence(report_data),
                         "additional_evidence": ""},
    }), "attest")
    resource = _expect(await client.get(f"/kbs/v0/resource/{SECRET_PATH}", headers={
        "Authorization": f"Bearer {attest.json()['token']}", "Connection": "close"}), "resource")
    if decrypt(key, resource.json()) != SECRET:
        raise BrokerBenchError("the released resource is not the provisioned secret")
    return time.perf_counter() - started


def jwk_of(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """The public JWK of a guest's ephemeral P-256 key."""
    numbers = key.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big"))}


def decrypt(key: ec.EllipticCurvePrivateKey, sealed: dict[str, str]) -> bytes:
    """Open an ECDH-ES+A256KW / A256GCM JWE (flattened) with cryptography primitives."""
    header = json.loads(_b64url_decode(sealed["protected"]))
    epk = header["epk"]
    peer = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), b"\x04" + _b64url_decode(epk["x"]) + _b64url_decode(epk["y"]))
    kek = concat_kdf(key.exchange(ec.ECDH(), peer), "ECDH-ES+A256KW", 256)
    cek = aes_key_unwrap(kek, _b64url_decode(sealed["encrypted_key"]))
    return AESGCM(cek).decrypt(_b64url_decode(sealed["iv"]),
                               _b64url_decode(sealed["ciphertext"]) + _b64url_decode(sealed["tag"]),
                               sealed["protected"].encode("ascii"))


def _b64url_decode(text: str) -> bytes:
    decoded = b64url_decode(text)
    if decoded is None:
        raise BrokerBenchError("the JWE holds a field that is not base64url")
    return decoded


# -- measuring -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    """The figures of one concurrency level."""

    concurrency: int
    flows: int
    elapsed: float
    latencies: tuple[float, ...]
    broker_cpu: float | None = None
    """CPU seconds the broker's processes used during the level (None: not measurable)."""
    client_cpu: float | None = None
    """CPU seconds this process (the guests) used during the level."""

    @property
    def flows_per_s(self) -> float:
        return self.flows / self.elapsed if self.elapsed > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        """Nearest-rank percentile of the flow latencies, in milliseconds."""
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return 1000 * ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    def cpu_ms_per_flow(self, seconds: float | None) -> float | None:
        return None if seconds is None or not self.flows else round(
            1000 * seconds / self.flows, 3)

    def to_dict(self) -> dict[str, Any]:
        return {"flows_per_s": round(self.flows_per_s, 1),
                "p50_ms": round(self.percentile_ms(0.5), 2),
                "p99_ms": round(self.percentile_ms(0.99), 2), "flows": self.flows,
                "broker_cpu_ms_per_flow": self.cpu_ms_per_flow(self.broker_cpu),
                "client_cpu_ms_per_flow": self.cpu_ms_per_flow(self.client_cpu)}


def group_cpu_seconds(group: int) -> float | None:
    """CPU seconds (user + system) used so far by the live processes of process group
    ``group``, from Linux's /proc; None where there is no /proc."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    ticks = 0
    for name in entries:
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group:          # proc(5): pgrp, then utime and stime
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


async def measure_level(broker: ServedBroker, guest: Guest, concurrency: int,
                        seconds: float) -> Level:
    """:func:`run_level` with the CPU time the broker and the guests used."""
    broker_before, client_before = group_cpu_seconds(broker.pid), time.process_time()
    level = await run_level(broker.url, guest, concurrency, seconds)
    broker_after, client_after = group_cpu_seconds(broker.pid), time.process_time()
    used = (None if broker_before is None or broker_after is None
            else broker_after - broker_before)
    return dataclasses.replace(level, broker_cpu=used, client_cpu=client_after - client_before)


class LoopbackTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 for one guest: one keep-alive connection, one request at a time.

    httpx's default transport (httpcore over anyio, h11) costs ≈0.5 ms of CPU per request on
    the project machine — more than the broker spends on some requests — and the load
    client shares the cores with the broker. This transport writes the request and reads a
    ``Content-Length`` response straight from an asyncio stream (≈0.1 ms), so the figures
    measure the broker rather than the client. It also keeps the guest's cookies (the KBS
    session cookie) itself, name and value, as the KBS client of guest-components does:
    httpx's cookie jar (``http.cookiejar``) costs about as much again. Requests and responses
    are still httpx's.
    """

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._cookies: dict[str, str] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._stream is None:
            self._stream = await asyncio.open_connection(*self._address)
        reader, writer = self._stream
        body = await request.aread()
        lines = [f"{request.method} {request.url.raw_path.decode('ascii')} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in request.headers.items()]
        if self._cookies and "cookie" not in request.headers:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self._cookies.items()))
        writer.write("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body)
        status, headers = _head(await reader.readuntil(b"\r\n\r\n"))
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), None)
        if length is None:
            raise BrokerBenchError(f"{request.url.path}: a response without Content-Length")
        content = await reader.readexactly(length)
        if any(k.lower() == "connection" and v.lower() == "close" for k, v in
               [*headers, *request.headers.items()]):
            await self.aclose()
        return httpx.Response(status, headers=self._keep_cookies(headers), content=content,
                              request=request)

    def _keep_cookies(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """``headers`` without Set-Cookie, whose name=value pairs this guest keeps."""
        kept = []
        for name, value in headers:
            if name.lower() == "set-cookie":
                cookie, _, cookie_value = value.split(";", 1)[0].partition("=")
                self._cookies[cookie.strip()] = cookie_value.strip()
            else:
                kept.append((name, value))
        return kept

    async def aclose(self) -> None:
        if self._stream is not None:
            writer = self._stream[1]
            self._stream = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _head(raw: bytes) -> tuple[int, list[tuple[str, str]]]:
    status_line, *header_lines = raw.decode("latin-1").rstrip("\r\n").split("\r\n")
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in header_lines]
    return int(status_line.split(" ", 2)[1]), [(k, v) for k, v in headers]


def guest_client(url: str) -> httpx.AsyncClient:
    """An httpx client for one guest, over :class:`LoopbackTransport`."""
    address = httpx.URL(url)
    return httpx.AsyncClient(base_url=url, timeout=60, trust_env=False,
                             transport=LoopbackTransport(address.host, address.port or 80))


async def run_level(url: str, guest: Guest, concurrency: int, seconds: float) -> Level:
    """``concurrency`` guests running flows back to back for ``seconds``."""
    clients = [guest_client(url) for _ in range(concurrency)]
    latencies: list[float] = []
    try:
        started = time.perf_counter()
        deadline = started + seconds

        async def one_guest(client: httpx.AsyncClient) -> None:
            while time.perf_counter() < deadline:
                latencies.append(await flow(client, guest))

        await asyncio.gather(*(one_guest(c) for c in clients))
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return Level(concurrency, len(latencies), elapsed, tuple(latencies))


@dataclass(frozen=True)
class BrokerBenchmark:
    name: str = "broker"
    description: str = ("full KBS flows/s (auth, attest with emulated evidence, resource) at "
                        "concurrency 1, 8, 32 vs. 2-thread verification of the same evidence "
                        "(--tee chooses the platform)")

    def planned_seconds(self, settings: Settings) -> float:
        return min(WARMUP_SECONDS, settings.seconds) + (len(CONCURRENCY) + 1) * settings.seconds

    def run(self, settings: Settings) -> BenchResult:
        workers = os.cpu_count() or 1
        platform = bench_platform(settings.tee)
        guest, verify = platform.load("broker_guest")()
        ceiling_ops = ceiling_time = 0.0
        levels: list[Level] = []
        with served_broker(workers) as broker:
            provision(broker, guest)
            warmup = min(WARMUP_SECONDS, settings.seconds)
            asyncio.run(run_level(broker.url, guest, 2 * workers, warmup))
            settings.advance("warm-up", warmup)
            for concurrency in CONCURRENCY:
                count, took = throughput(verify, settings.seconds / len(CONCURRENCY),
                                         CEILING_THREADS)
                ceiling_ops, ceiling_time = ceiling_ops + count, ceiling_time + took
                settings.advance(f"ceiling, {CEILING_THREADS} threads", took)
                level = asyncio.run(measure_level(broker, guest, concurrency, settings.seconds))
                levels.append(level)
                settings.advance(f"concurrency {concurrency}", level.elapsed)
        return _result(self.name, settings, levels, ceiling_ops / ceiling_time,
                       workers=workers, tee=guest.tee)


def _result(name: str, settings: Settings, levels: list[Level], ceiling: float, *,
            workers: int, tee: str) -> BenchResult:
    best = max(levels, key=lambda level: level.flows_per_s)
    extra: dict[str, Any] = {"unit": "full flows/s (best concurrency)", "tee": tee,
                             "workers": workers, "best_concurrency": best.concurrency,
                             "limits": LIMITS_NOTE}
    extra.update({f"concurrency_{level.concurrency}": level.to_dict() for level in levels})
    return BenchResult(benchmark=name, ops_per_s=best.flows_per_s,
                       floor=Figure(f"{tee}-verify-{CEILING_THREADS}-threads", ceiling),
                       peer=None, threads=CEILING_THREADS, seconds=settings.seconds,
                       extra=extra)


BENCHMARK = BrokerBenchmark()
