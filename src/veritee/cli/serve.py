"""``veritee serve``: run the key broker (CONTRACT.md §3)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from veritee.broker.config import load_config
from veritee.cli.output import EXIT_USAGE, prose, stderr
from veritee.errors import VeriteeError

HELP = """\
Run the key broker: the Confidential Containers KBS protocol 0.4.0 under /kbs/v0 (auth,
attest, resource and the admin paths), the JWKS of its EAR tokens at
/.well-known/jwks.json, /healthz and Prometheus /metrics.

With no configuration it listens on 127.0.0.1:8080 with an SQLite file and development keys
generated in the user data directory, and says so. --config names a TOML file (every key and
its default: docs/CONFIG.md); VERITEE_<SECTION>_<KEY> environment variables override it;
the options below override both. Several --workers (processes) share state through the
store; several machines share it through PostgreSQL ([store] url).
"""

EPILOG = """\
Examples:
  veritee serve
  veritee serve --config /etc/veritee/broker.toml --workers 2
  VERITEE_STORE_URL=postgresql+psycopg://kbs@db/kbs veritee serve --host 0.0.0.0
"""


def register(app: typer.Typer) -> None:
    app.command("serve", help=prose(HELP), epilog=EPILOG)(serve)


def serve(
    *,
    config_file: Annotated[Path | None, typer.Option(
        "--config", metavar="FILE", show_default=False, help="TOML configuration file.",
        exists=True, dir_okay=False)] = None,
    host: Annotated[str | None, typer.Option(
        "--host", metavar="HOST", show_default=False,
        help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(
        "--port", metavar="PORT", show_default=False, min=0, max=65535,
        help="TCP port (default 8080; 0 picks a free one).")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", metavar="N", show_default=False, min=1,
        help="Worker processes (default 1; use the number of cores).")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", metavar="DIR", show_default=False,
        help="Where development keys and the SQLite file live (default: the user data "
             "directory).")] = None,
    trust_emulated: Annotated[bool, typer.Option(
        "--trust-emulated", help="Trust emulated TEE roots (demos and tests only).")] = False,
    offline: Annotated[bool, typer.Option(
        "--offline", help="Never reach vendor services (AMD KDS, ...).")] = False,
) -> None:
    from veritee.server.run import run  # noqa: PLC0415 - the server stack loads only here

    try:
        _serve(run, config_file, host=host, port=port, workers=workers, data_dir=data_dir,
               trust_emulated=trust_emulated, offline=offline)
    except VeriteeError as exc:  # a configuration the broker cannot start with
        stderr.print(f"veritee serve: {exc.detail}", markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None


def _serve(run: Callable[..., None], config_file: Path | None, *, host: str | None,
           port: int | None, workers: int | None, data_dir: Path | None, trust_emulated: bool,
           offline: bool) -> None:
    config = load_config(config_file)
    server = replace(config.server, host=host or config.server.host,
                     port=config.server.port if port is None else port,
                     workers=workers or config.server.workers)
    verification = replace(config.verification,
                           trust_emulated=trust_emulated or config.verification.trust_emulated,
                           offline=offline or config.verification.offline)
    config = replace(config, server=server, verification=verification,
                     data_dir=str(data_dir) if data_dir else config.data_dir)
    run(config, config_file, notice=lambda line: stderr.print(line, markup=False, soft_wrap=True))
