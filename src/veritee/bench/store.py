"""Operations per second of each store call, and of the broker's per-attestation flow.

    veritee bench store                                 # a temporary SQLite file
    python -m veritee.bench.store --url postgresql+psycopg://veritee@127.0.0.1:54329/db
    python -m veritee.bench.store -n 5000 --threads 4 --json

The flow is what one full attestation costs the store: create the session (/auth), consume
its nonce and attest it (/attest), read one resource and write two audit lines (/resource).
It runs on one thread and on ``--threads`` threads sharing the store. On PostgreSQL it works
in a schema of its own, created for the run and dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from veritee.bench.core import BenchResult, Settings
from veritee.store.records import AuditEvent, Session
from veritee.store.store import Store

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
SECRET = os.urandom(1024)


def _session(sid: str) -> Session:
    return Session(
        id=sid,
        tee="bench",
        nonce=f"nonce-{sid}",
        request={"version": "0.4.0", "tee": "bench", "extra-params": {}},
        state="authed",
        created_at=NOW,
        expires_at=LATER,
        extra={"selected-hash-algorithm": "sha384"},
    )


def _event(kind: str, sid: str) -> AuditEvent:
    return AuditEvent(
        kind="attest" if kind == "attest" else "release",
        at=NOW,
        session_id=sid,
        tee="bench",
        subject="192.0.2.1",
        resource="default/key/bench" if kind == "release" else None,
        verdict="affirming",
        failed_rules=[],
        detail={"ear.status": "affirming", "policy": "default"},
    )


def _rate(n: int, call: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for i in range(n):
        call(i)
    return n / (time.perf_counter() - start)


def _flow(store: Store, sid: str) -> None:
    store.create_session(_session(sid))
    if not store.consume_nonce(sid, f"nonce-{sid}", now=NOW):
        raise RuntimeError("nonce refused")
    store.attest_session(sid, token="t", expires_at=LATER, now=NOW)
    store.append_audit(_event("attest", sid))
    store.get_resource("default/key/bench")
    store.append_audit(_event("release", sid))


def run(store: Store, n: int, threads: int) -> dict[str, float]:
    """``{call: operations per second}``."""
    store.put_resource("default/key/bench", SECRET, now=NOW)
    store.put_policy("attestation", "default", "package policy\n" * 50, now=NOW)
    for i in range(20):
        store.put_reference_value(f"rv{i}", ["a" * 96], provenance="bench", expires=None, now=NOW)
    store.put_setting_if_absent("bench", "x" * 200)
    rates = {
        "create_session": _rate(n, lambda i: store.create_session(_session(f"a{i}"))),
        "get_session": _rate(n, lambda i: store.get_session(f"a{i}", now=NOW)),
        "consume_nonce": _rate(n, lambda i: store.consume_nonce(f"a{i}", f"nonce-a{i}", now=NOW)),
        "attest_session": _rate(
            n, lambda i: store.attest_session(f"a{i}", token="t", expires_at=LATER, now=NOW)
        ),
        "get_resource (1 KiB)": _rate(n, lambda i: store.get_resource("default/key/bench")),
        "put_resource (1 KiB)": _rate(
            n, lambda i: store.put_resource("default/key/bench", SECRET, now=NOW)
        ),
        "append_audit": _rate(n, lambda i: store.append_audit(_event("attest", f"a{i}"))),
        "get_policy": _rate(n, lambda i: store.get_policy("attestation", "default")),
        "get_reference_values (20)": _rate(n, lambda i: store.get_reference_values(now=NOW)),
        "get_setting": _rate(n, lambda i: store.get_setting("bench")),
        "put_setting_if_absent (taken)": _rate(
            n, lambda i: store.put_setting_if_absent("bench", "y")
        ),
        "list_audit (100)": _rate(max(1, n // 10), lambda i: store.list_audit(limit=100)),
    }
    rates["flow, 1 thread"] = _rate(n // 2, lambda i: _flow(store, f"f{i}"))
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: _flow(store, f"g{i}"), range(n)))
    rates[f"flow, {threads} threads"] = n / (time.perf_counter() - start)
    purge_n = store.purge_expired(now=LATER)
    rates["(purged sessions)"] = float(purge_n)
    return rates


@contextmanager
def _scratch(url: str | None) -> Iterator[str]:
    """A URL of an empty database: a temporary SQLite file, or a throwaway PostgreSQL schema."""
    if url is None:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    if make_url(url).get_backend_name() != "postgresql":
        yield url
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, poolclass=NullPool)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        yield (
            make_url(url)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


@dataclass(frozen=True)
class StoreBenchmark:
    """``veritee bench store``: the store's calls on a temporary SQLite file (no floor: the
    figures are the statements themselves)."""

    name: str = "store"
    description: str = "store calls/s and the per-attestation store flow (temporary SQLite)"

    def planned_seconds(self, settings: Settings) -> float:
        return settings.seconds

    def run(self, settings: Settings) -> BenchResult:
        n = max(100, int(200 * settings.seconds))
        started = time.perf_counter()
        with _scratch(None) as url, Store.open(url, kek=os.urandom(32),
                                               pool_size=max(4, settings.threads)) as store:
            rates = run(store, n, max(2, settings.threads))
        settings.advance("store calls", time.perf_counter() - started)
        return BenchResult(benchmark=self.name, ops_per_s=rates["flow, 1 thread"], floor=None,
                           peer=None, threads=settings.threads, seconds=settings.seconds,
                           extra={"unit": "store flows/s (1 thread)", "n": n,
                                  "ops_per_s_by_call": {k: round(v, 1)
                                                        for k, v in rates.items()}})


BENCHMARK = StoreBenchmark()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m veritee.bench.store", description=__doc__)
    parser.add_argument("--url", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("-n", type=int, default=2000, help="operations per call")
    parser.add_argument("--threads", type=int, default=4, help="threads for the shared flow")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    with (
        _scratch(args.url) as url,
        Store.open(url, kek=os.urandom(32), pool_size=max(4, args.threads)) as store,
    ):
        backend = store.engine.dialect.name
        rates = run(store, args.n, args.threads)
    if args.json:
        print(json.dumps({"backend": backend, "n": args.n, "ops_per_s": rates}, indent=2))
        return 0
    print(f"{backend}, n={args.n}")
    for name, rate in rates.items():
        print(f"  {name:32} {rate:10.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
