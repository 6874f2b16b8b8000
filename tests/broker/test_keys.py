"""The broker's keys: the EAR signer's certificate chain, generated or configured."""

from __future__ import annotations

import logging
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from veritee.appraisal import EarIssuer, verify_ear
from veritee.appraisal.result import Appraisal
from veritee.broker.config import Config, ConfigError, TokenConfig
from veritee.broker.keys import EAR_CA, EAR_CA_KEY, EAR_CHAIN, load_keys

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def development(tmp_path: Path) -> Config:
    return Config(data_dir=str(tmp_path / "data"))


def production(tmp_path: Path, key: ec.EllipticCurvePrivateKey) -> Config:
    path = tmp_path / "ear.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return Config(data_dir=str(tmp_path / "data"), tokens=TokenConfig(signing_key=str(path)))


def certificates(chain: tuple[bytes, ...]) -> list[x509.Certificate]:
    return [x509.load_der_x509_certificate(der) for der in chain]


def spki(key: Any) -> bytes:
    encoded: bytes = key.public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    return encoded


# -- development ---------------------------------------------------------------------------------


def test_development_ca_and_signer_certificate(tmp_path: Path) -> None:
    keys = load_keys(development(tmp_path), now=NOW)
    data = tmp_path / "data"
    assert keys.ear_ca_path == data / EAR_CA
    assert {str(data / name) for name in (EAR_CA_KEY, EAR_CA, EAR_CHAIN)} <= set(keys.generated)
    for name, mode in ((EAR_CA_KEY, 0o600), ("ear-signing-key.pem", 0o600), (EAR_CA, 0o644)):
        assert stat.S_IMODE((data / name).stat().st_mode) == mode, name
    leaf, ca = certificates(keys.ear_chain)
    assert spki(leaf.public_key()) == spki(keys.signing_key.public_key())
    assert ca.public_bytes(serialization.Encoding.PEM) == (data / EAR_CA).read_bytes()
    ca.verify_directly_issued_by(ca)
    leaf.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ExtendedKeyUsageOID.CLIENT_AUTH in leaf.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert leaf.not_valid_before_utc <= NOW
    assert ca.not_valid_after_utc - NOW > timedelta(days=19 * 365)
    # the PEM file a KBS operator may read: leaf, then the CA
    assert [c.public_bytes(serialization.Encoding.DER) for c in
            x509.load_pem_x509_certificates((data / EAR_CHAIN).read_bytes())] == list(
        keys.ear_chain)


def test_development_files_are_kept(tmp_path: Path) -> None:
    first = load_keys(development(tmp_path), now=NOW)
    again = load_keys(development(tmp_path), now=NOW + timedelta(days=1))
    assert again.generated == ()
    assert again.ear_chain == first.ear_chain


def test_a_new_signing_key_gets_a_new_certificate_from_the_same_ca(tmp_path: Path) -> None:
    first = load_keys(development(tmp_path), now=NOW)
    (tmp_path / "data" / "ear-signing-key.pem").unlink()
    second = load_keys(development(tmp_path), now=NOW)
    assert str(tmp_path / "data" / EAR_CHAIN) in second.generated
    assert second.ear_chain[1] == first.ear_chain[1]
    leaf = certificates(second.ear_chain)[0]
    assert spki(leaf.public_key()) == spki(second.signing_key.public_key())


def test_a_ca_certificate_of_another_key_is_refused(tmp_path: Path) -> None:
    load_keys(development(tmp_path), now=NOW)
    (tmp_path / "data" / EAR_CA_KEY).unlink()
    with pytest.raises(ConfigError, match="is not the certificate of"):
        load_keys(development(tmp_path), now=NOW)


def test_development_tokens_verify_with_their_chain(tmp_path: Path) -> None:
    keys = load_keys(development(tmp_path), now=NOW)
    issuer = EarIssuer(keys.signing_key, x5c=keys.ear_chain)
    appraisal = Appraisal(tee="snp", policy_id="default_cpu", policy_version=None,
                          trust_vector={"hardware": 2}, status="affirming", checks=(),
                          annotated={"snp": {}})
    token = issuer.issue({"cpu0": appraisal}, now=NOW)
    assert verify_ear(token, issuer.jwks(), now=NOW)["iss"] == "veritee"


# -- production ----------------------------------------------------------------------------------

CA_KEY = ec.generate_private_key(ec.SECP256R1())


def issued(subject: ec.EllipticCurvePrivateKey, issuer: ec.EllipticCurvePrivateKey, *,
           name: str, issuer_name: str, ca: bool = False,
           usages: list[x509.ObjectIdentifier] | None = None) -> x509.Certificate:
    def dn(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (x509.CertificateBuilder().subject_name(dn(name)).issuer_name(dn(issuer_name))
               .public_key(subject.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - timedelta(days=1))
               .not_valid_after(NOW + timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(issuer, hashes.SHA256())


ROOT = issued(CA_KEY, CA_KEY, name="root", issuer_name="root", ca=True)


def pem(*chain: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)


def test_configured_chain(tmp_path: Path) -> None:
    signing = ec.generate_private_key(ec.SECP256R1())
    intermediate_key = ec.generate_private_key(ec.SECP256R1())
    intermediate = issued(intermediate_key, CA_KEY, name="issuing", issuer_name="root", ca=True)
    leaf = issued(signing, intermediate_key, name="signer", issuer_name="issuing")
    chain_file = tmp_path / "chain.pem"
    chain_file.write_bytes(pem(leaf, intermediate, ROOT))
    keys = load_keys(production(tmp_path, signing), signing_chain=chain_file, now=NOW)
    assert certificates(keys.ear_chain) == [leaf, intermediate, ROOT]
    assert keys.ear_ca_path is None
    assert not (tmp_path / "data" / EAR_CA).exists()
    EarIssuer(keys.signing_key, x5c=keys.ear_chain)


def test_a_configured_key_without_chain_has_none(tmp_path: Path) -> None:
    keys = load_keys(production(tmp_path, ec.generate_private_key(ec.SECP256R1())), now=NOW)
    assert keys.ear_chain == ()
    assert not (tmp_path / "data" / EAR_CA_KEY).exists()


SIGNING = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())
REFUSED: list[tuple[str, bytes | None, str]] = [
    ("leaf of another key", pem(issued(OTHER, CA_KEY, name="signer", issuer_name="root"), ROOT),
     "certificate for another key"),
    ("root first", pem(ROOT, issued(SIGNING, CA_KEY, name="signer", issuer_name="root")),
     "certificate for another key"),
    ("issuer missing from the order",
     pem(issued(SIGNING, OTHER, name="signer", issuer_name="root"), ROOT),
     "is not issued by certificate 1"),
    ("not PEM", b"not a certificate", "holds no PEM certificate"),
    ("missing", None, "cannot read"),
]


@pytest.mark.parametrize(("name", "content", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_configured_chain_refused(tmp_path: Path, name: str, content: bytes | None,
                                  message: str) -> None:
    chain_file = tmp_path / "chain.pem"
    if content is not None:
        chain_file.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_keys(production(tmp_path, SIGNING), signing_chain=chain_file, now=NOW)


@pytest.mark.parametrize(("name", "leaf", "message"), [
    ("a CA as signer", issued(SIGNING, CA_KEY, name="s", issuer_name="root", ca=True),
     "is a CA certificate"),
    ("server auth only", issued(SIGNING, CA_KEY, name="s", issuer_name="root",
                                usages=[ExtendedKeyUsageOID.SERVER_AUTH]), "without clientAuth"),
])
def test_what_trustee_would_refuse_is_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                             name: str, leaf: x509.Certificate,
                                             message: str) -> None:
    chain_file = tmp_path / "chain.pem"
    chain_file.write_bytes(pem(leaf, ROOT))
    with caplog.at_level(logging.WARNING, logger="veritee.broker.keys"):
        keys = load_keys(production(tmp_path, SIGNING), signing_chain=chain_file, now=NOW)
    assert len(keys.ear_chain) == 2
    assert message in caplog.text


def test_development_key_with_a_foreign_chain_is_refused(tmp_path: Path) -> None:
    chain_file = tmp_path / "chain.pem"
    chain_file.write_bytes(pem(issued(OTHER, CA_KEY, name="signer", issuer_name="root")))
    with pytest.raises(ConfigError, match="another key"):
        load_keys(development(tmp_path), signing_chain=chain_file, now=NOW)
