"""Every broker failure mapped to an HTTP status and an RFC 7807 body — in one place.

The ``type`` URIs are the Confidential Containers KBS ones
(``https://github.com/confidential-containers/kbs/errors/<Variant>``), and the variant names
are Trustee's current ones (its ``kbs/src/error.rs``) wherever Trustee has the same case, so
existing clients and dashboards read them unchanged; veritee's own names are used only for
cases Trustee lacks. docs/ERRORS.md lists them. Statuses follow the KBS protocol text: 401 for
an unauthenticated or failed attestation, 403 for an authenticated client that policy
refuses, 404 for a missing resource or path (Trustee's code answers 401 for a missing
resource; clients only test for success). Malformed requests are 400, oversized ones 413, too
many requests 429 (with Retry-After), an unavailable store or vendor 503.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from veritee.errors import EvidenceError, UndecidedError, VeriteeError
from veritee.store import StoreError, StoreIntegrityError

KBS_ERROR_BASE = "https://github.com/confidential-containers/kbs/errors/"


class BrokerError(VeriteeError):
    """A request the broker refuses; carries the KBS error variant and the HTTP status.

    Its own branch of the error tree: neither bad evidence (the verifiers' leaves), nor an
    undecided verdict, nor a bug — the request is wrong or not allowed, and the status says
    how."""

    variant = "KbsError"
    http_status = 400

    def __init__(self, detail: str, *, log_detail: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(detail)
        #: Extra detail for the server log only (never sent to the client).
        self.log_detail = log_detail
        #: Seconds after which a retry may succeed (sent as ``Retry-After``).
        self.retry_after = retry_after


class InvalidRequest(BrokerError):
    """The body is not what the endpoint takes."""

    variant = "SerdeError"
    http_status = 400


class ProtocolVersionMismatch(BrokerError):
    """The client speaks another KBS protocol version (Trustee: an attestation error)."""

    variant = "AttestationError"
    http_status = 401


class UnsupportedTee(BrokerError):
    """No verifier for the TEE named (Trustee: an attestation error)."""

    variant = "AttestationError"
    http_status = 400


class SessionInvalid(BrokerError):
    """No session cookie, one this broker did not issue, or an expired one (Trustee: an
    attestation error)."""

    variant = "AttestationError"
    http_status = 401


class AttestationFailed(BrokerError):
    """The evidence did not verify or was not bound to the challenge."""

    variant = "AttestationError"
    http_status = 401


class AttestationUndecided(BrokerError):
    """Collateral needed to verify is missing or a vendor service is down."""

    variant = "AttestationUndecided"
    http_status = 503


class TokenNotFound(BrokerError):
    """No attestation token and no attested session."""

    variant = "TokenNotFound"
    http_status = 401


class TokenInvalid(BrokerError):
    """The token does not verify or has expired."""

    variant = "TokenVerifierError"
    http_status = 401


class PolicyDeny(BrokerError):
    """The resource policy refuses this client."""

    variant = "PolicyDeny"
    http_status = 403


class ResourceNotFound(BrokerError):
    """No resource at this path (Trustee's resource plugin answers PluginInternalError)."""

    variant = "PluginInternalError"
    http_status = 404


class InvalidPath(BrokerError):
    """No such endpoint or a malformed path."""

    variant = "InvalidRequestPath"
    http_status = 404


class AdminUnauthorized(BrokerError):
    """Admin endpoints need a valid token."""

    variant = "AdminAuthAccess"
    http_status = 401


class AdminForbidden(BrokerError):
    """The admin role may not use this path."""

    variant = "AdminAuthAccess"
    http_status = 403


class PayloadTooLarge(BrokerError):
    """The body exceeds the configured limit."""

    variant = "PayloadTooLarge"
    http_status = 413


class UnsupportedMediaType(BrokerError):
    """The body's content type is not accepted here."""

    variant = "UnsupportedMediaType"
    http_status = 415


class PolicyInvalid(BrokerError):
    """The policy does not compile."""

    variant = "ParsePolicyError"
    http_status = 400


class JweError(BrokerError):
    """The TEE's public key cannot receive a JWE (unsupported type, curve or algorithm)."""

    variant = "JweError"
    http_status = 400


class TooManyRequests(BrokerError):
    """A client asked for more challenges (or vendor fetches) than its budget allows."""

    variant = "TooManyRequests"
    http_status = 429


class RequestTimeout(BrokerError):
    """The body did not arrive within the read timeout."""

    variant = "RequestTimeout"
    http_status = 408


class StoreUnavailable(BrokerError):
    """The database is unavailable, locked past its timeout, or failed the statement: retry."""

    variant = "StorageError"
    http_status = 503


@dataclass(frozen=True)
class Problem:
    status: int
    variant: str
    detail: str
    retry_after: float | None = None

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}

    def body(self) -> dict[str, Any]:
        return {"type": KBS_ERROR_BASE + self.variant, "title": self.variant,
                "status": self.status, "detail": self.detail}


def problem_for(exc: BaseException) -> Problem:
    """The one mapping from exceptions to HTTP problems."""
    if isinstance(exc, BrokerError):
        return Problem(exc.http_status, exc.variant, exc.detail, exc.retry_after)
    if isinstance(exc, StoreIntegrityError):
        return Problem(500, StoreUnavailable.variant, "stored data does not authenticate "
                       "(see the server log)")
    if isinstance(exc, StoreError):
        return Problem(StoreUnavailable.http_status, StoreUnavailable.variant,
                       f"the store is unavailable, retry later: {exc.detail}", 1.0)
    if isinstance(exc, EvidenceError):
        return Problem(401, "AttestationError", f"{type(exc).__name__}: {exc.detail}")
    if isinstance(exc, UndecidedError):
        return Problem(503, "AttestationUndecided", f"{type(exc).__name__}: {exc.detail}")
    if isinstance(exc, VeriteeError):
        return Problem(400, "InvalidRequest", f"{type(exc).__name__}: {exc.detail}")
    return Problem(500, "InternalError", "internal error (see the server log)")
