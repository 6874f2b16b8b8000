"""Pay only for what you use (STYLE 15): ``veritee verify`` loads no web framework, broker,
database layer or test PKI, and ``veritee --help`` lists every command without importing one.

Each case runs in a fresh interpreter; the evidence is written beforehand by another process,
so the modules of the emulator never count."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.markup import escape as rich_escape
from typer._coercion import build_runtime_param

from conftest import corpus_dir
from veritee.cli.help import PlainParam, plain_params
from veritee.cli.main import COMMANDS, load
from veritee.cli.output import escape

#: What ``veritee verify`` must never load (Pydantic: Typer's converters, see cli/help.py).
HEAVY = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "pydantic", "regopy",
         "veritee.testing", "veritee.broker", "veritee.store", "veritee.server",
         "veritee.appraisal", "veritee.bench")


def run_cli(args: list[str]) -> tuple[int, set[str], str]:
    """``main(args)`` in a new interpreter: its exit status, the modules it loaded, stdout."""
    script = (
        "import contextlib, io, json, sys\n"
        "from veritee.cli.main import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    code = main({args!r})\n"
        "print(json.dumps({'code': code, 'modules': sorted(sys.modules), "
        "'out': out.getvalue()}))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=120)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["code"], set(result["modules"]), result["out"]


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)}


@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("evidence") / "emulated.bin"
    subprocess.run([sys.executable, "-m", "veritee.cli.main", "emulate", "snp", "--out",
                    str(path)], check=True, capture_output=True, timeout=120)
    return path


@pytest.mark.parametrize("output", [["--json"], []], ids=["json", "human"])
def test_verify_of_emulated_evidence_loads_nothing_heavy(
        emulated: Path, tmp_path: Path, output: list[str]) -> None:
    code, modules, out = run_cli(["verify", "--tee", "snp", "--offline", "--cache-dir",
                                  str(tmp_path), str(emulated), *output])
    assert code == 1, out  # the emulated roots are not trusted without --trust-emulated
    assert "UntrustedRootError" in out
    assert "veritee.tee.snp.verify" in modules
    assert not heavy(modules)
    assert ("rich" in modules) == (not output), "rich loads for human output only"


def test_verify_of_a_real_sample_loads_nothing_heavy(tmp_path: Path) -> None:
    root = corpus_dir("amd") / "go-sev-guest"
    code, modules, out = run_cli([
        "verify", "--tee", "snp", "--offline", "--cache-dir", str(tmp_path), "--json",
        str(root / "attestation.bin"), "--endorsements", str(root / "vcek.testcer"),
        "--endorsements", str(root / "milan.testcer")])
    assert code == 0, out
    assert json.loads(out)["status"] == "verified"
    assert not heavy(modules)


def test_help_lists_every_command_and_imports_none() -> None:
    code, modules, out = run_cli(["--help"])
    assert code == 0
    listed = " ".join(out.replace("│", " ").split())
    for entry in COMMANDS:
        if entry.offered():
            assert f"{entry.name} {entry.help}" in listed
    assert not {m for m in modules if m.startswith("veritee.cli.")} - {
        "veritee.cli.main", "veritee.cli.help", "veritee.cli.output"}
    assert not heavy(modules)


def test_a_command_loads_only_its_own_module() -> None:
    code, modules, _ = run_cli(["bench", "--list", "--json"])
    assert code == 0
    assert "veritee.cli.bench" in modules
    assert not {"veritee.cli.verify", "veritee.cli.serve", "veritee.cli.admin"} & modules


@pytest.mark.parametrize("text", [
    "plain", "[store] url", "[bold]x[/bold]", "a\\[b]", "ends with \\", "ends with \\\\",
    "[/]", "[#fff]", "[@click]", "[1, 2]", "[Store]",
])
def test_escape_is_richs(text: str) -> None:
    assert escape(text) == rich_escape(text)


# -- the plain parameters convert as Typer does ------------------------------------------------

SAMPLES: tuple[Any, ...] = (
    "text", "", " spaced ", "[store] url", "-", "a/b.bin", "a//b/", "./a", "~/x", "/", "1",
    "0", "true", "FALSE", " yes ", "no", "On", "off", "t", "F", "maybe", ("a", "b"), ["c"], (),
    True, False,
)


def _outcome(convert: Any, value: Any) -> tuple[str, Any]:
    try:
        return "value", convert(value)
    except Exception as exc:  # both sides must fail alike
        return type(exc).__name__, str(exc)


def plain_parameters() -> list[Any]:
    cases = []
    for entry in COMMANDS:
        command = load(entry)
        if command is None:
            continue
        stack = [(entry.name, command)]
        while stack:
            path, current = stack.pop()
            ctx = current.context_class(current, info_name=current.name)
            for param in plain_params(current.get_params(ctx)):
                if isinstance(getattr(param, "_runtime_param", None), PlainParam):
                    cases.append(pytest.param(current, param, id=f"{path} {param.name}"))
            for name in getattr(current, "commands", {}):
                stack.append((f"{path} {name}", current.commands[name]))
    return cases


@pytest.mark.parametrize(("command", "param"), plain_parameters())
def test_plain_parameters_convert_as_typer_does(command: Any, param: Any) -> None:
    ctx = command.context_class(command, info_name=command.name)
    ours = param._runtime_param
    typers = build_runtime_param(param.type_descriptor)
    for value in SAMPLES:
        mine = _outcome(lambda v: ours.coerce(v, param=param, ctx=ctx), value)
        theirs = _outcome(lambda v: typers.coerce(v, param=param, ctx=ctx), value)
        assert mine == theirs, f"{value!r}"
