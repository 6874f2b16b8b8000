"""docs/CLAIMS.md lists every claim the SNP verifier emits (and the doc stays honest)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from veritee.collateral import CollateralSource
from veritee.evidence import Evidence
from veritee.tee import get_verifier
from veritee.testing.snp import PRODUCTS, SnpEmulator

DOC = (Path(__file__).resolve().parents[1] / "docs" / "CLAIMS.md").read_text()


@pytest.mark.parametrize("product", PRODUCTS)
def test_every_snp_claim_is_documented(product: str) -> None:
    emu = SnpEmulator(product=product, version=5)  # type: ignore[arg-type]
    claims = get_verifier("snp", trust_emulated=True).verify(
        Evidence(emu.extended_report(), "raw"), report_data=None,
        collateral=CollateralSource(), now=datetime.now(UTC)).to_dict()
    for name, value in claims.items():
        assert f"`{name}`" in DOC, f"claim {name} is not in docs/CLAIMS.md"
        if isinstance(value, dict) and name in ("policy_flags", "platform_flags"):
            for key in value:
                assert f"`{key}`" in DOC, f"{name}.{key} is not in docs/CLAIMS.md"
