"""Keys the broker needs: the key-encryption key, the EAR signing key, admin keys.

Production: every key is a file named in the configuration. Development (nothing
configured): keys are generated on first start in the data directory (mode 0600) and kept,
and ``veritee serve`` says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from veritee.broker.admin import load_public_key
from veritee.broker.config import Config, ConfigError

KEK_SIZE = 32


@dataclass(frozen=True)
class BrokerKeys:
    kek: bytes
    signing_key: ec.EllipticCurvePrivateKey
    admin_public_keys: tuple[Any, ...]
    generated: tuple[str, ...]
    """Files generated on this start (for the start-up notice)."""
    admin_private_key_path: Path | None
    """The development admin key (None when admin keys are configured)."""


def load_keys(config: Config) -> BrokerKeys:
    """Load configured keys, generating development keys where none are configured.

    Raises:
        ConfigError: a configured key file is missing or not a key of the right kind.
    """
    data = config.data_path
    generated: list[str] = []
    kek_path = Path(config.store.kek_file) if config.store.kek_file else data / "kek.bin"
    if not kek_path.exists() and not config.store.kek_file:
        _write_secret(kek_path, os.urandom(KEK_SIZE))
        generated.append(str(kek_path))
    kek = _read(kek_path)
    if len(kek) != KEK_SIZE:
        raise ConfigError(
            f"the key-encryption key {kek_path} must be {KEK_SIZE} bytes, not {len(kek)}")
    signing_path = (Path(config.tokens.signing_key) if config.tokens.signing_key
                    else data / "ear-signing-key.pem")
    if not signing_path.exists() and not config.tokens.signing_key:
        key = ec.generate_private_key(ec.SECP256R1())
        _write_secret(signing_path, _pem(key))
        generated.append(str(signing_path))
    signing = _load_private(signing_path)
    if not isinstance(signing, ec.EllipticCurvePrivateKey) or signing.curve.name != "secp256r1":
        raise ConfigError(f"{signing_path} must hold a P-256 private key (EAR tokens are ES256)")
    admin_keys: list[Any] = []
    admin_private: Path | None = None
    if config.admin.public_keys:
        for name in config.admin.public_keys:
            try:
                admin_keys.append(load_public_key(Path(name)))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot load admin public key {name}: {exc}") from exc
    else:
        admin_private = data / "admin-key.pem"
        if not admin_private.exists():
            _write_secret(admin_private, _pem(ed25519.Ed25519PrivateKey.generate()))
            generated.append(str(admin_private))
        admin_keys.append(_load_private(admin_private).public_key())
    return BrokerKeys(kek, signing, tuple(admin_keys), tuple(generated), admin_private)


def _pem(key: Any) -> bytes:
    pem: bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    return pem


def _load_private(path: Path) -> Any:
    try:
        return serialization.load_pem_private_key(_read(path), password=None)
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM private key") from exc


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    try:
        os.link(tmp, path)  # atomic create-if-absent: a concurrent worker's key wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
