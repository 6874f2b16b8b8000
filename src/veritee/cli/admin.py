"""``veritee admin``: talk to a running broker's admin API (and mint admin tokens)."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from veritee.broker.config import default_data_dir, read_endpoint
from veritee.cli.output import ExitCode, print_json, prose, stderr, stdout
from veritee.encoding import b64url
from veritee.errors import MisuseError

HELP = """\
Administer a running broker through its admin API: secrets, policies, reference values and
the audit log.

The broker is found at --url, else VERITEE_URL, else where a `veritee serve` using the same
data directory (--data-dir, VERITEE_DATA_DIR, or the user data directory) says it listens,
else http://127.0.0.1:8080. Requests carry a bearer token: --token, else VERITEE_ADMIN_TOKEN,
else one minted from the development admin key in that data directory (what `veritee serve`
generates when no admin key is configured).

Every command prints a short human answer, or with --json the broker's JSON answer. Exit
status: 0 done; 1 the broker refused (its reason is printed); 3 the broker could not be
reached; 2 bad usage.

Listings (reference-values, audit) come a page at a time: --limit N per page; when there is
more, the cursor of the next page is printed on stderr, to pass as --cursor; --all follows
the cursors to the end.
"""

DEFAULT_URL = "http://127.0.0.1:8080"

URL = Annotated[str | None, typer.Option(
    "--url", metavar="URL", envvar="VERITEE_URL", show_default=False,
    help="The broker's base URL (default: see `veritee admin --help`).")]
TOKEN = Annotated[str | None, typer.Option(
    "--token", metavar="JWT", envvar="VERITEE_ADMIN_TOKEN", show_default=False,
    help="Admin bearer token (default: minted from the data directory's admin key).")]
DATA_DIR = Annotated[Path | None, typer.Option(
    "--data-dir", metavar="DIR", envvar="VERITEE_DATA_DIR", show_default=False,
    help="Data directory of a development broker (its admin key and address).")]
JSON = Annotated[bool, typer.Option("--json", help="Print the broker's JSON answer.")]
PATH = Annotated[str, typer.Argument(metavar="PATH", show_default=False,
                                     help="Resource path: repository/type/tag.")]
FILE = Annotated[Path, typer.Argument(metavar="FILE", show_default=False, help="The file.")]
CURSOR = Annotated[str | None, typer.Option(
    "--cursor", metavar="CURSOR", show_default=False,
    help="Start at this page: the cursor printed after the previous one.")]
ALL = Annotated[bool, typer.Option("--all", help="Follow the cursors: every page.")]


@dataclass(frozen=True)
class Target:
    """Where and as whom the admin requests go."""

    url: str | None
    token: str | None
    data_dir: Path | None
    json_output: bool

    @property
    def data(self) -> Path:
        return self.data_dir or default_data_dir()

    def base_url(self) -> str:
        if self.url:
            return self.url.rstrip("/")
        return (read_endpoint(self.data) or DEFAULT_URL).rstrip("/")

    def bearer(self) -> str:
        return self.token or _mint(None, self.data, "admin", timedelta(minutes=5))


def register(app: typer.Typer) -> None:
    group = typer.Typer(help=prose(HELP), no_args_is_help=True)
    for name, command in (("token", token), ("set-resource", set_resource),
                          ("delete-resource", delete_resource), ("set-policy", set_policy),
                          ("add-reference-values", add_reference_values),
                          ("reference-values", reference_values), ("audit", audit)):
        group.command(name, help=prose(command.__doc__ or ""))(command)
    app.add_typer(group, name="admin")


def token(
    *,
    key: Annotated[Path | None, typer.Option(
        "--key", metavar="PEM", show_default=False,
        help="Private key (Ed25519 or P-256 PEM). Default: the data directory's "
             "admin-key.pem.")] = None,
    data_dir: DATA_DIR = None,
    role: Annotated[str, typer.Option("--role", metavar="ROLE",
                                      help="The role claim.")] = "admin",
    hours: Annotated[float, typer.Option("--hours", metavar="H", min=0.01,
                                         help="Lifetime in hours.")] = 1.0,
) -> None:
    """Print an admin token signed with KEY (default: the development admin key)."""
    print(_mint(key, data_dir or default_data_dir(), role, timedelta(hours=hours)))


def set_resource(*, path: PATH, file: FILE, url: URL = None, token: TOKEN = None,
                 data_dir: DATA_DIR = None, json_output: JSON = False) -> None:
    """Store the bytes of FILE as the secret at PATH."""
    target = Target(url, token, data_dir, json_output)
    body = _call(target, "POST", f"/kbs/v0/resource/{path}", content=_read(file, "secret"),
                 headers={"Content-Type": "application/octet-stream"})
    _done(target, body, f"stored {path} (version {body.get('version')})")


def delete_resource(*, path: PATH, url: URL = None, token: TOKEN = None,
                    data_dir: DATA_DIR = None, json_output: JSON = False) -> None:
    """Delete the secret at PATH."""
    target = Target(url, token, data_dir, json_output)
    body = _call(target, "DELETE", f"/kbs/v0/resource/{path}")
    _done(target, body, f"deleted {path}")


def set_policy(*, kind: Annotated[str, typer.Argument(
                   metavar="KIND", show_default=False, help="attestation or resource")],
               file: FILE,
               policy_id: Annotated[str, typer.Option(
                   "--policy-id", metavar="ID",
                   help="Attestation policy id: default_cpu applies to every CPU TEE, "
                        "default_<tee> to one TEE.")] = "default_cpu",
               url: URL = None, token: TOKEN = None, data_dir: DATA_DIR = None,
               json_output: JSON = False) -> None:
    """Install a Rego policy from FILE (compiled by the broker first; a bad policy is
    refused)."""
    target = Target(url, token, data_dir, json_output)
    encoded = b64url(_text(file, "policy").encode())
    if kind == "attestation":
        body = _call(target, "POST", "/kbs/v0/attestation-policy",
                     json={"type": "rego", "policy_id": policy_id, "policy": encoded})
        _done(target, body, f"attestation policy {policy_id} is version {body.get('version')}")
    elif kind == "resource":
        body = _call(target, "POST", "/kbs/v0/resource-policy", json={"policy": encoded})
        _done(target, body, f"resource policy is version {body.get('version')}")
    else:
        _usage(target, "KIND must be 'attestation' or 'resource'")


def add_reference_values(*, file: FILE, url: URL = None, token: TOKEN = None,
                         data_dir: DATA_DIR = None, json_output: JSON = False) -> None:
    """Register reference values from a JSON or TOML FILE: {name: list of values} or
    {name: {values, expires, provenance}}, or a Trustee RVPS message."""
    target = Target(url, token, data_dir, json_output)
    text = _text(file, "reference-value")
    try:
        document: Any = json.loads(text)
    except ValueError:
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            _usage(target, f"{file} is neither JSON nor TOML: {exc}")
    body = _call(target, "POST", "/kbs/v0/reference-value", json=document)
    _done(target, body, f"registered {', '.join(map(str, body.get('registered', [])))}")


def reference_values(*, url: URL = None, token: TOKEN = None, data_dir: DATA_DIR = None,
                     limit: Annotated[int, typer.Option("--limit", metavar="N", min=1, max=1000,
                                                        help="Names per page.")] = 100,
                     cursor: CURSOR = None, every: ALL = False,
                     json_output: JSON = False) -> None:
    """List the reference values the broker holds (live ones, by name)."""
    target = Target(url, token, data_dir, json_output)
    records = _pages(target, "/kbs/v0/reference-value", {"limit": limit}, cursor, every)
    if json_output:
        print_json(records)
        return
    table = Table(title="reference values", header_style="bold")
    for column in ("name", "values", "version", "expires", "provenance"):
        table.add_column(column, overflow="fold")
    for record in records:
        table.add_row(*(escape(_cell(record.get(c))) for c in
                        ("name", "values", "version", "expires", "provenance")))
    stdout.print(table)


def audit(*, url: URL = None, token: TOKEN = None, data_dir: DATA_DIR = None,
          limit: Annotated[int, typer.Option("--limit", metavar="N", min=1, max=1000,
                                             help="Events per page, newest first.")] = 50,
          kind: Annotated[str | None, typer.Option(
              "--kind", metavar="KIND", show_default=False,
              help="Only events of this kind: attest, release, refuse or admin.")] = None,
          since: Annotated[str | None, typer.Option(
              "--since", metavar="TIME", show_default=False,
              help="Only events at or after TIME (ISO-8601 with a timezone, e.g. "
                   "2026-05-01T00:00:00Z).")] = None,
          until: Annotated[str | None, typer.Option(
              "--until", metavar="TIME", show_default=False,
              help="Only events before TIME (ISO-8601 with a timezone).")] = None,
          cursor: CURSOR = None, every: ALL = False, json_output: JSON = False) -> None:
    """Print the newest audit events (who, what, verdict, failed rules)."""
    target = Target(url, token, data_dir, json_output)
    params: dict[str, Any] = {"limit": limit, "kind": kind, "since": since, "until": until}
    events = _pages(target, "/kbs/v0/audit",
                    {k: v for k, v in params.items() if v is not None}, cursor, every)
    if json_output:
        print_json(events)
        return
    table = Table(title="audit log (newest first)", header_style="bold")
    for column in ("at (UTC)", "kind", "tee", "subject", "resource", "verdict", "failed rules"):
        table.add_column(column, overflow="fold", no_wrap=column == "at (UTC)")
    for event in events:
        at = str(event.get("at") or "")[:19].replace("T", " ")
        table.add_row(escape(at), *(escape(_cell(event.get(c))) for c in
                                    ("kind", "tee", "subject", "resource", "verdict",
                                     "failed_rules")))
    stdout.print(table)


# -- doing it ------------------------------------------------------------------------------------


def _mint(key: Path | None, data_dir: Path, role: str, lifetime: timedelta) -> str:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    from veritee.broker.admin import mint_admin_token  # noqa: PLC0415

    path = key or data_dir / "admin-key.pem"
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        stderr.print(f"cannot load the admin key {path}: {getattr(exc, 'strerror', None) or exc}"
                     " (give --token, or --data-dir of the broker)", markup=False,
                     soft_wrap=True)
        raise typer.Exit(ExitCode.USAGE) from exc
    try:
        return mint_admin_token(private, role=role, now=datetime.now(UTC), lifetime=lifetime)
    except MisuseError as exc:
        stderr.print(f"cannot sign with {path}: {exc.detail}", markup=False)
        raise typer.Exit(ExitCode.USAGE) from exc


def _pages(target: Target, path: str, params: dict[str, Any], cursor: str | None,
           every: bool) -> list[Any]:
    """The items of one page of a listing (from ``cursor``), or with ``every`` of all pages
    from there. The cursor of a page not fetched is printed on stderr."""
    items: list[Any] = []
    seen: set[str] = set()
    while True:
        body, headers = _exchange(target, "GET", path,
                                  params={**params, **({"cursor": cursor} if cursor else {})})
        items.extend(body if isinstance(body, list) else [])
        cursor = headers.get("x-next-cursor")
        if not cursor or cursor in seen:
            return items
        if not every:
            stderr.print(f"more: --cursor {cursor} (or --all)", markup=False, soft_wrap=True)
            return items
        seen.add(cursor)


def _call(target: Target, method: str, path: str, **kwargs: Any) -> Any:
    """The broker's JSON answer; exits 1 on a refusal and 3 when it cannot be reached."""
    return _exchange(target, method, path, **kwargs)[0]


def _exchange(target: Target, method: str, path: str, **kwargs: Any) -> tuple[Any, Any]:
    """The broker's JSON answer and the response headers (as :func:`_call`)."""
    import httpx  # noqa: PLC0415 - HTTP loads only for commands that need it

    url = target.base_url()
    headers = {"Authorization": f"Bearer {target.bearer()}", **kwargs.pop("headers", {})}
    try:
        response = httpx.request(method, url + path, headers=headers, timeout=30, **kwargs)
    except httpx.HTTPError as exc:
        _fail(target, ExitCode.UNDECIDED, f"cannot reach the broker at {url}: {exc}",
              {"type": "BrokerUnreachable", "detail": str(exc)})
    try:
        body: Any = response.json()
    except ValueError:
        body = {"status": response.status_code, "detail": response.text[:500]}
    if response.status_code != 200:
        detail = body.get("detail") if isinstance(body, dict) else None
        variant = str(body.get("type", "")).rsplit("/", 1)[-1] if isinstance(body, dict) else ""
        _fail(target, ExitCode.REJECTED,
              f"the broker refused {method} {path}: HTTP {response.status_code} "
              f"{variant}: {detail or body}", body)
    return body, response.headers


def _done(target: Target, body: Any, line: str) -> None:
    if target.json_output:
        print_json(body)
    else:
        stdout.print(line, markup=False, soft_wrap=True)
    raise typer.Exit(ExitCode.OK)


def _fail(target: Target, code: int, line: str, body: Any) -> None:
    stderr.print(line, markup=False, soft_wrap=True)
    if target.json_output:
        print_json({"status": "error", "error": body})
    raise typer.Exit(code)


def _usage(target: Target, line: str) -> None:
    _fail(target, ExitCode.USAGE, line, {"type": "UsageError", "detail": line})


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        stderr.print(f"cannot read {what} file {path}: {exc.strerror or exc}", markup=False)
        raise typer.Exit(ExitCode.USAGE) from exc


def _text(path: Path, what: str) -> str:
    """A UTF-8 file the user named; exits 2 naming it when unreadable, not UTF-8 or empty."""
    from veritee.cli.policy import read_text  # noqa: PLC0415

    try:
        return read_text(path, what)
    except MisuseError as exc:
        stderr.print(exc.detail, markup=False, soft_wrap=True)
        raise typer.Exit(ExitCode.USAGE) from exc


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


__all__ = ["register"]
