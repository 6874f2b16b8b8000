"""``veritee demo``: a real broker on loopback; every case ends as expected; CONTRACT §5."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import CORPUS
from veritee.cli.demo import CORPUS_CASES
from veritee.cli.main import app


def demo_rows(corpus: Path) -> list[dict[str, str]]:
    result = CliRunner().invoke(app, ["demo", "--json"], env={"VERITEE_CORPUS": str(corpus)})
    assert result.exit_code == 0, result.output
    assert "veritee demo" in result.stderr  # the table, beside the JSON
    assert "broker listening on http://127.0.0.1:" in result.stderr
    rows: list[dict[str, str]] = json.loads(result.stdout)["rows"]
    return rows


def test_broker_cases_end_as_expected(tmp_path: Path) -> None:
    rows = demo_rows(tmp_path / "no-corpus")
    for row in rows:
        assert {"tee", "case", "outcome", "reason"} <= set(row)
        assert row["outcome"] in ("released", "refused")
        assert row["outcome"] == row["expected"], row
        assert row["reason"]
    by_case = {r["case"]: r for r in rows}
    released = [r for r in rows if r["outcome"] == "released"]
    assert len(released) == 3  # a genuine guest of each product line
    assert all("secret released" in r["reason"] for r in released)
    stranger = by_case["measurement not a reference value"]
    assert stranger["outcome"] == "refused"
    assert "403 PolicyDeny" in stranger["reason"] and "snp.measurement" in stranger["reason"]
    replay = by_case["replayed challenge (evidence bound to an old nonce)"]
    assert "401" in replay["reason"]
    assert not any("real hardware" in r["case"] for r in rows)


def test_real_samples_verify_offline() -> None:
    if not (CORPUS / "amd" / "MANIFEST.json").is_file():
        pytest.skip("corpus folder amd is absent (set VERITEE_CORPUS)")
    real = [r for r in demo_rows(CORPUS) if r["case"].startswith("real hardware")]
    assert len(real) == len(CORPUS_CASES)
    assert all(r["outcome"] == "released" and "AMD's pinned roots" in r["reason"] for r in real)


def test_human_demo_prints_a_table() -> None:
    result = CliRunner().invoke(app, ["demo"], env={"VERITEE_CORPUS": "/nonexistent"})
    assert result.exit_code == 0
    assert "released" in result.stdout and "refused" in result.stdout
    assert "all as expected" in result.stdout
