"""A real broker on loopback for end-to-end tests: uvicorn in a thread, controllable clock."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from veritee.broker.admin import mint_admin_token
from veritee.broker.config import (
    AdminConfig,
    Config,
    LimitsConfig,
    ServerConfig,
    StoreConfig,
    VerificationConfig,
)
from veritee.broker.service import Broker
from veritee.server.app import build_broker, make_app
from veritee.server.run import uvicorn_options


@dataclass
class Clock:
    """A clock the test moves forward."""

    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class RunningBroker:
    url: str
    broker: Broker
    config: Config
    clock: Clock
    admin_key: Any

    def admin_token(self, role: str = "admin", **kw: Any) -> str:
        return mint_admin_token(self.admin_key, role=role, now=datetime.now(UTC), **kw)

    def admin(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.admin_token()}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def store_url(kind: str, tmp: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'broker.db'}"
    base = os.environ.get("VERITEE_TEST_POSTGRES_URL")
    if not base:
        import pytest

        pytest.skip("VERITEE_TEST_POSTGRES_URL is not set (scripts/pg-test.sh start)")
    return _fresh_schema(base)


def _fresh_schema(url: str) -> str:
    """A new, empty schema per broker run so parallel tests never share tables."""
    import psycopg

    schema = f"e2e_{uuid.uuid4().hex[:12]}"
    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


#: The limits every test broker runs with unless a test names others: unlimited sessions
#: (tests drive many flows from one address), everything else as configured by default.
TEST_LIMITS = LimitsConfig(sessions_per_minute=0)


@contextmanager
def running_broker(tmp: Path, store: str = "sqlite", *, limits: LimitsConfig = TEST_LIMITS,
                   server: ServerConfig | None = None, busy_timeout_ms: int = 1000,
                   **verification: Any) -> Iterator[RunningBroker]:
    config = Config(
        data_dir=str(tmp / "data"),
        server=server or ServerConfig(port=0),
        store=StoreConfig(url=store_url(store, tmp), busy_timeout_ms=busy_timeout_ms),
        verification=VerificationConfig(**{"trust_emulated": True, "offline": True,
                                           **verification}),
        admin=AdminConfig(),
        limits=limits,
    )
    clock = Clock()
    broker, admin, _ = build_broker(config, clock=clock)
    app = make_app(broker, admin, config)
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
    # and accepted sockets inherit proto 0 from a plain socket() (40 ms Nagle stalls).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                           **uvicorn_options(config)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("broker did not start")
        time.sleep(0.01)
    from cryptography.hazmat.primitives import serialization

    admin_key = serialization.load_pem_private_key(
        (tmp / "data" / "admin-key.pem").read_bytes(), password=None)
    try:
        yield RunningBroker(f"http://127.0.0.1:{port}", broker, config, clock, admin_key)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def unique_path(prefix: str = "repo") -> str:
    return f"{prefix}/key/{uuid.uuid4().hex[:12]}"
