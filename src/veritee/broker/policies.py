"""Which attestation policy applies to which TEE, and what each platform adds to appraisal.

Policy ids, as in Trustee (service-anchors.md §1.5): the KBS asks for ``default``; the
attestation service evaluates ``default_cpu`` for CPU evidence and ``default_gpu`` for
devices. veritee looks, for TEE *t*, at the stored policies

1. ``default_<t>`` — the policy for that TEE alone;
2. ``default_cpu`` (CPU TEEs) or ``default_gpu`` (devices);
3. ``default``;

and takes the first that applies to *t*, else the platform's shipped default. A policy
declares the TEEs it is written for with a line ``# veritee: tees <tee>[, <tee> ...]``; one
without the line applies to every TEE of its kind. So a policy written for one TEE and
stored as ``default_cpu`` is never applied to a guest of another TEE when it says so, and
that guest gets its own default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from veritee.appraisal import PolicyError, shipped_policy
from veritee.appraisal.native import Evaluator
from veritee.appraisal.rego import declared_tees
from veritee.tee import Platform, platforms

ROLE_POLICY_IDS = {"cpu": "default_cpu", "device": "default_gpu"}
DEFAULT_POLICY_ID = "default"


def policy_ids(platform: Platform) -> tuple[str, ...]:
    """The stored policy ids looked up for ``platform``, most specific first."""
    return (f"default_{platform.tee}", ROLE_POLICY_IDS[platform.role], DEFAULT_POLICY_ID)


def applies(source: str, tee: str) -> bool:
    """Whether the policy ``source`` declares no TEEs or names ``tee`` among them."""
    try:
        tees = declared_tees(source)
    except PolicyError:
        return False
    return tees is None or tee in tees


def check_declaration(policy_id: str, source: str) -> None:
    """Refuse a policy whose ``# veritee: tees`` line names an unknown TEE, or that is stored
    as ``default_<t>`` while it declares other TEEs than *t*.

    Raises:
        PolicyError: as above; the message names the TEEs.
    """
    tees = declared_tees(source)
    if tees is None:
        return
    known = {p.tee for p in platforms()}
    unknown = sorted(tees - known)
    if unknown:
        raise PolicyError(f"policy {policy_id!r} declares unknown TEEs {unknown}; known: "
                          f"{sorted(known)}")
    for platform in platforms():
        if policy_id == f"default_{platform.tee}" and platform.tee not in tees:
            raise PolicyError(f"policy {policy_id!r} is stored for {platform.tee} but declares "
                              f"it applies to {sorted(tees)}")


def natives() -> dict[tuple[str, str], Evaluator]:
    """The native evaluators of the platforms' shipped default policies, by exact text."""
    found: dict[tuple[str, str], Evaluator] = {}
    for platform in platforms():
        evaluator = platform.load("policy_native")
        if evaluator is not None:
            found[("attestation", shipped_policy(platform.policy))] = evaluator
    return found


def appraisal_shape(platform: Platform) -> dict[str, Any]:
    """The keyword arguments of :meth:`PolicyEngine.appraise` that ``platform`` decides."""
    aliases: Callable[[Mapping[str, Any]], dict[str, Any]] | None = platform.load(
        "policy_input")
    return {"aliases": aliases,
            "init_data_claim": platform.init_data.claim if platform.init_data else None}


__all__ = ["DEFAULT_POLICY_ID", "ROLE_POLICY_IDS", "applies", "appraisal_shape",
           "check_declaration", "natives", "policy_ids"]
