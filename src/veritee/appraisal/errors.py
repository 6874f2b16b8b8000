"""Errors of the appraisal layer, as leaves of veritee's one exception tree (errors.py)."""

from __future__ import annotations

from veritee.errors import (
    EvidenceError,
    ExpiredError,
    MalformedEvidenceError,
    MisuseError,
    SignatureError,
)

# -- misuse: configuration an operator must fix ------------------------------------------------


class PolicyError(MisuseError):
    """A Rego policy does not compile, fails while it runs, or produces unusable output."""


class ReferenceValueError(MisuseError):
    """A reference-value document is malformed (bad shape, type, date or encoding)."""


# -- bad tokens: an EAR that must not be trusted -----------------------------------------------


class EarError(EvidenceError):
    """An EAR attestation token that must not be accepted."""


class EarMalformedError(EarError, MalformedEvidenceError):
    """Not a compact JWS, bad base64url, bad JSON, or claims of the wrong shape."""


class EarAlgorithmError(EarError):
    """The token's ``alg`` is not ES256 (``none``, HS256 and the rest are refused)."""


class EarKeyError(EarError):
    """No key in the JWKS matches the token's ``kid``, or the key is not a P-256 key."""


class EarSignatureError(EarError, SignatureError):
    """The signature does not verify under the key the token names."""


class EarExpiredError(EarError, ExpiredError):
    """The token's ``exp`` is in the past."""


class EarNotYetValidError(EarError, ExpiredError):
    """The token's ``nbf`` or ``iat`` is in the future."""


__all__ = [
    "EarAlgorithmError",
    "EarError",
    "EarExpiredError",
    "EarKeyError",
    "EarMalformedError",
    "EarNotYetValidError",
    "EarSignatureError",
    "PolicyError",
    "ReferenceValueError",
]
