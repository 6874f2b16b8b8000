"""``veritee collateral fetch/ls``: fill the cache from a (fake) KDS, then verify offline.

The command's work is :func:`veritee.cli.collateral.fetch_into`, given the fake vendor service
here as its fetcher (the command itself gives it the network); the offline verification
afterwards is the real command.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from veritee.cli.collateral import fetch_into
from veritee.cli.main import main
from veritee.errors import CollateralUnavailableError, MalformedEvidenceError
from veritee.testing.snp import FakeKds, SnpEmulator


def test_fetch_then_verify_offline_with_the_crl(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    emu = SnpEmulator(product="genoa")
    kds = FakeKds()
    kds.add(emu)
    evidence = tmp_path / "report.bin"
    evidence.write_bytes(emu.report())  # bare report: the VCEK must come from the cache
    cache = tmp_path / "cache"
    fetched = fetch_into("snp", evidence.read_bytes(), cache, fetcher=kds)
    assert len(fetched) == 3 and any("/crl" in u for u in fetched)
    assert kds.requests == fetched
    assert main(["collateral", "ls", "--cache-dir", str(cache), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["entries"]) == 3
    code = main(["verify", "--tee", "snp", str(evidence), "--trust-emulated", "--offline",
                 "--cache-dir", str(cache), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    assert result["claims"]["revocation"] == "checked"


def test_fetch_from_an_unavailable_service_is_undecided(tmp_path: Path) -> None:
    with pytest.raises(CollateralUnavailableError, match="HTTP 503"):
        fetch_into("snp", SnpEmulator().report(), tmp_path, fetcher=FakeKds(fail_status=503))


def test_fetch_garbage_is_rejected_before_any_request(tmp_path: Path) -> None:
    kds = FakeKds()
    with pytest.raises(MalformedEvidenceError):
        fetch_into("snp", b"not a report", tmp_path, fetcher=kds)
    assert kds.requests == []
    evidence = tmp_path / "garbage"
    evidence.write_bytes(b"not a report")
    assert main(["collateral", "fetch", "--tee", "snp", str(evidence),
                 "--cache-dir", str(tmp_path)]) == 1


def test_fetch_for_an_unknown_tee_is_bad_usage(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    evidence = tmp_path / "report.bin"
    evidence.write_bytes(SnpEmulator().report())
    assert main(["collateral", "fetch", "--tee", "nope", str(evidence), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"]["type"] == "UnknownTeeError"
