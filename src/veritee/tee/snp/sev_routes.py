"""The descriptor's ``routes`` for SEV and SEV-ES: ``POST /sev/v0/session`` and
``POST /sev/v0/secret`` (the logic is :class:`~.sev_broker.SevLaunchService`; this module
only speaks HTTP, and is imported only by the server)."""

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from veritee.broker import problems
from veritee.broker.service import Broker
from veritee.server.app import client_address
from veritee.tee.snp.sev_broker import PREFIX, SevLaunchService

Run = Callable[..., Awaitable[Any]]


def add_routes(app: FastAPI, broker: Broker, run: Run) -> tuple[str, ...]:
    """Add the two host-side routes; their bodies are JSON (the path prefix returned)."""
    service = SevLaunchService(broker)

    @app.post(f"{PREFIX}/session", tags=["sev"],
              summary="SEV/SEV-ES host: a launch session (GODH certificate and session blob) "
                      "for the platform's certificate chain")
    async def sev_session(request: Request) -> JSONResponse:
        body = await _json(request)
        return JSONResponse(await run(service.session, body, client=client_address(request)))

    @app.post(f"{PREFIX}/secret", tags=["sev"],
              summary="SEV/SEV-ES host: relay the launch measurement, get the launch secret")
    async def sev_secret(request: Request) -> JSONResponse:
        body = await _json(request)
        return JSONResponse(await run(service.secret, body, client=client_address(request)))

    return (PREFIX,)


async def _json(request: Request) -> Mapping[str, Any]:
    try:
        document = json.loads(await request.body())
    except (ValueError, RecursionError) as exc:
        raise problems.InvalidRequest(f"the body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise problems.InvalidRequest("the body must be a JSON object")
    return document
