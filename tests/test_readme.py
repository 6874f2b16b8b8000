"""The README's tour runs as printed: every ``$ `` line of its console blocks, in order, in one
shell, in a folder laid out like the repository (with ``examples/`` and the shared corpus
beside it). No command may fail as bad usage, be missing, or print a traceback or an internal
error; the guest gets the secret the tour stored."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CORPUS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def tour_commands() -> list[str]:
    """The commands of the tour's console blocks, continuation lines joined."""
    tour = README.split("## A tour of the CLI", 1)[1].split("\n## ", 1)[0]
    commands: list[str] = []
    for block in re.findall(r"```console\n(.*?)```", tour, re.S):
        pending = ""
        for line in block.splitlines():
            if pending:
                pending += " " + line.strip()
            elif line.startswith("$ "):
                pending = line[2:]
            if pending and pending.endswith("\\"):
                pending = pending[:-1].rstrip()
                continue
            if pending:
                commands.append(pending)
                pending = ""
    return commands


def test_the_tour_has_commands() -> None:
    commands = tour_commands()
    assert any(c.startswith("veritee emulate") for c in commands)
    assert any(c.startswith("veritee serve") for c in commands)
    assert any(c.startswith("veritee attest") for c in commands)


def test_the_tour_runs_as_printed(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(ROOT / "examples", repo / "examples")
    venv = repo / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "activate").write_text(f'export PATH="{Path(sys.executable).parent}:$PATH"\n')
    commands = tour_commands()
    if any("../shared/corpus" in c for c in commands):
        if not CORPUS.is_dir():
            pytest.skip("the tour reads the shared corpus, which is absent")
        (tmp_path / "shared").mkdir()
        (tmp_path / "shared" / "corpus").symlink_to(CORPUS)
    script = "\n".join(f'{c}\necho "__exit $? :: {i}"' for i, c in enumerate(commands))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERITEE_")}
    env["COLUMNS"] = "100"
    done = subprocess.run(["bash", "-c", script], cwd=repo, env=env, capture_output=True,
                          check=False, text=True, timeout=300)
    output = done.stdout + done.stderr
    codes = {int(i): int(code) for code, i in re.findall(r"__exit (\d+) :: (\d+)", done.stdout)}
    assert sorted(codes) == list(range(len(commands))), output[-3000:]
    for index, command in enumerate(commands):
        assert codes[index] not in (2, 126, 127), f"{command!r} exited {codes[index]}:\n{output}"
    assert "Traceback" not in output and "internal error" not in output, output[-3000:]
    assert "hunter2" in done.stdout
