"""The platform seam (STYLE §4): the registry matches the room folders, every descriptor's
import strings resolve inside its own rooms, the files a TEE adds exist, and no code outside
a TEE's rooms names it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import veritee
from veritee.errors import MisuseError, UnknownTeeError
from veritee.tee import (
    Platform,
    get_platform,
    get_verifier,
    load,
    platforms,
    rooms,
    tee_names,
)
from veritee.tee.platform import IMPORT_SLOTS

SRC = Path(veritee.__file__).parent
REPO = SRC.parents[1]
PLATFORMS = platforms()


def test_every_room_folder_is_registered_and_every_descriptor_names_its_room() -> None:
    folders = sorted(p.name for p in (SRC / "tee").iterdir()
                     if (p / "__init__.py").is_file() and not p.name.startswith("_"))
    assert rooms() == folders
    assert sorted({p.room for p in PLATFORMS}) == folders
    assert tee_names() == sorted(tee_names()) == sorted({p.tee for p in PLATFORMS})


def room_modules(platform: Platform) -> tuple[str, ...]:
    """The module prefixes of a platform's rooms (its own and the ones it reuses)."""
    prefixes = []
    for room in (platform.room, *platform.reuses):
        prefixes += [f"veritee.tee.{room}", f"veritee.testing.{room}",
                     f"veritee.attester.{room}"]
    return tuple(prefixes)


@pytest.mark.parametrize("platform", PLATFORMS, ids=lambda p: p.tee)
def test_import_strings_resolve_inside_the_platforms_rooms(platform: Platform) -> None:
    strings = dict(platform.import_strings())
    assert "verifier" in strings
    for slot, target in platform.import_strings():
        module = target.partition(":")[0]
        assert module.startswith(room_modules(platform)), (
            f"{platform.tee}.{slot} = {target} lives outside the platform's rooms")
        assert load(target) is not None
    for slot in IMPORT_SLOTS:
        assert (platform.load(slot) is None) == (getattr(platform, slot) is None)
    for name, target in platform.benchmarks:
        assert callable(getattr(load(target), "run", None)), name


def files_to_add(platform: Platform) -> list[Path]:
    """What adding ``platform`` adds: its room, the modules its descriptor names, its policy
    and its documentation section (derived from the registry, not listed by hand)."""
    files = [SRC / "tee" / platform.room / "__init__.py"]
    for _, target in platform.import_strings():
        module = target.partition(":")[0].removeprefix("veritee.").replace(".", "/")
        as_file, as_package = SRC / f"{module}.py", SRC / module / "__init__.py"
        files.append(as_file if as_file.is_file() else as_package)
    if platform.policy is not None:
        files.append(SRC / "appraisal" / "policies" / platform.policy)
    return files


@pytest.mark.parametrize("platform", PLATFORMS, ids=lambda p: p.tee)
def test_the_files_a_platform_adds_exist_and_it_is_documented(platform: Platform) -> None:
    missing = [str(f.relative_to(REPO)) for f in files_to_add(platform) if not f.is_file()]
    assert not missing
    claims_doc = (REPO / "docs" / "CLAIMS.md").read_text()
    assert f"## `{platform.tee}`" in claims_doc, f"docs/CLAIMS.md has no `{platform.tee}` section"


def _in_room(rel: str, room: str) -> bool:
    return rel.startswith((f"tee/{room}/", f"testing/{room}/", f"attester/{room}/")) or \
        rel in (f"testing/{room}.py", f"attester/{room}.py")


def in_rooms(path: Path) -> set[str]:
    """The TEE names whose rooms hold ``path`` (empty: shared code). A composite's own room
    and policy may also name the TEEs of the rooms it reuses (it is built from them)."""
    rel = path.relative_to(SRC).as_posix()
    owners = set()
    for platform in PLATFORMS:
        for room in (platform.room, *platform.reuses):
            if _in_room(rel, room):
                owners.add(platform.tee)
        own = _in_room(rel, platform.room) or (
            platform.policy is not None and rel == f"appraisal/policies/{platform.policy}")
        if own:
            owners.add(platform.tee)
            owners.update(p.tee for p in PLATFORMS if p.room in platform.reuses)
    return owners


def documented_exceptions() -> dict[str, str]:
    """``file → reason`` from the table under "Names of TEEs outside their rooms" in
    docs/ARCHITECTURE.md."""
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    section = text.split("### Names of TEEs outside their rooms", 1)
    assert len(section) == 2, "docs/ARCHITECTURE.md lacks the exceptions section"
    rows = re.findall(r"^\| `([^`]+)` \| (.+?) \|$", section[1].split("\n## ", 1)[0], re.M)
    return dict(rows)


def test_no_code_outside_a_platforms_rooms_names_it() -> None:
    exceptions = documented_exceptions()
    offenders: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*")):
        if path.suffix not in (".py", ".rego") or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(SRC).as_posix()
        text = path.read_text()
        for platform in PLATFORMS:
            if platform.tee in in_rooms(path):
                continue
            if re.search(rf"(?<![\w-]){re.escape(platform.tee)}(?![\w-])", text, re.I):
                offenders.setdefault(rel, []).append(platform.tee)
    unexplained = {f: tees for f, tees in offenders.items() if f not in exceptions}
    assert not unexplained, f"TEE names outside their rooms: {unexplained}"
    stale = sorted(set(exceptions) - set(offenders))
    assert not stale, f"docs/ARCHITECTURE.md lists exceptions that no longer hold: {stale}"


def test_unknown_tees_are_misuse_and_emulated_roots_are_marked() -> None:
    with pytest.raises(UnknownTeeError, match="known: "):
        get_verifier("no-such-tee")
    with pytest.raises(UnknownTeeError):
        get_platform("")
    for platform in PLATFORMS:
        plain = get_verifier(platform.tee)
        assert plain.tee == platform.tee
        assert not any(root.emulated for root in plain.roots)
        if platform.emulated_roots is None:
            with pytest.raises(MisuseError, match="no emulated roots"):
                get_verifier(platform.tee, trust_emulated=True)
            continue
        trusting = get_verifier(platform.tee, trust_emulated=True)
        added = trusting.roots[len(plain.roots):]
        assert added and all(root.emulated for root in added)
        assert trusting.roots[:len(plain.roots)] == plain.roots
        assert type(trusting.with_roots(())) is type(trusting)


# -- layers, proved through sys.modules in fresh interpreters ------------------------------------


def _modules_after(code: str) -> set[str]:
    script = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=120)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_a_byte_layout_loads_no_http_client() -> None:
    for platform in PLATFORMS:
        room = SRC / "tee" / platform.room
        name = next(n for n in ("layout", "quote", "report", "token", "structures", "hcl",
                                "manifest")
                    if (room / f"{n}.py").is_file())
        layout = f"veritee.tee.{platform.room}.{name}"      # DESIGN.md: a room's byte layouts
        loaded = _modules_after(f"import {layout}")
        assert layout in loaded
        assert not {m for m in loaded if m.split(".")[0] in ("httpx", "httpcore")}


def test_verify_and_serve_load_no_testing_module(tmp_path: Path) -> None:
    from veritee.testing.snp import SnpEmulator

    evidence = tmp_path / "evidence.bin"
    evidence.write_bytes(SnpEmulator().extended_report())
    verify = _modules_after(
        "from veritee.cli.main import main\n"
        f"main(['verify', '--tee', 'snp', '--offline', {str(evidence)!r}, '--json'])")
    assert "veritee.tee.snp.verify" in verify
    assert not {m for m in verify if m.startswith("veritee.testing")}
    assert not {m for m in verify if m.split(".")[0] in ("fastapi", "sqlalchemy", "regopy")}
    serve = _modules_after(
        "from fastapi.testclient import TestClient\n"
        "from veritee.attester.kbs_client import TeeKey\n"
        "from veritee.broker.config import Config\n"
        "from veritee.server.app import create_app\n"
        f"app = create_app(Config(data_dir={str(tmp_path / 'data')!r}))\n"
        "with TestClient(app) as client:\n"
        "    nonce = client.post('/kbs/v0/auth', json={'version': '0.4.0', 'tee': 'snp'})"
        ".json()['nonce']\n"
        "    answer = client.post('/kbs/v0/attest', json={\n"
        "        'runtime-data': {'nonce': nonce, 'tee-pubkey': TeeKey().jwk()},\n"
        f"        'tee-evidence': {{'primary_evidence': {evidence.read_bytes().hex()!r}}}}})\n"
        "    assert 'UntrustedRootError' in answer.json()['detail'], answer.text\n")
    assert {"veritee.server.app", "veritee.tee.snp.verify"} <= serve
    assert not {m for m in serve if m.startswith("veritee.testing")}
