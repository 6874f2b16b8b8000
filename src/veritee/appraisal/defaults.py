"""The policies veritee ships (package data under ``appraisal/policies``)."""

from __future__ import annotations

import re
from importlib import resources
from typing import Final

from veritee.errors import MisuseError

_TEE_NAME: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


def _read(name: str) -> str:
    return resources.files("veritee.appraisal").joinpath("policies", name).read_text("utf-8")


def _own_policies() -> frozenset[str]:
    folder = resources.files("veritee.appraisal").joinpath("policies")
    return frozenset(entry.name.removesuffix(".rego") for entry in folder.iterdir()
                     if entry.name.endswith(".rego") and not entry.name.startswith(
                         ("generic", "resource_")))


#: TEEs with a default attestation policy of their own; the others get the fallback.
DEFAULT_POLICY_TEES: Final = _own_policies()

#: Release only when every submodule of the attestation result is affirming.
DEFAULT_RESOURCE_POLICY: Final = _read("resource_default.rego")

#: UNSAFE, for tests and demos: releases everything to any valid token; logs a warning each
#: time it is evaluated.
UNSAFE_ALLOW_ALL_RESOURCE_POLICY: Final = _read("resource_allow_all_unsafe.rego")

#: The fallback attestation policy: every trust claim contraindicated.
GENERIC_ATTESTATION_POLICY: Final = _read("generic.rego")


def default_attestation_policy(tee: str) -> str:
    """The Rego source of ``tee``'s default attestation policy, or the fail-closed fallback
    (everything contraindicated) for a TEE without one."""
    if not isinstance(tee, str) or not _TEE_NAME.fullmatch(tee):
        raise MisuseError(f"{tee!r} is not a TEE name")
    if tee in DEFAULT_POLICY_TEES:
        return _read(f"{tee}.rego")
    return GENERIC_ATTESTATION_POLICY


__all__ = [
    "DEFAULT_POLICY_TEES",
    "DEFAULT_RESOURCE_POLICY",
    "GENERIC_ATTESTATION_POLICY",
    "UNSAFE_ALLOW_ALL_RESOURCE_POLICY",
    "default_attestation_policy",
]
