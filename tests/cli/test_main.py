"""The ``veritee`` entry point: command registration, usage errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

import veritee
from veritee.cli import main as cli_main
from veritee.cli.help import readable_metavars
from veritee.cli.main import COMMANDS, build_app, load, main
from veritee.tee import platforms


def expected_commands() -> set[str]:
    """Every command of the table; ``measure`` only when a platform can be measured."""
    names = {entry.name for entry in COMMANDS}
    if not any(p.measure for p in platforms()):
        names.discard("measure")
    return names


def test_every_command_is_listed_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    listed = {line.split()[1] for line in out.splitlines()
              if line.startswith("│ ") and len(line.split()) > 2}
    assert expected_commands() <= listed
    squeezed = " ".join(out.replace("│", " ").split())
    for entry in COMMANDS:
        if entry.name in expected_commands():
            assert f"{entry.name} {entry.help}" in squeezed


def test_every_command_module_registers_its_command() -> None:
    for entry in COMMANDS:
        command = load(entry)
        if entry.name in expected_commands():
            assert command is not None and command.name == entry.name, entry
            assert command.help.strip(), entry
        else:
            assert command is None, f"{entry.name} registers a command no platform offers"


def test_a_mistyped_command_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verifx"]) == 2
    assert "Did you mean 'verify'?" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"veritee {veritee.__version__}\n"


def test_unknown_command_is_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-command"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_usage_error_under_json_still_prints_one_object(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["verify", "--tee", "snp", "--bogus", "--json", str(tmp_path / "x")])
    captured = capsys.readouterr()
    assert code == 2
    document = json.loads(captured.out)
    assert document["status"] == "error"
    assert set(document) == {"tee", "status", "error", "claims"}
    assert "--bogus" in captured.err


def test_unexpected_exceptions_become_one_line(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_main, "app", explode)
    assert main(["bench", "--list", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == "veritee: internal error: RuntimeError: boom"
    assert json.loads(captured.out)["error"] == {"type": "RuntimeError", "detail": "boom"}


def test_console_entry_point_runs(tmp_path: Path) -> None:
    evidence = tmp_path / "ev.bin"
    evidence.write_bytes(b"not evidence")
    proc = subprocess.run(
        [sys.executable, "-m", "veritee.cli.main", "verify", "--tee", "snp", "--json",
         "--offline", "--cache-dir", str(tmp_path), str(evidence)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["error"]["type"] == "UnrecognizedEvidenceError"
    assert "Traceback" not in proc.stderr


def _walk(command: Any, path: str = "veritee") -> Iterator[tuple[str, Any]]:
    yield path, command
    ctx = click_context(command)
    for name in getattr(command, "list_commands", lambda _ctx: [])(ctx):
        yield from _walk(command.get_command(ctx, name), f"{path} {name}")


def test_every_command_and_option_is_described_with_readable_metavars() -> None:
    root = typer.main.get_command(build_app())
    for path, command in _walk(root):
        assert (command.help or "").strip(), f"{path} has no help"
        ctx = click_context(command)
        readable_metavars(command, ctx)
        for param in command.get_params(ctx):
            assert (getattr(param, "help", None) or "").strip(), f"{path} {param.name}: no help"
            assert "<" not in (param.metavar or "") and "[" not in (param.metavar or ""), (
                f"{path} {param.name}: metavar {param.metavar!r}")


def click_context(command: Any) -> Any:
    return command.context_class(command, info_name=command.name)


def test_help_keeps_square_brackets_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    assert "([store] url)" in " ".join(capsys.readouterr().out.split())
