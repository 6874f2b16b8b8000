"""Errors of the guest-side evidence collectors.

A collector fails because of the machine it runs on (no TEE interface, no permission), never
because of evidence: these are misuse leaves, and each message says what is missing and how
to provide it.
"""

from __future__ import annotations

from veritee.errors import MisuseError


class CollectorError(MisuseError):
    """Evidence could not be collected on this machine."""


class CollectorUnavailableError(CollectorError):
    """The interface a collector needs is absent here (not mounted, no device, another TEE)."""


__all__ = ["CollectorError", "CollectorUnavailableError"]
