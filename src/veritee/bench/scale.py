"""``veritee bench scale``: what a flow costs the broker as its data and policies grow.

Each case runs the broker of ``veritee bench broker`` (a subprocess, one uvicorn worker per
core, SQLite in a temporary data directory, emulated roots trusted); all of them serve at
once, each warmed up, and the cases are measured in turn in rounds of
:data:`ROUND_SECONDS`, full flows from the platform's benchmark guests at
:data:`CONCURRENCY` concurrent guests, until each has had ``--seconds``. The figure is the
broker's CPU time per flow (its processes, from /proc), which stays meaningful on a busy
machine; interleaving makes the machine's slow spells fall on every case alike. Every case
is set up as the baseline is, except for the one thing it grows:

* **baseline** — 10 stored reference values (the guests' own and fillers), an empty store,
  the built-in attestation policy; two such brokers (the second listed last), and the mean
  is the baseline of every ratio (their difference shows the noise);
* **reference values** — 100,000 stored (the guests' own and fillers ``bench-rv-NNNNNN``
  with one or two hex values each), seeded before the broker starts;
* **audit log and purge** — 1,000,000 audit rows and 1,000,000 expired sessions seeded
  before the broker starts; the session purge runs every second (as in every case), so it
  works through the expired sessions during the measurement; the expired sessions left
  when the measurement starts and ends are reported;
* **operator policy** — a 200-rule Rego attestation policy installed through the admin API
  as ``default_<tee>``: ordinary comparisons of the guests' stable claims, all holding, that
  together set an affirming trust vector.

``ratio`` is the case's broker CPU per flow over the baseline's. Every answer that is not
2xx (503 in particular) is counted per case (warm-up included) and a flow that fails is
counted, not fatal. Seeding a million rows takes tens of seconds; the data directories are
removed afterwards. :class:`ScaleBenchmark` takes smaller sizes for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from sqlalchemy import create_engine, func, insert, select

from veritee import binding
from veritee.bench import broker as harness
from veritee.bench.core import BenchResult, Settings
from veritee.broker.admin import mint_admin_token
from veritee.broker.config import Config
from veritee.broker.keys import load_keys
from veritee.collateral import CollateralSource
from veritee.encoding import b64url
from veritee.evidence import decode_evidence
from veritee.store.schema import audit_log, sessions
from veritee.store.store import Store
from veritee.tee import Platform, get_verifier

CONCURRENCY = 8
#: Every case, the baseline included: the session purge runs every second.
OVERRIDES: dict[str, dict[str, Any]] = {"session": {"purge_interval_seconds": 1}}
#: Rows per INSERT statement (executemany) and per bulk reference-value call while seeding.
CHUNK = 20_000
#: For the progress bar only: how long starting a broker and seeding a row take, roughly.
START_SECONDS = 3.0
SEED_SECONDS_PER_ROW = 1 / 40_000


@dataclass(frozen=True)
class Case:
    """One broker set-up; what it does not grow is as in the baseline."""

    key: str
    title: str
    reference_values: int
    audit_rows: int = 0
    expired_sessions: int = 0
    rules: int = 0

    @property
    def seeded_rows(self) -> int:
        return self.reference_values + self.audit_rows + self.expired_sessions


@dataclass
class CaseResult:
    case: Case
    level: harness.Level
    statuses: Counter[int]
    failed_flows: int
    seed_seconds: float
    sessions_at_start: int | None = None
    sessions_at_end: int | None = None
    cpu_ms_per_flow_purging: float | None = None
    """Over the rounds at whose end expired sessions were left (the purge ran throughout)."""

    @property
    def cpu_ms_per_flow(self) -> float | None:
        return self.level.cpu_ms_per_flow(self.level.broker_cpu)

    def to_dict(self, baseline_ms: float | None) -> dict[str, Any]:
        mine = self.cpu_ms_per_flow
        ratio = (round(mine / baseline_ms, 3) if mine is not None and baseline_ms else None)
        document = {"title": self.case.title, **self.level.to_dict(), "ratio": ratio,
                    "failed_flows": self.failed_flows,
                    "non_2xx": {str(k): v for k, v in sorted(self.statuses.items())
                                if not 200 <= k < 300},
                    "seed_seconds": round(self.seed_seconds, 1)}
        if self.sessions_at_start is not None:
            document["expired_sessions_at_start"] = self.sessions_at_start
            document["expired_sessions_at_end"] = self.sessions_at_end
            purging = self.cpu_ms_per_flow_purging
            document["broker_cpu_ms_per_flow_while_purging"] = purging
            document["ratio_while_purging"] = (round(purging / baseline_ms, 3)
                                               if purging is not None and baseline_ms else None)
        return document


#: Flows before measuring: each worker process reads and prepares the reference values on its
#: first flow (≈1–2 s of CPU at 100,000), which is start-up, not the cost of a flow.
WARMUP_SECONDS = 3.0
#: Length of one measured round: every case's broker serves at once, and the cases are
#: measured in turn, a round each, until each has had ``--seconds``; so a slow spell of this
#: shared machine falls on every case alike instead of on one.
ROUND_SECONDS = 1.0


@dataclass(frozen=True)
class ScaleBenchmark:
    name: str = "scale"
    description: str = ("broker CPU per flow with 100,000 reference values, 1,000,000 audit "
                        "rows + 1,000,000 expired sessions being purged, and a 200-rule "
                        "policy, each vs. a baseline (10 values, empty store, built-in policy)")
    reference_values: int = 100_000
    audit_rows: int = 1_000_000
    expired_sessions: int = 1_000_000
    rules: int = 200
    baseline_reference_values: int = 10

    def cases(self) -> list[Case]:
        base = self.baseline_reference_values
        return [
            Case("baseline", f"{base} reference values, empty store, built-in policy", base),
            Case(f"reference_values_{self.reference_values}",
                 f"{self.reference_values:,} reference values", self.reference_values),
            Case(f"audit_{self.audit_rows}_purging_{self.expired_sessions}",
                 f"{self.audit_rows:,} audit rows, {self.expired_sessions:,} expired sessions "
                 "being purged", base, audit_rows=self.audit_rows,
                 expired_sessions=self.expired_sessions),
            Case(f"policy_{self.rules}_rules", f"a {self.rules}-rule operator policy", base,
                 rules=self.rules),
            Case("baseline_again", "the baseline, a second broker", base),
        ]

    def planned_seconds(self, settings: Settings) -> float:
        per_case = START_SECONDS + min(WARMUP_SECONDS, settings.seconds) + settings.seconds
        seeding = sum(c.seeded_rows for c in self.cases()) * SEED_SECONDS_PER_ROW
        return len(self.cases()) * per_case + seeding

    def run(self, settings: Settings) -> BenchResult:
        platform = harness.bench_platform(settings.tee)
        guest, _ = platform.load("broker_guest")()
        workers = os.cpu_count() or 1
        rounds = max(1, round(settings.seconds / ROUND_SECONDS))
        cases = self.cases()
        # The brokers whose data shrinks (the purge) start last, so that it is still at work
        # when the rounds begin.
        order = sorted(cases, key=lambda case: bool(case.expired_sessions))
        with contextlib.ExitStack() as stack:
            started = {case.key: stack.enter_context(served_case(case, platform, guest,
                                                                 workers, settings))
                       for case in order}
            running = [started[case.key] for case in cases]
            for _ in range(rounds):              # interleaved: the machine's drift is shared
                for case in running:
                    case.measure(settings.seconds / rounds, settings)
            results = [case.result() for case in running]
        return _result(self.name, settings, results, workers=workers, tee=guest.tee,
                       rounds=rounds)


def _result(name: str, settings: Settings, results: list[CaseResult], *, workers: int,
            tee: str, rounds: int = 1) -> BenchResult:
    baselines = [r for r in results if r.case.key in ("baseline", "baseline_again")]
    measured = [r.cpu_ms_per_flow for r in baselines if r.cpu_ms_per_flow is not None]
    baseline_ms = round(statistics.mean(measured), 3) if measured else None
    cases = {r.case.key: r.to_dict(baseline_ms) for r in results}
    extra: dict[str, Any] = {
        "unit": f"full flows/s, baseline ({CONCURRENCY} guests)", "tee": tee,
        "workers": workers, "concurrency": CONCURRENCY, "rounds": rounds,
        "baseline_broker_cpu_ms_per_flow": baseline_ms,
        "ratios": {**{key: case["ratio"] for key, case in cases.items()
                      if not key.startswith("baseline")},
                   **{f"{key}_while_purging": case["ratio_while_purging"]
                      for key, case in cases.items() if "ratio_while_purging" in case}},
        "non_2xx": {key: sum(case["non_2xx"].values()) for key, case in cases.items()},
        **cases,
        "limits": f"{harness.LIMITS_NOTE}; [session] purge_interval_seconds = 1",
    }
    return BenchResult(benchmark=name, ops_per_s=results[0].level.flows_per_s, floor=None,
                       peer=None, threads=1, seconds=settings.seconds, extra=extra)


# -- one case ------------------------------------------------------------------------------------


class RunningCase:
    """A case's broker, serving; its measured rounds add up."""

    def __init__(self, case: Case, served: harness.ServedBroker, guest: Any, *,
                 seed_seconds: float, statuses: Counter[int], failed: int) -> None:
        self.case, self.served, self.guest = case, served, guest
        self.seed_seconds, self.statuses, self.failed = seed_seconds, statuses, failed
        self.flows, self.elapsed, self.broker_cpu, self.client_cpu = 0, 0.0, 0.0, 0.0
        self.cpu_known = True
        self.purging_flows, self.purging_cpu = 0, 0.0
        self.latencies: list[float] = []
        self.sessions_at_start: int | None = None
        self.sessions_at_end: int | None = None

    def measure(self, seconds: float, settings: Settings) -> None:
        """One measured round of ``seconds``."""
        if self.case.expired_sessions and self.sessions_at_start is None:
            self.sessions_at_start = expired_sessions(self.served.data_dir)
        level, failed = asyncio.run(counted_level(self.served, self.guest, seconds,
                                                  self.statuses))
        if self.case.expired_sessions:
            self.sessions_at_end = expired_sessions(self.served.data_dir)
            if self.sessions_at_end and level.broker_cpu is not None:
                self.purging_flows += level.flows              # purged through the round
                self.purging_cpu += level.broker_cpu
        self.failed += failed
        self.flows += level.flows
        self.elapsed += level.elapsed
        self.latencies += level.latencies
        self.client_cpu += level.client_cpu or 0.0
        if level.broker_cpu is None:
            self.cpu_known = False
        else:
            self.broker_cpu += level.broker_cpu
        settings.advance(f"{self.case.key}: measured", level.elapsed)

    def result(self) -> CaseResult:
        level = harness.Level(CONCURRENCY, self.flows, self.elapsed, tuple(self.latencies),
                              broker_cpu=self.broker_cpu if self.cpu_known else None,
                              client_cpu=self.client_cpu)
        purging = (round(1000 * self.purging_cpu / self.purging_flows, 3)
                   if self.purging_flows else None)
        return CaseResult(self.case, level, self.statuses, self.failed, self.seed_seconds,
                          self.sessions_at_start, self.sessions_at_end, purging)


@contextlib.contextmanager
def served_case(case: Case, platform: Platform, guest: Any, workers: int,
                settings: Settings) -> Iterator[RunningCase]:
    """``case``'s broker seeded, serving, provisioned and warmed up."""
    seeded: dict[str, float] = {}
    own = len(guest.reference_values())

    def seed(data_dir: Path) -> None:
        started = time.perf_counter()
        seed_store(data_dir, case, own, guest.tee, settings.advance)
        seeded["seconds"] = time.perf_counter() - started

    statuses: Counter[int] = Counter()
    started = time.perf_counter()
    with harness.served_broker(workers, OVERRIDES, seed=seed) as served:
        harness.provision(served, guest)
        if case.rules:
            install_policy(served, guest.tee, operator_policy(platform, guest, case.rules))
        warmup = min(WARMUP_SECONDS, settings.seconds)
        _, failed = asyncio.run(counted_level(served, guest, warmup, statuses))
        settings.advance(f"{case.key}: start and warm-up", time.perf_counter() - started)
        yield RunningCase(case, served, guest, seed_seconds=seeded.get("seconds", 0.0),
                          statuses=statuses, failed=failed)


class CountingTransport(harness.LoopbackTransport):
    """The harness's guest transport, counting the status of every answer."""

    def __init__(self, host: str, port: int, statuses: Counter[int]) -> None:
        super().__init__(host, port)
        self._statuses = statuses

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        self._statuses[response.status_code] += 1
        return response


def _client(url: str, statuses: Counter[int]) -> httpx.AsyncClient:
    address = httpx.URL(url)
    return httpx.AsyncClient(base_url=url, timeout=60, trust_env=False,
                             transport=CountingTransport(address.host, address.port or 80,
                                                         statuses))


#: What a failed flow raises: a refusal or error status, or a dropped connection.
FLOW_FAILURES = (harness.BrokerBenchError, httpx.HTTPError, OSError, asyncio.IncompleteReadError)


async def counted_level(served: harness.ServedBroker, guest: Any, seconds: float,
                        statuses: Counter[int]) -> tuple[harness.Level, int]:
    """:func:`veritee.bench.broker.measure_level` at :data:`CONCURRENCY` guests, where a
    failed flow is counted (the guest reconnects and goes on) instead of ending the run;
    (the level of the flows that succeeded, how many failed)."""
    broker_before, client_before = harness.group_cpu_seconds(served.pid), time.process_time()
    clients = [_client(served.url, statuses) for _ in range(CONCURRENCY)]
    latencies: list[float] = []
    failed = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def one_guest(index: int) -> None:
        nonlocal failed
        while time.perf_counter() < deadline:
            try:
                latencies.append(await harness.flow(clients[index], guest))
            except FLOW_FAILURES:
                failed += 1
                await clients[index].aclose()
                clients[index] = _client(served.url, statuses)

    try:
        await asyncio.gather(*(one_guest(i) for i in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
    broker_after, client_after = harness.group_cpu_seconds(served.pid), time.process_time()
    used = None if broker_before is None or broker_after is None else broker_after - broker_before
    level = harness.Level(CONCURRENCY, len(latencies), elapsed, tuple(latencies),
                          broker_cpu=used, client_cpu=client_after - client_before)
    return level, failed


# -- seeding -------------------------------------------------------------------------------------


def seed_store(data_dir: Path, case: Case, own: int, tee: str,
               advance: Callable[[str, float], None]) -> None:
    """Create the broker's keys and store in ``data_dir`` as ``veritee serve`` would, and
    write the case's rows: reference values up to ``case.reference_values`` besides the
    guests' ``own``, audit rows and expired sessions."""
    config = Config(data_dir=str(data_dir))
    keys = load_keys(config)
    with Store.open(config.store_url, kek=keys.kek) as store:
        seed_reference_values(store, max(0, case.reference_values - own), advance)
        now = datetime.now(UTC)
        _insert(store, audit_log, case.audit_rows, lambda i: _audit_row(i, tee, now),
                what="audit rows", advance=advance)
        _insert(store, sessions, case.expired_sessions, lambda i: _session_row(i, tee, now),
                what="expired sessions", advance=advance)


def filler_values(count: int) -> Iterator[tuple[str, list[str]]]:
    """``bench-rv-NNNNNN``: one or two 48-byte hex values each."""
    for i in range(count):
        values = [i.to_bytes(48, "big").hex()]
        yield f"bench-rv-{i:06d}", values + ([(count + i).to_bytes(48, "big").hex()]
                                             if i % 2 else [])


def seed_reference_values(store: Store, count: int,
                          advance: Callable[[str, float], None]) -> None:
    """``count`` filler reference values: with ``Store.put_reference_values`` (one
    transaction per chunk) where the store has it, else one at a time."""
    now = datetime.now(UTC)
    items = list(filler_values(count))
    bulk = getattr(store, "put_reference_values", None)
    for start in range(0, count, CHUNK):
        began = time.perf_counter()
        chunk = dict(items[start:start + CHUNK])
        if bulk is not None:
            bulk(chunk, provenance="veritee bench scale", expires=None, now=now)
        else:
            for name, values in chunk.items():
                store.put_reference_value(name, values, provenance="veritee bench scale",
                                          expires=None, now=now)
        advance(f"seeding reference values {start + len(chunk):,}/{count:,}",
                time.perf_counter() - began)


def _insert(store: Store, table: Any, count: int, row: Callable[[int], dict[str, Any]], *,
            what: str, advance: Callable[[str, float], None]) -> None:
    for start in range(0, count, CHUNK):
        began = time.perf_counter()
        rows = [row(i) for i in range(start, min(count, start + CHUNK))]
        with store.engine.begin() as conn:
            if conn.dialect.name == "sqlite":  # the store's connections autocommit otherwise
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            conn.execute(insert(table), rows)
        advance(f"seeding {what} {start + len(rows):,}/{count:,}", time.perf_counter() - began)


def _audit_row(i: int, tee: str, now: datetime) -> dict[str, Any]:
    return {"kind": "attest", "at": now - timedelta(days=30, microseconds=i),
            "session_id": f"bench-old-{i}", "tee": tee, "subject": "192.0.2.1",
            "resource": None, "verdict": "affirming", "failed_rules": [],
            "detail": {"ear.status": "affirming", "policy": "default"}}


def _session_row(i: int, tee: str, now: datetime) -> dict[str, Any]:
    created = now - timedelta(hours=2, microseconds=i)
    return {"id": f"bench-expired-{i:07d}", "tee": tee, "nonce": f"nonce-{i}",
            "request": {"version": "0.4.0", "tee": tee, "extra-params": {}}, "extra": {},
            "state": "authed", "nonce_used": False, "token": None, "created_at": created,
            "expires_at": created + timedelta(minutes=5)}


def expired_sessions(data_dir: Path) -> int:
    """Expired sessions in the broker's store, not yet purged (read beside the broker)."""
    engine = create_engine(Config(data_dir=str(data_dir)).store_url)
    query = select(func.count()).select_from(sessions).where(
        sessions.c.expires_at <= datetime.now(UTC))
    try:
        with engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


# -- the operator policy -------------------------------------------------------------------------


def operator_policy(platform: Platform, guest: Any, rules: int) -> str:
    """A Rego attestation policy of ``rules`` ordinary rules over the claims the guests'
    evidence always carries (each rule one comparison; all hold), which together set an
    affirming trust vector; anything else is contraindicated."""
    stable = stable_claims(platform, guest)
    if not stable:
        raise harness.BrokerBenchError("the guests' evidence has no stable claims to test")
    lines = [f"# veritee bench scale: {rules} rules", f"# veritee: tees {guest.tee}",
             "package policy", "", "import rego.v1", "", "default claims := {}", "",
             f"claims := input[{json.dumps(guest.tee)}] if is_object("
             f"input[{json.dumps(guest.tee)}])", ""]
    for index in range(rules):
        path, value = stable[index % len(stable)]
        lines += [*_rule(index, path, value), ""]
    lines += ["default all_hold := false", "", "all_hold if {",
              *(f"\tr_{index}" for index in range(rules)), "}", ""]
    for claim, good, bad in (("instance_identity", 2, 96), ("configuration", 2, 36),
                             ("executables", 3, 33), ("hardware", 2, 97)):
        lines += [f"default {claim} := {bad}", "", f"{claim} := {good} if all_hold", ""]
    lines += ['trust_claims := {', '\t"instance-identity": instance_identity,',
              '\t"configuration": configuration,', '\t"executables": executables,',
              '\t"hardware": hardware,', '}', ""]
    return "\n".join(lines)


def _rule(index: int, path: tuple[str, ...], value: Any) -> list[str]:
    ref = "claims" + "".join(f"[{json.dumps(p)}]" for p in path)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [f"r_{index} if {ref} == {json.dumps(value)}"]
    operator = ">=" if index % 2 else "=="
    return [f"r_{index} if {{", f"\tis_number({ref})", f"\t{ref} {operator} {value}", "}"]


def stable_claims(platform: Platform, guest: Any) -> list[tuple[tuple[str, ...], Any]]:
    """(path, value) of the scalar claims (top level and one level down) that are the same
    in two of the guests' reports bound to different challenges."""
    first, second = (_claims(platform, guest, nonce) for nonce in ("scale-a", "scale-b"))
    found: list[tuple[tuple[str, ...], Any]] = []
    for key, value in first.items():
        nested = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, item in nested:
            other = second.get(key)
            other = other.get(sub) if sub is not None and isinstance(other, dict) else other
            if isinstance(item, str | int | float | bool) and item == other and (
                    type(item) is type(other)):
                found.append(((key,) if sub is None else (key, sub), item))
    return found


def _claims(platform: Platform, guest: Any, nonce: str) -> Mapping[str, Any]:
    runtime = {"nonce": nonce, "tee-pubkey": {}, "additional-evidence": ""}
    report_data = platform.report_data.expected(
        binding.runtime_data_digest(runtime, platform.hash_algorithm))
    evidence = guest.evidence(report_data)
    blob = evidence if isinstance(evidence, bytes) else (
        evidence if isinstance(evidence, str) else json.dumps(evidence)).encode()
    verifier = get_verifier(guest.tee, trust_emulated=True)
    claims: Mapping[str, Any] = verifier.verify(
        decode_evidence(blob), report_data=report_data, collateral=CollateralSource(),
        now=datetime.now(UTC)).to_dict()
    return claims


def install_policy(served: harness.ServedBroker, tee: str, source: str) -> None:
    """``source`` as the attestation policy ``default_<tee>``, through the admin API."""
    key = serialization.load_pem_private_key(
        (served.data_dir / "admin-key.pem").read_bytes(), password=None)
    token = mint_admin_token(key, now=datetime.now(UTC))
    with httpx.Client(base_url=served.url, timeout=60,
                      headers={"Authorization": f"Bearer {token}"}) as admin:
        answer = admin.post("/kbs/v0/attestation-policy", json={
            "type": "rego", "policy_id": f"default_{tee}", "policy": b64url(source.encode())})
    if answer.status_code != 200:
        raise harness.BrokerBenchError(f"the operator policy: HTTP {answer.status_code}: "
                                       f"{answer.text[:500]}")


BENCHMARK = ScaleBenchmark()
