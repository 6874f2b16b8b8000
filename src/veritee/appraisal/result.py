"""What an appraisal or a resource decision returns: the outcome and every rule behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from veritee.appraisal.vector import Status


@dataclass(frozen=True, slots=True)
class Check:
    """One rule's outcome, explained.

    ``values`` holds what was compared: ``actual`` (the claim), ``expected`` (the reference
    value or constant), and where they came from (``field``, ``reference``) when known.
    """

    name: str
    held: bool
    detail: str
    values: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return f"{self.name}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "held": self.held, "detail": self.detail,
                "values": self.values}


@dataclass(frozen=True, slots=True)
class Appraisal:
    """The result of appraising one TEE's claims under an attestation policy.

    Appraising never raises for claims that fail the policy: the failure is in ``status`` and
    in the checks that did not hold (STYLE.md §10). Enforcement is the caller's: the resource
    policy reads the status from the EAR token.
    """

    tee: str
    policy_id: str
    policy_version: int | None
    trust_vector: dict[str, int]
    status: Status
    checks: tuple[Check, ...]
    annotated: dict[str, Any]
    """The policy input (the claims with their aliases, runtime and init data): the
    annotated evidence of the EAR token."""

    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.held]

    def explain(self) -> str:
        """One line per failed check, naming the rule and the values it compared."""
        failed = self.failed()
        if failed:
            return "\n".join(check.line() for check in failed)
        return (f"{self.tee}: {self.status} under policy {self.policy_id}; "
                f"all {len(self.checks)} checks held")

    def to_dict(self) -> dict[str, Any]:
        return {
            "tee": self.tee, "policy_id": self.policy_id, "policy_version": self.policy_version,
            "status": self.status, "trust_vector": dict(self.trust_vector),
            "checks": [check.to_dict() for check in self.checks],
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a resource policy releases a resource, and why."""

    allow: bool
    checks: tuple[Check, ...]
    policy_id: str = "resource"
    path: tuple[str, ...] = ()

    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.held]

    def explain(self) -> str:
        """On a denial, one line per failed check; otherwise one line saying it was released."""
        where = "/".join(self.path) or "the resource"
        if self.allow:
            return f"{where}: released under resource policy {self.policy_id}"
        failed = self.failed()
        if failed:
            return "\n".join(check.line() for check in failed)
        return f"{where}: denied by resource policy {self.policy_id} (allow is not true)"

    def to_dict(self) -> dict[str, Any]:
        return {"allow": self.allow, "policy_id": self.policy_id, "path": list(self.path),
                "checks": [check.to_dict() for check in self.checks]}


__all__ = ["Appraisal", "Check", "Decision"]
