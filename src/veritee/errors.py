"""The one exception tree of veritee.

Three kinds of failure stay apart (STYLE.md §7):

* :class:`EvidenceError` — the evidence is bad: malformed, forged, revoked, stale or not
  bound to what it should be. The attester's fault; verdict ``rejected``.
* :class:`UndecidedError` — a needed input is missing or a vendor service could not be
  reached. The environment's fault; verdict ``undecided``.
* :class:`MisuseError` — the caller or the configuration is wrong. A bug to fix.

Callers catch the precise leaf. Only the CLI and HTTP edges catch :class:`VeriteeError`.
Messages name the field and both values; they never carry secrets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

Status = Literal["rejected", "undecided"]


class VeriteeError(Exception):
    """Root of every error veritee raises on purpose."""

    status: ClassVar[Status] = "rejected"

    def __init__(self, detail: str, *, claims: Mapping[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        #: Whatever could be parsed before the failure (JSON-ready), for reports.
        self.claims: Mapping[str, Any] | None = claims

    def with_claims(self, claims: Mapping[str, Any]) -> VeriteeError:
        """Attach partially parsed claims unless some are attached already."""
        if self.claims is None:
            self.claims = claims
        return self


# --- bad evidence -------------------------------------------------------------------------


class EvidenceError(VeriteeError):
    """The evidence is not acceptable (attester's fault)."""


class MalformedEvidenceError(EvidenceError):
    """Bytes that do not parse as the format they claim to be."""


class UnrecognizedEvidenceError(MalformedEvidenceError):
    """Bytes in none of the forms the TEE's evidence is known to take (not forged: not this
    TEE's evidence at all, or cut short before anything could be recognised)."""


class UnsupportedVersionError(MalformedEvidenceError):
    """A structure version outside the closed set this verifier knows."""


class SignatureError(EvidenceError):
    """A signature does not verify under the key it must verify under."""


class ChainError(EvidenceError):
    """A certificate chain is broken: wrong issuer, bad signature, wrong names or profile."""


class UntrustedRootError(ChainError):
    """A root certificate that is not one of the pinned trust anchors."""


class RevokedError(EvidenceError):
    """A certificate is listed on a CRL that verified."""


class ExpiredError(EvidenceError):
    """A certificate, CRL or piece of collateral is not valid at the verification instant."""


class BindingError(EvidenceError):
    """Two values that must agree do not (report data, TCB vs certificate, chip id, ...)."""


class InitDataMismatchError(BindingError):
    """The init-data presented does not hash to the value the hardware report carries."""


# --- could not decide -----------------------------------------------------------------------


class UndecidedError(VeriteeError):
    """A verdict could not be reached; the evidence may still be good."""

    status: ClassVar[Status] = "undecided"


class CollateralMissingError(UndecidedError):
    """Collateral the verifier needs (a VCEK, a TCB info, ...) is in no configured source."""


class CollateralUnavailableError(UndecidedError):
    """A vendor service was asked for collateral and did not answer usefully."""


# --- misuse -----------------------------------------------------------------------------------


class MisuseError(VeriteeError):
    """The library was called wrongly or configured inconsistently."""


class UnknownTeeError(MisuseError):
    """No verifier is registered under the requested TEE name."""


__all__ = [
    "BindingError",
    "ChainError",
    "CollateralMissingError",
    "CollateralUnavailableError",
    "EvidenceError",
    "ExpiredError",
    "InitDataMismatchError",
    "MalformedEvidenceError",
    "MisuseError",
    "RevokedError",
    "SignatureError",
    "Status",
    "UndecidedError",
    "UnknownTeeError",
    "UnrecognizedEvidenceError",
    "UnsupportedVersionError",
    "UntrustedRootError",
    "VeriteeError",
]
