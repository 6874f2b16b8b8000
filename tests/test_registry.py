"""The verifier registry stays complete (STYLE §4): every package under veritee/tee/ is in
VERIFIERS and EMULATED_ROOTS, and every entry loads and names its own TEE."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import veritee.tee as tee_package
from veritee.errors import UnknownTeeError
from veritee.tee import EMULATED_ROOTS, VERIFIERS, get_verifier, tee_names

TEE_DIR = Path(tee_package.__file__).parent


def _packages() -> list[str]:
    """Directories with an ``__init__.py`` under veritee/tee/ (``_private`` ones excepted)."""
    return sorted(p.name for p in TEE_DIR.iterdir()
                  if (p / "__init__.py").is_file() and not p.name.startswith("_"))


def _registered_in(package: str) -> list[str]:
    return [name for name, target in VERIFIERS.items()
            if target.startswith(f"veritee.tee.{package}.")]


def _load(target: str) -> object:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def test_there_are_packages() -> None:
    assert "snp" in _packages()


@pytest.mark.parametrize("package", _packages())
def test_every_package_registers_a_verifier(package: str) -> None:
    names = _registered_in(package)
    assert names, f"veritee/tee/{package}/ has no entry in veritee.tee.VERIFIERS"
    missing = [n for n in names if n not in EMULATED_ROOTS]
    assert not missing, f"{missing} of veritee/tee/{package}/ are not in EMULATED_ROOTS"


@pytest.mark.parametrize("name", sorted(VERIFIERS))
def test_every_registered_verifier_loads_and_names_its_tee(name: str) -> None:
    target = VERIFIERS[name]
    assert target.count(":") == 1, target
    assert target.split(".")[2] in _packages(), f"{target} is outside veritee/tee/<package>/"
    cls = _load(target)
    assert isinstance(cls, type)
    assert cls.tee == name
    verifier = get_verifier(name)
    assert isinstance(verifier, cls)
    assert callable(verifier.verify)


@pytest.mark.parametrize("name", sorted(EMULATED_ROOTS))
def test_every_emulated_root_entry_loads(name: str) -> None:
    assert name in VERIFIERS
    roots = _load(EMULATED_ROOTS[name])
    assert callable(roots)
    anchors = roots()
    assert anchors, f"emulated roots of {name} are empty"
    assert isinstance(get_verifier(name, trust_emulated=True), type(get_verifier(name)))


def test_emulated_snp_roots_are_marked_and_extend_the_pinned_ones() -> None:
    plain, trusting = get_verifier("snp"), get_verifier("snp", trust_emulated=True)
    pinned = {r.ark_sha256 for r in plain.roots}  # type: ignore[attr-defined]
    added = [r for r in trusting.roots if r.ark_sha256 not in pinned]  # type: ignore[attr-defined]
    assert added and all(r.emulated for r in added)
    assert not any(r.emulated for r in plain.roots)  # type: ignore[attr-defined]


def test_names_are_sorted_and_unknown_names_are_misuse() -> None:
    assert tee_names() == sorted(VERIFIERS)
    with pytest.raises(UnknownTeeError, match="known: "):
        get_verifier("no-such-tee")
