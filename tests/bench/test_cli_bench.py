"""``veritee bench cli``: the JSON shape (CONTRACT §4), the sample it chose; never timing."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from veritee.bench import cli as bench_cli
from veritee.cli.main import app
from veritee.tee import platforms

CONTRACT_KEYS = {"benchmark", "ops_per_s", "floor", "ratio_to_floor", "peer", "ratio_to_peer",
                 "threads", "seconds"}


def test_cli_json_shape() -> None:
    result = CliRunner().invoke(app, ["bench", "cli", "--json"])
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    out = json.loads(line)
    assert set(out) >= CONTRACT_KEYS
    assert out["benchmark"] == "cli" and out["floor"]["name"] == "python -c pass"
    assert out["ops_per_s"] > 0 and out["ratio_to_floor"] > 0
    assert out["sample_source"] in ("corpus", "emulated") and out["runs"] == bench_cli.RUNS
    for key in ("cli_ms", "interpreter_ms", "in_process_verify_ms", "cli_over_interpreter",
                "cli_over_in_process_verify"):
        assert isinstance(out[key], float) and out[key] > 0, key


def test_without_the_corpus_an_emulated_sample_is_verified(tmp_path: Path) -> None:
    platform = next(p for p in platforms() if p.emulator)
    sample = bench_cli.emulated_sample(platform, tmp_path)
    assert sample.source == "emulated" and sample.trust_emulated
    times = bench_cli.in_process_seconds(sample, tmp_path / "cache", 2)
    assert len(times) == 2 and all(t > 0 for t in times)
    argv = [*bench_cli.command(), *sample.arguments(tmp_path / "cache")]
    assert "--trust-emulated" in argv and bench_cli.timed_run(argv, bench_cli._env()) > 0
