"""``veritee bench``: run one benchmark and print its figures (CONTRACT.md §4)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from veritee import bench
from veritee.bench.core import BenchResult, Settings
from veritee.cli.output import EXIT_USAGE, error_object, escape, print_json, prose, stderr, stdout
from veritee.errors import MisuseError

HELP = """\
Run one benchmark and print its throughput beside its floor.

The floor is the cryptographic or hashing work the operation cannot avoid, measured in the
same run with the same threads and seconds (the two are interleaved in short rounds), so
ratio_to_floor is meaningful on a busy machine. With --threads N greater than 1 the
one-thread figures are measured too, and scaling is ops/s at N threads over ops/s at one;
floor_scaling, the same for the floor, shows whether N cores were really free (well below N:
other processes shared the CPUs, and the scaling figure says little).

With --json, stdout holds one JSON object: benchmark, ops_per_s, floor, ratio_to_floor, peer,
ratio_to_peer, threads, seconds, and extra figures such as single_thread_ops_per_s and
scaling. Use --list to see the benchmarks.
"""

EPILOG = """\
Examples:
  veritee bench --list
  veritee bench NAME --seconds 5 --threads 2 --json
  veritee bench broker --tee TEE --seconds 5
  veritee bench cli
  veritee bench scale --seconds 5 --json
"""


def register(app: typer.Typer) -> None:
    app.command("bench", help=prose(HELP), epilog=EPILOG, no_args_is_help=True)(bench_command)


def bench_command(
    name: Annotated[str | None, typer.Argument(
        metavar="NAME", show_default=False, help="The benchmark to run (see --list).")] = None,
    *,
    seconds: Annotated[float, typer.Option(
        "--seconds", min=0.01, metavar="S",
        help="Measuring time per operation and thread count.")] = 5.0,
    threads: Annotated[int, typer.Option(
        "--threads", min=1, max=256, metavar="N", help="Threads running the loop.")] = 1,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object on stdout.")] = False,
    list_only: Annotated[bool, typer.Option(
        "--list", help="Name the benchmarks and exit.")] = False,
    tee: Annotated[str | None, typer.Option(
        "--tee", metavar="TEE", show_default=False,
        help="For benchmarks that can drive several platforms (broker): which one. Default: "
             "the first that offers guests.")] = None,
) -> None:
    if list_only:
        _list(json_output)
        return
    settings = Settings(seconds=seconds, threads=threads, tee=tee)
    try:
        benchmark = bench.get(name or "")
        result = (benchmark.run(settings) if json_output
                  else _run_with_progress(benchmark, settings))
    except MisuseError as exc:
        stderr.print(f"veritee bench: {exc.detail}", markup=False, soft_wrap=True)
        if json_output:
            print_json(error_object(type(exc).__name__, exc.detail))
        raise typer.Exit(EXIT_USAGE) from None
    if json_output:
        print_json(result.to_dict())
    else:
        stdout.print(result_table(result))


def _list(json_output: bool) -> None:
    entries = [(n, bench.get(n).description) for n in bench.names()]
    if json_output:
        print_json({"benchmarks": [{"name": n, "description": d} for n, d in entries]})
        return
    for name, description in entries:
        stdout.print(f"[bold]{name}[/]  {description}")


def _run_with_progress(benchmark: bench.Benchmark, settings: Settings) -> BenchResult:
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task(benchmark.name, total=benchmark.planned_seconds(settings))

        def advance(label: str, took: float) -> None:
            progress.update(task, advance=took, description=f"{benchmark.name}: {label}")

        return benchmark.run(Settings(settings.seconds, settings.threads, advance, settings.tee))


#: Labels of the extra figures benchmarks report (others show their key).
_LABELS = {
    "single_thread_ops_per_s": "ops/s (1 thread)",
    "single_thread_floor_ops_per_s": "floor ops/s (1 thread)",
    "single_thread_ratio_to_floor": "ratio to floor (1 thread)",
    "scaling": "scaling (N threads / 1 thread)",
    "floor_scaling": "floor scaling (N threads / 1 thread)",
}


def _shown(value: object) -> str:
    """An extra figure as table text (rich markup: brackets in values stay text)."""
    if isinstance(value, float):
        return f"{value:,}"
    if isinstance(value, dict):
        if not value:
            return "none"
        if {"title", "broker_cpu_ms_per_flow", "ratio"} <= set(value):
            return _case(value)
        return " · ".join(f"{escape(k.replace('_', ' '))} {_shown(v)}" for k, v in value.items())
    return escape(str(value))


def _case(case: dict[str, Any]) -> str:
    """One measured case of a benchmark that compares cases (``bench scale``), in one line."""
    failed = case.get("failed_flows", 0)
    non_2xx = case.get("non_2xx") or {}
    line = (f"{case['title']}: {case['broker_cpu_ms_per_flow']} ms broker CPU/flow, ratio "
            f"{case['ratio']}, {case['flows_per_s']} flows/s, p99 {case['p99_ms']} ms, "
            f"{failed} failed, non-2xx "
            + (", ".join(f"{k}: {v}" for k, v in non_2xx.items()) or "none"))
    if "expired_sessions_at_start" in case:
        line += (f", expired sessions {case['expired_sessions_at_start']:,} → "
                 f"{case['expired_sessions_at_end']:,} while measured")
    return escape(line)


def result_table(result: BenchResult) -> Table:
    table = Table(title=f"veritee bench {result.benchmark}", header_style="bold")
    table.add_column("figure", style="cyan")
    table.add_column("value", justify="right")
    plural = "s" if result.threads > 1 else ""
    unit = result.extra.get("unit")
    label = str(unit) if unit else f"ops/s ({result.threads} thread{plural})"
    table.add_row(label, f"{result.ops_per_s:,.1f}")
    if result.floor is not None:
        table.add_row(f"floor: {result.floor.name}", f"{result.floor.ops_per_s:,.1f}")
        table.add_row("ratio to floor", f"{result.ratio_to_floor:.3f}")
    peer = result.peer
    table.add_row("peer", f"{peer.name}: {peer.ops_per_s:,.1f}" if peer else "none")
    for key, value in result.extra.items():
        if key == "unit" or (result.threads == 1 and key in _LABELS):
            continue  # the one-thread figures repeat the main ones
        table.add_row(_LABELS.get(key, key.replace("_", " ")), _shown(value))
    table.add_row("seconds per measurement", f"{result.seconds:g}")
    floor_scaling = result.extra.get("floor_scaling")
    if isinstance(floor_scaling, float) and floor_scaling < 0.9 * result.threads:
        table.caption = (f"the floor scaled only {floor_scaling:.2f}× on {result.threads} "
                         "threads: the CPUs were shared, scaling figures are unreliable")
    return table
