"""The key broker's protocol logic (KBS protocol 0.4.0), free of HTTP.

``auth`` → challenge and session; ``attest`` → verify the evidence against the challenge,
appraise it, issue an EAR token; ``resource`` → check the token against the resource
policy and return the secret as a JWE to the TEE's key. Admin operations beside them.
Every method takes plain data and returns plain data or raises a :mod:`.problems` error;
:mod:`veritee.server.app` only translates HTTP.

Room for what comes next (docs/ARCHITECTURE.md): a verifier may add TEE-specific data to the
challenge (``Session.extra``), impose a hash algorithm (``extra-params``), or take composite
evidence (``additional_evidence`` is hashed into the runtime data already).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from veritee import binding, blocking
from veritee.appraisal import (
    DEFAULT_RESOURCE_POLICY,
    Appraisal,
    PolicyEngine,
    shipped_policy,
)
from veritee.appraisal.ear import EarIssuer, EarVerifier, tee_pubkey_from_ear
from veritee.appraisal.engine import PolicyKind
from veritee.binding import InitData
from veritee.broker import jwe, policies, problems
from veritee.broker.challenge import ChallengeError, ChallengeFields, ChallengeSealer
from veritee.broker.metrics import Metrics
from veritee.broker.references import ReferenceCache
from veritee.claims import claim_at
from veritee.collateral import CollateralSource
from veritee.collateral.gate import FetchGate
from veritee.encoding import b64url_decode
from veritee.errors import (
    BindingError,
    EvidenceError,
    InitDataMismatchError,
    UndecidedError,
    VeriteeError,
)
from veritee.evidence import Evidence, decode_evidence
from veritee.ratelimit import TokenBuckets
from veritee.store import (
    AuditEvent,
    AuditWriter,
    Session,
    Store,
    StoreConflictError,
    StoreUnavailableError,
    check_resource_path,
)
from veritee.tee import Platform, Verifier, get_platform, get_verifier, platforms, tee_names

log = logging.getLogger("veritee.broker")

PROTOCOL_VERSION = "0.4.0"
#: The hash a KBS client uses when the challenge names none (service-anchors.md §1.2).
PROTOCOL_DEFAULT_HASH = "sha384"
RESOURCE_POLICY_ID = "resource"
#: ``extra-params`` of an auth request larger than this (JSON text) are refused.
MAX_EXTRA_PARAMS = 4096
#: Reference values and policies are re-read from the store at most this often per process.
STORE_CACHE_SECONDS = 1.0


@dataclass(frozen=True)
class Challenge:
    session_id: str
    expires_at: datetime
    body: dict[str, Any]


@dataclass
class _Cached:
    value: Any = None
    at: float = -1e9


@dataclass
class Broker:
    store: Store
    engine: PolicyEngine
    issuer: EarIssuer
    collateral: CollateralSource
    challenges: ChallengeSealer
    """Seals the stateless challenge cookies (a key derived from the KEK)."""
    trust_emulated: bool = False
    collateral_grace_seconds: int = 0
    session_seconds: int = 300
    max_evidence_bytes: int = 1024 * 1024
    explain_denials: bool = True
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    audit: AuditWriter | None = None
    """Where audit events go; None: written synchronously (``AuditWriter(store, interval=0)``).
    The server passes a batching writer (:mod:`veritee.store.audit`)."""
    sessions: TokenBuckets = field(default_factory=lambda: TokenBuckets(0, 0))
    """Challenges per client address (``/auth``); unlimited by default here, configured by
    the server (``[limits]``)."""
    fetch_gate: FetchGate | None = None
    """Bounds vendor fetches made on behalf of unverified evidence (None: no bound)."""
    require_revocation: bool = False
    """Tell policies that a CRL must have been checked (``input.veritee.require_revocation``)."""
    _verifiers: dict[str, Verifier] = field(default_factory=dict)
    _cache: dict[str, _Cached] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _tokens: EarVerifier = field(init=False, repr=False)
    _references: ReferenceCache = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.audit is None:
            self.audit = AuditWriter(self.store, interval=0)
        audit = self.audit
        self.metrics.watch_audit(lambda: audit.pending, lambda: audit.dropped)
        self._tokens = EarVerifier(self.issuer.jwks())
        self._references = ReferenceCache(self.store, refresh_seconds=STORE_CACHE_SECONDS)

    def close(self) -> None:
        """Write pending audit events, then close the store."""
        try:
            self._writer.close()
        finally:
            self.store.close()

    @property
    def _writer(self) -> AuditWriter:
        assert self.audit is not None
        return self.audit

    # -- KBS protocol ----------------------------------------------------------------------

    def auth(self, request: Mapping[str, Any], *, client: str = "unknown") -> Challenge:
        """``POST /kbs/v0/auth``: check the version and TEE, return a nonce in a sealed cookie.
        Writes nothing (:mod:`veritee.broker.challenge`)."""
        wait = self.sessions.take(client)
        if wait:
            raise problems.TooManyRequests(
                f"too many sessions from {client}; retry in {wait:.1f} s", retry_after=wait)
        version = _field(request, "version", str)
        if version != PROTOCOL_VERSION:
            raise problems.ProtocolVersionMismatch(
                f"KBS Client Protocol Version Mismatch: expect ={PROTOCOL_VERSION}, got {version}"
            )
        tee = _field(request, "tee", str)
        platform = _platform(tee)
        if not platform.guest_attests:
            raise problems.UnsupportedTee(
                f"{platform.title} guests cannot attest themselves: their host relays the "
                "launch measurement before the guest runs (see `veritee host --help`)")
        hash_algorithm = self._hash_algorithm(platform, _extra_params(request))
        now = self.clock()
        fields = ChallengeFields(
            session_id=uuid.uuid4().hex, nonce=base64.b64encode(secrets.token_bytes(32)).decode(),
            tee=tee, hash_algorithm=hash_algorithm,
            expires_at=now + timedelta(seconds=self.session_seconds))
        extra_params: Any = ""
        if hash_algorithm != PROTOCOL_DEFAULT_HASH:
            extra_params = {"selected-hash-algorithm": hash_algorithm}
        if platform.challenge is not None:
            extra_params = {**(extra_params or {}), **self._challenge_extra(platform, request,
                                                                              fields.nonce)}
        return Challenge(self.challenges.seal(fields), fields.expires_at,
                         {"nonce": fields.nonce, "extra-params": extra_params})

    def _challenge_extra(self, platform: Platform, request: Mapping[str, Any],
                         nonce: str) -> dict[str, Any]:
        """What the platform's challenge hook adds to the challenge's ``extra-params``
        (its key derived from the KEK: stateless, the same on every replica)."""
        hook = platform.load("challenge")
        try:
            added: dict[str, Any] = hook(_extra_params(request), nonce.encode(),
                                         self.challenges.platform_key(platform.tee))
        except VeriteeError as exc:
            raise problems.InvalidRequest(
                f"extra-params of a {platform.tee} auth request: {exc.detail}") from exc
        return added

    def _hash_algorithm(self, platform: Platform, extra: Mapping[str, Any]) -> str:
        default = platform.hash_algorithm
        supported = extra.get("supported-hash-algorithms")
        if isinstance(supported, list) and supported and default not in supported:
            for candidate in ("sha384", "sha512", "sha256"):
                if candidate in supported:
                    return candidate
        return default

    def attest(self, session_id: str | None, request: Mapping[str, Any], *, client: str) -> str:
        """``POST /kbs/v0/attest``: verify and appraise; return the EAR token.

        Only an attestation that verified is stored, with its token, under the challenge's
        session id: a second ``/attest`` with the same cookie returns that token (as
        Trustee's KBS does); a failed attempt writes nothing but an audit event.
        """
        now = self.clock()
        session = self._session(session_id, now)
        stored = self.store.get_session(session.id, now=now)
        if stored is not None and stored.state == "attested" and stored.token:
            return stored.token
        runtime = _field(request, "runtime-data", Mapping)
        nonce = _field(runtime, "nonce", str)
        tee_pubkey = _field(runtime, "tee-pubkey", Mapping)
        try:
            jwe.public_key_from_jwk(tee_pubkey)  # refuse unusable keys before any work
        except jwe.JweKeyError as exc:
            raise problems.JweError(f"tee-pubkey: {exc.detail}") from exc
        primary, additional = _tee_evidence(request.get("tee-evidence"))
        init_data = _init_data(request.get("init-data"))
        if not hmac.compare_digest(nonce.encode(), session.nonce.encode()):
            self._refuse(session, client, "nonce",
                         "runtime-data.nonce is not this session's challenge")
        token, appraisal, seconds = self._attest(
            session, client=client, now=now, primary=primary, init_data=init_data,
            runtime_data={"tee-pubkey": dict(tee_pubkey), "nonce": nonce,
                          "additional-evidence": additional})
        attested = replace(session, state="attested", token=token, nonce_used=True)

        def store_and_record() -> str:
            """The one write; where it would wait for a lock, only this part is run again
            elsewhere (veritee.blocking), not the verification."""
            try:
                self.store.create_session(attested)
            except StoreConflictError:  # another attempt with this challenge won the race
                winner = self.store.get_session(session.id, now=now)
                if winner is None or not winner.token:
                    raise
                return winner.token
            self.metrics.attestation(session.tee, appraisal.status, seconds)
            self.metrics.policy("attestation", appraisal.status)
            self._audit("attest", session, client, verdict=appraisal.status,
                        failed=[c.name for c in appraisal.failed()],
                        detail=_attest_detail(appraisal, additional, init_data))
            return token

        return blocking.last_step(store_and_record)

    def _attest(self, session: Session, *, client: str, now: datetime,
                runtime_data: dict[str, Any], primary: Any,
                init_data: InitData | None) -> tuple[str, Appraisal, float]:
        """Verify, bind init-data, appraise and issue: (token, appraisal, seconds taken)."""
        platform = get_platform(session.tee)
        algorithm = str(session.extra.get("hash_algorithm", platform.hash_algorithm))
        digest = binding.runtime_data_digest(runtime_data, algorithm)
        expected = platform.report_data.expected(digest)
        started = time.perf_counter()
        bound: InitData | None = None

        def verify() -> dict[str, Any]:
            nonlocal bound
            claims = self._verify(session.tee, primary, expected, now, client=client)
            bound = _bind_init_data(platform, claims, init_data)
            _bind_challenge(platform, claims, session.nonce)
            return claims

        claims = self._verified(session, client, started, verify)
        # Additional evidence no verifier checked stays out of the policy input and the token
        # (it is bound into the report data above, and recorded as unverified in the audit).
        presented = {k: v for k, v in runtime_data.items() if k != "additional-evidence"}
        appraisal = self._appraise(session.tee, claims, presented, _init_data_input(bound), now)
        token = self.issuer.issue({"cpu0": appraisal}, now=now)
        return token, appraisal, time.perf_counter() - started

    def _verified(self, session: Session, client: str, started: float,
                  verify: Callable[[], Mapping[str, Any]]) -> dict[str, Any]:
        """``verify()``'s claims; its evidence or undecided error measured, audited and
        raised as the problem the KBS protocol answers."""
        try:
            return dict(verify())
        except (EvidenceError, UndecidedError) as exc:
            self.metrics.attestation(session.tee, "rejected" if isinstance(exc, EvidenceError)
                                     else "undecided", time.perf_counter() - started)
            self._audit("refuse", session, client, verdict=exc.status,
                        failed=[type(exc).__name__], detail={"error": exc.detail})
            detail = f"{type(exc).__name__}: {exc.detail}"
            if isinstance(exc, UndecidedError):
                raise problems.AttestationUndecided(detail) from exc
            raise problems.AttestationFailed(detail) from exc

    def resource(self, path: str, *, session_id: str | None, authorization: str | None,
                 client: str) -> dict[str, str]:
        """``GET /kbs/v0/resource/<repo>/<type>/<tag>``: the secret as a JWE."""
        now = self.clock()
        token = self._token(session_id, authorization, now)
        try:
            claims = self._tokens.verify(token, now=now)
        except VeriteeError as exc:
            raise problems.TokenInvalid(f"{type(exc).__name__}: {exc.detail}") from exc
        data = self._released(path, claims, client)
        try:
            sealed = jwe.encrypt(data, tee_pubkey_from_ear(claims))
        except jwe.JweKeyError as exc:
            raise problems.JweError(
                f"the token's tee-pubkey cannot receive a JWE: {exc.detail}") from exc
        except VeriteeError as exc:
            raise problems.TokenInvalid(f"the token has no usable tee-pubkey: {exc.detail}"
                                        ) from exc
        return sealed

    def _released(self, path: str, claims: Mapping[str, Any], client: str) -> bytes:
        """The plaintext of ``path`` for a verified token's claims, if the resource policy
        allows it (audited either way)."""
        segments = path.split("/")
        decision = self.engine.allow_resource(policy=self._resource_policy(), ear_claims=claims,
                                              path=segments)
        self.metrics.policy("resource", "allow" if decision.allow else "deny")
        if not decision.allow:
            explanation = decision.explain()
            failed = _failed_checks(claims)
            self._audit_event("refuse", client, resource=path, verdict="deny",
                              failed=[c.name for c in decision.checks if not c.held] + failed,
                              detail={"explanation": explanation})
            detail = f"resource policy denies {path}"
            if self.explain_denials:
                detail += f": {explanation}"
                if failed:
                    detail += f"; appraisal: {'; '.join(failed)}"
            raise problems.PolicyDeny(detail)
        data = self.store.get_resource(path)
        if data is None:
            raise problems.ResourceNotFound(f"no resource at {path}")
        self._audit_event("release", client, resource=path, verdict="release", failed=[], detail={})
        return data

    # -- TEEs whose host attests for them (through the platform's own routes) -----------------

    def attest_relayed(self, tee: str, verify: Callable[[], Mapping[str, Any]], *,
                       session_id: str, nonce: str, expires_at: datetime,
                       client: str) -> tuple[str, Appraisal]:
        """Verify (``verify()`` returns the claims: a platform's own routes check a launch
        measurement the host relayed, for a guest that cannot attest itself), appraise,
        issue the EAR token and record the session, once: a second appraisal under
        ``session_id`` is refused. Failures are measured and audited as ``attest`` does.

        Raises:
            problems.AttestationFailed, problems.AttestationUndecided: ``verify`` raised.
            problems.SessionInvalid: ``session_id`` was appraised before.
        """
        now = self.clock()
        session = Session(id=session_id, tee=tee, nonce=nonce, request={"tee": tee},
                          state="attested", created_at=now, expires_at=expires_at,
                          nonce_used=True)
        started = time.perf_counter()
        claims = self._verified(session, client, started, verify)
        appraisal = self._appraise(tee, claims, None, None, now)
        token = self.issuer.issue({"cpu0": appraisal}, now=now)
        try:
            blocking.last_step(lambda: self.store.create_session(replace(session, token=token)))
        except StoreConflictError as exc:
            self._audit("refuse", session, client, verdict="rejected", failed=["replay"],
                        detail={"error": "session appraised before"})
            raise problems.SessionInvalid(
                f"session {session_id} was used already: start a new one") from exc
        self.metrics.attestation(tee, appraisal.status, time.perf_counter() - started)
        self.metrics.policy("attestation", appraisal.status)
        self._audit("attest", session, client, verdict=appraisal.status,
                    failed=[c.name for c in appraisal.failed()],
                    detail=_attest_detail(appraisal, "", None))
        return token, appraisal

    def reference_values(self, name: str) -> list[Any]:
        """The live reference values named ``name`` (empty when none)."""
        return list(self._references.get(self.clock()).values.get(name, ()))

    def release(self, token: str, paths: list[str], *, client: str) -> dict[str, bytes]:
        """The plaintext of each resource in ``paths`` for an EAR token of this broker, each
        through the resource policy as ``GET /kbs/v0/resource`` takes it: for a platform's
        own routes that wrap secrets themselves (a launch secret the host injects)."""
        try:
            claims = self._tokens.verify(token, now=self.clock())
        except VeriteeError as exc:
            raise problems.TokenInvalid(f"{type(exc).__name__}: {exc.detail}") from exc
        for path in paths:
            try:
                check_resource_path(path)
            except VeriteeError as exc:
                raise problems.InvalidPath(exc.detail) from exc
        return {path: self._released(path, claims, client) for path in paths}

    # -- admin -------------------------------------------------------------------------------

    def set_resource(self, path: str, data: bytes, *, who: str) -> int:
        version = self.store.put_resource(path, data, now=self.clock())
        self._audit_admin(who, resource=path, verdict="set-resource",
                          detail={"version": version, "bytes": len(data)})
        return version

    def delete_resource(self, path: str, *, who: str) -> None:
        if not self.store.delete_resource(path):
            raise problems.ResourceNotFound(f"no resource at {path}")
        self._audit_admin(who, resource=path, verdict="delete-resource", detail={})

    def set_attestation_policy(self, request: Mapping[str, Any], *, who: str) -> int:
        kind = request.get("type", "rego")
        if kind != "rego":
            raise problems.InvalidRequest(f"policy type {kind!r} is not supported; use 'rego'")
        policy_id = _field(request, "policy_id", str)
        source = _b64_text(_field(request, "policy", str), "policy")
        self._check_policy(source, "attestation", policy_id)
        try:
            policies.check_declaration(policy_id, source)
        except VeriteeError as exc:
            raise problems.PolicyInvalid(exc.detail) from exc
        version = self.store.put_policy("attestation", policy_id, source, now=self.clock(),
                                        author=who)
        self.forget_cached()
        self._audit_admin(who, resource=f"attestation-policy/{policy_id}",
                          verdict="set-policy", detail={"version": version})
        return version

    def set_resource_policy(self, request: Mapping[str, Any], *, who: str) -> int:
        source = _b64_text(_field(request, "policy", str), "policy")
        self._check_policy(source, "resource", RESOURCE_POLICY_ID)
        version = self.store.put_policy("resource", RESOURCE_POLICY_ID, source, now=self.clock(),
                                        author=who)
        self.forget_cached()
        self._audit_admin(who, resource="resource-policy", verdict="set-policy",
                          detail={"version": version})
        return version

    def _check_policy(self, source: str, kind: PolicyKind, policy_id: str = "policy") -> None:
        """Refuse a policy that does not compile, lacks its outputs, or cannot evaluate: it
        is run once on a sample input (an attestation policy on empty claims of each TEE it
        may apply to; a resource policy on a token without submodules), so that a policy
        that would fail on every request is refused now rather than denying everything."""
        try:
            self.engine.check_policy(source, kind=kind, policy_id=policy_id)
            if kind == "resource":
                self.engine.allow_resource(policy=source, ear_claims={"submods": {}},
                                           path=["sample", "key", "check"],
                                           policy_id=policy_id)
                return
            for platform in platforms():
                if policies.applies(source, platform.tee):
                    self.engine.appraise(tee=platform.tee, claims={}, policy_id=policy_id,
                                         policy=source, reference_values={},
                                         settings={"require_revocation": False},
                                         **policies.appraisal_shape(platform))
        except VeriteeError as exc:
            raise problems.PolicyInvalid(f"{exc.detail} (checked when installed)") from exc

    def resource_policy_source(self) -> str:
        return self._resource_policy()

    def attestation_policy_source(self, tee: str) -> tuple[str, str, int | None]:
        """(policy id, source, version) of the attestation policy that applies to ``tee``
        (:mod:`veritee.broker.policies`); version None for the shipped default."""
        platform = get_platform(tee)
        for policy_id in policies.policy_ids(platform):
            record = self.store.get_policy("attestation", policy_id)
            if record is not None and policies.applies(record.source, tee):
                return record.policy_id, record.source, record.version
        return "default", shipped_policy(platform.policy), None

    def dry_run(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Verify and appraise evidence with a given or stored policy; release nothing."""
        tee = _field(request, "tee", str)
        _platform(tee)
        now = self.clock()
        report_data = request.get("report_data")
        expected = None
        if report_data is not None:
            try:
                expected = bytes.fromhex(_field(request, "report_data", str))
            except ValueError as exc:
                raise problems.InvalidRequest("report_data must be hex") from exc
        try:
            claims = self._verify(tee, request.get("evidence"), expected, now, client="admin")
        except (EvidenceError, UndecidedError) as exc:
            return {"verified": False, "status": exc.status,
                    "error": {"type": type(exc).__name__, "detail": exc.detail},
                    "claims": dict(exc.claims or {})}
        policy = request.get("policy")
        source = _b64_text(policy, "policy") if isinstance(policy, str) else None
        appraisal = self._appraise(tee, claims, request.get("runtime_data"), None, now,
                                   source=source)
        return {"verified": True, "status": appraisal.status,
                "trust_vector": appraisal.trust_vector, "policy_id": appraisal.policy_id,
                "checks": [{"name": c.name, "held": c.held, "detail": c.detail, "values": c.values}
                           for c in appraisal.checks],
                "explanation": appraisal.explain(), "claims": claims}

    # -- internals -----------------------------------------------------------------------------

    def _session(self, cookie: str | None, now: datetime) -> Session:
        """The session a challenge cookie stands for (not stored until it attests)."""
        if not cookie:
            raise problems.SessionInvalid("no kbs-session-id cookie: POST /kbs/v0/auth first")
        try:
            fields = self.challenges.open(cookie, now=now)
        except ChallengeError as exc:
            raise problems.SessionInvalid(str(exc)) from exc
        return Session(id=fields.session_id, tee=fields.tee, nonce=fields.nonce,
                       request={"version": PROTOCOL_VERSION, "tee": fields.tee},
                       state="authed", created_at=now, expires_at=fields.expires_at,
                       extra={"hash_algorithm": fields.hash_algorithm})

    def _refuse(self, session: Session, client: str, rule: str, detail: str) -> None:
        self.metrics.attestation(session.tee, "rejected", 0.0)
        self._audit("refuse", session, client, verdict="rejected", failed=[rule],
                    detail={"error": detail})
        raise problems.AttestationFailed(detail)

    def _verifier(self, tee: str) -> Verifier:
        verifier = self._verifiers.get(tee)
        if verifier is None:
            with self._lock:
                verifier = self._verifiers.get(tee)
                if verifier is None:
                    verifier = get_verifier(
                        tee, trust_emulated=self.trust_emulated,
                        collateral_grace=timedelta(seconds=self.collateral_grace_seconds))
                    if get_platform(tee).challenge is not None:
                        # The verifier checks what the challenge hook made with this key.
                        verifier = verifier.with_challenge_key(  # type: ignore[attr-defined]
                            self.challenges.platform_key(tee))
                    self._verifiers[tee] = verifier
        return verifier

    def _verify(self, tee: str, primary: Any, expected: bytes | None, now: datetime, *,
                client: str) -> dict[str, Any]:
        evidence = _evidence(primary, self.max_evidence_bytes)
        claims = self._verifier(tee).verify(evidence, report_data=expected,
                                            collateral=self._collateral_for(client), now=now)
        return claims.to_dict()

    def _collateral_for(self, client: str) -> CollateralSource:
        """The collateral source, with vendor fetches gated on behalf of ``client``."""
        fetcher, gate = self.collateral.fetcher, self.fetch_gate
        if fetcher is None or gate is None:
            return self.collateral
        return replace(self.collateral, fetcher=gate.wrap(fetcher, client))

    def _appraise(self, tee: str, claims: Mapping[str, Any], runtime_data: Any,
                  init_data: Mapping[str, Any] | None, now: datetime, *,
                  source: str | None = None) -> Appraisal:
        if source is None:
            policy_id, source, version = self._cached(f"apol:{tee}",
                                                       lambda: self.attestation_policy_source(tee))
        else:
            policy_id, version = "dry-run", None
        reference = self._references.get(now)
        return self.engine.appraise(
            tee=tee, claims=claims, policy_id=policy_id, policy=source, policy_version=version,
            reference_values=reference,
            runtime_data=runtime_data if isinstance(runtime_data, Mapping) else None,
            init_data=init_data, settings={"require_revocation": self.require_revocation},
            **policies.appraisal_shape(get_platform(tee)),
        )

    def _resource_policy(self) -> str:
        def load() -> str:
            record = self.store.get_policy("resource", RESOURCE_POLICY_ID)
            return record.source if record is not None else DEFAULT_RESOURCE_POLICY

        source: str = self._cached("rpol", load)
        return source

    def _cached(self, key: str, load: Callable[[], Any]) -> Any:
        entry = self._cache.get(key)
        now = time.monotonic()
        if entry is None or now - entry.at > STORE_CACHE_SECONDS:
            entry = _Cached(load(), now)
            self._cache[key] = entry
        return entry.value

    def forget_cached(self) -> None:
        """Drop this process's copies of policies and reference values (they are re-read
        from the store on next use; other processes refresh within a second)."""
        self._cache.clear()
        self._references.forget()

    def _token(self, session_id: str | None, authorization: str | None, now: datetime) -> str:
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise problems.TokenNotFound("the Authorization header must be 'Bearer <token>'")
            return token.strip()
        if session_id:
            session = self.store.get_session(self._session(session_id, now).id, now=now)
            if session is not None and session.state == "attested" and session.token:
                return session.token
            raise problems.TokenNotFound("this session has not attested: POST /kbs/v0/attest first")
        raise problems.TokenNotFound("no attestation token: send 'Authorization: Bearer <EAR>' "
                                     "or the kbs-session-id cookie of an attested session")

    def audit_events(self, **query: Any) -> list[AuditEvent]:
        """A page of audit events (``query`` as :meth:`Store.list_audit` takes it: limit,
        kind, since, until, before), after writing this process's pending ones."""
        try:
            self._writer.flush()
        except StoreUnavailableError as exc:
            log.warning("listing the audit log without this process's pending events: %s",
                        exc.detail)
        return self.store.list_audit(**query)

    def _audit(self, kind: str, session: Session, client: str, *, verdict: str,
               failed: list[str], detail: dict[str, Any]) -> None:
        self._writer.append(AuditEvent(kind=kind, at=self.clock(), session_id=session.id,
                                       tee=session.tee, subject=client, resource=None,
                                       verdict=verdict, failed_rules=failed, detail=detail))

    def _audit_event(self, kind: str, who: str, *, resource: str | None, verdict: str,
                     failed: list[str], detail: dict[str, Any]) -> None:
        self._writer.append(AuditEvent(kind=kind, at=self.clock(), session_id=None, tee=None,
                                       subject=who, resource=resource, verdict=verdict,
                                       failed_rules=failed, detail=detail))

    def _audit_admin(self, who: str, *, resource: str, verdict: str,
                     detail: dict[str, Any]) -> None:
        """An administrative change, written before the change is acknowledged."""
        self._audit_event("admin", who, resource=resource, verdict=verdict, failed=[],
                          detail=detail)
        self._writer.flush()


# -- request helpers -------------------------------------------------------------------------


def _platform(tee: str) -> Platform:
    """The platform of a request's ``tee``; 400 UnsupportedTee for an unknown name."""
    try:
        return get_platform(tee)
    except VeriteeError as exc:
        raise problems.UnsupportedTee(
            f"TEE {tee!r} is not supported; supported: {tee_names()}") from exc


def _field(obj: Any, name: str, kind: Any) -> Any:
    if not isinstance(obj, Mapping):
        raise problems.InvalidRequest(f"expected a JSON object holding {name!r}")
    value = obj.get(name)
    if value is None:
        raise problems.InvalidRequest(f"{name!r} is missing")
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        expected = getattr(kind, "__name__", str(kind))
        raise problems.InvalidRequest(
            f"{name!r} must be of type {expected}, got {type(value).__name__}")
    return value


def _tee_evidence(value: Any) -> tuple[Any, str]:
    """(primary evidence, additional evidence string) from ``tee-evidence``."""
    if value is None:
        raise problems.InvalidRequest("'tee-evidence' is missing")
    if isinstance(value, str):  # protocol < 0.4: the evidence itself, as a JSON string
        try:
            value = json.loads(value)
        except ValueError:
            return value, ""
        if not isinstance(value, Mapping) or "primary_evidence" not in value:
            return value, ""
    if not isinstance(value, Mapping):
        raise problems.InvalidRequest("'tee-evidence' must be an object")
    if "primary_evidence" not in value:
        return value, ""
    additional = value.get("additional_evidence", "")
    if additional is None:
        additional = ""
    if not isinstance(additional, str):
        additional = json.dumps(additional, separators=(",", ":"))
    return value["primary_evidence"], additional


def _evidence(primary: Any, limit: int) -> Evidence:
    if primary is None:
        raise problems.InvalidRequest("the evidence is empty")
    if isinstance(primary, str):
        if len(primary) > limit * 2:
            raise problems.PayloadTooLarge(f"evidence larger than {limit} bytes")
        return decode_evidence(primary.encode())
    evidence = Evidence.from_json(primary)
    if len(evidence.data) > limit:
        raise problems.PayloadTooLarge(f"evidence larger than {limit} bytes")
    return evidence


def _init_data(value: Any) -> InitData | None:
    """The init-data of an attestation request (None when it has none)."""
    if value is None:
        return None
    fmt = _field(value, "format", str)
    body = _field(value, "body", str)
    try:
        return binding.parse_init_data(fmt, body)
    except EvidenceError as exc:
        raise problems.InvalidRequest(f"init-data: {exc.detail}") from exc


def _bind_init_data(platform: Platform, claims: Mapping[str, Any],
                    init_data: InitData | None) -> InitData | None:
    """The init-data when it is bound to the hardware report; None when there is none or
    the TEE has no field to bind it to (its claims then stay out of policies and tokens).

    Raises:
        InitDataMismatchError: the report's init-data field holds another digest.
    """
    rule = platform.init_data
    if init_data is None or rule is None:
        return None
    expected = rule.fit(init_data.digest)
    carried = claim_at(dict(claims), rule.claim)
    try:
        actual = bytes.fromhex(carried) if isinstance(carried, str) else b""
    except ValueError:
        actual = b""
    if not hmac.compare_digest(actual, expected):
        raise InitDataMismatchError(
            f"{platform.tee} {rule.claim} is {actual.hex() or 'absent'}; the init-data "
            f"presented hashes ({init_data.algorithm}) to {expected.hex()}: the guest was "
            "launched with other init-data")
    return init_data


def _bind_challenge(platform: Platform, claims: Mapping[str, Any], nonce: str) -> None:
    """The evidence's answer to the platform's challenge data is this session's.

    Raises:
        BindingError: the claim names another challenge's nonce, or none.
    """
    if platform.challenge is None or platform.challenge_claim is None:
        return
    answered = claim_at(dict(claims), platform.challenge_claim)
    if not isinstance(answered, str) or not hmac.compare_digest(answered.encode(),
                                                                nonce.encode()):
        raise BindingError(
            f"{platform.tee} {platform.challenge_claim} is {answered!r}: the evidence answers "
            "another session's challenge, not this one's")


def _init_data_input(bound: InitData | None) -> dict[str, Any] | None:
    """What policies see of bound init-data (Trustee's ``init_data_claims``)."""
    if bound is None:
        return None
    return {"format": "toml", "algorithm": bound.algorithm, "body": bound.body,
            "claims": bound.claims}


def _attest_detail(appraisal: Appraisal, additional: str,
                   init_data: InitData | None) -> dict[str, Any]:
    """The audit detail of an attestation: the explanation of failed checks, and what was
    presented but not verified (additional evidence no verifier checked)."""
    detail: dict[str, Any] = {}
    if appraisal.failed():
        detail["explanation"] = appraisal.explain()
    if additional:
        detail["unverified"] = {"additional-evidence": len(additional)}
    if init_data is not None:
        detail["init_data_sha"] = init_data.digest.hex()
    return detail


def _extra_params(request: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``extra-params`` of an auth request, bounded (only the hash list is used)."""
    extra = request.get("extra-params", {})
    if isinstance(extra, str):
        if len(extra) > MAX_EXTRA_PARAMS:
            raise problems.InvalidRequest(
                f"extra-params is {len(extra)} characters; at most {MAX_EXTRA_PARAMS}")
        return {}
    if not isinstance(extra, Mapping):
        return {}
    size = len(json.dumps(extra, ensure_ascii=False, default=str))
    if size > MAX_EXTRA_PARAMS:
        raise problems.InvalidRequest(
            f"extra-params is {size} bytes of JSON; at most {MAX_EXTRA_PARAMS}")
    return extra


def _b64_text(value: Any, name: str) -> str:
    raw = b64url_decode(value) if isinstance(value, str) else None
    if raw is None:
        raise problems.InvalidRequest(f"{name!r} must be base64url text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise problems.InvalidRequest(f"{name!r} is not base64url of UTF-8 text") from exc


def _failed_checks(claims: Mapping[str, Any]) -> list[str]:
    """Failed appraisal checks the token carries (veritee annotation), for explanations."""
    out: list[str] = []
    submods = claims.get("submods")
    if not isinstance(submods, Mapping):
        return out
    for name, submod in submods.items():
        if not isinstance(submod, Mapping):
            continue
        annotated = submod.get("ear.veraison.annotated-evidence")
        failed = annotated.get("veritee.failed-checks") if isinstance(annotated, Mapping) else None
        if isinstance(failed, list):
            out.extend(f"{name}: {item}" for item in failed if isinstance(item, str))
    return out
