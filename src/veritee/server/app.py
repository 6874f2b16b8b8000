"""The HTTP face of the broker: FastAPI routes for the KBS protocol, admin paths, health,
metrics and the JWKS. Protocol logic lives in :mod:`veritee.broker.service`; this module
only translates HTTP (bodies, cookies, headers, statuses) and maps errors in one place
(:func:`veritee.broker.problems.problem_for`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar, cast

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from veritee import __version__, blocking
from veritee.appraisal import PolicyEngine, parse_reference_values
from veritee.appraisal.ear import EarIssuer
from veritee.broker import policies, problems
from veritee.broker.admin import AdminAuthenticator, AdminAuthError, AdminIdentity
from veritee.broker.challenge import ChallengeSealer
from veritee.broker.config import Config, ConfigError, load_config
from veritee.broker.keys import load_keys
from veritee.broker.metrics import Metrics
from veritee.broker.service import Broker
from veritee.collateral import CollateralSource, DirectoryCache
from veritee.collateral.fetch import HttpFetcher
from veritee.collateral.gate import FetchGate
from veritee.encoding import b64url, b64url_decode
from veritee.errors import VeriteeError
from veritee.ratelimit import TokenBuckets
from veritee.server.guards import BodyGuard, TrustedProxies
from veritee.server.protocol import STATE_KEY as HTTP_LIMITS
from veritee.store import AuditKind, AuditWriter, Store
from veritee.tee import platforms, tee_names

log = logging.getLogger("veritee.broker")
#: Seconds an audit event may wait in memory before its batch is written (veritee.store.audit).
AUDIT_INTERVAL = 0.05
SESSION_COOKIE = "kbs-session-id"
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")
_JSON_PATHS = ("/kbs/v0/auth", "/kbs/v0/attest", "/kbs/v0/attestation-policy",
               "/kbs/v0/resource-policy", "/kbs/v0/reference-value", "/kbs/v0/policy-test")


# -- request bodies (documented in the OpenAPI document; extra keys are kept) ------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class AuthRequest(_Body):
    version: str = Field(examples=["0.4.0"])
    tee: str = Field(examples=tee_names()[:1])
    extra_params: dict[str, Any] | str | None = Field(default=None, alias="extra-params")


class Challenge(BaseModel):
    nonce: str = Field(description="base64 of 32 random bytes")
    extra_params: dict[str, Any] | str = Field(alias="extra-params")


class RuntimeData(_Body):
    nonce: str
    tee_pubkey: dict[str, Any] = Field(alias="tee-pubkey")


class InitData(_Body):
    format: str
    body: str


class AttestRequest(_Body):
    runtime_data: RuntimeData = Field(alias="runtime-data")
    tee_evidence: dict[str, Any] | str = Field(alias="tee-evidence")
    init_data: InitData | None = Field(default=None, alias="init-data")


class TokenResponse(BaseModel):
    token: str


class AttestationPolicyRequest(_Body):
    type: str = "rego"
    policy_id: str
    policy: str = Field(description="base64url of the Rego source")


class ResourcePolicyRequest(_Body):
    policy: str = Field(description="base64url of the Rego source")


class PolicyTestRequest(_Body):
    tee: str
    evidence: dict[str, Any] | str
    policy: str | None = Field(default=None, description="base64url Rego; default: the stored one")
    report_data: str | None = Field(default=None, description="expected report data, hex")
    runtime_data: dict[str, Any] | None = None


class ProblemBody(BaseModel):
    type: str
    title: str
    status: int
    detail: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ProblemBody, "description": desc}
    for code, desc in ((400, "Malformed request"), (401, "Not authenticated or attestation failed"),
                       (403, "Refused by policy or role"), (404, "No such resource or path"),
                       (413, "Body too large"), (503, "Store or collateral unavailable"))
}


# -- the app -----------------------------------------------------------------------------------


def build_broker(config: Config, *, clock: Callable[[], datetime] | None = None
                 ) -> tuple[Broker, AdminAuthenticator, list[str]]:
    """Open the store, load or generate keys; return the broker and the admin authenticator.
    ``clock`` is the broker's and the store's (default: the system clock)."""
    keys = load_keys(config)
    store = Store.open(config.store_url, kek=keys.kek, clock=clock,
                       busy_timeout=config.store.busy_timeout_ms / 1000)
    store.migrate()
    limits = config.limits
    broker = Broker(
        store=store, engine=PolicyEngine(natives=policies.natives()),
        issuer=EarIssuer(keys.signing_key, issuer=config.tokens.issuer,
                         ttl_seconds=config.tokens.ttl_seconds,
                         verifier_build=f"veritee {__version__}",
                         x5c=keys.ear_chain or None, header_jwk=config.tokens.header_jwk),
        collateral=_collateral(config), challenges=ChallengeSealer(keys.kek),
        trust_emulated=config.verification.trust_emulated,
        collateral_grace_seconds=config.verification.collateral_grace_seconds,
        session_seconds=config.session.timeout_seconds,
        max_evidence_bytes=config.verification.max_evidence_bytes,
        explain_denials=config.policy.explain_denials,
        audit=AuditWriter(store, interval=AUDIT_INTERVAL),
        sessions=TokenBuckets(limits.sessions_per_minute, limits.sessions_burst),
        fetch_gate=FetchGate(concurrency=limits.fetch_concurrency,
                             failure_ttl=limits.fetch_failure_ttl_seconds,
                             per_client_per_minute=limits.fetch_per_client_per_minute),
        require_revocation=config.require_revocation,
        clock=clock or _system_clock,
    )
    admin = AdminAuthenticator(config.admin, keys.admin_public_keys)
    return broker, admin, list(keys.generated)


def _system_clock() -> datetime:
    return datetime.now(UTC)


def _collateral(config: Config) -> CollateralSource:
    """The broker's collateral: configured files, the persistent cache, and (online) the
    vendor services with short timeouts and one retry."""
    cache_dir = config.verification.cache_dir or str(config.data_path / "collateral")
    fetcher = None
    if not config.verification.offline:
        fetcher = HttpFetcher(timeout=config.limits.fetch_timeout_seconds, retries=1,
                              backoff=0.25, mirrors=config.verification.mirror_pairs())
    return CollateralSource.from_paths((), [Path(p) for p in config.verification.collateral],
                                       cache=DirectoryCache(Path(cache_dir)), fetcher=fetcher)


def create_app(config: Config | None = None) -> FastAPI:
    """The ASGI app (uvicorn factory: ``veritee.server.app:create_app``)."""
    config = config or load_config(_config_path_from_env())
    broker, admin, _ = build_broker(config)
    return make_app(broker, admin, config)


def _config_path_from_env() -> Any:
    path = os.environ.get("VERITEE_CONFIG")
    return Path(path) if path else None


def make_app(broker: Broker, admin: AdminAuthenticator, config: Config) -> FastAPI:
    off_loop = _OffLoop(loop_first=broker.store.embedded)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        task = asyncio.create_task(_purge_loop(broker, config.session.purge_interval_seconds))
        # Read by the HTTP protocol (veritee.server.protocol) for every request head.
        yield {HTTP_LIMITS: (config.server.max_header_bytes, config.server.max_headers)}
        task.cancel()
        off_loop.close()
        await asyncio.to_thread(broker.close)

    app = FastAPI(title="veritee key broker", version=__version__, lifespan=lifespan,
                  description="Attestation verifier and key broker speaking the Confidential "
                              "Containers KBS protocol 0.4.0.",
                  responses=_ERRORS)
    app.state.broker = broker
    try:
        app.state.proxies = TrustedProxies(config.limits.trusted_proxies)
    except ValueError as exc:
        raise ConfigError(f"[limits] trusted_proxies: {exc}") from exc
    _install_error_handlers(app)
    _add_routes(app, broker, admin, off_loop)
    json_paths = _JSON_PATHS + _add_platform_routes(app, broker, off_loop)
    app.state.json_paths = json_paths
    app.add_middleware(_MetricsMiddleware, metrics=broker.metrics)
    app.add_middleware(BodyGuard, limit=config.server.max_body_bytes,
                       timeout=config.server.body_timeout_seconds, json_paths=json_paths)
    return app


async def _purge_loop(broker: Broker, interval: int) -> None:
    delay = float(interval)
    while True:
        await asyncio.sleep(delay)
        try:
            await asyncio.to_thread(broker.store.purge_expired, now=broker.clock())
            delay = float(interval)
        except VeriteeError as exc:
            log.warning("session purge failed: %s", exc.detail)
            delay = min(delay * 2, 3600.0)


_T = TypeVar("_T")


#: Threads for KBS steps per worker process (as many as anyio's default pool): enough for
#: requests waiting on a locked store or on vendor fetches beside the ones being served.
KBS_THREADS: Final = 40


class _OffLoop:
    """Runs a KBS step so that a locked database or a slow vendor never stalls the event
    loop (and ``/healthz``).

    With SQLite the step is tried on the loop first, where nothing may wait
    (:mod:`veritee.blocking`): a statement that meets another connection's lock, or a lookup
    that would ask a vendor service, raises ``WouldBlock`` before anything changed, and the
    step runs again in the worker's thread pool, where it may wait. Most steps never wait;
    a thread hop for each would cost about 1–2 ms of CPU per flow under load (the GIL passed
    between the loop and the pool: ``veritee bench broker`` measured 0.07–0.09 of its
    ceiling that way against 0.09–0.11 on the loop). With PostgreSQL every statement is a
    network round trip, so steps always run in the pool."""

    def __init__(self, *, loop_first: bool) -> None:
        self.loop_first = loop_first
        self.executor = ThreadPoolExecutor(KBS_THREADS, thread_name_prefix="veritee-kbs")

    async def __call__(self, call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        if self.loop_first:
            try:
                with blocking.nonblocking():
                    return call(*args, **kwargs)
            except blocking.WouldBlock as exc:
                log.debug("%s would block (%s): run in a thread", call.__name__, exc.what)
                if exc.resume is not None:
                    return cast(_T, await asyncio.get_running_loop().run_in_executor(
                        self.executor, exc.resume))
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, functools.partial(call, *args, **kwargs))

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def client_address(request: Request) -> str:
    """The client's address: the peer, or what a trusted proxy says it forwarded for (for
    platforms' own routes too)."""
    peer = request.client.host if request.client else "unknown"
    proxies: TrustedProxies = request.app.state.proxies
    return proxies.client(peer, request.headers.getlist("x-forwarded-for"))


def _resource_path(repository: str, kind: str, tag: str) -> str:
    for part in (repository, kind, tag):
        if not _SEGMENT.match(part) or part in (".", ".."):
            raise problems.InvalidPath(f"resource path segment {part!r} is not allowed")
    return f"{repository}/{kind}/{tag}"


def _require_admin(request: Request) -> AdminIdentity:
    admin: AdminAuthenticator = request.app.state.admin
    broker: Broker = request.app.state.broker
    try:
        return admin.authorize(request.headers.get("authorization"), request.url.path,
                               now=broker.clock())
    except AdminAuthError as exc:
        if exc.forbidden:
            raise problems.AdminForbidden(exc.detail) from exc
        raise problems.AdminUnauthorized(exc.detail) from exc


#: The admin identity of a request (401/403 unless its bearer token passes the ACL).
Admin = Annotated[AdminIdentity, Depends(_require_admin)]


def _add_routes(app: FastAPI, broker: Broker, admin: AdminAuthenticator,
                off_loop: _OffLoop) -> None:
    app.state.admin = admin
    _add_kbs_routes(app, broker, off_loop)
    _add_admin_routes(app, broker)
    _add_policy_routes(app, broker)
    _add_ops_routes(app, broker, off_loop)


def _add_platform_routes(app: FastAPI, broker: Broker, run: _OffLoop) -> tuple[str, ...]:
    """The routes platforms add of their own (a descriptor's ``routes``: a function
    ``(app, broker, run)`` returning the path prefixes whose bodies are JSON)."""
    added: list[str] = []
    seen: set[str] = set()
    for platform in platforms():
        if platform.routes is None or platform.routes in seen:
            continue
        seen.add(platform.routes)  # one function may serve several TEEs of a room
        added += platform.load("routes")(app, broker, run)
    return tuple(added)


def _add_kbs_routes(app: FastAPI, broker: Broker, run: _OffLoop) -> None:
    @app.post("/kbs/v0/auth", response_model=Challenge, tags=["kbs"],
              summary="Request: get a challenge (in a sealed session cookie)")
    async def auth(body: AuthRequest, request: Request) -> JSONResponse:
        challenge = broker.auth(body.model_dump(by_alias=True, exclude_none=True),
                                client=client_address(request))  # no store, no I/O: on the loop
        out = JSONResponse(challenge.body)
        out.set_cookie(SESSION_COOKIE, challenge.session_id, path="/kbs/v0", httponly=True,
                       expires=format_datetime(challenge.expires_at, usegmt=True))
        return out

    @app.post("/kbs/v0/attest", response_model=TokenResponse, tags=["kbs"],
              summary="Attestation: send evidence bound to the challenge, get an EAR token")
    async def attest(body: AttestRequest, request: Request) -> JSONResponse:
        session_id = request.cookies.get(SESSION_COOKIE)
        token = await run(broker.attest, session_id,
                          body.model_dump(by_alias=True, exclude_none=True),
                          client=client_address(request))
        out = JSONResponse({"token": token})
        if session_id:
            out.set_cookie(SESSION_COOKIE, session_id, path="/kbs/v0", httponly=True)
        return out

    @app.get("/kbs/v0/resource/{repository}/{kind}/{tag}", tags=["kbs"],
             summary="Get a secret as a JWE to the attested TEE key")
    async def get_resource(repository: str, kind: str, tag: str,
                           request: Request) -> JSONResponse:
        path = _resource_path(repository, kind, tag)
        sealed = await run(broker.resource, path, session_id=request.cookies.get(SESSION_COOKIE),
                           authorization=request.headers.get("authorization"),
                           client=client_address(request))
        return JSONResponse(sealed)


def _add_admin_routes(app: FastAPI, broker: Broker) -> None:
    @app.post("/kbs/v0/resource/{repository}/{kind}/{tag}", tags=["admin"],
              summary="Set a secret (body: the raw bytes)")
    async def set_resource(repository: str, kind: str, tag: str, request: Request,
                           who: Admin) -> JSONResponse:
        path = _resource_path(repository, kind, tag)
        data = await request.body()
        version = await asyncio.to_thread(broker.set_resource, path, data, who=who.subject)
        return JSONResponse({"path": path, "version": version})

    @app.delete("/kbs/v0/resource/{repository}/{kind}/{tag}", tags=["admin"],
                summary="Delete a secret")
    def delete_resource(repository: str, kind: str, tag: str, who: Admin) -> JSONResponse:
        broker.delete_resource(_resource_path(repository, kind, tag), who=who.subject)
        return JSONResponse({"deleted": True})

    @app.get("/kbs/v0/audit", tags=["admin"], summary="Read the audit log, newest first",
             description=_AUDIT_DOC + _PAGING_DOC, responses=_PAGED)
    def audit(request: Request, _: Admin, page: Page,
              kind: Annotated[AuditKind | None, Query(description="Only this kind")] = None,
              since: Annotated[str | None, Query(description="Events at or after this time "
                                                 "(RFC 3339)")] = None,
              until: Annotated[str | None, Query(description="Events before this time "
                                                 "(RFC 3339)")] = None) -> JSONResponse:
        before = _cursor_key(page.cursor, "audit")
        events = broker.audit_events(
            limit=page.limit + 1, kind=kind, since=_instant(since, "since"),
            until=_instant(until, "until"), before=None if before is None else int(before))
        return _page(request, [_audit_json(e) for e in events], page.limit,
                     lambda e: ("audit", str(e["id"])))

    _add_reference_value_routes(app, broker)


def _add_reference_value_routes(app: FastAPI, broker: Broker) -> None:
    @app.post("/kbs/v0/reference-value", tags=["admin"], summary="Register reference values")
    async def set_reference_values(request: Request, who: Admin) -> JSONResponse:
        document = await _json_body(request)
        names = await asyncio.to_thread(_register_reference_values, broker, document,
                                        who.subject)
        return JSONResponse({"registered": names})

    @app.get("/kbs/v0/reference-value", tags=["admin"],
             summary="List reference values (live ones, by name)", description=_PAGING_DOC,
             responses=_PAGED)
    def list_reference_values(request: Request, _: Admin, page: Page) -> JSONResponse:
        after = _cursor_key(page.cursor, "reference-value")
        records = broker.store.list_reference_values(now=broker.clock(), limit=page.limit + 1,
                                                     after=after)
        return _page(request, [_rv_json(r) for r in records], page.limit,
                     lambda r: ("reference-value", r["name"]))

    @app.get("/kbs/v0/reference-value/{name}", tags=["admin"],
             summary="Get one reference value")
    def get_reference_value(name: str, _: Admin) -> JSONResponse:
        record = broker.store.get_reference_value(name, now=broker.clock())
        if record is None:
            raise problems.ResourceNotFound(f"no reference value named {name!r}")
        return JSONResponse(_rv_json(record))

    @app.delete("/kbs/v0/reference-value/{name}", tags=["admin"],
                summary="Delete a reference value")
    def delete_reference_value(name: str, _: Admin) -> JSONResponse:
        if not broker.store.delete_reference_value(name):
            raise problems.ResourceNotFound(f"no reference value named {name!r}")
        broker.forget_cached()
        return JSONResponse({"deleted": True})


def _add_policy_routes(app: FastAPI, broker: Broker) -> None:
    @app.post("/kbs/v0/attestation-policy", tags=["admin"], summary="Set an attestation policy")
    def set_attestation_policy(body: AttestationPolicyRequest, who: Admin) -> JSONResponse:
        version = broker.set_attestation_policy(body.model_dump(), who=who.subject)
        return JSONResponse({"policy_id": body.policy_id, "version": version})

    @app.get("/kbs/v0/attestation-policy", tags=["admin"],
             summary="List attestation policies (by id)", description=_PAGING_DOC,
             responses=_PAGED)
    def list_attestation_policies(request: Request, _: Admin, page: Page) -> JSONResponse:
        after = _cursor_key(page.cursor, "attestation-policy")
        records = broker.store.list_policies("attestation", limit=page.limit + 1, after=after)
        return _page(request, [{"policy_id": r.policy_id, "version": r.version,
                                "created_at": r.created_at.isoformat(), "author": r.author}
                               for r in records], page.limit,
                     lambda r: ("attestation-policy", r["policy_id"]))

    @app.post("/kbs/v0/resource-policy", tags=["admin"], summary="Set the resource policy")
    def set_resource_policy(body: ResourcePolicyRequest, who: Admin) -> JSONResponse:
        version = broker.set_resource_policy(body.model_dump(), who=who.subject)
        return JSONResponse({"version": version})

    @app.get("/kbs/v0/resource-policy", tags=["admin"], summary="Get the resource policy")
    def get_resource_policy(_: Admin) -> JSONResponse:
        source = broker.resource_policy_source()
        return JSONResponse({"policy": b64url(source.encode())})

    @app.post("/kbs/v0/policy-test", tags=["admin"],
              summary="Dry run: verify and appraise evidence, explain, release nothing")
    def policy_test(body: PolicyTestRequest, _: Admin) -> JSONResponse:
        return JSONResponse(broker.dry_run(body.model_dump(exclude_none=True)))


def _add_ops_routes(app: FastAPI, broker: Broker, run: _OffLoop) -> None:
    @app.get("/.well-known/jwks.json", tags=["tokens"], summary="Keys that sign EAR tokens")
    def jwks() -> JSONResponse:
        return JSONResponse(broker.issuer.jwks())

    @app.get("/healthz", tags=["ops"], summary="Liveness: answered from memory")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    @app.get("/readyz", tags=["ops"], summary="Readiness: the store takes a write")
    async def readyz() -> JSONResponse:
        await run(broker.store.put_setting, "readyz", broker.clock().isoformat())
        return JSONResponse({"status": "ready", "version": __version__})

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    def metrics() -> Response:
        return Response(broker.metrics.render(), media_type="text/plain; version=0.0.4")


def _register_reference_values(broker: Broker, document: Any, who: str) -> list[str]:
    try:
        values = parse_reference_values(document, source=f"admin:{who}")
    except VeriteeError as exc:
        raise problems.InvalidRequest(exc.detail) from exc
    broker.store.put_reference_records(values, now=broker.clock())  # one transaction
    broker.forget_cached()
    return [rv.name for rv in values]


def _rv_json(record: Any) -> dict[str, Any]:
    return {"name": record.name, "values": record.values, "provenance": record.provenance,
            "version": record.version,
            "expires": record.expires.isoformat() if record.expires else None}


def _audit_json(event: Any) -> dict[str, Any]:
    return {"id": event.id, "kind": event.kind, "at": event.at.isoformat(),
            "session_id": event.session_id, "tee": event.tee, "subject": event.subject,
            "resource": event.resource, "verdict": event.verdict,
            "failed_rules": event.failed_rules, "detail": event.detail}


# -- admin listings: pages and cursors -----------------------------------------------------------

#: Largest page an admin listing returns.
MAX_PAGE: Final = 1000
DEFAULT_PAGE: Final = 100
#: Longest cursor accepted (a 255-character name of 4-byte characters fits).
MAX_CURSOR: Final = 2048


@dataclasses.dataclass(frozen=True)
class PageQuery:
    """``limit`` and ``cursor`` of an admin listing, checked. They are read as text and
    checked here rather than by FastAPI, whose validation errors on the JSON admin paths
    would be answered 415 (see ``on_validation``)."""

    limit: int
    cursor: str | None


def _page_query(
    limit: Annotated[str | None, Query(
        description=f"Page size: an integer 1..{MAX_PAGE} (default {DEFAULT_PAGE})")] = None,
    cursor: Annotated[str | None, Query(
        description="The X-Next-Cursor of the previous page (opaque)")] = None,
) -> PageQuery:
    if limit is None:
        return PageQuery(DEFAULT_PAGE, cursor)
    if not _LIMIT.fullmatch(limit) or not 1 <= int(limit) <= MAX_PAGE:
        raise problems.InvalidRequest(f"limit must be an integer 1..{MAX_PAGE}")
    return PageQuery(int(limit), cursor)


#: The page of an admin listing (400 for a bad ``limit``).
Page = Annotated[PageQuery, Depends(_page_query)]
_PAGING_DOC = (
    "\n\nA page at a time: the body is the JSON list of this page. When there is more, "
    "the response carries `X-Next-Cursor: <cursor>` and `Link: <same query, cursor=...>; "
    "rel=\"next\"`; ask again with `cursor=<cursor>` (and the same filters). No cursor "
    "header: this is the last page. A cursor is opaque, for this listing only; a malformed "
    "or foreign one is refused (400).")
_AUDIT_DOC = ("Events by time (`at`) descending, then by id. `since` (inclusive) and `until` "
              "(exclusive) are RFC 3339 date-times (ISO 8601 with seconds and a timezone: "
              "`2026-05-01T00:00:00Z`, `2026-05-01T02:00:00%2B02:00`).")
_PAGED: Final[dict[int | str, dict[str, Any]]] = {200: {"headers": {
    "X-Next-Cursor": {"description": "Cursor of the next page; absent on the last page",
                      "schema": {"type": "string"}},
    "Link": {"description": 'RFC 8288 `rel="next"`: this query for the next page',
             "schema": {"type": "string"}},
}}}
_LIMIT: Final = re.compile(r"[0-9]{1,4}", re.ASCII)
_CURSOR_KEY: Final = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
_AUDIT_ID: Final = re.compile(r"[1-9][0-9]{0,17}", re.ASCII)
#: RFC 3339 date-time (ISO 8601 with seconds and an offset), checked before
#: ``datetime.fromisoformat``, which also takes naive times and stops reading at a NUL.
_INSTANT: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})", re.ASCII)


def encode_cursor(listing: str, key: str) -> str:
    """The opaque cursor of ``listing`` (``audit``, ``reference-value``,
    ``attestation-policy``) that continues after ``key``."""
    return b64url(f"{listing}:{key}".encode())


def decode_cursor(text: str, listing: str) -> str:
    """The key in a cursor of ``listing``; :class:`problems.InvalidRequest` for anything
    else (not base64url, not UTF-8, another listing's, a key no listing has)."""
    raw = b64url_decode(text) if len(text) <= MAX_CURSOR else None
    try:
        decoded = raw.decode("utf-8") if raw is not None else ""
    except UnicodeDecodeError:
        decoded = ""
    prefix, _, key = decoded.partition(":")
    pattern = _AUDIT_ID if listing == "audit" else _CURSOR_KEY
    if prefix != listing or not pattern.fullmatch(key):
        raise problems.InvalidRequest(f"cursor is not a cursor of this {listing} listing")
    return key


def _cursor_key(text: str | None, listing: str) -> str | None:
    return None if text is None else decode_cursor(text, listing)


def _instant(text: str | None, what: str) -> datetime | None:
    """An ISO-8601 date and time with a timezone, as an aware datetime in UTC."""
    if text is None:
        return None
    error = problems.InvalidRequest(
        f"{what} must be an ISO-8601 date and time with seconds and a timezone, "
        "like 2026-05-01T00:00:00Z (send + as %2B)")
    if not _INSTANT.fullmatch(text):
        raise error
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise error from exc


def _page(request: Request, items: list[dict[str, Any]], limit: int,
          cursor_of: Callable[[dict[str, Any]], tuple[str, str]]) -> JSONResponse:
    """The first ``limit`` of ``items`` (fetched with one more, to know if there is a next
    page) and, if there is one, its cursor in ``X-Next-Cursor`` and ``Link``."""
    if len(items) <= limit:
        return JSONResponse(items)
    cursor = encode_cursor(*cursor_of(items[limit - 1]))
    url = request.url.include_query_params(cursor=cursor)
    return JSONResponse(items[:limit], headers={
        "X-Next-Cursor": cursor, "Link": f'<{url.path}?{url.query}>; rel="next"'})


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise problems.InvalidRequest(f"the body is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise problems.InvalidRequest("the body nests JSON too deeply") from exc


# -- errors ------------------------------------------------------------------------------------


def _problem_response(exc: BaseException) -> JSONResponse:
    problem = problems.problem_for(exc)
    if problem.status >= 500:
        log.error("request failed: %r", exc, exc_info=exc if problem.status == 500 else None)
    elif isinstance(exc, problems.BrokerError) and exc.log_detail:
        log.info("%s: %s", problem.variant, exc.log_detail)
    return JSONResponse(problem.body(), status_code=problem.status, headers=problem.headers(),
                        media_type="application/problem+json")


def _install_error_handlers(app: FastAPI) -> None:
    async def on_veritee(_: Request, exc: Exception) -> JSONResponse:
        return _problem_response(exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        if request.url.path.startswith(request.app.state.json_paths) and \
                "json" not in content_type:
            return _problem_response(problems.UnsupportedMediaType(
                f"send the body as application/json (got {content_type or 'no content type'})"))
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        where = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
            for e in errors[:5]
        )
        return _problem_response(problems.InvalidRequest(where or "malformed request"))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        variant = "InvalidRequestPath" if exc.status_code in (404, 405) else "HttpError"
        problem = problems.Problem(exc.status_code, variant, str(exc.detail))
        return JSONResponse(problem.body(), status_code=exc.status_code,
                            media_type="application/problem+json")

    async def on_other(_: Request, exc: Exception) -> JSONResponse:
        return _problem_response(exc)

    app.add_exception_handler(VeriteeError, on_veritee)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_other)


# -- middleware ----------------------------------------------------------------------------------


class _MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.metrics.request(scope.get("method", "GET"), template, status,
                                 time.perf_counter() - started)

