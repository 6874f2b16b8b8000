"""Broker configuration: one TOML file, environment overrides, documented defaults.

Every key and its default is listed in ``docs/CONFIG.md`` (kept in step by a test).
An environment variable ``VERITEE_<SECTION>_<KEY>`` (upper case) overrides the file, e.g.
``VERITEE_STORE_URL=postgresql+psycopg://...`` or ``VERITEE_SERVER_PORT=9090``.
Unknown keys are refused, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import contextlib
import json
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from veritee.errors import MisuseError


class ConfigError(MisuseError):
    """The configuration file or an override is invalid."""


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("veritee"))


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    """Processes (uvicorn workers). Several processes share state through the store."""
    max_body_bytes: int = 2 * 1024 * 1024
    """Largest accepted request body (KBS default payload_request_size is 2 MB)."""
    max_header_bytes: int = 256 * 1024
    """Largest request head (request line and headers together); a larger one gets 431.
    Large enough for a 128 KiB bearer token (composite EAR tokens grow with devices)."""
    max_headers: int = 100
    """Most header fields in one request; more get 431."""
    body_timeout_seconds: float = 10.0
    """A request body that has not fully arrived within this many seconds gets 408."""
    keep_alive_seconds: int = 5
    """An idle keep-alive connection is closed after this many seconds."""
    log_level: str = "info"


@dataclass(frozen=True)
class StoreConfig:
    url: str = ""
    """SQLAlchemy URL; empty: an SQLite file ``veritee.db`` in the data directory."""
    kek_file: str = ""
    """32-byte key-encryption key for resources at rest; empty: generated in the data dir."""
    busy_timeout_ms: int = 1000
    """SQLite: how long a statement waits for another process's write lock before the
    request is answered 503 StorageError (retryable)."""


@dataclass(frozen=True)
class TokenConfig:
    signing_key: str = ""
    """PEM P-256 private key for EAR tokens; empty: generated in the data directory."""
    issuer: str = "veritee"
    ttl_seconds: int = 300
    signing_chain: str = ""
    """PEM certificate chain of the EAR signer, leaf first; empty: a development CA and signer
    certificate are generated beside a generated key (none when ``signing_key`` is set)."""
    header_jwk: bool = True
    """Put the signing key and its chain in each token's header (Trustee's
    ``trusted_certs_paths``); false: a ``kid``-only header (Trustee's ``trusted_jwk_sets``)."""


@dataclass(frozen=True)
class SessionConfig:
    timeout_seconds: int = 300
    """How long a session (challenge, then token) lives; Trustee's default is 5 minutes."""
    purge_interval_seconds: int = 60


@dataclass(frozen=True)
class AclEntry:
    role: str
    allowed: str
    """A regular expression matched against the whole request path."""


@dataclass(frozen=True)
class AdminConfig:
    mode: str = "authenticated"
    """``authenticated`` (bearer JWT), ``deny_all``, or ``insecure_allow_all`` (tests only)."""
    public_keys: tuple[str, ...] = ()
    """PEM files of keys allowed to sign admin tokens (Ed25519 or P-256); empty: the
    development key generated in the data directory."""
    acl: tuple[AclEntry, ...] = (AclEntry(role="admin", allowed=r"^/kbs/v0/.+$"),)


@dataclass(frozen=True)
class VerificationConfig:
    trust_emulated: bool = False
    """Trust the emulated roots of veritee.testing (demos and tests only)."""
    offline: bool = False
    """Never reach a vendor service; use evidence, collateral files and the cache only."""
    collateral: tuple[str, ...] = ()
    """Files or directories of endorsements and collateral given to every verification."""
    cache_dir: str = ""
    """Persistent collateral cache; empty: ``collateral`` in the data directory."""
    max_evidence_bytes: int = 1024 * 1024
    collateral_grace_seconds: int = 0
    """How long collateral past its nextUpdate (Intel TCB Info, QE identity, CRLs) is still
    accepted; the claims then say so (``collateral_expired``) and the default policies refuse
    it unless a reference value allows it. 0: expired collateral rejects the evidence."""
    mirrors: tuple[str, ...] = ()
    """``"<vendor URL prefix>=<mirror URL prefix>"``: fetch a vendor's collateral from an
    internal mirror or caching proxy instead (e.g. ``"https://kdsintf.amd.com=http://kds-mirror:8080"``)."""

    def mirror_pairs(self) -> tuple[tuple[str, str], ...]:
        """:attr:`mirrors` as ``(prefix, replacement)`` pairs.

        Raises:
            ConfigError: an entry is not ``<prefix>=<replacement>`` with two URLs.
        """
        pairs = []
        for entry in self.mirrors:
            prefix, sep, replacement = entry.partition("=")
            if not sep or "://" not in prefix or "://" not in replacement:
                raise ConfigError(f"[verification] mirrors entry {entry!r} is not "
                                  "'<vendor URL prefix>=<mirror URL prefix>'")
            pairs.append((prefix, replacement))
        return tuple(pairs)


@dataclass(frozen=True)
class LimitsConfig:
    sessions_per_minute: int = 600
    """Challenges (``/auth``) per client address a minute; 0: unlimited. Beyond the burst,
    429 with Retry-After. Per process: with N workers a client gets up to N times this."""
    sessions_burst: int = 120
    trusted_proxies: tuple[str, ...] = ()
    """Addresses or networks of load balancers whose ``X-Forwarded-For`` names the client;
    from any other peer the header is ignored."""
    fetch_concurrency: int = 4
    """Vendor fetches (AMD KDS, ...) in flight at once per process."""
    fetch_per_client_per_minute: int = 10
    """Vendor fetches one client's evidence may cause a minute; 0: unlimited."""
    fetch_failure_ttl_seconds: int = 60
    """A vendor URL that failed (no answer, 404, 5xx) is not asked again for this long."""
    fetch_timeout_seconds: float = 3.0
    """Timeout of one vendor request (connect and read); one retry after a short backoff."""


@dataclass(frozen=True)
class PolicyConfig:
    explain_denials: bool = True
    """Send the failed rules and their values to the refused client (else: server log only)."""
    require_revocation: str = "auto"
    """``auto`` (required when the broker reaches vendor services), ``true`` or ``false``:
    whether the default policies demand that a CRL was checked (``input.veritee``)."""


@dataclass(frozen=True)
class Config:
    data_dir: str = ""
    """Where development keys and the SQLite file live; empty: the user data directory."""
    server: ServerConfig = field(default_factory=ServerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    tokens: TokenConfig = field(default_factory=TokenConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    verification: VerificationConfig = field(default_factory=VerificationConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)

    @property
    def require_revocation(self) -> bool:
        """Whether policies must see a checked CRL (``[policy] require_revocation``)."""
        mode = self.policy.require_revocation
        if mode not in ("auto", "true", "false"):
            raise ConfigError(f"[policy] require_revocation must be auto, true or false, "
                              f"not {mode!r}")
        return mode == "true" or (mode == "auto" and not self.verification.offline)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir) if self.data_dir else default_data_dir()

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{self.data_path / 'veritee.db'}"

    @property
    def development(self) -> bool:
        """True when keys are generated rather than configured."""
        return not (self.tokens.signing_key and self.store.kek_file)


_SECTIONS = {f.name: f for f in fields(Config) if f.name != "data_dir"}


def load_config(path: Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Read ``path`` (TOML; None: defaults) and apply ``VERITEE_*`` overrides from ``env``.

    Raises:
        ConfigError: unreadable file, bad TOML, unknown key, or a value of the wrong type.
    """
    document: dict[str, Any] = {}
    if path is not None:
        try:
            document = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration {path} is not valid TOML: {exc}") from exc
    config = _from_document(document)
    return _apply_env(config, os.environ if env is None else env)


def _from_document(document: dict[str, Any]) -> Config:
    config = Config()
    for key, value in document.items():
        if key == "data_dir":
            config = replace(config, data_dir=_typed(str, value, "data_dir"))
            continue
        if key not in _SECTIONS:
            raise ConfigError(f"unknown configuration section [{key}]; known: {sorted(_SECTIONS)}")
        if not isinstance(value, dict):
            raise ConfigError(f"[{key}] must be a table")
        section = getattr(config, key)
        config = replace(config, **{key: _section(section, value, key)})
    return config


def _section(section: Any, values: dict[str, Any], name: str) -> Any:
    known = {f.name: f for f in fields(section)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown key {key!r} in [{name}]; known: {sorted(known)}")
        current = getattr(section, key)
        if key == "acl":
            changes[key] = _acl(value)
        elif isinstance(current, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"[{name}] {key} must be a list of strings")
            changes[key] = tuple(value)
        else:
            changes[key] = _typed(type(current), value, f"[{name}] {key}")
    return replace(section, **changes)


def _acl(value: Any) -> tuple[AclEntry, ...]:
    if not isinstance(value, list):
        raise ConfigError("[admin] acl must be a list of {role, allowed} tables")
    out = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"role", "allowed"}:
            raise ConfigError("each [[admin.acl]] entry needs exactly 'role' and 'allowed'")
        out.append(AclEntry(role=str(item["role"]), allowed=str(item["allowed"])))
    return tuple(out)


def _typed(kind: type, value: Any, name: str) -> Any:
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    raise ConfigError(f"{name} must be of type {kind.__name__}, got {value!r}")


def _apply_env(config: Config, env: Any) -> Config:
    for var, raw in env.items():
        if not var.startswith("VERITEE_"):
            continue
        rest = var[len("VERITEE_"):].lower()
        if rest == "data_dir":
            config = replace(config, data_dir=raw)
            continue
        section_name, _, key = rest.partition("_")
        if section_name not in _SECTIONS or not key:
            continue
        section = getattr(config, section_name)
        known = {f.name for f in fields(section)}
        if key not in known or key == "acl":
            continue
        current = getattr(section, key)
        updated = replace(section, **{key: _parse_env(current, raw, var)})
        config = replace(config, **{section_name: updated})
    return config


def _parse_env(current: Any, raw: str, var: str) -> Any:
    if isinstance(current, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{var} must be true or false, got {raw!r}")
    if isinstance(current, int):
        try:
            return int(raw)
        except ValueError as exc:
            raise ConfigError(f"{var} must be an integer, got {raw!r}") from exc
    if isinstance(current, float):
        try:
            return float(raw)
        except ValueError as exc:
            raise ConfigError(f"{var} must be a number, got {raw!r}") from exc
    if isinstance(current, tuple):
        return tuple(p for p in raw.split(os.pathsep) if p)
    return raw


#: The file in the data directory where ``veritee serve`` says where it listens, so that
#: ``veritee admin`` finds a local broker without --url.
ENDPOINT_FILE = "serve.json"


def write_endpoint(config: Config, url: str) -> None:
    """Record ``url`` in the data directory (best effort: a read-only one is not an error)."""
    path = config.data_path / ENDPOINT_FILE
    with contextlib.suppress(OSError):
        path.write_text(json.dumps({"url": url, "pid": os.getpid()}) + "\n")


def read_endpoint(data_dir: Path) -> str | None:
    """The URL a ``veritee serve`` with this data directory recorded, if any."""
    try:
        document = json.loads((data_dir / ENDPOINT_FILE).read_text())
    except (OSError, ValueError):
        return None
    url = document.get("url") if isinstance(document, dict) else None
    return url if isinstance(url, str) else None


def dump_config(config: Config) -> str:
    """``config`` as TOML that :func:`load_config` reads back to the same value (every key
    written, defaults included)."""
    lines = [f"data_dir = {_toml(config.data_dir)}"]
    for name in _SECTIONS:
        section = getattr(config, name)
        lines.append(f"\n[{name}]")
        for item in fields(section):
            value = getattr(section, item.name)
            if item.name == "acl":
                continue
            lines.append(f"{item.name} = {_toml(value)}")
        if name == "admin":
            for entry in config.admin.acl:
                lines.append(f"\n[[admin.acl]]\nrole = {_toml(entry.role)}\n"
                             f"allowed = {_toml(entry.allowed)}")
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string is a JSON string
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} as TOML")
