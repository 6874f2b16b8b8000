"""``veritee bench hostile``: the broker under attack and under faults, as figures.

Four phases, each against a broker subprocess run as ``veritee serve`` runs it (SQLite,
emulated roots trusted, and the limits each phase names):

1. **bad-input sweep** — every JSON field of every KBS and admin endpoint (admin ones with a
   valid token) replaced in turn by hostile values (lone surrogates, deep nesting, NaN,
   huge strings, wrong types), plus malformed bodies: requests sent, answers by status,
   500s (must be 0), answers that are not RFC 7807 problem bodies;
2. **a locked store** — another process holds SQLite's write lock for 10 s: ``/healthz``
   latency (bound: < 100 ms), and how ``/auth`` (writes nothing), ``/attest`` (writes) and
   ``/readyz`` answer and how fast (bound: a retryable 503 within 1 s where a write is
   needed);
3. **a forged-report flood** — 20 ``/attest`` requests with forged evidence that makes the
   verifier ask the vendor for collateral (the platform's benchmark guest says how: for an
   SEV-SNP guest, a report without certificates and with a random CHIP_ID) in flight against
   a vendor service that never answers (a loopback listener that accepts and stays silent,
   reached through ``[verification] mirrors``): ``/auth`` p99 latency idle and during the
   flood (bound: ≤ 2× idle);
4. **kill -9 of a worker under load** — two workers, guests running flows, one worker
   killed outright: the flows that failed (only those in flight on that worker), and whether
   the secret, the policies and the reference values are intact afterwards.

Figures are printed, never asserted here; ``bounds`` says which of the issue's bounds held.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from veritee import binding
from veritee.bench import broker as bench_broker
from veritee.bench.core import BenchResult, Settings
from veritee.broker.admin import mint_admin_token
from veritee.encoding import b64url
from veritee.tee import get_platform
from veritee.testing.network import SilentService

BAD_VALUES: tuple[Any, ...] = (
    "\udfff", "\ud800x", "a\udc00", json.loads("[" * 100 + "]" * 100),
    {"k": "\udfff"}, "x" * 100_000, None, -1, 2**80, 1.5, True, "", {}, [], "../../etc",
)
MALFORMED = (b"", b"{", b"\xff\xfe", b"null", b"[]", b'{"a": NaN}', b"[" * 5000 + b"]" * 5000)


@dataclass(frozen=True)
class HostileBenchmark:
    name: str = "hostile"
    description: str = ("the broker under attack: bad-input sweep, a locked SQLite store, a "
                        "forged-report flood against a silent KDS, kill -9 of a worker")

    def planned_seconds(self, settings: Settings) -> float:
        return 30.0 + 2 * settings.seconds

    def run(self, settings: Settings) -> BenchResult:
        started = time.perf_counter()
        sweep = _sweep()
        settings.advance("bad-input sweep", time.perf_counter() - started)
        lock = _locked_store()
        settings.advance("locked store", 10.0)
        flood = _forged_flood()
        settings.advance("forged flood", 5.0)
        kill = _kill_a_worker(settings.seconds)
        settings.advance("kill -9", settings.seconds)
        bounds = {
            "no_500s": sweep["status_500"] == 0 and sweep["not_problem_bodies"] == 0,
            "healthz_under_100ms_while_locked": lock["healthz_p99_ms"] < 100,
            "write_answers_503_within_1s_while_locked": (
                lock["attest_status"] == 503 and lock["attest_ms"] < 1000),
            "auth_p99_within_2x_idle_during_flood": (
                flood["auth_p99_ms_flood"] <= 2 * max(flood["auth_p99_ms_idle"], 1.0)),
            "state_intact_after_kill": kill["secret_intact"] and kill["policies_intact"],
        }
        rate = sweep["requests"] / max(sweep["seconds"], 1e-9)
        return BenchResult(benchmark=self.name, ops_per_s=rate, floor=None, peer=None,
                           threads=1, seconds=settings.seconds,
                           extra={"unit": "sweep requests/s", "sweep": sweep,
                                  "locked_store": lock, "forged_flood": flood,
                                  "kill_worker": kill, "bounds": bounds,
                                  "limits": "per phase: see each phase's 'limits'"})


# -- 1. the sweep -----------------------------------------------------------------------------


def endpoint_templates(tee: str) -> list[tuple[str, str, dict[str, Any], bool]]:
    """(method, path, a valid body, admin) for every JSON endpoint."""
    rego = b64url(b"package policy\ndefault allow := false\n")
    return [
        ("POST", "/kbs/v0/auth", {"version": "0.4.0", "tee": tee,
                                  "extra-params": {"supported-hash-algorithms": ["sha384"]}},
         False),
        ("POST", "/kbs/v0/attest", {"runtime-data": {"nonce": "n", "tee-pubkey": {
            "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}},
            "tee-evidence": {"primary_evidence": {"outblob": "AA"}, "additional_evidence": ""},
            "init-data": {"format": "toml", "body": 'algorithm = "sha384"'}}, False),
        ("POST", "/kbs/v0/reference-value", {"a_reference_value": ["ab" * 48]}, True),
        ("POST", "/kbs/v0/attestation-policy", {"type": "rego", "policy_id": "sweep",
                                                "policy": rego}, True),
        ("POST", "/kbs/v0/resource-policy", {"policy": rego}, True),
        ("POST", "/kbs/v0/policy-test", {"tee": tee, "evidence": "AA", "policy": rego,
                                         "report_data": "00", "runtime_data": {}}, True),
        ("GET", "/kbs/v0/resource/sweep/key/one", {}, False),
        ("GET", "/kbs/v0/audit", {}, True),
    ]


def field_paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value inside a JSON document (objects and lists)."""
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        yield (*prefix, key)
        yield from field_paths(item, (*prefix, key))


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    copy = json.loads(json.dumps(document))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


def _sweep() -> dict[str, Any]:
    statuses: Counter[int] = Counter()
    not_problem = 0
    sent = 0
    started = time.perf_counter()
    with bench_broker.served_broker(1, {"limits": {"sessions_per_minute": 0}}) as served:
        headers = {"Authorization": f"Bearer {_admin_token(served)}"}
        with httpx.Client(base_url=served.url, timeout=30) as http:
            tee = bench_broker.bench_platform(None).tee
            for method, path, body, admin in endpoint_templates(tee):
                bodies = [json.dumps(replaced(body, p, v)).encode()
                          for p in field_paths(body) for v in BAD_VALUES] + list(MALFORMED)
                for raw in bodies if method == "POST" else [b""]:
                    sent_headers = [(b"Content-Type", b"application/json"),
                                    (b"X-Bad", b"\xed\xbf\xbf")]  # a lone surrogate, UTF-8
                    if admin:
                        sent_headers += [(k.encode(), v.encode()) for k, v in headers.items()]
                    answer = http.request(method, path, content=raw, headers=sent_headers)
                    sent += 1
                    statuses[answer.status_code] += 1
                    if answer.status_code >= 400 and not _is_problem(answer):
                        not_problem += 1
    return {"requests": sent, "seconds": round(time.perf_counter() - started, 2),
            "by_status": {str(k): v for k, v in sorted(statuses.items())},
            "status_500": sum(v for k, v in statuses.items() if k >= 500 and k != 503),
            "not_problem_bodies": not_problem, "limits": "sessions unlimited"}


def _is_problem(answer: httpx.Response) -> bool:
    try:
        body = answer.json()
    except ValueError:
        return False
    return isinstance(body, dict) and {"type", "detail"} <= set(body)


def _admin_token(served: bench_broker.ServedBroker) -> str:
    key = serialization.load_pem_private_key(
        (served.data_dir / "admin-key.pem").read_bytes(), password=None)
    return mint_admin_token(key, now=datetime.now(UTC))


# -- 2. a locked store ------------------------------------------------------------------------


def _locked_store() -> dict[str, Any]:
    overrides = {"limits": {"sessions_per_minute": 0}, "store": {"busy_timeout_ms": 500}}
    with bench_broker.served_broker(1, overrides) as served:
        guest, _ = bench_broker.bench_platform(None).load("broker_guest")()
        bench_broker.provision(served, guest)
        holder = _hold_write_lock(served.data_dir / "veritee.db", seconds=10)
        try:
            with httpx.Client(base_url=served.url, timeout=30) as http:
                healthz = [_timed(lambda: http.get("/healthz"))[1] for _ in range(20)]
                auth, auth_ms = _timed(lambda: http.post(
                    "/kbs/v0/auth", json={"version": "0.4.0", "tee": guest.tee}))
                ready, ready_ms = _timed(lambda: http.get("/readyz"))
                attest, attest_ms = _timed(lambda: _attest_once(http, guest))
        finally:
            holder.wait(30)
    return {"healthz_p99_ms": round(_p(healthz, 0.99), 2), "auth_status": auth.status_code,
            "auth_ms": round(auth_ms, 1), "readyz_status": ready.status_code,
            "readyz_ms": round(ready_ms, 1), "attest_status": attest.status_code,
            "attest_ms": round(attest_ms, 1),
            "limits": "[store] busy_timeout_ms = 500; sessions unlimited"}


def _hold_write_lock(db: Path, *, seconds: float) -> subprocess.Popen[bytes]:
    """Another process that takes SQLite's write lock and keeps it for ``seconds``."""
    code = ("import sqlite3, sys, time\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\n"
            f"time.sleep({seconds})\nc.execute('ROLLBACK')\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE)
    assert holder.stdout is not None
    holder.stdout.readline()
    return holder


def _attest_once(http: httpx.Client, guest: Any, *, forged: bool = False) -> httpx.Response:
    """One auth + attest of ``guest`` (with its forged evidence when ``forged``)."""
    platform = get_platform(guest.tee)
    key = ec.generate_private_key(ec.SECP256R1())
    auth = http.post("/kbs/v0/auth", json={"version": "0.4.0", "tee": guest.tee})
    runtime = {"tee-pubkey": bench_broker.jwk_of(key), "nonce": auth.json()["nonce"],
               "additional-evidence": ""}
    report_data = platform.report_data.expected(
        binding.runtime_data_digest(runtime, platform.hash_algorithm))
    evidence = guest.forged_evidence(report_data) if forged else guest.evidence(report_data)
    return http.post("/kbs/v0/attest", cookies=auth.cookies, json={
        "runtime-data": runtime, "tee-evidence": {
            "primary_evidence": evidence, "additional_evidence": ""}})


# -- 3. forged reports against a silent KDS ---------------------------------------------------


def _forged_flood() -> dict[str, Any]:
    guest, _ = bench_broker.bench_platform(None).load("broker_guest")()
    with SilentService() as vendor:
        overrides: dict[str, dict[str, Any]] = {"verification": {"offline": False,
                                      "mirrors": [f"{guest.vendor_url}={vendor.url}"]},
                     "limits": {"sessions_per_minute": 0}}
        with bench_broker.served_broker(1, overrides) as served, \
                httpx.Client(base_url=served.url, timeout=60) as http:
            auth_body = {"version": "0.4.0", "tee": guest.tee}
            idle = [_timed(lambda: http.post("/kbs/v0/auth", json=auth_body))[1]
                    for _ in range(50)]
            results: list[int] = []

            def forged() -> None:
                with httpx.Client(base_url=served.url, timeout=60) as mine:
                    results.append(_attest_once(mine, guest, forged=True).status_code)

            flood = [threading.Thread(target=forged) for _ in range(20)]
            for thread in flood:
                thread.start()
            time.sleep(0.5)
            during = [_timed(lambda: http.post("/kbs/v0/auth", json=auth_body))[1]
                      for _ in range(50)]
            for thread in flood:
                thread.join()
    return {"auth_p99_ms_idle": round(_p(idle, 0.99), 2),
            "auth_p99_ms_flood": round(_p(during, 0.99), 2),
            "forged_attests": len(results),
            "forged_by_status": {str(k): v for k, v in sorted(Counter(results).items())},
            "limits": "[limits] fetch_concurrency = 4, fetch_per_client_per_minute = 10, "
                      "fetch_timeout_seconds = 3.0 (defaults); sessions unlimited"}


# -- 4. kill -9 of a worker under load -------------------------------------------------------


def _kill_a_worker(seconds: float) -> dict[str, Any]:
    with bench_broker.served_broker(2) as served:
        guest, _ = bench_broker.bench_platform(None).load("broker_guest")()
        bench_broker.provision(served, guest)
        with httpx.Client(base_url=served.url, timeout=30, headers={
                "Authorization": f"Bearer {_admin_token(served)}"}) as admin:
            before = (admin.get("/kbs/v0/attestation-policy").json(),
                      admin.get("/kbs/v0/reference-value").json())
        outcome = asyncio.run(_load_and_kill(served, guest, max(seconds, 2.0)))
        time.sleep(2.0)  # the supervisor restarts the worker
        restarted = len(_children(served.pid))
        after_flow = asyncio.run(bench_broker.run_level(served.url, guest, 1, 0.5))
        with httpx.Client(base_url=served.url, timeout=30, headers={
                "Authorization": f"Bearer {_admin_token(served)}"}) as admin:
            after = (admin.get("/kbs/v0/attestation-policy").json(),
                     admin.get("/kbs/v0/reference-value").json())
    return {**outcome, "workers_after": restarted, "secret_intact": after_flow.flows > 0,
            "policies_intact": before == after, "limits": "sessions unlimited"}


async def _load_and_kill(served: bench_broker.ServedBroker, guest: Any,
                         seconds: float) -> dict[str, Any]:
    ok = failed = 0
    deadline = time.perf_counter() + seconds

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal ok, failed
        while time.perf_counter() < deadline:
            try:
                await bench_broker.flow(client, guest)
                ok += 1
            except (httpx.HTTPError, bench_broker.BrokerBenchError, OSError,
                    asyncio.IncompleteReadError):
                failed += 1
                await client.aclose()
                client = bench_broker.guest_client(served.url)

    async def killer() -> int:
        await asyncio.sleep(seconds / 3)
        victims = _children(served.pid)
        if victims:
            os.kill(victims[0], signal.SIGKILL)
        return len(victims)

    clients = [bench_broker.guest_client(served.url) for _ in range(8)]
    try:
        results = await asyncio.gather(killer(), *(one(c) for c in clients))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
    return {"workers_before": results[0], "flows_ok": ok, "flows_failed": failed,
            "concurrency": len(clients)}


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (uvicorn's workers), from /proc."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
            command = Path(f"/proc/{name}/cmdline").read_bytes()
            if int(fields[1]) == pid and b"spawn_main" in command:
                found.append(int(name))
    return sorted(found)


# -- helpers ----------------------------------------------------------------------------------


def _timed(call: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call()
    return result, 1000 * (time.perf_counter() - started)


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else 0.0


BENCHMARK = HostileBenchmark()
