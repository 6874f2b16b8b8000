"""EAR (EAT Attestation Result) tokens: ES256 JWTs carrying each appraisal's status, trust
vector and annotated evidence (service-anchors.md §1.6).

Claim names are those Trustee and Veraison emit today, kept in :data:`CLAIM_NAMES` so the
renamed claims of the IETF draft (draft-ietf-rats-ear) can follow by changing one table.

:func:`verify_ear` accepts only ES256 with a key from the JWKS it is given, so ``alg: none``,
HS256 keyed with the public key, and keys named inside the token are all refused: ``jku`` and
``x5u`` are never fetched, and a ``jwk`` or ``x5c`` header that names another key than the
JWKS key of the token's ``kid`` is refused.

The JOSE header is Trustee's (service-anchors.md §1.6; docs/TOKENS.md): with a signer
certificate chain, the header carries the public key as ``jwk`` with the chain as its ``x5c``,
which a Trustee KBS configured with ``trusted_certs_paths`` checks, and always the ``kid`` of
the JWKS entry, which a KBS configured with ``trusted_jwk_sets`` looks up.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
)
from joserfc.jwk import ECKey

from veritee import jose
from veritee.appraisal.errors import (
    EarAlgorithmError,
    EarError,
    EarExpiredError,
    EarKeyError,
    EarMalformedError,
    EarNotYetValidError,
    EarSignatureError,
)
from veritee.appraisal.result import Appraisal
from veritee.encoding import b64url, b64url_decode
from veritee.errors import MisuseError
from veritee.x509 import same_key

log = logging.getLogger(__name__)

EAR_PROFILE: Final = "tag:github.com,2024:confidential-containers/Trustee"
ALGORITHM: Final = "ES256"

#: Our name for each claim → its name in the token.
CLAIM_NAMES: Final[Mapping[str, str]] = MappingProxyType({
    "profile": "eat_profile",
    "issued_at": "iat",
    "expires": "exp",
    "not_before": "nbf",
    "issuer": "iss",
    "verifier_id": "ear.verifier-id",
    "submods": "submods",
    "status": "ear.status",
    "trust_vector": "ear.trustworthiness-vector",
    "policy_id": "ear.appraisal-policy-id",
    "policy_version": "ear.veritee.appraisal-policy-version",
    "annotated_evidence": "ear.veraison.annotated-evidence",
    # inside the annotated evidence: one explanation line per failed check
    "failed_checks": "veritee.failed-checks",
})

#: The submodule whose annotated evidence holds the TEE key (service-anchors.md §1.13 #7).
PRIMARY_SUBMOD: Final = "cpu0"

#: Claims Trustee keeps beside the TEE's claims in the annotated evidence, not inside them
#: (trustee ``attestation-service/src/ear_token/broker.rs``, ``transform_claims``).
BESIDE_TEE_CLAIMS: Final = ("report_data", "init_data")
#: Members of the policy input that are the broker's settings, not evidence: not in the token.
_POLICY_ONLY: Final = ("veritee",)


class EarIssuer:
    """Signs EAR tokens with a P-256 key and publishes its public half as a JWKS."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, *, issuer: str = "veritee",
                 ttl_seconds: int = 300, kid: str | None = None,
                 verifier_build: str = "veritee 0.1.0", developer: str = "veritee",
                 annotate_failures: bool = True, x5c: Sequence[bytes] | None = None,
                 header_jwk: bool = True) -> None:
        """``annotate_failures``: put each appraisal's failed checks (their explanation
        lines, values abbreviated) in the annotated evidence, so that a resource denial can
        say why the attestation was not affirming. The token is readable by its holder.

        ``x5c``: the signer's certificate chain (DER, leaf first; the leaf certifies ``key``).
        With a chain and ``header_jwk``, each token's header carries the public key as
        ``jwk`` with the chain, for a Trustee KBS that trusts the chain's CA
        (``trusted_certs_paths``); without, only the ``kid``, for a KBS that trusts the JWKS
        (``trusted_jwk_sets``: Trustee reads the JWKS only for tokens without ``jwk``).

        Raises:
            MisuseError: ``key`` is not a P-256 private key, ``ttl_seconds`` is not positive,
                an ``x5c`` entry is not a DER certificate, or the leaf certifies another key.
        """
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
                key.curve, ec.SECP256R1):
            raise MisuseError("an EAR signing key must be a P-256 private key (ES256)")
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds < 1:
            raise MisuseError(f"ttl_seconds must be a positive integer, not {ttl_seconds!r}")
        self._key = ECKey.import_key(key)
        self._private = key
        self.kid = kid or self._key.thumbprint()
        self.x5c: tuple[bytes, ...] = _signer_chain(x5c, key)
        """The signer certificate chain (DER, leaf first); empty when none is configured."""
        header: dict[str, Any] = {"alg": ALGORITHM, "typ": "JWT", "kid": self.kid}
        if self.x5c and header_jwk:
            # Trustee reads x5c inside the jwk, each entry base64url without padding
            # (kbs/src/token/jwk.rs, verify_jwk_endorsement; the AS writes it so too).
            header["jwk"] = {**self._key.as_dict(private=False), "alg": ALGORITHM,
                             "kid": self.kid, "x5c": [b64url(der) for der in self.x5c]}
        self._header = b64url(_json(header))
        self.issuer = issuer
        self.ttl_seconds = ttl_seconds
        self.verifier_id = {"developer": developer, "build": verifier_build}
        self.annotate_failures = annotate_failures

    def claims(self, submods: Mapping[str, Appraisal], *, now: datetime,
               extra_annotations: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The token's claims (what :meth:`issue` signs)."""
        if not submods:
            raise MisuseError("an EAR needs at least one submodule (cpu0)")
        issued = _timestamp(now)
        names = CLAIM_NAMES
        return {
            names["profile"]: EAR_PROFILE,
            names["issued_at"]: issued,
            names["expires"]: issued + self.ttl_seconds,
            names["issuer"]: self.issuer,
            names["verifier_id"]: dict(self.verifier_id),
            names["submods"]: {name: _submod(appraisal, extra_annotations,
                                             failures=self.annotate_failures)
                               for name, appraisal in submods.items()},
        }

    def issue(self, submods: Mapping[str, Appraisal], *, now: datetime,
              extra_annotations: Mapping[str, Any] | None = None) -> str:
        """An ES256 JWT for ``submods`` (``{"cpu0": appraisal, "gpu0": ...}``), valid from
        ``now`` for ``ttl_seconds``. ``extra_annotations`` are merged into every submodule's
        annotated evidence.
        """
        claims = self.claims(submods, now=now, extra_annotations=extra_annotations)
        signing_input = f"{self._header}.{b64url(_json(claims))}"
        r, s = decode_dss_signature(self._private.sign(signing_input.encode("ascii"), _ES256))
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK; with a signer chain, its ``x5c`` in standard base64 (RFC 7517
        §4.7), as JWKS consumers read it."""
        public = self._key.as_dict(private=False)
        jwk = {**public, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}
        if self.x5c:
            jwk["x5c"] = [base64.b64encode(der).decode("ascii") for der in self.x5c]
        return jwk

    def jwks(self) -> dict[str, Any]:
        """``{"keys": [the public JWK]}``, for ``/.well-known/jwks.json``."""
        return {"keys": [self.public_jwk()]}


def _signer_chain(chain: Sequence[bytes] | None,
                  key: ec.EllipticCurvePrivateKey) -> tuple[bytes, ...]:
    if chain is None:
        return ()
    given: object = chain     # a bytes object is a sequence too, of integers
    if isinstance(given, bytes | str) or not all(isinstance(der, bytes) for der in chain):
        raise MisuseError("x5c is a sequence of DER certificates (bytes), leaf first")
    for index, der in enumerate(chain):
        try:
            certificate = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise MisuseError(f"x5c[{index}] is not a DER X.509 certificate: {exc}") from exc
        if index == 0 and not same_key(certificate.public_key(), key.public_key()):
            raise MisuseError(
                f"the EAR signer certificate x5c[0] ({certificate.subject.rfc4514_string()}) "
                "certifies another key than the EAR signing key")
    return tuple(chain)



def _submod(appraisal: Appraisal, extra: Mapping[str, Any] | None, *,
            failures: bool) -> dict[str, Any]:
    if not isinstance(appraisal, Appraisal):
        raise MisuseError(f"a submodule is an Appraisal, not {type(appraisal).__name__}")
    names = CLAIM_NAMES
    evidence = {**annotated_evidence(appraisal.tee, appraisal.annotated), **(extra or {})}
    failed = appraisal.failed()
    if failures and failed:
        evidence[names["failed_checks"]] = [check.line() for check in failed]
    out: dict[str, Any] = {
        names["status"]: appraisal.status,
        names["trust_vector"]: dict(appraisal.trust_vector),
        names["policy_id"]: appraisal.policy_id,
        names["annotated_evidence"]: evidence,
    }
    if appraisal.policy_version is not None:
        out[names["policy_version"]] = appraisal.policy_version
    return out


def annotated_evidence(tee: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """The annotated evidence of a submodule, laid out as Trustee's AS lays it out:
    ``{"<tee>": the TEE's claims, "report_data", "runtime_data_claims", "init_data",
    "init_data_claims"}``, with ``report_data`` and ``init_data`` beside the TEE's claims and
    not repeated inside them. ``document`` is the policy input; its broker settings
    (``veritee``) stay out of the token."""
    evidence = {name: value for name, value in document.items() if name not in _POLICY_ONLY}
    claims = evidence.get(tee)
    if isinstance(claims, Mapping):
        for name in BESIDE_TEE_CLAIMS:
            if name in claims:
                evidence.setdefault(name, claims[name])
        evidence[tee] = {k: v for k, v in claims.items() if k not in BESIDE_TEE_CLAIMS}
    return evidence


def _timestamp(now: datetime) -> int:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise MisuseError("now must be a timezone-aware datetime")
    return int(now.timestamp())


# -- verifying -----------------------------------------------------------------------------------


def verify_ear(token: str, jwks: Mapping[str, Any], *, now: datetime,
               leeway: int = 0) -> dict[str, Any]:
    """The claims of ``token`` if it is an ES256 JWT signed by a key in ``jwks`` and valid at
    ``now`` (± ``leeway`` seconds). A verifier of many tokens keeps an :class:`EarVerifier`.

    Raises:
        EarMalformedError: not a compact JWS, bad base64url or JSON, missing or mistyped
            ``exp``/``iat``/``submods``, or a ``crit`` header.
        EarAlgorithmError: ``alg`` is not ES256.
        EarKeyError: no P-256 signing key in ``jwks`` matches the ``kid``.
        EarSignatureError: the signature does not verify.
        EarExpiredError, EarNotYetValidError: outside the validity window.
    """
    return EarVerifier(jwks).verify(token, now=now, leeway=leeway)


class EarVerifier:
    """Verifies EAR tokens against one JWKS, keeping each key it has loaded (by ``kid``).

    The signature is checked as RFC 7515 §5.2 and RFC 7518 §3.4 say for ES256: the signing
    input is the first two segments of the compact token as they are, the signature the
    64-byte concatenation of R and S. The key is always the JWKS key of the token's ``kid``;
    a ``jwk`` header (or its ``x5c``, or an ``x5c`` header) must name that same key.
    """

    _MAX_HEADERS: Final = 64

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(keys, list):
            raise MisuseError('a JWKS is {"keys": [...]}')
        self._jwks = jwks
        self._keys: dict[Any, ec.EllipticCurvePublicKey] = {}
        self._headers: set[bytes] = set()
        """Header segments of tokens that verified (their named keys are checked once)."""

    @property
    def kids(self) -> list[Any]:
        """The key ids whose keys are loaded (each is imported once, on first use)."""
        return list(self._keys)

    def verify(self, token: str, *, now: datetime, leeway: int = 0) -> dict[str, Any]:
        """The claims of ``token`` (see :func:`verify_ear`)."""
        header, payload, signing_input, signature = _parts(token)
        if header.get("alg") != ALGORITHM:
            raise EarAlgorithmError(
                f"token alg is {header.get('alg')!r}; only {ALGORITHM} is accepted")
        if "crit" in header:
            raise EarMalformedError(f"token has critical header parameters {header['crit']!r}")
        kid = header.get("kid")
        key = self._key(kid)
        segment = signing_input.partition(b".")[0]
        known = segment in self._headers
        if not known:
            _check_named_keys(header, key, kid)
        if not jose.es256_verifies(key, signature, signing_input):
            raise EarSignatureError(f"token signature does not verify under key {kid!r}")
        claims = _json_object(payload, "payload")
        _check_times(claims, now, leeway)
        _check_submods(claims)
        if not known and len(self._headers) < self._MAX_HEADERS:
            self._headers.add(segment)
        return claims

    def _key(self, kid: Any) -> ec.EllipticCurvePublicKey:
        try:
            return self._keys[kid]
        except (KeyError, TypeError):
            pass
        key = _key_for(kid, self._jwks)
        if isinstance(kid, str | None):
            self._keys[kid] = key
        return key


def _check_named_keys(header: Mapping[str, Any], key: ec.EllipticCurvePublicKey,
                      kid: Any) -> None:
    """A token cannot bring its own key: a ``jwk`` header must be the JWKS key for ``kid``,
    and the leaf of an ``x5c`` (in the ``jwk``, as Trustee writes it, or in the header) must
    certify it. ``jku`` and ``x5u`` are never fetched."""
    jwk = header.get("jwk")
    if jwk is not None:
        if not isinstance(jwk, Mapping) or "d" in jwk or not _jwk_is(jwk, key):
            raise EarKeyError(f"the token's jwk header is not the JWKS key {kid!r}; a token "
                              "cannot bring its own key")
        if jwk.get("alg", ALGORITHM) != ALGORITHM:
            raise EarAlgorithmError(f"the token's jwk header is for alg {jwk.get('alg')!r}; "
                                    f"only {ALGORITHM} is accepted")
        if jwk.get("kid", kid) != kid:
            raise EarKeyError(f"the token's jwk header has kid {jwk.get('kid')!r}, the token "
                              f"kid {kid!r}")
        _check_x5c(jwk.get("x5c"), key, kid, "jwk.x5c")
    _check_x5c(header.get("x5c"), key, kid, "x5c")


def _jwk_is(jwk: Mapping[str, Any], key: ec.EllipticCurvePublicKey) -> bool:
    if (jwk.get("kty"), jwk.get("crv")) != ("EC", "P-256"):
        return False
    x, y = (b64url_decode(v) if isinstance(v := jwk.get(name), str) else None
            for name in ("x", "y"))
    numbers = key.public_numbers()
    return (x, y) == (numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big"))


def _check_x5c(chain: Any, key: ec.EllipticCurvePublicKey, kid: Any, where: str) -> None:
    if chain is None:
        return
    if not isinstance(chain, list) or not chain or not isinstance(chain[0], str):
        raise EarMalformedError(f"the token's {where} is not a non-empty list of certificates")
    try:
        leaf = x509.load_der_x509_certificate(_certificate_bytes(chain[0]))
    except ValueError as exc:
        raise EarMalformedError(f"the token's {where}[0] is not a certificate: {exc}") from exc
    if not same_key(leaf.public_key(), key):
        raise EarKeyError(f"the token's {where}[0] ({leaf.subject.rfc4514_string()}) "
                          f"certifies another key than the JWKS key {kid!r}")


def _certificate_bytes(text: str) -> bytes:
    """An ``x5c`` entry: standard base64 (RFC 7517 §4.7) or base64url (what Trustee writes);
    the two agree on every character they share."""
    if any(c in text for c in "+/="):
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("not base64") from exc
    decoded = b64url_decode(text)
    if decoded is None:
        raise ValueError("not base64url")
    return decoded


_ES256: Final = ec.ECDSA(hashes.SHA256())


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("ascii")


def tee_pubkey_from_ear(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The TEE's public JWK: ``submods.cpu0["ear.veraison.annotated-evidence"]
    .runtime_data_claims["tee-pubkey"]``.

    Raises:
        EarMalformedError: the path is absent or does not end in a JWK object.
    """
    submods = claims.get(CLAIM_NAMES["submods"])
    primary = submods.get(PRIMARY_SUBMOD) if isinstance(submods, Mapping) else None
    evidence = (primary.get(CLAIM_NAMES["annotated_evidence"])
                if isinstance(primary, Mapping) else None)
    runtime = evidence.get("runtime_data_claims") if isinstance(evidence, Mapping) else None
    key = runtime.get("tee-pubkey") if isinstance(runtime, Mapping) else None
    if not isinstance(key, Mapping) or not isinstance(key.get("kty"), str):
        raise EarMalformedError(
            f"the token has no TEE public key at submods.{PRIMARY_SUBMOD}."
            f"{CLAIM_NAMES['annotated_evidence']}.runtime_data_claims.tee-pubkey")
    return dict(key)


def _parts(token: Any) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    """(header, payload bytes, signing input, signature bytes) of a compact JWS."""
    return jose.split(token, EarMalformedError)


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    return jose.json_object(raw, what, EarMalformedError)


def _key_for(kid: Any, jwks: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        raise MisuseError('a JWKS is {"keys": [...]}')
    candidates = [k for k in keys
                  if isinstance(k, Mapping) and (kid is None or k.get("kid") == kid)]
    if not candidates or (kid is None and len(candidates) != 1):
        raise EarKeyError(f"no key in the JWKS has kid {kid!r}" if kid is not None else
                          "token has no kid and the JWKS holds more than one key")
    jwk = candidates[0]
    if (jwk.get("kty"), jwk.get("crv")) != ("EC", "P-256") or jwk.get("alg", ALGORITHM) != (
            ALGORITHM) or jwk.get("use", "sig") != "sig" or "d" in jwk:
        raise EarKeyError(f"key {kid!r} is not a public P-256 ES256 signing key")
    try:
        x, y = (b64url_decode(str(jwk[name])) or b"" for name in ("x", "y"))
        if len(x) != 32 or len(y) != 32:
            raise ValueError("P-256 coordinates are 32 bytes")
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
    except (EarMalformedError, KeyError, ValueError) as exc:
        raise EarKeyError(f"key {kid!r} does not import: {exc}") from exc


def _check_times(claims: Mapping[str, Any], now: datetime, leeway: int) -> None:
    instant = _timestamp(now)
    times: dict[str, float | None] = {}
    for name in ("expires", "issued_at", "not_before"):
        claim = CLAIM_NAMES[name]
        value = claims.get(claim)
        if value is None and name != "not_before":
            raise EarMalformedError(f"token has no {claim} claim")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise EarMalformedError(f"token {claim} is {value!r}, not a number")
        times[name] = value
    expires = times["expires"]
    if expires is not None and instant >= expires + leeway:
        raise EarExpiredError(f"token expired at {expires} (now {instant}, leeway {leeway} s)")
    for name in ("not_before", "issued_at"):
        start = times[name]
        if start is not None and instant + leeway < start:
            raise EarNotYetValidError(f"token {CLAIM_NAMES[name]} is {start}, after now "
                                      f"({instant}, leeway {leeway} s)")


def _check_submods(claims: Mapping[str, Any]) -> None:
    submods = claims.get(CLAIM_NAMES["submods"])
    if not isinstance(submods, dict) or not submods or not all(
            isinstance(v, dict) for v in submods.values()):
        raise EarMalformedError("token submods is not a non-empty object of objects")


# -- the signing key -----------------------------------------------------------------------------


def load_or_create_signing_key(path: Path | None) -> ec.EllipticCurvePrivateKey:
    """The EAR signing key.

    * ``path`` is None: a fresh key for this process only (tokens die with it).
    * ``path`` exists: its PEM private key (production), which must be P-256.
    * ``path`` does not exist (development): a new P-256 key, written there with mode 0600.

    Raises:
        MisuseError: the file is not an unencrypted PEM P-256 private key.
    """
    if path is None:
        return ec.generate_private_key(ec.SECP256R1())
    path = Path(path)
    if not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        if _write_new(path, key):
            log.info("created EAR signing key %s", path)
            return key
    return _load(path)


def _write_new(path: Path, key: ec.EllipticCurvePrivateKey) -> bool:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False            # another process created it first: use theirs
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return True


def _load(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise MisuseError(f"EAR signing key {path} is not an unencrypted PEM private key: "
                          f"{exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve,
                                                                         ec.SECP256R1):
        raise MisuseError(f"EAR signing key {path} is not a P-256 key (ES256)")
    if path.stat().st_mode & 0o077:
        log.warning("EAR signing key %s is readable by other users (mode %o)", path,
                    path.stat().st_mode & 0o777)
    return key


__all__ = [
    "ALGORITHM",
    "CLAIM_NAMES",
    "EAR_PROFILE",
    "EarError",
    "EarIssuer",
    "EarVerifier",
    "annotated_evidence",
    "load_or_create_signing_key",
    "tee_pubkey_from_ear",
    "verify_ear",
]
