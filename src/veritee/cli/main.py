"""The ``veritee`` command: one Typer app, one module per command group.

To add a command, write ``veritee/cli/<name>.py`` with a ``register(app)`` function that adds
its command(s) to the app, and list the module in :data:`COMMANDS`. Nothing else is needed.

:func:`main` is the console-script entry point. It never lets a traceback reach the user:
usage errors exit 2 with click's message, and any exception a command did not handle
becomes one line on stderr and exit status 2 (plus one JSON object on stdout under
``--json``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from veritee import __version__
from veritee.cli.help import polish
from veritee.cli.output import EXIT_USAGE, error_object, print_json, prose, stderr
from veritee.tee import platforms

#: Command modules, in the order ``veritee --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "veritee.cli.verify",
    "veritee.cli.serve",
    "veritee.cli.attest",
    "veritee.cli.policy",
    "veritee.cli.admin",
    "veritee.cli.collateral",
    "veritee.cli.emulate",
    "veritee.cli.measure",
    "veritee.cli.demo",
    "veritee.cli.bench",
)

HELP = """\
veritee — confidential-computing attestation verifier and key broker.

Verify evidence from a TEE ({platforms}) against the vendors' pinned roots of trust, run the
key broker that releases secrets to guests that pass (Confidential Containers KBS protocol),
attest as a guest, test policies, emulate TEEs for trying all of this without hardware,
measure benchmarks, and run the demo. Every reporting command accepts --json.
"""


def build_app() -> typer.Typer:
    """A new app with every command module of :data:`COMMANDS` registered."""
    app = typer.Typer(
        name="veritee",
        help=prose(HELP.format(platforms=", ".join(p.title for p in platforms()))),
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    for module in COMMANDS:
        importlib.import_module(module).register(app)
    polish(app)
    return app


def _print_version(value: bool) -> None:
    if value:
        print(f"veritee {__version__}")
        raise typer.Exit(0)


def _root(
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version,
        help="Print veritee's version and exit.")] = False,
) -> None:
    """The options before any command (Typer also needs a callback to stay a group)."""


app = build_app()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = app(args=args, prog_name="veritee", standalone_mode=False)
    except typer.Abort:
        stderr.print("aborted")
        return 130
    except Exception as exc:  # the edge: no traceback ever reaches the user
        if _is_usage_error(exc):
            return _usage_error(exc, args)
        stderr.print(f"veritee: internal error: {type(exc).__name__}: {exc}", markup=False,
                     soft_wrap=True)
        if "--json" in args:
            print_json(error_object(type(exc).__name__, str(exc), _command(args)))
        return EXIT_USAGE
    return result if isinstance(result, int) else 0


def _is_usage_error(exc: Exception) -> bool:
    """Click's usage errors (Typer vendors click, so match them by shape, not by class)."""
    return callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int)


def _usage_error(exc: Any, args: list[str]) -> int:
    exc.show()
    if "--json" in args:
        print_json(error_object(type(exc).__name__, exc.format_message(), _command(args)))
    code: int = exc.exit_code
    return code


def _command(args: list[str]) -> str | None:
    return next((a for a in args if not a.startswith("-")), None)


if __name__ == "__main__":
    sys.exit(main())
