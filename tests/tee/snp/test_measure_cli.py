"""``veritee measure snp|sev-es|sev`` (veritee.tee.snp.measure_cli) through Typer's runner, on
synthetic firmware (so no corpus is needed): one configuration, a sweep, reference values,
usage errors (exit 2) and firmware that cannot be measured (exit 1), never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner, Result

from veritee.cli.output import ExitCode
from veritee.tee.snp.launch import Configuration, KernelHashes, LaunchMeasurer, snp_ovmf_hash
from veritee.tee.snp.measure_cli import SEV_APP, SEV_ES_APP, SNP_APP
from veritee.tee.snp.ovmf import parse_ovmf
from veritee.testing.snp.ovmf import build_ovmf, build_svsm

APPS = {"snp": SNP_APP, "sev-es": SEV_ES_APP, "sev": SEV_APP}
KERNEL = b"kernel bytes"
INITRD = b"initrd bytes"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    paths = {"ovmf": tmp_path / "OVMF.fd", "kernel": tmp_path / "vmlinuz",
             "initrd": tmp_path / "initrd", "empty": tmp_path / "empty",
             "plain": tmp_path / "plain.fd", "svsm": tmp_path / "svsm.bin",
             "junk": tmp_path / "junk.fd", "huge": tmp_path / "huge.fd"}
    paths["ovmf"].write_bytes(build_ovmf(64 << 10))
    paths["plain"].write_bytes(build_ovmf(64 << 10, kernel_hashes=False))
    paths["svsm"].write_bytes(build_svsm(32 << 10))
    paths["kernel"].write_bytes(KERNEL)
    paths["initrd"].write_bytes(INITRD)
    paths["empty"].write_bytes(b"")
    paths["junk"].write_bytes(b"\xff" * 0x1000)
    with paths["huge"].open("wb") as sparse:
        sparse.truncate((64 << 20) + 0x1000)
    return {name: str(path) for name, path in paths.items()}


def run(mode: str, *args: str) -> Result:
    return CliRunner().invoke(APPS[mode], list(args))


def expected(path: str, *configs: Configuration, hashes: KernelHashes | None = None) -> list[str]:
    measurer = LaunchMeasurer(parse_ovmf(Path(path).read_bytes()), kernel_hashes=hashes)
    return [r.measurement.hex() for r in measurer.measure_many(configs)]


def test_snp_one_configuration_json(files: dict[str, str]) -> None:
    result = run("snp", "--ovmf", files["ovmf"], "--vcpus", "4", "--vcpu-type", "EPYC-Milan",
                 "--guest-features", "0x21", "--kernel", files["kernel"], "--initrd",
                 files["initrd"], "--append", "console=ttyS0", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    hashes = KernelHashes.of(KERNEL, INITRD, "console=ttyS0")
    config = Configuration(vcpus=4, vcpu_type="EPYC-Milan", guest_features=0x21, kernel=True)
    assert document == {"platform": "snp",
                        "measurement": expected(files["ovmf"], config, hashes=hashes)[0],
                        "kernel_hashes": True, "vcpus": 4, "vcpu_type": "EPYC-Milan",
                        "vcpu_sig": "0xa00f11", "vmm_type": "qemu", "guest_features": "0x21",
                        "svsm": False}


def test_snp_sweep_is_a_list_in_order(files: dict[str, str]) -> None:
    result = run("snp", "--ovmf", files["ovmf"], "--vcpus", "1-3,8", "--vcpu-type", "EPYC-v4",
                 "--vcpu-type", "EPYC-Genoa", "--json")
    assert result.exit_code == 0, result.output
    documents = json.loads(result.stdout)
    configs = [Configuration(vcpus=n, vcpu_type=t) for t in ("EPYC-v4", "EPYC-Genoa")
               for n in (1, 2, 3, 8)]
    assert [d["measurement"] for d in documents] == expected(files["ovmf"], *configs)
    assert [(d["vcpu_type"], d["vcpus"]) for d in documents] == [
        (c.vcpu_type, c.vcpus) for c in configs]


def test_snp_reference_values(files: dict[str, str]) -> None:
    result = run("snp", "--ovmf", files["ovmf"], "--vcpus", "1,2", "--vmm-type", "ec2",
                 "--vmm-type", "gce", "--as-reference-values")
    assert result.exit_code == 0, result.output
    configs = [Configuration(vcpus=n, vcpu_type=None, vmm=v) for v in ("ec2", "gce")  # type: ignore[arg-type]
               for n in (1, 2)]
    assert json.loads(result.stdout) == {"snp_launch_measurement": expected(files["ovmf"],
                                                                            *configs)}


def test_snp_ovmf_hash_round_trip(files: dict[str, str]) -> None:
    printed = run("snp", "--ovmf", files["ovmf"], "--print-ovmf-hash", "--json")
    digest = json.loads(printed.stdout)["ovmf_hash"]
    assert digest == snp_ovmf_hash(parse_ovmf(Path(files["ovmf"]).read_bytes())).hex()
    direct = run("snp", "--ovmf", files["ovmf"], "--vcpus", "2", "--json")
    seeded = run("snp", "--ovmf", files["ovmf"], "--ovmf-hash", digest, "--vcpus", "2", "--json")
    assert json.loads(direct.stdout) == json.loads(seeded.stdout)


def test_sev_es_and_sev(files: dict[str, str]) -> None:
    kernel = ("--kernel", files["kernel"], "--initrd", files["empty"], "--append", "")
    es = run("sev-es", "--ovmf", files["ovmf"], "--vcpus", "2", *kernel, "--json")
    hashes = KernelHashes.of(KERNEL, b"", "")
    assert json.loads(es.stdout)["measurement"] == expected(
        files["ovmf"], Configuration("sev-es", vcpus=2, kernel=True), hashes=hashes)[0]
    sev = run("sev", "--ovmf", files["ovmf"], *kernel, "--as-reference-values")
    assert json.loads(sev.stdout) == {"sev_launch_digest": expected(
        files["ovmf"], Configuration("sev", kernel=True), hashes=hashes)}
    human = run("sev", "--ovmf", files["ovmf"])
    assert human.exit_code == 0
    assert "SEV launch digest (no kernel hashes): " in human.stdout


def test_svsm(files: dict[str, str]) -> None:
    result = run("snp", "--ovmf", files["plain"], "--svsm", files["svsm"], "--vars-size",
                 "0x20000", "--vcpus", "2", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["svsm"] is True


def test_human_output_names_the_configuration(files: dict[str, str]) -> None:
    result = run("snp", "--ovmf", files["ovmf"], "--vcpu-sig", "0xa10f10")
    assert result.exit_code == 0
    assert result.stdout.startswith("SNP launch measurement (1 vCPU, sig 0xa10f10, qemu, "
                                    "features 0x1, no kernel hashes): ")


# (name, mode, arguments with {file} placeholders, expected exit, words the message holds)
USAGE_CASES = [
    ("missing-file", "snp", ["--ovmf", "{tmp}/nope.fd"], ExitCode.USAGE, "cannot read"),
    ("kernel-without-append", "snp", ["--ovmf", "{ovmf}", "--kernel", "{kernel}",
                                      "--initrd", "{initrd}"], ExitCode.USAGE, "--append"),
    ("initrd-without-kernel", "sev", ["--ovmf", "{ovmf}", "--initrd", "{initrd}",
                                      "--append", ""], ExitCode.USAGE, "--kernel"),
    ("bad-vcpu-sig", "snp", ["--ovmf", "{ovmf}", "--vcpu-sig", "xyz"], ExitCode.USAGE,
     "hexadecimal"),
    ("bad-guest-features", "snp", ["--ovmf", "{ovmf}", "--guest-features", "1" * 17],
     ExitCode.USAGE, "64 bits"),
    ("bad-ovmf-hash", "snp", ["--ovmf", "{ovmf}", "--ovmf-hash", "abcd"], ExitCode.USAGE,
     "48"),
    ("bad-vcpus", "sev-es", ["--ovmf", "{ovmf}", "--vcpus", "4-2"], ExitCode.USAGE, "--vcpus"),
    ("zero-vcpus", "snp", ["--ovmf", "{ovmf}", "--vcpus", "0"], ExitCode.USAGE, "--vcpus"),
    ("unknown-vcpu-type", "snp", ["--ovmf", "{ovmf}", "--vcpu-type", "EPYC-Zen9"],
     ExitCode.USAGE, "EPYC-Milan"),
    ("unknown-vmm", "snp", ["--ovmf", "{ovmf}", "--vmm-type", "xen"], ExitCode.USAGE, "qemu"),
    ("svsm-without-vars", "snp", ["--ovmf", "{plain}", "--svsm", "{svsm}"], ExitCode.USAGE,
     "--vars-size"),
    ("vars-without-svsm", "snp", ["--ovmf", "{plain}", "--vars-size", "0"], ExitCode.USAGE,
     "--svsm"),
    ("svsm-with-kernel", "snp", ["--ovmf", "{ovmf}", "--svsm", "{svsm}", "--vars-size", "0",
                                 "--kernel", "{kernel}", "--initrd", "{initrd}",
                                 "--append", ""], ExitCode.USAGE, "--kernel"),
    ("huge-sweep", "snp", ["--ovmf", "{ovmf}", "--vcpus", "1-4096", "--guest-features", "1",
                           "--guest-features", "21", "--vcpu-type", "EPYC",
                           "--vcpu-type", "EPYC-v4", "--vcpu-type", "EPYC-Rome",
                           "--vcpu-type", "EPYC-Milan", "--vcpu-type", "EPYC-Genoa",
                           "--vcpu-type", "EPYC-Turin", "--vcpu-type", "EPYC-v1",
                           "--vcpu-type", "EPYC-v2", "--vmm-type", "qemu",
                           "--vmm-type", "ec2"], ExitCode.USAGE, "configurations"),
    ("junk-firmware", "snp", ["--ovmf", "{junk}"], ExitCode.REJECTED, "SEV_ES_RESET_BLOCK"),
    ("empty-firmware", "sev", ["--ovmf", "{empty}"], ExitCode.REJECTED, "empty"),
    ("kernel-on-plain-firmware", "sev-es", ["--ovmf", "{plain}", "--kernel", "{kernel}",
                                            "--initrd", "{initrd}", "--append", ""],
     ExitCode.REJECTED, "measured direct boot"),
    ("oversized-firmware", "sev", ["--ovmf", "{huge}"], ExitCode.USAGE, "over 64 MiB"),
    ("not-pages", "snp", ["--ovmf", "{kernel}"], ExitCode.REJECTED, "4 KiB"),
]


@pytest.mark.parametrize("case", USAGE_CASES, ids=[c[0] for c in USAGE_CASES])
@pytest.mark.parametrize("as_json", [False, True], ids=["human", "json"])
def test_errors(files: dict[str, str], tmp_path: Path,
                case: tuple[str, str, list[str], int, str], as_json: bool) -> None:
    _, mode, arguments, code, words = case
    args = [a.format(tmp=tmp_path, **files) for a in arguments] + (["--json"] if as_json else [])
    result = run(mode, *args)
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert words in result.stderr
    if as_json:
        assert json.loads(result.stdout)["status"] == "error"
    else:
        assert result.stdout == ""


@pytest.mark.parametrize("app", [SNP_APP, SEV_ES_APP, SEV_APP])
def test_help(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "--ovmf" in result.stdout and "--kernel" in result.stdout


def test_cli_imports_cheaply() -> None:
    """Importing the apps loads neither the engine nor rich."""
    code = ("import sys, veritee.tee.snp.measure_cli; "
            "print([m for m in ('veritee.tee.snp.launch', 'veritee.tee.snp.ovmf', "
            "'rich.progress', 'cryptography') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert out.strip() == "[]"


def test_progress_bar_stays_off_stdout(files: dict[str, str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A long sweep on a terminal shows a bar on stderr; stdout stays one JSON document."""
    from veritee.tee.snp import measure_cli

    monkeypatch.setattr(measure_cli, "PROGRESS_AFTER_SECONDS", 0.0)
    monkeypatch.setattr(measure_cli, "sys", SimpleNamespace(
        stderr=SimpleNamespace(isatty=lambda: True)))
    seen: list[tuple[int, int]] = []
    original: Callable[..., object] = measure_cli._progress

    def spy(total: int) -> object:
        context = original(total)
        return _Recording(context, seen)

    monkeypatch.setattr(measure_cli, "_progress", spy)
    result = run("snp", "--ovmf", files["ovmf"], "--vcpus", "1-5", "--json")
    assert result.exit_code == 0
    assert len(json.loads(result.stdout)) == 5
    assert seen[-1] == (5, 5)


class _Recording:
    def __init__(self, context: object, seen: list[tuple[int, int]]) -> None:
        self.context = context
        self.seen = seen

    def __enter__(self) -> Callable[[int, int], None]:
        advance = self.context.__enter__()  # type: ignore[attr-defined]

        def record(done: int, total: int) -> None:
            self.seen.append((done, total))
            advance(done, total)

        return record

    def __exit__(self, *exc: object) -> None:
        self.context.__exit__(*exc)  # type: ignore[attr-defined]
