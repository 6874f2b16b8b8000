"""``veritee demo`` (first version): every case ends as expected; JSON per CONTRACT §5."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import CORPUS
from veritee.cli.demo import CORPUS_CASES
from veritee.cli.main import app


def demo_rows(corpus: Path) -> list[dict[str, str]]:
    result = CliRunner().invoke(app, ["demo", "--json"],
                                env={"VERITEE_CORPUS": str(corpus), "VERITEE_OFFLINE": "1"})
    assert result.exit_code == 0, result.output
    assert "veritee demo" in result.stderr  # the table, beside the JSON
    rows: list[dict[str, str]] = json.loads(result.stdout)["rows"]
    return rows


def test_emulated_cases_end_as_expected(tmp_path: Path) -> None:
    rows = demo_rows(tmp_path / "no-corpus")
    assert rows
    for row in rows:
        assert {"tee", "case", "outcome", "reason"} <= set(row)
        assert row["outcome"] in ("released", "refused")
        assert row["outcome"] == row["expected"], row
        assert row["reason"]
    released = [r["case"] for r in rows if r["outcome"] == "released"]
    assert len(released) == 6  # 3 products × 2 signers
    assert not any(r["case"].startswith("real ") for r in rows)


def test_real_samples_are_released() -> None:
    if not (CORPUS / "amd" / "MANIFEST.json").is_file():
        pytest.skip("corpus folder amd is absent (set VERITEE_CORPUS)")
    real = [r for r in demo_rows(CORPUS) if r["case"].startswith("real ")]
    assert [r["case"] for r in real] == [f"real {e}" for e, _ in CORPUS_CASES]
    assert all(r["outcome"] == "released" for r in real), real


def test_human_demo_prints_a_table() -> None:
    result = CliRunner().invoke(app, ["demo"], env={"VERITEE_CORPUS": "/nonexistent"})
    assert result.exit_code == 0
    assert "released" in result.stdout and "refused" in result.stdout
    assert "all as expected" in result.stdout
