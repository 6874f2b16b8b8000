"""The AR4SI trustworthiness vector and the EAR status it implies.

Claim names and value tiers: draft-ietf-rats-ar4si §2.3; tiers as veraison/ear's
``trustclaim.go`` computes them (service-anchors.md §1.6):

* none: -1 .. 1
* affirming: 2 .. 31 and -31 .. -2
* warning: 32 .. 95 and -95 .. -32
* contraindicated: everything else (96 .. 127, -127 .. -96)

``ear.status`` is the worst tier in the vector, with ``none`` the *lowest* (veraison/ear
``UpdateStatusFromTrustVector``): a claim the policy did not set does not lower the status,
an empty or all-zero vector is ``none``, and one warning claim makes the whole result a
warning. A resource policy that wants every claim positively affirmed must say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

from veritee.errors import MisuseError

TRUST_CLAIMS: Final = (
    "instance-identity",
    "configuration",
    "executables",
    "file-system",
    "hardware",
    "runtime-opaque",
    "storage-opaque",
    "sourced-data",
)

Status = Literal["none", "affirming", "warning", "contraindicated"]
STATUSES: Final[tuple[Status, ...]] = ("none", "affirming", "warning", "contraindicated")
_RANK: Final = {status: rank for rank, status in enumerate(STATUSES)}

CLAIM_MIN, CLAIM_MAX = -127, 127


def ear_tier(value: int) -> Status:
    """The tier of one trust-claim value."""
    _check_value("value", value)
    magnitude = abs(value)
    if magnitude <= 1:
        return "none"
    if magnitude <= 31:
        return "affirming"
    if magnitude <= 95:
        return "warning"
    return "contraindicated"


def ear_status(vector: Mapping[str, int]) -> Status:
    """The worst tier among ``vector``'s values; ``none`` for an empty or all-none vector.

    Raises:
        MisuseError: a key that is not an AR4SI claim or a value outside [-127, 127].
    """
    status: Status = "none"
    for claim, value in vector.items():
        if claim not in TRUST_CLAIMS:
            raise MisuseError(f"{claim!r} is not an AR4SI trust claim ({', '.join(TRUST_CLAIMS)})")
        _check_value(claim, value)
        tier = ear_tier(value)
        if _RANK[tier] > _RANK[status]:
            status = tier
    return status


def _check_value(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MisuseError(f"trust claim {name} is {value!r}, not an integer")
    if not CLAIM_MIN <= value <= CLAIM_MAX:
        raise MisuseError(f"trust claim {name} is {value}, outside [{CLAIM_MIN}, {CLAIM_MAX}]")


__all__ = ["STATUSES", "TRUST_CLAIMS", "Status", "ear_status", "ear_tier"]
