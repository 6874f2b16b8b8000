"""``veritee admin``: talk to a running broker's admin API (and mint admin tokens)."""

from __future__ import annotations

import base64
import json
import os
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from cryptography.hazmat.primitives import serialization

from veritee.broker.admin import mint_admin_token
from veritee.broker.config import default_data_dir
from veritee.cli.output import EXIT_OK, EXIT_REJECTED, EXIT_UNDECIDED, print_json, prose, stderr

HELP = """\
Administer a running broker through its admin API: secrets, policies, reference values and
the audit log. Requests carry a bearer token: --token, else VERITEE_ADMIN_TOKEN, else one
minted from the development admin key in the data directory (what `veritee serve` generates
when no admin key is configured).
"""

URL = Annotated[str, typer.Option(help="The broker's base URL.")]
TOKEN = Annotated[str | None, typer.Option(help="Admin bearer token (default: see above).")]
DATA_DIR = Annotated[Path | None, typer.Option(help="Data directory of a development broker.")]


def register(app: typer.Typer) -> None:
    group = typer.Typer(help=prose(HELP), no_args_is_help=True)
    group.command("token")(token)
    group.command("set-resource")(set_resource)
    group.command("delete-resource")(delete_resource)
    group.command("set-policy")(set_policy)
    group.command("add-reference-values")(add_reference_values)
    group.command("reference-values")(reference_values)
    group.command("audit")(audit)
    app.add_typer(group, name="admin")


def token(
    *,
    key: Annotated[Path | None, typer.Option(help="Private key (Ed25519 or P-256 PEM).")] = None,
    data_dir: DATA_DIR = None,
    role: Annotated[str, typer.Option(help="The role claim.")] = "admin",
    hours: Annotated[float, typer.Option(help="Lifetime in hours.", min=0.01)] = 1.0,
) -> None:
    """Print an admin token signed with KEY (default: the development admin key)."""
    print(_mint(key, data_dir, role, timedelta(hours=hours)))


def set_resource(*, path: Annotated[str, typer.Argument(help="repository/type/tag")],
                 file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
                 url: URL = "http://127.0.0.1:8080", token: TOKEN = None,
                 data_dir: DATA_DIR = None) -> None:
    """Store the bytes of FILE as the secret at PATH."""
    _call("POST", url, f"/kbs/v0/resource/{path}", token, data_dir, content=file.read_bytes(),
          headers={"Content-Type": "application/octet-stream"})


def delete_resource(*, path: Annotated[str, typer.Argument(help="repository/type/tag")],
                    url: URL = "http://127.0.0.1:8080", token: TOKEN = None,
                    data_dir: DATA_DIR = None) -> None:
    """Delete the secret at PATH."""
    _call("DELETE", url, f"/kbs/v0/resource/{path}", token, data_dir)


def set_policy(*, kind: Annotated[str, typer.Argument(help="attestation or resource")],
               file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
               policy_id: Annotated[str, typer.Option(
                   help="Attestation policy id (default_cpu replaces the default).")
               ] = "default_cpu",
               url: URL = "http://127.0.0.1:8080", token: TOKEN = None,
               data_dir: DATA_DIR = None) -> None:
    """Install a Rego policy (compiled by the broker first; a bad policy is refused)."""
    encoded = base64.urlsafe_b64encode(file.read_bytes()).decode().rstrip("=")
    if kind == "attestation":
        _call("POST", url, "/kbs/v0/attestation-policy", token, data_dir,
              json={"type": "rego", "policy_id": policy_id, "policy": encoded})
    elif kind == "resource":
        _call("POST", url, "/kbs/v0/resource-policy", token, data_dir, json={"policy": encoded})
    else:
        stderr.print("KIND must be 'attestation' or 'resource'")
        raise typer.Exit(2)


def add_reference_values(*, file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
                         url: URL = "http://127.0.0.1:8080", token: TOKEN = None,
                         data_dir: DATA_DIR = None) -> None:
    """Register reference values from a JSON or TOML file: {name: list of values} or
    {name: {values, expires, provenance}}, or a Trustee RVPS message."""
    text = file.read_text()
    try:
        document: Any = json.loads(text)
    except ValueError:
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            stderr.print(f"{file} is neither JSON nor TOML: {exc}")
            raise typer.Exit(2) from None
    _call("POST", url, "/kbs/v0/reference-value", token, data_dir, json=document)


def reference_values(*, url: URL = "http://127.0.0.1:8080", token: TOKEN = None,
                     data_dir: DATA_DIR = None) -> None:
    """List the reference values the broker holds."""
    _call("GET", url, "/kbs/v0/reference-value", token, data_dir)


def audit(*, url: URL = "http://127.0.0.1:8080", token: TOKEN = None, data_dir: DATA_DIR = None,
          limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
          kind: Annotated[str | None, typer.Option(
              help="attest, release, refuse or admin")] = None) -> None:
    """Print the newest audit events (who, what, verdict, failed rules)."""
    params: dict[str, Any] = {"limit": limit}
    if kind:
        params["kind"] = kind
    _call("GET", url, "/kbs/v0/audit", token, data_dir, params=params)


def _mint(key: Path | None, data_dir: Path | None, role: str, lifetime: timedelta) -> str:
    path = key or (data_dir or default_data_dir()) / "admin-key.pem"
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        stderr.print(f"cannot load the admin key {path}: {exc}")
        raise typer.Exit(2) from None
    return mint_admin_token(private, role=role, now=datetime.now(UTC), lifetime=lifetime)


def _call(method: str, url: str, path: str, token: str | None, data_dir: Path | None,
          **kwargs: Any) -> None:
    bearer = token or os.environ.get("VERITEE_ADMIN_TOKEN") or _mint(
        None, data_dir, "admin", timedelta(minutes=5))
    headers = {"Authorization": f"Bearer {bearer}", **kwargs.pop("headers", {})}
    try:
        response = httpx.request(method, url.rstrip("/") + path, headers=headers, timeout=30,
                                 **kwargs)
    except httpx.HTTPError as exc:
        stderr.print(f"cannot reach {url}: {exc}")
        raise typer.Exit(EXIT_UNDECIDED) from None
    try:
        body: Any = response.json()
    except ValueError:
        body = {"status": response.status_code, "text": response.text[:500]}
    print_json(body)
    raise typer.Exit(EXIT_OK if response.status_code == 200 else EXIT_REJECTED)
