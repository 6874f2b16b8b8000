"""Keys the broker needs: the key-encryption key, the EAR signing key and its certificate
chain, admin keys.

Production: every key is a file named in the configuration. Development (nothing
configured): keys are generated on first start in the data directory (private keys mode
0600) and kept, and ``veritee serve`` says so. The development EAR signing key comes with a
development CA (``ear-ca.pem``, the certificate a Trustee KBS is given to trust veritee's
tokens, see docs/TOKENS.md) and a signer certificate issued by it (``ear-signing-chain.pem``).
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from veritee.broker.admin import load_public_key
from veritee.broker.config import Config, ConfigError
from veritee.x509 import same_key

log = logging.getLogger(__name__)

KEK_SIZE = 32
#: How long the development CA and signer certificates are valid.
DEVELOPMENT_VALIDITY: Final = timedelta(days=20 * 365)
#: Development files of the EAR signer, in the data directory.
EAR_CA_KEY: Final = "ear-ca-key.pem"
EAR_CA: Final = "ear-ca.pem"
EAR_CHAIN: Final = "ear-signing-chain.pem"


@dataclass(frozen=True)
class BrokerKeys:
    kek: bytes
    signing_key: ec.EllipticCurvePrivateKey
    admin_public_keys: tuple[Any, ...]
    generated: tuple[str, ...]
    """Files generated on this start (for the start-up notice)."""
    admin_private_key_path: Path | None
    """The development admin key (None when admin keys are configured)."""
    ear_chain: tuple[bytes, ...] = ()
    """The EAR signer's certificate chain, DER, leaf first (the tokens' ``x5c``); empty when
    a signing key is configured without a chain."""
    ear_ca_path: Path | None = None
    """The development CA certificate (PEM) behind ``ear_chain``; None unless generated."""


def load_keys(config: Config, *, signing_chain: str | Path | None = None,
              now: datetime | None = None) -> BrokerKeys:
    """Load configured keys, generating development keys where none are configured.

    ``signing_chain``: the PEM file of the EAR signer's certificate chain, leaf first (the
    leaf certifies the EAR signing key); default: ``[tokens] signing_chain`` when the
    configuration has it, else none. Without one, a generated (development) signing key gets
    a development CA and a signer certificate in the data directory, valid from ``now``
    (default: the system clock); a configured signing key gets no chain.

    Raises:
        ConfigError: a configured key file is missing or not a key of the right kind, or the
            chain is unreadable, out of order, or certifies another key.
    """
    data = config.data_path
    generated: list[str] = []
    kek_path = Path(config.store.kek_file) if config.store.kek_file else data / "kek.bin"
    if not kek_path.exists() and not config.store.kek_file:
        _create(kek_path, os.urandom(KEK_SIZE))
        generated.append(str(kek_path))
    kek = _read(kek_path)
    if len(kek) != KEK_SIZE:
        raise ConfigError(
            f"the key-encryption key {kek_path} must be {KEK_SIZE} bytes, not {len(kek)}")
    if signing_chain is None:
        signing_chain = str(getattr(config.tokens, "signing_chain", "") or "")
    signing, chain, ear_ca = _ear_signer(config, generated, signing_chain,
                                         now or datetime.now(UTC))
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
            _create(admin_private, _pem(ed25519.Ed25519PrivateKey.generate()))
            generated.append(str(admin_private))
        admin_keys.append(_load_private(admin_private).public_key())
    return BrokerKeys(kek, signing, tuple(admin_keys), tuple(generated), admin_private,
                      ear_chain=chain, ear_ca_path=ear_ca)


def _ear_signer(config: Config, generated: list[str], chain_file: str | Path, now: datetime
                ) -> tuple[ec.EllipticCurvePrivateKey, tuple[bytes, ...], Path | None]:
    """The EAR signing key, its chain, and the development CA certificate if generated."""
    configured = config.tokens.signing_key
    path = Path(configured) if configured else config.data_path / "ear-signing-key.pem"
    signing = _p256_key(path, generated, create=not configured, what="EAR tokens are ES256")
    if chain_file:
        return signing, _configured_chain(Path(chain_file), signing, path, now), None
    if configured:
        return signing, (), None
    return (signing, *_development_chain(config.data_path, signing, generated, now))


def _p256_key(path: Path, generated: list[str], *, create: bool,
              what: str) -> ec.EllipticCurvePrivateKey:
    if create and not path.exists():
        _create(path, _pem(ec.generate_private_key(ec.SECP256R1())))
        generated.append(str(path))
    key = _load_private(path)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigError(f"{path} must hold a P-256 private key ({what})")
    return key


# -- the EAR signer's certificate chain --------------------------------------------------------


def _configured_chain(path: Path, signing: ec.EllipticCurvePrivateKey, signing_path: Path,
                      now: datetime) -> tuple[bytes, ...]:
    """The operator's chain: PEM, leaf first, each certificate followed by its issuer."""
    certificates = _certificates(path)
    leaf = certificates[0]
    if not same_key(leaf.public_key(), signing.public_key()):
        raise ConfigError(
            f"the EAR signer certificate chain {path} starts with a certificate for another "
            f"key ({leaf.subject.rfc4514_string()}) than the EAR signing key {signing_path}; "
            "the chain is PEM, leaf (the signing key's certificate) first")
    for index, (child, parent) in enumerate(itertools.pairwise(certificates)):
        if not _issued_by(child, parent):
            raise ConfigError(
                f"in {path}, certificate {index} ({child.subject.rfc4514_string()}) is not "
                f"issued by certificate {index + 1} ({parent.subject.rfc4514_string()}): the "
                "chain goes leaf first, each certificate followed by its issuer")
    _warn_about_leaf(leaf, path, now)
    return tuple(c.public_bytes(serialization.Encoding.DER) for c in certificates)


def _warn_about_leaf(leaf: x509.Certificate, path: Path, now: datetime) -> None:
    """What Trustee's token verifier (rustls-webpki, client-auth usage) would refuse."""
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        log.warning("the EAR signer certificate in %s is not valid now (%s to %s)", path,
                    leaf.not_valid_before_utc, leaf.not_valid_after_utc)
    try:
        if leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            log.warning("the EAR signer certificate in %s is a CA certificate; Trustee's KBS "
                        "refuses a CA as the token signer", path)
    except x509.ExtensionNotFound:
        pass
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        log.warning("the EAR signer certificate in %s has an extended key usage without "
                    "clientAuth; Trustee's KBS checks the chain for client authentication",
                    path)


def _development_chain(data: Path, signing: ec.EllipticCurvePrivateKey, generated: list[str],
                       now: datetime) -> tuple[tuple[bytes, ...], Path]:
    """The development CA (created once) and a signer certificate for ``signing`` issued by
    it (created again whenever the file on disk does not certify ``signing``)."""
    ca_key = _p256_key(data / EAR_CA_KEY, generated, create=True, what="the development CA")
    ca_path = data / EAR_CA
    if not ca_path.exists():
        _create(ca_path, _pem_certificate(_ca_certificate(ca_key, now)), mode=0o644)
        generated.append(str(ca_path))
    ca = _certificates(ca_path)[0]
    if not same_key(ca.public_key(), ca_key.public_key()):
        raise ConfigError(f"{ca_path} is not the certificate of {data / EAR_CA_KEY}; delete "
                          "both to generate a new development CA")
    chain_path = data / EAR_CHAIN
    chain = _certificates(chain_path) if chain_path.exists() else []
    if not (chain and same_key(chain[0].public_key(), signing.public_key())
            and _issued_by(chain[0], ca) and chain[0].not_valid_after_utc > now):
        chain = [_signer_certificate(signing, ca_key, ca, now), ca]
        _replace(chain_path, b"".join(_pem_certificate(c) for c in chain))
        generated.append(str(chain_path))
    return tuple(c.public_bytes(serialization.Encoding.DER) for c in chain), ca_path


def _ca_certificate(key: ec.EllipticCurvePrivateKey, now: datetime) -> x509.Certificate:
    name = _name("veritee development EAR CA")
    return (_builder(name, name, key.public_key(), now, now + DEVELOPMENT_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .sign(key, hashes.SHA256()))


def _signer_certificate(signing: ec.EllipticCurvePrivateKey, ca_key: ec.EllipticCurvePrivateKey,
                        ca: x509.Certificate, now: datetime) -> x509.Certificate:
    until = min(now + DEVELOPMENT_VALIDITY, ca.not_valid_after_utc)
    return (_builder(_name("veritee EAR signer (development)"), ca.subject,
                     signing.public_key(), now, until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            # rustls-webpki, which Trustee's KBS verifies the chain with, asks for client auth
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))


def _builder(subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey,
             start: datetime, until: datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(start - timedelta(hours=1)).not_valid_after(until)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "veritee (development)"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not cert_sign, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False,
                         decipher_only=False)


def _certificates(path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(_read(path))
    except ValueError as exc:
        raise ConfigError(f"{path} holds no PEM certificate: {exc}") from exc


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except UnsupportedAlgorithm:
        return child.issuer == parent.subject   # a signature cryptography cannot check
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True



def _pem_certificate(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


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


def _create(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Create ``path`` unless it exists (private by default)."""
    tmp = _temporary(path, data, mode)
    try:
        os.link(tmp, path)  # atomic create-if-absent: a concurrent worker's key wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def _replace(path: Path, data: bytes) -> None:
    """Write a public file atomically, replacing what is there."""
    os.replace(_temporary(path, data, 0o644), path)


def _temporary(path: Path, data: bytes, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return tmp
