"""EAR tokens: issuing, JWKS, verification and every way a token must be refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from veritee.appraisal import (
    CLAIM_NAMES,
    EAR_PROFILE,
    Appraisal,
    Check,
    EarAlgorithmError,
    EarError,
    EarExpiredError,
    EarIssuer,
    EarKeyError,
    EarMalformedError,
    EarNotYetValidError,
    EarSignatureError,
    EarVerifier,
    load_or_create_signing_key,
    tee_pubkey_from_ear,
    verify_ear,
)
from veritee.appraisal.ear import annotated_evidence
from veritee.errors import EvidenceError, ExpiredError, MisuseError, SignatureError

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TEE_KEY = {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW",
           "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
           "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
VECTOR = {"instance-identity": 2, "configuration": 2, "executables": 3, "file-system": 0,
          "hardware": 2, "runtime-opaque": 0, "storage-opaque": 0, "sourced-data": 0}
APPRAISAL = Appraisal(
    tee="snp", policy_id="default_cpu", policy_version=4, trust_vector=VECTOR,
    status="affirming", checks=(),
    annotated={"snp": {"measurement": "ab" * 48}, "report_data": "00" * 64,
               "runtime_data_claims": {"nonce": "bm9uY2U=", "tee-pubkey": TEE_KEY},
               "init_data": "", "init_data_claims": {}})


def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


ISSUER_KEY = key()
ISSUER = EarIssuer(ISSUER_KEY, ttl_seconds=300)
JWKS = ISSUER.jwks()
TOKEN = ISSUER.issue({"cpu0": APPRAISAL}, now=NOW)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict[str, Any], claims: dict[str, Any], signer: Any = None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = signer(signing_input.encode()) if signer else b""
    return f"{signing_input}.{b64(signature)}"


def es256(private: ec.EllipticCurvePrivateKey) -> Any:
    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return sign


def claims_at(when: datetime) -> dict[str, Any]:
    return ISSUER.claims({"cpu0": APPRAISAL}, now=when)


# -- issuing ---------------------------------------------------------------------------------


def test_round_trip() -> None:
    claims = verify_ear(TOKEN, JWKS, now=NOW + timedelta(seconds=299))
    assert claims["eat_profile"] == EAR_PROFILE
    assert claims["iat"] == int(NOW.timestamp())
    assert claims["exp"] == claims["iat"] + 300
    assert claims["iss"] == "veritee"
    assert claims["ear.verifier-id"] == {"developer": "veritee", "build": "veritee 0.1.0"}
    cpu0 = claims["submods"]["cpu0"]
    assert cpu0["ear.status"] == "affirming"
    assert cpu0["ear.trustworthiness-vector"] == VECTOR
    assert cpu0["ear.appraisal-policy-id"] == "default_cpu"
    assert cpu0["ear.veritee.appraisal-policy-version"] == 4
    evidence = cpu0["ear.veraison.annotated-evidence"]
    assert evidence["snp"] == {"measurement": "ab" * 48}
    assert evidence["report_data"] == "00" * 64
    assert evidence["runtime_data_claims"]["tee-pubkey"] == TEE_KEY
    assert tee_pubkey_from_ear(claims) == TEE_KEY


def test_tokens_verify_with_joserfc() -> None:
    """veritee signs and verifies ES256 with cryptography; a JOSE library agrees."""
    from joserfc import jws
    from joserfc.jwk import ECKey

    public = ECKey.import_key(JWKS["keys"][0])
    assert jws.deserialize_compact(TOKEN, public, algorithms=["ES256"]).payload
    foreign = jws.serialize_compact({"alg": "ES256", "kid": ISSUER.kid},
                                    json.dumps(claims_at(NOW)), ECKey.import_key(ISSUER_KEY),
                                    algorithms=["ES256"])
    assert verify_ear(foreign, JWKS, now=NOW)["iss"] == "veritee"


def test_verifier_keeps_its_keys() -> None:
    verifier = EarVerifier(JWKS)
    assert verifier.verify(TOKEN, now=NOW)["iss"] == "veritee"
    assert verifier.verify(TOKEN, now=NOW)["iss"] == "veritee"
    assert verifier.kids == [ISSUER.kid]
    with pytest.raises(EarSignatureError):
        verifier.verify(OTHER.issue({"cpu0": APPRAISAL}, now=NOW), now=NOW)


def test_header() -> None:
    header = json.loads(base64.urlsafe_b64decode(TOKEN.split(".")[0] + "=="))
    assert header == {"alg": "ES256", "typ": "JWT", "kid": ISSUER.kid}


def test_jwks_shape() -> None:
    (jwk,) = JWKS["keys"]
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("EC", "P-256", "ES256", "sig")
    # kid defaults to the RFC 7638 thumbprint of the public key
    members = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    assert jwk["kid"] == b64(hashlib.sha256(members.encode()).digest())


def test_extra_annotations_and_submods() -> None:
    gpu = Appraisal(tee="nvidia", policy_id="default_gpu", policy_version=None,
                    trust_vector=dict.fromkeys(VECTOR, 0), status="none", checks=(),
                    annotated={"nvidia": {}})
    token = ISSUER.issue({"cpu0": APPRAISAL, "gpu0": gpu}, now=NOW,
                         extra_annotations={"ear.veritee.session": "abc"})
    claims = verify_ear(token, JWKS, now=NOW)
    assert set(claims["submods"]) == {"cpu0", "gpu0"}
    for submod in claims["submods"].values():
        assert submod["ear.veraison.annotated-evidence"]["ear.veritee.session"] == "abc"
    assert "ear.veritee.appraisal-policy-version" not in claims["submods"]["gpu0"]


def test_failed_checks_are_annotated() -> None:
    failing = Appraisal(
        tee="snp", policy_id="default_cpu", policy_version=None,
        trust_vector=VECTOR | {"executables": 33}, status="warning",
        checks=(Check("snp.measurement", False, "7a1e5c…841f is not a reference value"),
                Check("snp.policy.debug", True, "policy_flags.debug is false")),
        annotated=APPRAISAL.annotated)
    claims = verify_ear(ISSUER.issue({"cpu0": failing}, now=NOW), JWKS, now=NOW)
    evidence = claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
    assert evidence["veritee.failed-checks"] == [
        "snp.measurement: 7a1e5c…841f is not a reference value"]
    quiet = EarIssuer(ISSUER_KEY, annotate_failures=False)  # type: ignore[arg-type]
    claims = verify_ear(quiet.issue({"cpu0": failing}, now=NOW), JWKS, now=NOW)
    assert "veritee.failed-checks" not in claims["submods"]["cpu0"][
        "ear.veraison.annotated-evidence"]
    # an affirming appraisal carries no such list
    claims = verify_ear(TOKEN, JWKS, now=NOW)
    assert "veritee.failed-checks" not in claims["submods"]["cpu0"][
        "ear.veraison.annotated-evidence"]


def test_claim_names_are_one_table() -> None:
    assert CLAIM_NAMES["status"] == "ear.status"
    assert CLAIM_NAMES["trust_vector"] == "ear.trustworthiness-vector"
    assert CLAIM_NAMES["annotated_evidence"] == "ear.veraison.annotated-evidence"


@pytest.mark.parametrize(("name", "make"), [
    ("P-384 key", lambda: EarIssuer(ec.generate_private_key(ec.SECP384R1()))),
    ("RSA key", lambda: EarIssuer(rsa.generate_private_key(65537, 2048))),  # type: ignore[arg-type]
    ("zero ttl", lambda: EarIssuer(key(), ttl_seconds=0)),
    ("naive now", lambda: ISSUER.issue({"cpu0": APPRAISAL}, now=NOW.replace(tzinfo=None))),
    ("no submods", lambda: ISSUER.issue({}, now=NOW)),
    ("not an appraisal", lambda: ISSUER.issue({"cpu0": {}}, now=NOW)),  # type: ignore[dict-item]
])
def test_issuer_misuse(name: str, make: Any) -> None:
    with pytest.raises(MisuseError):
        make()


# -- refusing --------------------------------------------------------------------------------

OTHER = EarIssuer(key(), kid=ISSUER.kid)
# What an attacker would use as an HMAC secret:
PUBLIC_PEM = ISSUER_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def tampered_payload() -> str:
    header, _, signature = TOKEN.split(".")
    claims = claims_at(NOW)
    claims["submods"]["cpu0"]["ear.status"] = "affirming"
    claims["submods"]["cpu0"]["ear.trustworthiness-vector"]["hardware"] = 2
    claims["iss"] = "someone else"
    return f"{header}.{b64(json.dumps(claims).encode())}.{signature}"


def flipped_signature() -> str:
    head, _, signature = TOKEN.rpartition(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[5] ^= 1
    return f"{head}.{b64(bytes(raw))}"


def hs256_with_public_key() -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": ISSUER.kid}
    return compact(header, claims_at(NOW),
                   lambda data: hmac.new(PUBLIC_PEM, data, hashlib.sha256).digest())


def signed(claims: dict[str, Any], **header: Any) -> str:
    return compact({"alg": "ES256", "typ": "JWT", "kid": ISSUER.kid, **header}, claims,
                   es256(ISSUER_KEY))  # type: ignore[arg-type]


def signed_raw(payload: bytes) -> str:
    header = b64(json.dumps({"alg": "ES256", "kid": ISSUER.kid}).encode())
    signing_input = f"{header}.{b64(payload)}"
    signature = es256(ISSUER_KEY)(signing_input.encode())  # type: ignore[arg-type]
    return f"{signing_input}.{b64(signature)}"


REFUSALS: list[tuple[str, Any, type[EarError]]] = [
    ("other key, same kid", lambda: OTHER.issue({"cpu0": APPRAISAL}, now=NOW),
     EarSignatureError),
    ("tampered payload", tampered_payload, EarSignatureError),
    ("flipped signature bit", flipped_signature, EarSignatureError),
    ("alg none", lambda: compact({"alg": "none", "kid": ISSUER.kid}, claims_at(NOW)),
     EarAlgorithmError),
    ("HS256 keyed with the public key", hs256_with_public_key, EarAlgorithmError),
    ("ES384", lambda: compact({"alg": "ES384", "kid": ISSUER.kid}, claims_at(NOW), es256(key())),
     EarAlgorithmError),
    ("no alg", lambda: compact({"kid": ISSUER.kid}, claims_at(NOW)), EarAlgorithmError),
    ("unknown kid", lambda: EarIssuer(key()).issue({"cpu0": APPRAISAL}, now=NOW),
     EarKeyError),
    ("embedded jwk with an unknown kid", lambda: signed(claims_at(NOW), kid="x",
                                               jwk=OTHER.public_jwk()), EarKeyError),
    ("crit header", lambda: signed(claims_at(NOW), crit=["exp"]), EarMalformedError),
    ("expired", lambda: TOKEN, EarExpiredError),
    ("not yet valid", lambda: ISSUER.issue({"cpu0": APPRAISAL}, now=NOW + timedelta(hours=1)),
     EarNotYetValidError),
    ("nbf in the future", lambda: signed({**claims_at(NOW), "nbf": NOW.timestamp() + 60}),
     EarNotYetValidError),
    ("no exp", lambda: signed({k: v for k, v in claims_at(NOW).items() if k != "exp"}),
     EarMalformedError),
    ("exp a string", lambda: signed({**claims_at(NOW), "exp": "tomorrow"}), EarMalformedError),
    ("no submods", lambda: signed({**claims_at(NOW), "submods": {}}), EarMalformedError),
    ("two parts", lambda: TOKEN.rpartition(".")[0], EarMalformedError),
    ("four parts", lambda: TOKEN + ".x", EarMalformedError),
    ("bad base64 header", lambda: "!!!." + TOKEN.split(".", 1)[1], EarMalformedError),
    ("padded base64", lambda: TOKEN.replace(".", "=.", 1), EarMalformedError),
    ("header not JSON", lambda: b64(b"{not json") + "." + TOKEN.split(".", 1)[1],
     EarMalformedError),
    ("header a list", lambda: b64(b"[1]") + "." + TOKEN.split(".", 1)[1], EarMalformedError),
    ("payload not JSON", lambda: signed_raw(b"\xff\x00"), EarMalformedError),
    ("payload a list", lambda: signed_raw(b"[]"), EarMalformedError),
    ("empty", lambda: "", EarMalformedError),
    ("not text", lambda: 42, EarMalformedError),
]


@pytest.mark.parametrize(("name", "make", "error"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals(name: str, make: Any, error: type[EarError]) -> None:
    when = NOW + timedelta(seconds=300) if name == "expired" else NOW
    with pytest.raises(error):
        verify_ear(make(), JWKS, now=when)


def test_error_kinds() -> None:
    assert issubclass(EarError, EvidenceError)
    assert issubclass(EarSignatureError, SignatureError)
    assert issubclass(EarExpiredError, ExpiredError)


def test_leeway() -> None:
    late = NOW + timedelta(seconds=305)
    with pytest.raises(EarExpiredError):
        verify_ear(TOKEN, JWKS, now=late)
    assert verify_ear(TOKEN, JWKS, now=late, leeway=10)["iss"] == "veritee"
    early = ISSUER.issue({"cpu0": APPRAISAL}, now=NOW + timedelta(seconds=5))
    assert verify_ear(early, JWKS, now=NOW, leeway=10)["iss"] == "veritee"


def test_jwks_with_several_keys() -> None:
    jwks = {"keys": [OTHER.public_jwk() | {"kid": "other"}, *JWKS["keys"]]}
    assert verify_ear(TOKEN, jwks, now=NOW)["iss"] == "veritee"
    no_kid = signed(claims_at(NOW), kid=None)
    with pytest.raises(EarKeyError):
        verify_ear(no_kid.replace(no_kid.split(".")[0], b64(json.dumps(
            {"alg": "ES256"}).encode())), jwks, now=NOW)


@pytest.mark.parametrize(("name", "change"), [
    ("RSA key", {"kty": "RSA"}),
    ("P-384", {"crv": "P-384"}),
    ("encryption key", {"use": "enc"}),
    ("other alg", {"alg": "ES384"}),
    ("bad coordinates", {"x": "AAAA"}),
])
def test_unusable_jwks_keys(name: str, change: dict[str, str]) -> None:
    jwks = {"keys": [JWKS["keys"][0] | change]}
    with pytest.raises(EarKeyError):
        verify_ear(TOKEN, jwks, now=NOW)


def test_bad_jwks_is_misuse() -> None:
    with pytest.raises(MisuseError):
        verify_ear(TOKEN, {"key": []}, now=NOW)


@pytest.mark.parametrize("claims", [
    {},
    {"submods": {"gpu0": {}}},
    {"submods": {"cpu0": {"ear.veraison.annotated-evidence": {"runtime_data_claims": {}}}}},
    {"submods": {"cpu0": {"ear.veraison.annotated-evidence": {
        "runtime_data_claims": {"tee-pubkey": "not a jwk"}}}}},
])
def test_tee_pubkey_absent(claims: dict[str, Any]) -> None:
    with pytest.raises(EarMalformedError, match="no TEE public key"):
        tee_pubkey_from_ear(claims)


# -- the signing key -------------------------------------------------------------------------


def test_signing_key_created_once(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "ear.pem"
    first = load_or_create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = load_or_create_signing_key(path)
    assert first.private_numbers() == second.private_numbers()
    assert isinstance(first.curve, ec.SECP256R1)


def test_signing_key_ephemeral() -> None:
    assert load_or_create_signing_key(None).private_numbers() != (
        load_or_create_signing_key(None).private_numbers())


@pytest.mark.parametrize(("name", "content"), [
    ("garbage", b"not a key"),
    ("P-384", ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())),
    ("encrypted", key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"))),
])
def test_signing_key_refused(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / "ear.pem"
    path.write_bytes(content)
    with pytest.raises(MisuseError):
        load_or_create_signing_key(path)


# -- the signer certificate chain (x5c) ------------------------------------------------------


def certificate(subject: ec.EllipticCurvePrivateKey, issuer: ec.EllipticCurvePrivateKey, *,
                name: str, issuer_name: str | None = None, ca: bool = False) -> bytes:
    """A DER certificate for ``subject``'s public key, signed by ``issuer``."""
    def dn(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
    built = (x509.CertificateBuilder().subject_name(dn(name))
             .issuer_name(dn(issuer_name or name)).public_key(subject.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=9))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
             .sign(issuer, hashes.SHA256()))
    return built.public_bytes(serialization.Encoding.DER)


CA_KEY = key()
CA = certificate(CA_KEY, CA_KEY, name="EAR CA", ca=True)
LEAF = certificate(ISSUER_KEY, CA_KEY, name="EAR signer", issuer_name="EAR CA")
CHAINED = EarIssuer(ISSUER_KEY, x5c=[LEAF, CA])
CHAINED_TOKEN = CHAINED.issue({"cpu0": APPRAISAL}, now=NOW)
ATTACKER = key()
ATTACKER_LEAF = certificate(ATTACKER, CA_KEY, name="EAR signer", issuer_name="EAR CA")


def header_of(token: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token.partition(".")[0] + "=="))
    return value


def jwk_of(private: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    return {k: v for k, v in EarIssuer(private).public_jwk().items() if k in ("kty", "crv",
                                                                              "x", "y")}


def test_header_carries_the_key_and_chain() -> None:
    header = header_of(CHAINED_TOKEN)
    (entry,) = JWKS["keys"]
    assert list(header) == ["alg", "typ", "kid", "jwk"]
    assert (header["alg"], header["typ"], header["kid"]) == ("ES256", "JWT", entry["kid"])
    assert header["jwk"] == {"kty": "EC", "crv": "P-256", "x": entry["x"], "y": entry["y"],
                             "alg": "ES256", "kid": entry["kid"], "x5c": [b64(LEAF), b64(CA)]}
    assert CHAINED.kid == ISSUER.kid and CHAINED.x5c == (LEAF, CA)


def test_jwks_carries_the_chain_in_standard_base64() -> None:
    (entry,) = CHAINED.jwks()["keys"]
    assert [base64.b64decode(c, validate=True) for c in entry["x5c"]] == [LEAF, CA]
    assert {k: v for k, v in entry.items() if k != "x5c"} == JWKS["keys"][0]


def test_header_without_jwk_when_asked_or_without_chain() -> None:
    kid_only = EarIssuer(ISSUER_KEY, x5c=[LEAF, CA], header_jwk=False)
    token = kid_only.issue({"cpu0": APPRAISAL}, now=NOW)
    assert header_of(token) == {"alg": "ES256", "typ": "JWT", "kid": ISSUER.kid}
    assert "x5c" in kid_only.public_jwk()
    assert header_of(EarIssuer(ISSUER_KEY, header_jwk=True).issue(
        {"cpu0": APPRAISAL}, now=NOW)) == {"alg": "ES256", "typ": "JWT", "kid": ISSUER.kid}


def test_chained_tokens_verify() -> None:
    assert verify_ear(CHAINED_TOKEN, JWKS, now=NOW)["iss"] == "veritee"
    assert verify_ear(CHAINED_TOKEN, CHAINED.jwks(), now=NOW)["iss"] == "veritee"
    verifier = EarVerifier(CHAINED.jwks())
    for _ in range(2):      # the second time from the verifier's memory of the header
        assert verifier.verify(CHAINED_TOKEN, now=NOW)["iss"] == "veritee"
    with pytest.raises(EarKeyError):
        verifier.verify(named(jwk=jwk_of(ATTACKER)), now=NOW)


@pytest.mark.parametrize(("name", "chain"), [
    ("leaf of another key", [ATTACKER_LEAF, CA]),
    ("CA first", [CA, LEAF]),
    ("not DER", [b"not a certificate"]),
    ("one bytes object", LEAF),
    ("text", [b64(LEAF)]),
])
def test_chain_misuse(name: str, chain: Any) -> None:
    with pytest.raises(MisuseError):
        EarIssuer(ISSUER_KEY, x5c=chain)


def named(signer: ec.EllipticCurvePrivateKey = ISSUER_KEY, **header: Any) -> str:
    """A token whose header names keys as given, signed by ``signer``."""
    full = {"alg": "ES256", "typ": "JWT", "kid": ISSUER.kid, **header}
    return compact({k: v for k, v in full.items() if v is not None}, claims_at(NOW),
                   es256(signer))


OUR_JWK = header_of(CHAINED_TOKEN)["jwk"]


def with_jwk(**change: Any) -> dict[str, Any]:
    return {k: v for k, v in {**OUR_JWK, **change}.items() if v is not None}


def resigned(token: str, signer: ec.EllipticCurvePrivateKey) -> str:
    head, payload, _ = token.split(".")
    return f"{head}.{payload}.{b64(es256(signer)(f'{head}.{payload}'.encode()))}"


FORGERIES: list[tuple[str, Any, type[EarError]]] = [
    ("our header, another key's signature", lambda: resigned(CHAINED_TOKEN, ATTACKER),
     EarSignatureError),
    ("jwk of another key, signed by it",
     lambda: named(ATTACKER, jwk=jwk_of(ATTACKER) | {"alg": "ES256"}), EarKeyError),
    ("jwk of another key, signed by ours", lambda: named(jwk=jwk_of(ATTACKER)), EarKeyError),
    ("jwk of another key, no kid", lambda: named(ATTACKER, kid=None, jwk=jwk_of(ATTACKER)),
     EarKeyError),
    ("jwk with its x5c leaf for another key",
     lambda: named(ATTACKER, jwk=jwk_of(ATTACKER) | {"x5c": [b64(ATTACKER_LEAF)]}),
     EarKeyError),
    ("our jwk with x5c leaf of another key", lambda: named(jwk=with_jwk(x5c=[
        b64(ATTACKER_LEAF), b64(CA)])), EarKeyError),
    ("x5c header leaf of another key",
     lambda: named(x5c=[base64.b64encode(ATTACKER_LEAF).decode()]), EarKeyError),
    ("our jwk, x5c not a certificate", lambda: named(jwk=with_jwk(x5c=["AAAA"])),
     EarMalformedError),
    ("our jwk, x5c not base64", lambda: named(jwk=with_jwk(x5c=["!!"])), EarMalformedError),
    ("our jwk, x5c empty", lambda: named(jwk=with_jwk(x5c=[])), EarMalformedError),
    ("our jwk, x5c a string", lambda: named(jwk=with_jwk(x5c=b64(LEAF))), EarMalformedError),
    ("our jwk with another kid", lambda: named(jwk=with_jwk(kid="other")), EarKeyError),
    ("our jwk with its private half", lambda: named(jwk=with_jwk(d="AAAA")), EarKeyError),
    ("our jwk on another curve", lambda: named(jwk=with_jwk(crv="P-384")), EarKeyError),
    ("jwk not an object", lambda: named(jwk="our key"), EarKeyError),
    ("jwk alg ES384", lambda: named(jwk=with_jwk(alg="ES384")), EarAlgorithmError),
    ("jwk alg HS256", lambda: named(jwk=with_jwk(alg="HS256")), EarAlgorithmError),
    ("header alg ES384", lambda: compact({**header_of(CHAINED_TOKEN), "alg": "ES384"},
                                         claims_at(NOW), es256(ISSUER_KEY)), EarAlgorithmError),
    ("header alg none", lambda: compact({**header_of(CHAINED_TOKEN), "alg": "none"},
                                        claims_at(NOW)), EarAlgorithmError),
    ("header alg HS256 keyed with the public key", lambda: compact(
        {**header_of(CHAINED_TOKEN), "alg": "HS256"}, claims_at(NOW),
        lambda data: hmac.new(PUBLIC_PEM, data, hashlib.sha256).digest()), EarAlgorithmError),
    ("signed by the CA key", lambda: resigned(CHAINED_TOKEN, CA_KEY), EarSignatureError),
    ("signed by the CA key, naming it",
     lambda: named(CA_KEY, jwk=jwk_of(CA_KEY) | {"alg": "ES256", "x5c": [b64(CA)]}),
     EarKeyError),
]


@pytest.mark.parametrize(("name", "make", "error"), FORGERIES, ids=[f[0] for f in FORGERIES])
def test_forgeries(name: str, make: Any, error: type[EarError]) -> None:
    with pytest.raises(error):
        verify_ear(make(), CHAINED.jwks(), now=NOW)


# -- what a Trustee KBS checks (kbs/src/token/jwk.rs), re-implemented ------------------------


def trustee_verify(token: str, *, trusted_certs: Sequence[bytes] = (),
                   jwks: dict[str, Any] | None = None) -> dict[str, Any]:
    """A header ``jwk`` must carry an ``x5c`` (base64url, no padding) whose leaf is that key
    and which chains to a trusted certificate, and the leaf is no CA (rustls-webpki);
    otherwise the ``kid`` is looked up in the trusted JWKS. Then the signature, with the
    algorithm the key names."""
    head, payload, signature = token.split(".")
    header = header_of(token)
    if "jwk" in header:
        assert trusted_certs, "Cannot verify token since trusted cert is empty"
        jwk = header["jwk"]
        ders = [base64.urlsafe_b64decode(c + "=" * (-len(c) % 4)) for c in jwk["x5c"]]
        assert not any(set("+/=") & set(c) for c in jwk["x5c"]), "Illegal x5c cert"
        chain = [x509.load_der_x509_certificate(der) for der in ders]
        key_ = _public(jwk)
        assert chain[0].public_key() == key_, "jwk does not match x5c"
        assert not chain[0].extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        _chains_to(chain[0], chain[1:], [x509.load_der_x509_certificate(c)
                                         for c in trusted_certs])
    else:
        assert jwks and jwks["keys"], "Cannot verify token since trusted JWK Set is empty"
        (jwk,) = [k for k in jwks["keys"] if k.get("kid") == header["kid"]]
        key_ = _public(jwk)
    assert jwk["alg"] == header["alg"] == "ES256"
    raw = base64.urlsafe_b64decode(signature + "==")
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    key_.verify(encode_dss_signature(r, s), f"{head}.{payload}".encode(),
                ec.ECDSA(hashes.SHA256()))
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    assert claims["exp"] > NOW.timestamp()
    return claims


def _public(jwk: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    assert (jwk["kty"], jwk["crv"]) == ("EC", "P-256")
    x, y = (base64.urlsafe_b64decode(jwk[n] + "==") for n in ("x", "y"))
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)


def _chains_to(leaf: x509.Certificate, pool: list[x509.Certificate],
               anchors: list[x509.Certificate]) -> None:
    current = leaf
    for _ in range(len(pool) + 1):
        for anchor in anchors:
            if current.issuer == anchor.subject:
                current.verify_directly_issued_by(anchor)
                return
        (current,) = [c for c in pool if c.subject == current.issuer and c != current]
    raise AssertionError("JWK cannot be validated by trust anchor")


def test_trustee_accepts_chained_tokens_with_the_ca() -> None:
    assert trustee_verify(CHAINED_TOKEN, trusted_certs=[CA])["iss"] == "veritee"
    leaf_only = EarIssuer(ISSUER_KEY, x5c=[LEAF]).issue({"cpu0": APPRAISAL}, now=NOW)
    assert trustee_verify(leaf_only, trusted_certs=[CA])["iss"] == "veritee"


def test_trustee_reads_the_jwks_only_for_tokens_without_jwk() -> None:
    with pytest.raises(AssertionError, match="trusted cert is empty"):
        trustee_verify(CHAINED_TOKEN, jwks=CHAINED.jwks())
    kid_only = EarIssuer(ISSUER_KEY, x5c=[LEAF, CA], header_jwk=False)
    token = kid_only.issue({"cpu0": APPRAISAL}, now=NOW)
    assert trustee_verify(token, jwks=kid_only.jwks())["iss"] == "veritee"
    assert trustee_verify(TOKEN, jwks=JWKS)["iss"] == "veritee"


OTHER_CA_KEY = key()
OTHER_CA = certificate(OTHER_CA_KEY, OTHER_CA_KEY, name="EAR CA", ca=True)
TRUSTEE_FORGERIES: list[tuple[str, Any]] = [
    ("x5c leaf of another key", lambda: named(ATTACKER, jwk=jwk_of(ATTACKER) | {
        "alg": "ES256", "x5c": [b64(LEAF), b64(CA)]})),
    ("a chain of the attacker's own CA", lambda: named(ATTACKER, jwk=jwk_of(ATTACKER) | {
        "alg": "ES256", "x5c": [b64(certificate(ATTACKER, OTHER_CA_KEY, name="EAR signer",
                                                issuer_name="EAR CA")), b64(OTHER_CA)]})),
    ("our header, another key's signature", lambda: resigned(CHAINED_TOKEN, ATTACKER)),
    ("signed by the CA key", lambda: resigned(CHAINED_TOKEN, CA_KEY)),
    ("signed by the CA key, naming it", lambda: named(CA_KEY, jwk=jwk_of(CA_KEY) | {
        "alg": "ES256", "x5c": [b64(CA)]})),
    ("jwk alg changed", lambda: named(jwk=with_jwk(alg="ES384"))),
]


@pytest.mark.parametrize(("name", "make"), TRUSTEE_FORGERIES,
                         ids=[f[0] for f in TRUSTEE_FORGERIES])
def test_trustee_refuses_forgeries(name: str, make: Any) -> None:
    with pytest.raises((AssertionError, InvalidSignature)):
        trustee_verify(make(), trusted_certs=[CA])


# -- the annotated evidence ------------------------------------------------------------------


def test_annotated_evidence_keeps_binding_fields_beside_the_tee_claims() -> None:
    snp = {"measurement": "ab" * 48, "report_data": "00" * 64, "host_data": "11" * 32,
           "init_data": "11" * 32}
    document: dict[str, Any] = {"snp": {"measurement": "ab" * 48, "report_data": "00" * 64,
                        "host_data": "11" * 32, "init_data": "11" * 32},
                "report_data": "00" * 64, "runtime_data_claims": {"tee-pubkey": TEE_KEY},
                "init_data": "11" * 32, "init_data_claims": {"a": 1},
                "veritee": {"require_revocation": False}}
    appraisal = Appraisal(tee="snp", policy_id="default_cpu", policy_version=None,
                          trust_vector=VECTOR, status="affirming", checks=(),
                          annotated=document)
    claims = verify_ear(ISSUER.issue({"cpu0": appraisal}, now=NOW), JWKS, now=NOW)
    evidence = claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
    assert evidence == {"snp": {"measurement": "ab" * 48, "host_data": "11" * 32},
                        "report_data": "00" * 64, "runtime_data_claims": {"tee-pubkey": TEE_KEY},
                        "init_data": "11" * 32, "init_data_claims": {"a": 1}}
    assert tee_pubkey_from_ear(claims) == TEE_KEY
    # moved, not lost, when the document has them only inside
    assert annotated_evidence("snp", {"snp": {"report_data": "ff"}}) == {
        "snp": {}, "report_data": "ff"}
    assert document["snp"] == snp       # the input is not changed
