"""The policies veritee ships (package data under ``appraisal/policies``)."""

from __future__ import annotations

import re
from importlib import resources
from typing import Final

from veritee.errors import MisuseError

_FILE_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\.rego")


def _read(name: str) -> str:
    return resources.files("veritee.appraisal").joinpath("policies", name).read_text("utf-8")


#: Release only when every submodule of the attestation result is affirming.
DEFAULT_RESOURCE_POLICY: Final = _read("resource_default.rego")

#: UNSAFE, for tests and demos: releases everything to any valid token; logs a warning each
#: time it is evaluated.
UNSAFE_ALLOW_ALL_RESOURCE_POLICY: Final = _read("resource_allow_all_unsafe.rego")

#: The fallback attestation policy: every trust claim contraindicated.
GENERIC_ATTESTATION_POLICY: Final = _read("generic.rego")


def shipped_policy(name: str | None) -> str:
    """The Rego source of the shipped policy file ``name`` (a platform descriptor's
    ``policy``), or the fail-closed fallback (everything contraindicated) for None.

    Raises:
        MisuseError: ``name`` is not the name of a shipped policy file.
    """
    if name is None:
        return GENERIC_ATTESTATION_POLICY
    if not isinstance(name, str) or not _FILE_NAME.fullmatch(name):
        raise MisuseError(f"{name!r} is not the file name of a shipped policy")
    try:
        return _read(name)
    except (FileNotFoundError, OSError) as exc:
        raise MisuseError(f"veritee ships no policy {name!r}") from exc


__all__ = [
    "DEFAULT_RESOURCE_POLICY",
    "GENERIC_ATTESTATION_POLICY",
    "UNSAFE_ALLOW_ALL_RESOURCE_POLICY",
    "shipped_policy",
]
