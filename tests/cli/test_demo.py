"""``veritee demo``: a real broker on loopback; every case ends as expected; CONTRACT §5."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import CORPUS
from veritee.cli import demo_run
from veritee.cli.main import app
from veritee.tee import get_platform
from veritee.tee.platform import DemoGuest


def corpus_cases() -> int:
    """How many real samples the platforms' demo specs list (all of them are in the corpus)."""
    return len(get_platform("snp").load("demo").corpus)


def demo_rows(corpus: Path) -> list[dict[str, str]]:
    result = CliRunner().invoke(app, ["demo", "--json"], env={"VERITEE_CORPUS": str(corpus)})
    assert result.exit_code == 0, result.output
    assert "veritee demo" in result.stderr  # the table, beside the JSON
    assert "broker listening on http://127.0.0.1:" in result.stderr
    rows: list[dict[str, str]] = json.loads(result.stdout)["rows"]
    return rows


def test_broker_cases_end_as_expected(tmp_path: Path) -> None:
    rows = demo_rows(tmp_path)
    for row in rows:
        assert {"tee", "case", "outcome", "reason"} <= set(row)
        assert row["outcome"] in ("released", "refused")
        assert row["outcome"] == row["expected"], row
        assert row["reason"]
    by_case = {r["case"]: r for r in rows}
    released = [r for r in rows if r["outcome"] == "released"]
    genuine = [g for _, spec in demo_run.demo_platforms() for g in spec.guests()
               if g.expect == "released"]
    assert len(released) == len(genuine) >= 3  # SEV-SNP: a genuine guest of each product line
    assert all("secret released" in r["reason"] or "secret injected" in r["reason"]
               for r in released)
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
    assert len(real) == corpus_cases()
    assert all(r["outcome"] == "verified" == r["expected"] for r in real)
    assert all("verified offline against the pinned vendor roots" in r["reason"] for r in real)


def test_human_demo_prints_a_table_and_names_a_corpus_that_is_not_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo"], env={"VERITEE_CORPUS": str(tmp_path)})
    assert result.exit_code == 0
    assert "released" in result.stdout and "refused" in result.stdout
    assert "all as expected" in result.stdout
    squeezed = "".join(result.stdout.split())  # rich folds long paths at any character
    assert f"VERITEE_CORPUS={tmp_path}holdsnocorpus" in squeezed


def test_a_refusal_for_another_reason_is_not_as_expected() -> None:
    """A defect the broker refuses for the wrong reason (a SignatureError where the guest
    expects a BindingError) is flagged, so 'all as expected' means the right check fired."""
    guest = DemoGuest("defect", lambda rd: {}, "refused", because="BindingError")
    right = demo_run._refused("snp", guest, "HTTP 401 AttestationError: BindingError: x")
    wrong = demo_run._refused("snp", guest, "HTTP 401 AttestationError: SignatureError: x")
    assert right.outcome == right.expected == "refused"
    assert wrong.outcome == "refused" and wrong.expected != wrong.outcome


def test_every_defect_is_refused_by_its_own_check() -> None:
    spec = get_platform("snp").load("demo")
    defects = {g.name: g for g in spec.guests() if g.name.startswith("defect: ")}
    assert defects and all(g.because for g in defects.values())
    assert defects["defect: tcb reserved"].because == "BindingError"
