"""``veritee host sev-session`` and ``veritee host sev-launch``: the host's side of a SEV or
SEV-ES launch (the descriptor's ``host``).

A SEV or SEV-ES guest cannot attest itself; the machine that runs QEMU does it for the
guest, before it runs, with the broker's two host-side routes (``veritee.tee.snp.sev_broker``):

1. ``sev-session``: ``POST /sev/v0/session`` with the platform's certificate chain; the
   broker's GODH certificate and session blob become the files QEMU's ``sev-guest`` object
   reads (``dh-cert-file``, ``session-file``), and ``launch.json`` keeps the launch id.
2. ``sev-launch``: once QEMU (started paused, ``-S``) has loaded the firmware, read
   ``query-sev`` and ``query-sev-launch-measure`` over QMP, ``POST /sev/v0/secret`` with the
   measurement, inject the LAUNCH_SECRET packet the broker answers
   (``sev-inject-launch-secret``) and resume the guest (``cont``).

Exit statuses: 0 done; 1 refused by the broker (its detail is printed); 2 bad usage (or a
request the broker calls malformed); 3 the broker or QEMU could not be reached, or answered
something unusable. 503 answers and connection failures are retried with backoff until
``--deadline``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, NoReturn

import typer

from veritee.attester.errors import CollectorError
from veritee.cli.output import ExitCode, print_json, prose, stderr, stdout
from veritee.errors import MisuseError, UndecidedError, VeriteeError

if TYPE_CHECKING:
    import httpx

    from veritee.tee.snp.qmp import SevCapabilities, SevInfo

TEES: Final = ("sev", "sev-es")
#: SEV guest policy bit 2: the guest must run as SEV-ES (SEV API, Table 2 "Guest policy").
POLICY_ES: Final = 0x4
GODH_SIZE: Final = 0x824
SESSION_SIZE: Final = 128
PACKET_HEADER_SIZE: Final = 52
#: Certificate files and broker answers larger than these are refused unread.
MAX_FILE: Final = 64 * 1024
MAX_ANSWER: Final = 1 << 20
FIRST_DELAY: Final = 0.25
MAX_DELAY: Final = 5.0
_POLICY_TEXT: Final = re.compile(r"(0[xX])?[0-9a-fA-F]{1,8}")
_RESOURCE: Final = re.compile(r"[^/\s]+/[^/\s]+/[^/\s]+")
_DIGEST: Final = re.compile(r"[0-9a-fA-F]{64}")

FLOW = """\
A SEV or SEV-ES guest cannot attest itself: its host does, before it runs. (1) `veritee host
sev-session` sends the platform's certificate chain (from `sevctl export --full`, from a
QEMU started for it with --qmp, or as the PDH and PEK ‖ OCA ‖ CEK files) to the broker's
POST /sev/v0/session and writes the broker's GODH certificate and session blob as QEMU wants
them (godh.b64, session.b64) and the launch id (launch.json), then prints the QEMU
arguments. (2) Start QEMU with those arguments, paused (-S), with a QMP socket. (3) `veritee
host sev-launch` reads the launch measurement over QMP, relays it to POST /sev/v0/secret with
the platform's API version, build and policy, injects the LAUNCH_SECRET packet the broker
answers (sev-inject-launch-secret) and resumes the guest (cont). In the guest, each secret
is the file /sys/kernel/security/secrets/coco/<GUID> (`veritee attest --tee sev` reads it).

Exit status: 0 done; 1 refused by the broker (its reason is printed); 2 bad usage; 3 the
broker or QEMU could not be reached, or answered something unusable. Connection failures
and 503 answers are retried with backoff until --deadline.
"""

HELP = "SEV and SEV-ES launches: a launch session, then the launch secret.\n\n" + FLOW

SESSION_HELP = """\
Ask the broker for a launch session for this platform and write the files QEMU's sev-guest
object takes: DIR/godh.b64 (dh-cert-file), DIR/session.b64 (session-file) and
DIR/launch.json (the launch id, for sev-launch). Give the platform's certificates one way:
--chain, --qmp, or --pdh with --cert-chain.

""" + FLOW

LAUNCH_HELP = """\
Relay the launch measurement of a paused SEV or SEV-ES guest to the broker, inject the
secret it releases and resume the guest. Prints the GUID of each injected entry beside its
resource.

""" + FLOW

EPILOG = """\
Example:
  sevctl export --full chain.bin
  veritee host sev-session --url https://kbs.example --tee sev-es \\
      --policy 0x5 --chain chain.bin --out launch/
  qemu-system-x86_64 ... -S -qmp unix:qmp.sock,server=on,wait=off \\
      -machine confidential-guest-support=sev0 \\
      -object sev-guest,id=sev0,policy=0x5,cbitpos=51,\\
reduced-phys-bits=1,dh-cert-file=launch/godh.b64,\\
session-file=launch/session.b64
  veritee host sev-launch --url https://kbs.example --qmp qmp.sock \\
      --launch launch/launch.json --resource default/luks/root
"""

APP = typer.Typer(help=prose(HELP), no_args_is_help=True)


# -- errors ----------------------------------------------------------------------------------------


class BrokerRefusedError(VeriteeError):
    """The broker answered a problem (RFC 9457); ``http_status`` and ``problem`` hold it."""

    def __init__(self, detail: str, *, http_status: int,
                 problem: Mapping[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.http_status = http_status
        self.problem = dict(problem or {})


class BrokerUnavailableError(UndecidedError):
    """The broker could not be reached (or kept answering 503) until the deadline."""


class BrokerReplyError(UndecidedError):
    """The broker answered 200 with something that is not this API's answer."""


# -- the broker's host-side API -----------------------------------------------------------------


@dataclass(frozen=True)
class LaunchSession:
    """The answer of ``POST /sev/v0/session``."""

    launch_id: str
    tee: str
    policy: int
    expires_at: str
    godh_cert: bytes
    session: bytes

    def record(self) -> dict[str, Any]:
        """What ``launch.json`` holds."""
        return {"launch-id": self.launch_id, "tee": self.tee, "policy": self.policy,
                "expires-at": self.expires_at}


@dataclass(frozen=True)
class LaunchSecret:
    """The answer of ``POST /sev/v0/secret``: the LAUNCH_SECRET packet and its entries."""

    header: bytes
    secret: bytes
    entries: tuple[tuple[str, uuid.UUID], ...]


@dataclass
class SevBroker:
    """A client of the broker's ``/sev/v0`` routes, retrying connection failures and 503
    answers with exponential backoff for at most ``deadline`` seconds."""

    url: str
    deadline: float = 60.0
    timeout: float = 30.0
    http: httpx.Client | None = None
    sleep: Callable[[float], None] = field(default=time.sleep)

    def session(self, tee: str, policy: int, platform: Mapping[str, str]) -> LaunchSession:
        """``POST /sev/v0/session``.

        Raises:
            BrokerRefusedError: a problem answer (``http_status`` says which).
            BrokerUnavailableError: unreachable, or 503 until the deadline.
            BrokerReplyError: the answer is not a launch session.
        """
        answer = self._post("/sev/v0/session",
                            {"tee": tee, "policy": policy, "platform": dict(platform)},
                            resend=True)
        session = LaunchSession(
            launch_id=_text(answer, "launch-id"), tee=tee, policy=_u32(answer, "policy"),
            expires_at=_instant(answer, "expires-at"),
            godh_cert=_bytes(answer, "godh-cert", GODH_SIZE),
            session=_bytes(answer, "session", SESSION_SIZE))
        if session.policy != policy:
            raise BrokerReplyError(f"the broker's session is for policy {session.policy:#x}, "
                                   f"not the {policy:#x} asked for")
        return session

    def secret(self, request: Mapping[str, Any]) -> LaunchSecret:
        """``POST /sev/v0/secret``. A request that may have reached the broker is not sent
        again (a launch id is appraised once). Raises what :meth:`session` raises."""
        answer = self._post("/sev/v0/secret", dict(request), resend=False)
        entries = answer.get("entries")
        if not isinstance(entries, list):
            raise BrokerReplyError("the broker's secret has no entries list")
        secret = LaunchSecret(_bytes(answer, "packet-header", PACKET_HEADER_SIZE),
                              _bytes(answer, "secret", None),
                              tuple(_entry(item) for item in entries))
        asked = sorted(map(str, request.get("resources", [])))
        if sorted(path for path, _ in secret.entries) != asked:
            raise BrokerReplyError(f"the broker's secret holds {[p for p, _ in secret.entries]}, "
                                   f"not the resources asked for ({asked})")
        return secret

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None

    def _client(self) -> httpx.Client:
        import httpx  # noqa: PLC0415 - HTTP loads when a command asks the broker

        if self.http is None:
            self.http = httpx.Client(base_url=self.url.rstrip("/"), timeout=self.timeout)
        return self.http

    def _post(self, path: str, body: dict[str, Any], *, resend: bool) -> dict[str, Any]:
        import httpx  # noqa: PLC0415

        give_up = time.monotonic() + self.deadline
        delay, attempts = FIRST_DELAY, 0
        while True:
            attempts += 1
            left = max(give_up - time.monotonic(), 0.1)
            try:
                response = self._client().post(path, json=body, timeout=min(self.timeout, left))
            except httpx.TransportError as exc:
                if not resend and not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                    raise BrokerUnavailableError(
                        f"POST {self.url}{path}: {exc or type(exc).__name__}; the request may "
                        "have reached the broker, so it is not sent again: start over with "
                        "`veritee host sev-session`") from exc
                why, wait = f"{exc or type(exc).__name__}", delay
            else:
                if response.status_code != 503:
                    return _answer(response, path)
                why, wait = f"503 {_problem(response).get('detail', '')}", max(
                    delay, _retry_after(response))
            wait = min(wait, MAX_DELAY)
            if time.monotonic() + wait > give_up:
                raise BrokerUnavailableError(
                    f"POST {self.url}{path}: {why} (gave up after {attempts} attempts in "
                    f"{self.deadline:g} s; is the broker running at {self.url}?)")
            self.sleep(wait)
            delay *= 2


def _answer(response: httpx.Response, path: str) -> dict[str, Any]:
    if response.status_code != 200:
        problem = _problem(response)
        title = str(problem.get("title") or problem.get("type") or "")
        raise BrokerRefusedError(
            f"POST {path}: {response.status_code} {title}: {problem.get('detail', '')}",
            http_status=response.status_code, problem=problem)
    document = _json(response)
    if not isinstance(document, dict):
        raise BrokerReplyError(f"POST {path} answered 200 without a JSON object")
    return document


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        problem = _json(response)
    except BrokerReplyError:
        problem = None
    if not isinstance(problem, dict):
        return {"detail": _clean(response.text[:200])}
    return {k: _clean(v) if isinstance(v, str) else v for k, v in problem.items()
            if k in ("type", "title", "status", "detail")}


def _json(response: httpx.Response) -> Any:
    if len(response.content) > MAX_ANSWER:
        raise BrokerReplyError(f"the broker's answer is over {MAX_ANSWER} bytes")
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError) as exc:
        raise BrokerReplyError(f"the broker's answer is not JSON: {exc}") from exc


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else 0.0


# -- fields of the answers ------------------------------------------------------------------------


def _text(answer: Mapping[str, Any], name: str) -> str:
    value = answer.get(name)
    if not isinstance(value, str) or not value or len(value) > 4096 or not value.isprintable():
        raise BrokerReplyError(f"the broker's {name} is {_show(value)}, not a text")
    return value


def _u32(answer: Mapping[str, Any], name: str) -> int:
    value = answer.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
        raise BrokerReplyError(f"the broker's {name} is {_show(value)}, not a u32")
    return value


def _instant(answer: Mapping[str, Any], name: str) -> str:
    text = _text(answer, name)
    try:
        datetime.fromisoformat(text)
    except ValueError as exc:
        raise BrokerReplyError(f"the broker's {name} is {_show(text)}, not an RFC 3339 "
                               "instant") from exc
    return text


def _bytes(answer: Mapping[str, Any], name: str, size: int | None) -> bytes:
    value = answer.get(name)
    if not isinstance(value, str):
        raise BrokerReplyError(f"the broker's {name} is {_show(value)}, not base64 text")
    try:
        data = base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise BrokerReplyError(f"the broker's {name} is not base64") from exc
    if not data or (size is not None and len(data) != size):
        want = f"{size} bytes" if size is not None else "some bytes"
        raise BrokerReplyError(f"the broker's {name} is {len(data)} bytes, not {want}")
    return data


def _entry(item: Any) -> tuple[str, uuid.UUID]:
    if not isinstance(item, dict) or not isinstance(item.get("resource"), str):
        raise BrokerReplyError(f"an entry of the broker's secret is {_show(item)}, not "
                               "{\"resource\", \"guid\"}")
    try:
        return item["resource"], uuid.UUID(str(item.get("guid")))
    except ValueError as exc:
        raise BrokerReplyError(f"the entry of {_show(item['resource'])} has no GUID") from exc


def _clean(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:500]


def _show(value: Any) -> str:
    return _clean(repr(value)[:120])


# -- sev-session ---------------------------------------------------------------------------------


#: Options both commands take.
Deadline = Annotated[float, typer.Option(
    metavar="SECONDS", help="Stop retrying the broker after this long.")]
QmpTimeout = Annotated[float, typer.Option(
    metavar="SECONDS", help="How long one QMP command may take.")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@APP.command("sev-session", help=prose(SESSION_HELP), epilog=EPILOG)
def sev_session(
    *,
    url: Annotated[str, typer.Option(help="The broker's base URL.")],
    tee: Annotated[str, typer.Option(help="sev or sev-es.", show_default=False)],
    policy: Annotated[str, typer.Option(
        metavar="HEX", help="The SEV guest policy (u32, hexadecimal; bit 2 set for sev-es).")],
    out: Annotated[Path, typer.Option(metavar="DIR", help="Where to write godh.b64, "
                                      "session.b64 and launch.json (created if absent).")],
    chain: Annotated[Path | None, typer.Option(
        metavar="FILE", help="The platform's chain, as `sevctl export --full` writes it.")] = None,
    qmp: Annotated[Path | None, typer.Option(
        metavar="SOCKET", help="Read the PDH and its chain with QMP query-sev-capabilities "
        "from a QEMU started for it.")] = None,
    pdh: Annotated[Path | None, typer.Option(metavar="FILE", help="The PDH certificate.")] = None,
    cert_chain: Annotated[Path | None, typer.Option(
        metavar="FILE", help="PEK ‖ OCA ‖ CEK, with --pdh.")] = None,
    deadline: Deadline = 60.0,
    qmp_timeout: QmpTimeout = 10.0,
    json_output: JsonOutput = False,
) -> None:
    try:
        policy_value = _policy(policy, tee)
        platform, caps = _platform(chain, qmp, pdh, cert_chain, qmp_timeout)
        _make_dir(out)
        broker = SevBroker(url, deadline=deadline)
        try:
            session = broker.session(tee, policy_value, platform)
        finally:
            broker.close()
        files = _write_session(out, session)
    except VeriteeError as exc:
        _fail(json_output, exc)
    qemu = _qemu_args(session, files, caps)
    if json_output:
        print_json({"status": "ok", **session.record(), "files": files, "qemu-args": qemu,
                    "error": None})
        return
    stderr.print(f"launch session for {tee}, policy {session.policy:#x}, expires "
                 f"{session.expires_at}; wrote {', '.join(files.values())}", markup=False,
                 soft_wrap=True)
    stderr.print("start QEMU paused, with a QMP socket, and these arguments:", markup=False)
    stdout.print(" ".join(qemu), markup=False, soft_wrap=True)
    if caps is None:
        stderr.print("(CBITPOS: the C-bit position QEMU's query-sev-capabilities reports)",
                     markup=False, soft_wrap=True)


def _policy(text: str, tee: str) -> int:
    if tee not in TEES:
        raise MisuseError(f"--tee is {tee!r}; a launch session is for sev or sev-es")
    if not _POLICY_TEXT.fullmatch(text):
        raise MisuseError(f"--policy is {text!r}; give the SEV guest policy in hexadecimal "
                          "(e.g. 0x5), at most 32 bits")
    value = int(text, 16)
    if bool(value & POLICY_ES) != (tee == "sev-es"):
        raise MisuseError(f"--policy {value:#x} {'has' if value & POLICY_ES else 'lacks'} the "
                          f"SEV-ES bit (0x4), but --tee is {tee}: set the bit exactly for "
                          "sev-es")
    return value


def _platform(chain: Path | None, qmp: Path | None, pdh: Path | None, cert_chain: Path | None,
              timeout: float) -> tuple[dict[str, str], SevCapabilities | None]:
    """The ``platform`` object of the session request, and QEMU's capabilities if read."""
    given = [name for name, v in (("--chain", chain), ("--qmp", qmp), ("--pdh", pdh))
             if v is not None]
    if len(given) != 1 or (pdh is None) != (cert_chain is None):
        raise MisuseError("give the platform's certificates one way: --chain FILE, --qmp "
                          "SOCKET, or --pdh FILE with --cert-chain FILE")
    if chain is not None:
        return {"chain": _b64(_read(chain, "--chain"))}, None
    if qmp is not None:
        return _capabilities(qmp, timeout)
    files = {"pdh": (pdh, "--pdh"), "cert-chain": (cert_chain, "--cert-chain")}
    return {key: _b64(_read(path, option)) for key, (path, option) in files.items()
            if path is not None}, None


def _capabilities(qmp: Path, timeout: float) -> tuple[dict[str, str], SevCapabilities]:
    from veritee.tee.snp.qmp import QmpClient  # noqa: PLC0415

    with QmpClient(qmp, timeout=timeout) as vm:
        caps = vm.query_sev_capabilities()
    return {"pdh": _b64(caps.pdh), "cert-chain": _b64(caps.cert_chain)}, caps


def _read(path: Path, option: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE + 1)
    except OSError as exc:
        raise MisuseError(f"cannot read {option} {path}: {exc.strerror or exc}") from exc
    if not data or len(data) > MAX_FILE:
        raise MisuseError(f"{option} {path} is {'empty' if not data else 'over 64 KiB'}: not "
                          "SEV platform certificates")
    return data


def _make_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MisuseError(f"cannot create --out {out}: {exc.strerror or exc}") from exc


def _write_session(out: Path, session: LaunchSession) -> dict[str, str]:
    files = {"dh-cert-file": out / "godh.b64", "session-file": out / "session.b64",
             "launch": out / "launch.json"}
    contents = {"dh-cert-file": _b64(session.godh_cert), "session-file": _b64(session.session),
                "launch": json.dumps(session.record(), indent=1) + "\n"}
    for key, path in files.items():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(contents[key])
        except OSError as exc:
            raise MisuseError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return {key: str(path) for key, path in files.items()}


def _qemu_args(session: LaunchSession, files: Mapping[str, str],
               caps: SevCapabilities | None) -> list[str]:
    cbitpos = "CBITPOS" if caps is None or caps.cbitpos is None else str(caps.cbitpos)
    reduced = 1 if caps is None or caps.reduced_phys_bits is None else caps.reduced_phys_bits
    guest = (f"sev-guest,id=sev0,policy={session.policy:#x},cbitpos={cbitpos},"
             f"reduced-phys-bits={reduced},dh-cert-file={files['dh-cert-file']},"
             f"session-file={files['session-file']}")
    return ["-machine", "confidential-guest-support=sev0", "-object", guest, "-S"]


# -- sev-launch ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchRecord:
    """``launch.json``, as ``sev-session`` wrote it."""

    launch_id: str
    tee: str
    policy: int
    expires_at: str


@APP.command("sev-launch", help=prose(LAUNCH_HELP), epilog=EPILOG)
def sev_launch(
    *,
    url: Annotated[str, typer.Option(help="The broker's base URL.")],
    qmp: Annotated[Path, typer.Option(metavar="SOCKET", help="QEMU's QMP socket.")],
    launch: Annotated[Path, typer.Option(metavar="FILE", help="The launch.json sev-session "
                                         "wrote.")],
    resource: Annotated[list[str], typer.Option(
        metavar="PATH", help="A resource to inject (repository/type/tag); repeat for more.")],
    launch_digest: Annotated[str | None, typer.Option(
        metavar="HEX", help="The expected launch digest (SHA-256, 64 hex digits), if the "
        "broker should check this one rather than its reference values.")] = None,
    no_cont: Annotated[bool, typer.Option(
        "--no-cont", help="Leave the guest paused after injecting.")] = False,
    deadline: Deadline = 60.0,
    qmp_timeout: QmpTimeout = 10.0,
    json_output: JsonOutput = False,
) -> None:
    from veritee.tee.snp.qmp import QmpClient  # noqa: PLC0415

    try:
        record = _read_launch(launch)
        resources, digest = _resources(resource), _launch_digest(launch_digest)
        with QmpClient(qmp, timeout=qmp_timeout) as vm:
            info = vm.query_sev()
            _check_ready(info, record, qmp)
            measurement = vm.query_sev_launch_measure()
            packet = _ask_secret(url, deadline, _secret_request(
                record, info, measurement, resources, digest))
            vm.inject_launch_secret(packet.header, packet.secret)
            if not no_cont:
                vm.cont()
    except VeriteeError as exc:
        _fail(json_output, exc)
    _report_launch(json_output, record, packet, resumed=not no_cont)


def _read_launch(path: Path) -> LaunchRecord:
    try:
        document = json.loads(_read(path, "--launch"))
        record = LaunchRecord(document["launch-id"], document["tee"], document["policy"],
                              document["expires-at"])
    except MisuseError:
        raise
    except (ValueError, RecursionError, KeyError, TypeError) as exc:
        raise MisuseError(f"--launch {path} is not the launch.json `veritee host sev-session` "
                          "writes") from exc
    if not isinstance(record.launch_id, str) or record.tee not in TEES or not isinstance(
            record.policy, int) or isinstance(record.policy, bool):
        raise MisuseError(f"--launch {path}: launch-id, tee or policy is not what "
                          "`veritee host sev-session` writes")
    return record


def _resources(paths: list[str]) -> list[str]:
    for path in paths:
        if not _RESOURCE.fullmatch(path):
            raise MisuseError(f"--resource {path!r} is not repository/type/tag")
    if len(set(paths)) != len(paths):
        raise MisuseError("a --resource is given twice")
    return paths


def _launch_digest(text: str | None) -> str | None:
    if text is not None and not _DIGEST.fullmatch(text):
        raise MisuseError(f"--launch-digest is {text!r}; a SEV launch digest is SHA-256, "
                          "64 hexadecimal digits")
    return None if text is None else text.lower()


def _check_ready(info: SevInfo, record: LaunchRecord, qmp: Path) -> None:
    """The guest behind ``qmp`` must be the launch of ``record``, measured and paused."""
    if not info.enabled:
        raise MisuseError(f"QEMU at {qmp} runs no SEV guest (query-sev: enabled is false): "
                          "start it with the arguments `veritee host sev-session` printed")
    if info.state != "launch-secret":
        raise MisuseError(f"the guest's SEV state is {info.state}, not launch-secret: start "
                          "QEMU paused (-S) and run sev-launch once, before the guest runs")
    if info.policy != record.policy:
        raise MisuseError(f"QEMU runs the guest with policy {info.policy:#x}, but the launch "
                          f"session is for {record.policy:#x}: start QEMU with the files "
                          "and policy of this session")
    if info.sev_type is not None and info.sev_type != record.tee:
        raise MisuseError(f"QEMU runs a {info.sev_type} guest; the launch session is for "
                          f"{record.tee}")


def _secret_request(record: LaunchRecord, info: SevInfo, measurement: bytes,
                    resources: list[str], digest: str | None) -> dict[str, Any]:
    request: dict[str, Any] = {
        "launch-id": record.launch_id, "measurement": _b64(measurement),
        "api-major": info.api_major, "api-minor": info.api_minor, "build-id": info.build_id,
        "policy": info.policy, "resources": resources}
    if digest is not None:
        request["launch-digest"] = digest
    return request


def _ask_secret(url: str, deadline: float, request: dict[str, Any]) -> LaunchSecret:
    broker = SevBroker(url, deadline=deadline)
    try:
        return broker.secret(request)
    finally:
        broker.close()


def _report_launch(json_output: bool, record: LaunchRecord, packet: LaunchSecret, *,
                   resumed: bool) -> None:
    entries = [{"resource": path, "guid": str(guid)} for path, guid in packet.entries]
    if json_output:
        print_json({"status": "ok", "launch-id": record.launch_id, "entries": entries,
                    "resumed": resumed, "error": None})
        return
    for entry in entries:
        stdout.print(f"{entry['guid']}  {entry['resource']}", markup=False, soft_wrap=True)
    stderr.print("injected; the guest is running" if resumed else
                 "injected; the guest stays paused (--no-cont): resume it with QMP cont",
                 markup=False)


# -- shared --------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def exit_code(exc: VeriteeError) -> ExitCode:
    """The exit status of a command that stopped on ``exc``."""
    if isinstance(exc, BrokerRefusedError):
        if exc.http_status in (400, 422):
            return ExitCode.USAGE
        return ExitCode.UNDECIDED if exc.http_status >= 500 else ExitCode.REJECTED
    if isinstance(exc, UndecidedError | CollectorError):  # QEMU's QMP errors are these
        return ExitCode.UNDECIDED
    return ExitCode.USAGE if isinstance(exc, MisuseError) else ExitCode.REJECTED


def _fail(json_output: bool, exc: VeriteeError) -> NoReturn:
    code = exit_code(exc)
    status = {ExitCode.REJECTED: "refused", ExitCode.UNDECIDED: "undecided"}.get(code, "error")
    stderr.print(f"refused: {exc.detail}" if code == ExitCode.REJECTED else f"error: {exc.detail}",
                 markup=False, soft_wrap=True)
    if json_output:
        error: dict[str, Any] = {"type": type(exc).__name__, "detail": exc.detail}
        if isinstance(exc, BrokerRefusedError):
            error["http-status"] = exc.http_status
        print_json({"status": status, "error": error})
    raise typer.Exit(code)


__all__ = ["APP", "BrokerRefusedError", "BrokerReplyError", "BrokerUnavailableError",
           "LaunchRecord", "LaunchSecret", "LaunchSession", "SevBroker", "exit_code"]
