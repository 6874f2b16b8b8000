"""AR4SI trust-claim tiers and the EAR status of a vector (veraison/ear semantics)."""

from __future__ import annotations

from typing import Any

import pytest

from veritee.appraisal import TRUST_CLAIMS, ear_status, ear_tier
from veritee.errors import MisuseError


@pytest.mark.parametrize(("value", "tier"), [
    (0, "none"), (1, "none"), (-1, "none"),
    (2, "affirming"), (3, "affirming"), (31, "affirming"), (-2, "affirming"), (-31, "affirming"),
    (32, "warning"), (33, "warning"), (36, "warning"), (95, "warning"), (-32, "warning"),
    (-95, "warning"),
    (96, "contraindicated"), (97, "contraindicated"), (127, "contraindicated"),
    (-96, "contraindicated"), (-127, "contraindicated"),
])
def test_tiers(value: int, tier: str) -> None:
    assert ear_tier(value) == tier


@pytest.mark.parametrize(("name", "vector", "status"), [
    ("empty", {}, "none"),
    ("all none", dict.fromkeys(TRUST_CLAIMS, 0), "none"),
    ("one affirming, rest none", {"executables": 3, "hardware": 0}, "affirming"),
    ("all affirming", {"executables": 3, "hardware": 2, "configuration": 2}, "affirming"),
    ("warning wins over affirming", {"executables": 33, "hardware": 2}, "warning"),
    ("contraindicated wins", {"executables": 33, "hardware": 97, "configuration": 2},
     "contraindicated"),
    ("Trustee defaults", {"executables": 33, "hardware": 97, "configuration": 36},
     "contraindicated"),
    ("negative warning", {"sourced-data": -40, "executables": 2}, "warning"),
])
def test_status_is_the_worst_tier(name: str, vector: dict[str, int], status: str) -> None:
    assert ear_status(vector) == status


@pytest.mark.parametrize(("name", "vector"), [
    ("unknown claim", {"firmware": 2}),
    ("too large", {"hardware": 128}),
    ("too small", {"hardware": -128}),
    ("boolean", {"hardware": True}),
    ("string", {"hardware": "2"}),
    ("float", {"hardware": 2.0}),
])
def test_bad_vectors(name: str, vector: dict[str, Any]) -> None:
    with pytest.raises(MisuseError):
        ear_status(vector)


def test_claim_names() -> None:
    assert TRUST_CLAIMS == ("instance-identity", "configuration", "executables", "file-system",
                            "hardware", "runtime-opaque", "storage-opaque", "sourced-data")
