"""The guest side of the KBS protocol: auth → attest → resource, then decrypt the JWE.

Speaks exactly what guest-components' ``kbs_protocol`` client speaks (protocol 0.4.0), so it
works against veritee and against Trustee's KBS. Evidence comes from a collector: a function
from the 64 report-data bytes to the primary evidence JSON (a real configfs-tsm collector or
an emulated TEE).

A collector that takes part in a platform's challenge (the broker's ``challenge`` hook, e.g.
the SVSM vTPM's credential activation) may offer two things more; a plain function still
works unchanged:

* ``auth_params() -> dict``: merged into the ``auth`` request's ``extra-params`` beside
  ``supported-hash-algorithms`` (which it cannot replace), e.g. ``{"ek-public": ...,
  "ak-public": ...}``;
* ``takes_challenge = True`` (an attribute): it is then called
  ``collector(report_data, challenge)`` with the :class:`Challenge` the broker answered (its
  ``nonce`` text and its ``extra-params``, e.g. the credential to activate).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from veritee import binding
from veritee.encoding import b64url
from veritee.errors import MisuseError, UndecidedError, VeriteeError
from veritee.tee import get_platform

PROTOCOL_VERSION = "0.4.0"
SESSION_COOKIE = "kbs-session-id"
HASH_ALGORITHMS_PARAM = "supported-hash-algorithms"
Collector = Callable[..., Any]


@dataclass(frozen=True)
class Challenge:
    """The broker's answer to ``auth``, as a collector with ``takes_challenge`` gets it."""

    nonce: str
    """The challenge's nonce, as text (the session's, also when the evidence is bound to
    another nonce with ``bind_to_nonce``)."""
    extra_params: Any
    """The challenge's ``extra-params`` (a mapping, or ``""`` when it has none)."""


class KbsClientError(VeriteeError):
    """The broker refused a step; ``status`` and ``problem`` hold what it answered."""

    def __init__(self, detail: str, *, http_status: int = 0,
                 problem: Mapping[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.http_status = http_status
        self.problem = dict(problem or {})


class KbsUnreachableError(UndecidedError):
    """The broker could not be reached."""


@dataclass
class TeeKey:
    """The guest's ephemeral key pair; its public JWK goes into the runtime data."""

    private: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def jwk(self) -> dict[str, str]:
        size = (self.private.curve.key_size + 7) // 8
        numbers = self.private.public_key().public_numbers()
        crv = {256: "P-256", 384: "P-384", 521: "P-521"}[self.private.curve.key_size]
        return {"kty": "EC", "crv": crv, "alg": "ECDH-ES+A256KW",
                "x": b64url(numbers.x.to_bytes(size, "big")),
                "y": b64url(numbers.y.to_bytes(size, "big"))}

    def decrypt(self, sealed: Mapping[str, Any]) -> bytes:
        key = ECKey.import_key(self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        try:
            message = jwe.decrypt_json(dict(sealed),  # type: ignore[arg-type]
                                       key, algorithms=["ECDH-ES+A256KW", "A256GCM"])
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise KbsClientError(
                f"the resource JWE does not decrypt with this TEE key: {exc}") from exc
        return bytes(message.plaintext or b"")


@dataclass
class Attested:
    token: str
    session_cookie: str | None


@dataclass
class KbsClient:
    url: str
    tee: str
    collector: Collector
    key: TeeKey = field(default_factory=TeeKey)
    http: httpx.Client | None = None
    timeout: float = 30.0

    def _client(self) -> httpx.Client:
        if self.http is None:
            self.http = httpx.Client(base_url=self.url.rstrip("/"), timeout=self.timeout)
        return self.http

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None

    def __enter__(self) -> KbsClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- the protocol --

    def auth(self) -> tuple[str, Any, str]:
        """``POST /kbs/v0/auth`` → (nonce, extra-params, session cookie)."""
        response = self._post("/kbs/v0/auth", {
            "version": PROTOCOL_VERSION, "tee": self.tee, "extra-params": self.auth_params(),
        })
        body = response.json()
        cookie = response.cookies.get(SESSION_COOKIE) or ""
        return str(body["nonce"]), body.get("extra-params", ""), cookie

    def auth_params(self) -> dict[str, Any]:
        """The ``extra-params`` of the ``auth`` request: the hash list, and what the collector
        adds through ``auth_params()``."""
        offer = getattr(self.collector, "auth_params", None)
        added = dict(offer()) if callable(offer) else {}
        if HASH_ALGORITHMS_PARAM in added:
            raise MisuseError(f"a collector's auth_params() may not set {HASH_ALGORITHMS_PARAM!r}")
        return {HASH_ALGORITHMS_PARAM: ["sha256", "sha384", "sha512"], **added}

    def collect(self, report_data: bytes, challenge: Challenge) -> Any:
        """The collector's evidence over ``report_data`` (answering ``challenge`` when it
        ``takes_challenge``)."""
        if getattr(self.collector, "takes_challenge", False):
            return self.collector(report_data, challenge)
        return self.collector(report_data)

    def runtime_data(self, nonce: str) -> dict[str, Any]:
        return {"tee-pubkey": self.key.jwk(), "nonce": nonce, "additional-evidence": ""}

    def report_data(self, nonce: str, extra_params: Any) -> bytes:
        """The report-data bytes binding ``nonce`` and this guest's key, with the hash the
        broker selected (else the TEE's default) placed as the TEE's rule says."""
        platform = get_platform(self.tee)
        algorithm: str = platform.hash_algorithm
        if isinstance(extra_params, Mapping) and extra_params.get("selected-hash-algorithm"):
            algorithm = str(extra_params["selected-hash-algorithm"])
        digest = binding.runtime_data_digest(self.runtime_data(nonce), algorithm)
        return platform.report_data.expected(digest)

    def attest(self, *, bind_to_nonce: str | None = None) -> Attested:
        """Run auth and attest. ``bind_to_nonce`` binds the evidence to another (old) nonce,
        which a broker must refuse (for replay demonstrations and tests)."""
        nonce, extra, cookie = self.auth()
        bound = bind_to_nonce or nonce
        evidence = self.collect(self.report_data(bound, extra), Challenge(nonce, extra))
        response = self._post("/kbs/v0/attest", {
            "runtime-data": self.runtime_data(bound),
            "tee-evidence": {"primary_evidence": evidence, "additional_evidence": ""},
        }, cookie=cookie)
        return Attested(token=str(response.json()["token"]), session_cookie=cookie)

    def resource(self, path: str, attested: Attested, *, use_cookie: bool = False) -> bytes:
        """``GET /kbs/v0/resource/<path>`` with the token (or the session cookie); decrypt."""
        headers = {} if use_cookie else {"Authorization": f"Bearer {attested.token}"}
        cookies = None
        if use_cookie and attested.session_cookie:
            cookies = {SESSION_COOKIE: attested.session_cookie}
        try:
            response = self._client().get(f"/kbs/v0/resource/{path}", headers=headers,
                                          cookies=cookies)
        except httpx.HTTPError as exc:
            raise KbsUnreachableError(f"GET /kbs/v0/resource/{path}: {exc}") from exc
        _raise_for_problem(response, f"resource {path}")
        return self.key.decrypt(response.json())

    def get_secret(self, path: str) -> bytes:
        """The whole flow: attest, then fetch and decrypt ``path`` (``repo/type/tag``)."""
        if path.count("/") != 2:
            raise MisuseError(f"resource path must be repository/type/tag, got {path!r}")
        return self.resource(path, self.attest())

    def _post(self, path: str, body: dict[str, Any], *,
              cookie: str | None = None) -> httpx.Response:
        cookies = {SESSION_COOKIE: cookie} if cookie else None
        try:
            response = self._client().post(path, json=body, cookies=cookies)
        except httpx.HTTPError as exc:
            raise KbsUnreachableError(f"POST {path}: {exc}") from exc
        _raise_for_problem(response, path)
        return response


def _raise_for_problem(response: httpx.Response, what: str) -> None:
    if response.status_code == 200:
        return
    try:
        problem = response.json()
    except ValueError:
        problem = {"detail": response.text[:200]}
    if not isinstance(problem, dict):
        problem = {"detail": str(problem)[:200]}
    variant = str(problem.get("type", "")).rsplit("/", 1)[-1] or f"HTTP {response.status_code}"
    raise KbsClientError(f"{what}: {variant}: {problem.get('detail', '')}",
                         http_status=response.status_code, problem=problem)
