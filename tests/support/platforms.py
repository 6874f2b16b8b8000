"""What the tests of generic machinery need from the platforms: engines that know the
platforms' native evaluators, and the policy-input shape a platform gives appraisal."""

from __future__ import annotations

from typing import Any

from veritee.appraisal import PolicyEngine, shipped_policy
from veritee.broker import policies
from veritee.tee import get_platform


def engine(*, native: bool = True, max_compiled: int = 256) -> PolicyEngine:
    """A policy engine as the broker builds it (with the platforms' native evaluators)."""
    return PolicyEngine(native=native, natives=policies.natives(), max_compiled=max_compiled)


def shape(tee: str) -> dict[str, Any]:
    """The keyword arguments the broker passes to ``PolicyEngine.appraise`` for ``tee``."""
    return policies.appraisal_shape(get_platform(tee))


def default_policy(tee: str) -> str:
    """The shipped default attestation policy of ``tee`` (the generic one if it has none)."""
    return shipped_policy(get_platform(tee).policy)
