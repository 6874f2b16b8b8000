"""A broker on a loopback port inside this process (the demo, tests, notebooks)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import uvicorn
from cryptography.hazmat.primitives import serialization

from veritee.broker.admin import mint_admin_token
from veritee.broker.config import Config
from veritee.broker.service import Broker
from veritee.errors import MisuseError
from veritee.server.app import build_broker, make_app
from veritee.server.run import uvicorn_options


@dataclass
class LocalBroker:
    url: str
    broker: Broker
    config: Config

    def admin_token(self, role: str = "admin") -> str:
        """An admin token signed with the development admin key of this broker."""
        path = self.config.data_path / "admin-key.pem"
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        return mint_admin_token(key, role=role, now=datetime.now(UTC))


@contextmanager
def local_broker(config: Config, *, start_timeout: float = 15.0) -> Iterator[LocalBroker]:
    """Run the broker of ``config`` on 127.0.0.1 (an ephemeral port) until the block ends."""
    broker, admin, _ = build_broker(config)
    app = make_app(broker, admin, config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                           access_log=False, **uvicorn_options(config)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="veritee-local-broker")
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise MisuseError("the local broker did not start")
        time.sleep(0.01)
    try:
        yield LocalBroker(f"http://127.0.0.1:{port}", broker, config)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
