"""``veritee bench cli``: what one ``veritee verify`` costs a user, start to exit.

The command is run as a user runs it, in a new process each time (the ``veritee`` console
script beside this interpreter, else ``python -m veritee.cli.main``), on a real sample of
the shared corpus (the platform's first demo sample that is present, with its
endorsements), offline and with ``--json``. Without the corpus, an emulated sample is
written to a temporary file by ``veritee emulate`` and verified with ``--trust-emulated``
(which also loads the test PKI); ``sample_source`` says which.

Beside it, measured in the same run: ``python -c pass`` (the interpreter's own start, the
floor no command can beat) and the verification itself in this process (``veritee
verify``'s work without the start, after one warm-up run). Each figure is the median of
:data:`RUNS` runs; the two commands alternate so that a busy machine slows both alike.
``--seconds`` and ``--threads`` are ignored: the run count is fixed.

Where ``PYTHONDONTWRITEBYTECODE`` is set, every start compiles veritee's modules again;
``bytecode_cache`` says so.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veritee.bench.core import BenchResult, Figure, Settings
from veritee.errors import MisuseError
from veritee.tee import Platform, get_platform, platforms

#: Runs of each command (and of the in-process verification).
RUNS = 10
#: Seconds one run of each command may take before the benchmark gives up.
RUN_TIMEOUT = 120.0


class CliBenchError(MisuseError):
    """The benchmark's own sample did not verify, or a command failed."""


@dataclass(frozen=True)
class Sample:
    """The evidence the benchmark verifies and the arguments that verify it."""

    tee: str
    source: str
    """``corpus`` or ``emulated``."""
    name: str
    evidence: Path
    endorsements: tuple[Path, ...] = ()
    trust_emulated: bool = False

    def arguments(self, cache_dir: Path) -> list[str]:
        args = ["verify", "--tee", self.tee, "--offline", "--json", "--cache-dir",
                str(cache_dir), str(self.evidence)]
        for endorsement in self.endorsements:
            args += ["--endorsements", str(endorsement)]
        return [*args, "--trust-emulated"] if self.trust_emulated else args


def command() -> list[str]:
    """How a user starts veritee here: the console script, else ``python -m``."""
    script = Path(sys.executable).with_name("veritee")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "veritee.cli.main"]


def corpus_sample(platform: Platform) -> Sample | None:
    """The platform's first demo sample present in the shared corpus, if any."""
    from veritee.cli.demo_run import corpus_base  # noqa: PLC0415 - the demo's own lookup

    base = corpus_base()
    spec = platform.load("demo") if platform.demo else None
    if base is None or spec is None:
        return None
    folder = base / spec.corpus_vendor
    for case in spec.corpus:
        paths = [folder / case.evidence, *(folder / e for e in case.endorsements)]
        if all(p.is_file() for p in paths):
            return Sample(platform.tee, "corpus", f"{spec.corpus_vendor}/{case.evidence}",
                          paths[0], tuple(paths[1:]))
    return None


def emulated_sample(platform: Platform, folder: Path) -> Sample:
    """Evidence from the platform's emulator, written by ``veritee emulate`` (another
    process, so that this one's imports stay as they were)."""
    path = folder / f"emulated-{platform.tee}.bin"
    done = subprocess.run([*command(), "emulate", platform.tee, "--out", str(path)],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
                          env=_env())
    if done.returncode != 0:
        raise CliBenchError(f"veritee emulate {platform.tee} failed: {done.stderr.strip()}")
    # `veritee emulate` writes the collateral a verifier needs beside it (FILE<suffix>).
    endorsements = tuple(sorted(p for p in folder.glob(f"{path.name}?*") if p != path))
    return Sample(platform.tee, "emulated", f"veritee emulate {platform.tee}", path,
                  endorsements=endorsements, trust_emulated=True)


def bench_platform(tee: str | None) -> Platform:
    """``tee``, else the first platform with a corpus sample present, else the first with
    an emulator.

    Raises:
        MisuseError: ``tee`` is unknown, or no platform can provide a sample.
    """
    if tee is not None:
        return get_platform(tee)
    known = list(platforms())
    with_sample = [p for p in known if corpus_sample(p) is not None]
    emulated = [p for p in known if p.emulator]
    if not (with_sample or emulated):
        raise MisuseError("no platform offers a corpus sample or an emulator")
    return (with_sample or emulated)[0]


@contextmanager
def sample_for(platform: Platform) -> Iterator[tuple[Sample, Path]]:
    """(the sample, a scratch folder for the collateral cache), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="veritee-bench-cli-") as tmp:
        folder = Path(tmp)
        sample = corpus_sample(platform) or emulated_sample(platform, folder)
        yield sample, folder / "cache"


def _env() -> dict[str, str]:
    """This environment without VERITEE_* settings (the arguments say everything)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("VERITEE_")}


def timed_run(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from start to exit of ``argv``, which must exit 0.

    Raises:
        CliBenchError: it exited with another status.
    """
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          check=False, env=env)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise CliBenchError(f"{' '.join(argv[:4])} ... exited {done.returncode}: "
                            f"{(done.stdout + done.stderr).strip()[:500]}")
    return took


def in_process_seconds(sample: Sample, cache_dir: Path, runs: int) -> list[float]:
    """Seconds of ``veritee verify``'s work in this process, per run (after a warm-up)."""
    from veritee.cli.verify import Request, run  # noqa: PLC0415 - the command's own path

    request = Request(tee=sample.tee, evidence=sample.evidence, endorsements=sample.endorsements,
                      trust_emulated=sample.trust_emulated, offline=True, cache_dir=cache_dir)
    outcome = run(request)
    if outcome.status != "verified":
        raise CliBenchError(f"the benchmark's sample {sample.name} did not verify: "
                            f"{outcome.error}")
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run(request)
        times.append(time.perf_counter() - started)
    return times


@dataclass(frozen=True)
class CliBenchmark:
    name: str = "cli"
    description: str = ("wall time of one `veritee verify` (a new process, a corpus sample, "
                        "median of 10) vs. `python -c pass` and the verification in-process")

    def planned_seconds(self, settings: Settings) -> float:
        return RUNS * 0.4

    def run(self, settings: Settings) -> BenchResult:
        platform = bench_platform(settings.tee)
        env = _env()
        with sample_for(platform) as (sample, cache_dir):
            verify_argv = [*command(), *sample.arguments(cache_dir)]
            floor_argv = [sys.executable, "-c", "pass"]
            timed_run(verify_argv, env)  # the first run fills the OS's file cache
            cli: list[float] = []
            floor: list[float] = []
            for _ in range(RUNS):
                floor.append(timed_run(floor_argv, env))
                cli.append(timed_run(verify_argv, env))
                settings.advance("veritee verify and python -c pass", floor[-1] + cli[-1])
            in_process = in_process_seconds(sample, cache_dir, RUNS)
        return _result(self.name, settings, sample, cli=cli, floor=floor,
                       in_process=in_process, env=env)


def _result(name: str, settings: Settings, sample: Sample, *, cli: list[float],
            floor: list[float], in_process: list[float], env: dict[str, str]) -> BenchResult:
    cli_s, floor_s, verify_s = (statistics.median(x) for x in (cli, floor, in_process))
    extra: dict[str, Any] = {
        "unit": "veritee verify runs/s (new process each)",
        "tee": sample.tee, "sample": sample.name, "sample_source": sample.source,
        "command": " ".join(["veritee" if len(command()) == 1 else "python -m veritee.cli.main",
                             "verify", "--tee", sample.tee, "--offline", "--json", "..."]
                            + (["--trust-emulated"] if sample.trust_emulated else [])),
        "runs": RUNS,
        "cli_ms": round(1000 * cli_s, 1),
        "cli_ms_min": round(1000 * min(cli), 1),
        "cli_ms_max": round(1000 * max(cli), 1),
        "interpreter_ms": round(1000 * floor_s, 1),
        "in_process_verify_ms": round(1000 * verify_s, 3),
        "cli_over_interpreter": round(cli_s / floor_s, 2),
        "cli_over_in_process_verify": round(cli_s / verify_s, 1),
        "bytecode_cache": "off (PYTHONDONTWRITEBYTECODE)" if env.get("PYTHONDONTWRITEBYTECODE")
        else "on",
    }
    return BenchResult(benchmark=name, ops_per_s=1 / cli_s,
                       floor=Figure("python -c pass", 1 / floor_s), peer=None, threads=1,
                       seconds=settings.seconds, extra=extra)


BENCHMARK = CliBenchmark()
