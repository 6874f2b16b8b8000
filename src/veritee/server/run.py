"""Running the broker: prepare keys and schema once, then start uvicorn workers."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from veritee.broker.config import Config, ConfigError, dump_config, write_endpoint
from veritee.broker.keys import load_keys
from veritee.server.protocol import LimitedHttpToolsProtocol
from veritee.store import Store


def uvicorn_options(config: Config) -> dict[str, Any]:
    """The uvicorn settings every way of serving the broker uses.

    HTTP/1.1 is parsed by httptools (llhttp: ≈0.2 ms less CPU per request than the pure-Python
    h11, about 1 ms per attestation flow in ``veritee bench broker``), through
    :class:`~veritee.server.protocol.LimitedHttpToolsProtocol`, which bounds request heads.
    Client addresses are never taken from proxy headers by uvicorn (the app does, only from
    ``[limits] trusted_proxies``)."""
    return {"http": LimitedHttpToolsProtocol, "proxy_headers": False,
            "timeout_keep_alive": config.server.keep_alive_seconds}


@dataclass(frozen=True)
class StartupNotice:
    url: str
    store_url: str
    development: bool
    generated: tuple[str, ...]
    admin_key: Path | None
    ear_ca: Path | None
    trust_emulated: bool
    workers: int

    def lines(self) -> list[str]:
        out = [f"veritee broker on {self.url} ({self.workers} worker process(es))",
               f"store: {_redact(self.store_url)}"]
        if self.development:
            out.append("DEVELOPMENT MODE: keys are generated and kept in the data directory; "
                       "configure [store] kek_file and [tokens] signing_key for production")
        out += [f"generated {path}" for path in self.generated]
        if self.admin_key is not None:
            out.append(f"admin tokens: `veritee admin token` signs one with {self.admin_key}")
        if self.ear_ca is not None:
            out.append(f"EAR tokens chain to {self.ear_ca} (give it to a Trustee KBS as "
                       "[attestation_token] trusted_certs_paths)")
        if self.trust_emulated:
            out.append("WARNING: emulated TEE roots are trusted ([verification] trust_emulated)")
        return out


def prepare(config: Config) -> StartupNotice:
    """Create keys and the schema before any worker starts (so workers never race on them)."""
    keys = load_keys(config)
    with Store.open(config.store_url, kek=keys.kek) as store:
        store.migrate()
    return StartupNotice(
        url=f"http://{config.server.host}:{config.server.port}",
        store_url=config.store_url, development=config.development,
        generated=keys.generated, admin_key=keys.admin_private_key_path,
        ear_ca=keys.ear_ca_path,
        trust_emulated=config.verification.trust_emulated, workers=config.server.workers,
    )


def run(config: Config, config_path: Path | None, *, notice: Callable[[str], None] = print) -> None:
    """Serve until interrupted. Workers read the effective configuration that this process
    writes to the data directory (and the same ``VERITEE_*`` overrides).

    Raises:
        ConfigError: the address cannot be listened on (in use, not local, no permission) —
            checked before anything is printed — or the keys or store are misconfigured.
    """
    sock = listening_socket(config.server.host, config.server.port)
    try:
        port = sock.getsockname()[1]
        started = replace(prepare(config), url=f"http://{config.server.host}:{port}")
    except BaseException:
        sock.close()
        raise
    for line in started.lines():
        notice(line)
    write_endpoint(config, started.url)
    os.environ["VERITEE_CONFIG"] = str(write_effective(config))
    server = uvicorn.Config("veritee.server.app:create_app", factory=True,
                            workers=config.server.workers, log_level=config.server.log_level,
                            access_log=False, **uvicorn_options(config))
    if config.server.workers > 1:
        Multiprocess(server, sockets=[sock]).run()
    else:
        uvicorn.Server(server).run(sockets=[sock])


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket (IPPROTO_TCP, so asyncio disables Nagle on accepted sockets).

    Raises:
        ConfigError: the address is in use, not an address of this machine, or not allowed.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = ("is in use" if exc.errno == errno.EADDRINUSE
                  else f"cannot be used ({exc.strerror})")
        raise ConfigError(f"cannot listen on {host}:{port}: the address {reason}; choose "
                          "another with --port or [server] port") from exc
    sock.set_inheritable(True)
    return sock


#: The file in the data directory holding the configuration the workers start with.
EFFECTIVE_CONFIG = "effective-config.toml"


def write_effective(config: Config) -> Path:
    """Write the whole effective configuration (file, environment and command line merged)
    for the worker processes, which read it as their ``VERITEE_CONFIG`` (readable by this
    user only: it names key files)."""
    path = config.data_path / EFFECTIVE_CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(dump_config(config))
    return path


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url
