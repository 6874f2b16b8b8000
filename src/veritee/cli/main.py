"""The ``veritee`` command: one Typer app, one module per command or command group, each
imported only when it is used.

To add a command, write ``veritee/cli/<name>.py`` with a ``register(app)`` function that adds
its command (or group) to the app, and add an :class:`Entry` to :data:`COMMANDS` with the
one-line help that ``veritee --help`` lists. Listing the commands imports none of them;
running one (or asking for its ``--help``) imports that one only, so ``veritee verify`` never
loads the web framework, the broker or the database layer.

:func:`main` is the console-script entry point. It never lets a traceback reach the user:
usage errors exit 2 with click's message, and any exception a command did not handle
becomes one line on stderr and exit status 2 (plus one JSON object on stdout under
``--json``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from veritee import __version__
from veritee.cli import output
from veritee.cli.help import Command, Group, polish
from veritee.tee import platforms


@dataclass(frozen=True)
class Entry:
    """One command of ``veritee``: where it lives and what ``veritee --help`` says of it."""

    name: str
    module: str
    help: str
    """The one line ``veritee --help`` shows (the command's own help says more)."""
    needs: str | None = None
    """A descriptor slot: the command exists only when some platform fills it."""

    def offered(self) -> bool:
        return self.needs is None or any(getattr(p, self.needs) for p in platforms())


#: The commands, in the order ``veritee --help`` lists them.
COMMANDS: tuple[Entry, ...] = (
    Entry("verify", "veritee.cli.verify",
          "Verify one piece of attestation evidence and print the verdict."),
    Entry("serve", "veritee.cli.serve",
          "Run the key broker: the Confidential Containers KBS protocol and its admin API."),
    Entry("attest", "veritee.cli.attest",
          "Attest this guest to a key broker and fetch a resource."),
    Entry("emulate", "veritee.cli.emulate",
          "Write one piece of evidence from an emulated TEE, signed by veritee's test PKI."),
    Entry("demo", "veritee.cli.demo",
          "Run the demo: a broker on loopback and emulated guests of every supported TEE."),
    Entry("bench", "veritee.cli.bench",
          "Run one benchmark and print its throughput beside its floor."),
    Entry("policy", "veritee.cli.policy",
          "Attestation policies: test them before a broker enforces them."),
    Entry("admin", "veritee.cli.admin",
          "Administer a running broker: secrets, policies, reference values, the audit log."),
    Entry("collateral", "veritee.cli.collateral",
          "The persistent collateral cache that `veritee verify` and the broker read."),
    Entry("measure", "veritee.cli.measure",
          "Compute the measurement a TEE will report, to use as a reference value.",
          needs="measure"),
    Entry("host", "veritee.cli.host",
          "Host-side helpers for guests that cannot attest themselves (launch secrets).",
          needs="host"),
)

_ENTRIES = {entry.name: entry for entry in COMMANDS}

HELP = """\
veritee — confidential-computing attestation verifier and key broker.

Verify evidence from a TEE ({platforms}) against the vendors' pinned roots of trust, run the
key broker that releases secrets to guests that pass (Confidential Containers KBS protocol),
attest as a guest, test policies, emulate TEEs for trying all of this without hardware,
measure benchmarks, and run the demo. Every reporting command accepts --json.
"""


def load(entry: Entry) -> Any:
    """The click command (or group) of ``entry``, built from its module's ``register``
    and polished as every command is; None when the module registers nothing."""
    host = typer.Typer(rich_markup_mode="rich", pretty_exceptions_enable=False,
                       add_completion=False)
    host.callback()(_root)  # a callback keeps the host a group, so the command keeps its name
    importlib.import_module(entry.module).register(host)
    polish(host)
    return typer.main.get_command(host).commands.get(entry.name)  # type: ignore[attr-defined]


class LazyGroup(Group):
    """The root group: lists :data:`COMMANDS` from the table and imports a command's module
    only when that command is resolved (help listings use the table's one-liners)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return [entry.name for entry in COMMANDS if entry.offered()]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        entry = _ENTRIES.get(cmd_name)
        if entry is None or not entry.offered():
            return None
        if self._listing:
            return Command(name=entry.name, help=entry.help)
        if cmd_name not in self.commands:
            command = load(entry)
            if command is None:
                return None
            self.commands[cmd_name] = command
        return self.commands[cmd_name]

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except Exception as exc:  # click's UsageError, matched by shape (see _is_usage_error)
            if _is_usage_error(exc) and args and "Did you mean" not in str(exc):
                _suggest(exc, args[0], self.list_commands(ctx))
            raise

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def _suggest(exc: Any, typo: str, names: list[str]) -> None:
    """Name the close matches, as Typer does for the commands it has already built."""
    from difflib import get_close_matches  # noqa: PLC0415 - only on a mistyped command

    matches = get_close_matches(typo, names)
    if matches:
        exc.message = (f"{exc.message.rstrip('.')}. Did you mean "
                       f"{', '.join(repr(m) for m in matches)}?")


def build_app() -> typer.Typer:
    """A new app whose commands are :data:`COMMANDS`, each loaded when it is used."""
    app = typer.Typer(
        name="veritee",
        help=output.prose(HELP.format(platforms=", ".join(p.title for p in platforms()))),
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    app.info.cls = LazyGroup
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
        output.stderr.print("aborted")
        return 130
    except Exception as exc:  # the edge: no traceback ever reaches the user
        if _is_usage_error(exc):
            return _usage_error(exc, args)
        output.stderr.print(f"veritee: internal error: {type(exc).__name__}: {exc}",
                            markup=False, soft_wrap=True)
        if "--json" in args:
            output.print_json(output.error_object(type(exc).__name__, str(exc), _command(args)))
        return output.EXIT_USAGE
    return result if isinstance(result, int) else 0


def _is_usage_error(exc: Exception) -> bool:
    """Click's usage errors (Typer vendors click, so match them by shape, not by class)."""
    return callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int)


def _usage_error(exc: Any, args: list[str]) -> int:
    exc.show()
    if "--json" in args:
        output.print_json(output.error_object(type(exc).__name__, exc.format_message(),
                                              _command(args)))
    code: int = exc.exit_code
    return code


def _command(args: list[str]) -> str | None:
    return next((a for a in args if not a.startswith("-")), None)


if __name__ == "__main__":
    sys.exit(main())
