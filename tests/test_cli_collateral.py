"""``veritee collateral fetch/ls``: fill the cache from a (fake) KDS, then verify offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from veritee.cli.main import main
from veritee.collateral import fetch as fetch_module
from veritee.testing.snp import FakeKds, SnpEmulator


def test_fetch_then_verify_offline_with_the_crl(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    emu = SnpEmulator(product="genoa")
    kds = FakeKds()
    kds.add(emu)
    monkeypatch.setattr(fetch_module.HttpFetcher, "get", lambda self, url: kds.get(url))
    evidence = tmp_path / "report.bin"
    evidence.write_bytes(emu.report())  # bare report: the VCEK must come from the cache
    cache = tmp_path / "cache"
    assert main(["collateral", "fetch", str(evidence), "--cache-dir", str(cache), "--json"]) == 0
    fetched = json.loads(capsys.readouterr().out)["fetched"]
    assert len(fetched) == 3 and any("/crl" in u for u in fetched)
    assert main(["collateral", "ls", "--cache-dir", str(cache), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["entries"]) == 3
    code = main(["verify", "--tee", "snp", str(evidence), "--trust-emulated", "--offline",
                 "--cache-dir", str(cache), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    assert result["claims"]["revocation"] == "checked"


def test_fetch_unreachable_is_undecided(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kds = FakeKds(fail_status=503)
    monkeypatch.setattr(fetch_module.HttpFetcher, "get", lambda self, url: kds.get(url))
    evidence = tmp_path / "report.bin"
    evidence.write_bytes(SnpEmulator().report())
    assert main(["collateral", "fetch", str(evidence), "--cache-dir", str(tmp_path)]) == 3


def test_fetch_garbage_is_rejected(tmp_path: Path) -> None:
    evidence = tmp_path / "garbage"
    evidence.write_bytes(b"not a report")
    assert main(["collateral", "fetch", str(evidence), "--cache-dir", str(tmp_path)]) == 1
