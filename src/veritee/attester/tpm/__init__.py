"""TPM 2.0 evidence collection on this machine: a quote by the attestation key, the firmware's
event log from securityfs.

:class:`HardwareTpmCollector` has the shape the KBS client takes
(``veritee.tee.platform.Collector``): called with the report-data bytes (the quote's qualifying
data, at most 64), it returns Trustee's TPM attester JSON (CONTRACT §1.1 form 2:
``{"ak_public", "tpm_quote": {"message", "signature", "pcrs"}, "eventlog"}``), which the
``tpm`` verifier reads. The AK is not created here: it is a persistent handle (Trustee's
attester looks at ``0x81010002``) or a saved context that provisioning made, and the verifier
trusts it only through an endorsement (its public key or its certificate's CA).

The TPM is driven with tpm2-tools (``tpm2_quote``, ``tpm2_readpublic``) through
:mod:`subprocess`, not with tpm2-pytss: tpm2-pytss from the package index builds against the
libtss2 C headers (a compiler and the ``-dev`` packages on every guest), while tpm2-tools is a
Debian package (``tpm2-tools``) with a command line that has been stable across 5.x. The TCTI
is the collector's ``tcti``, else ``TPM2TOOLS_TCTI`` from the environment, else the kernel's
resource manager ``/dev/tpmrm0`` (then ``/dev/tpm0``). Every command has a timeout, and
transient objects and sessions are flushed after each one, which a TPM without a resource
manager (swtpm, ``/dev/tpm0``) needs.

The emulated collector (over ``veritee.testing``'s TPM emulator) is in
:mod:`veritee.attester.tpm.emulated`, imported only when asked for.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from veritee.attester.errors import CollectorError, CollectorUnavailableError
from veritee.errors import MisuseError

#: The kernel's copy of the firmware's TCG event log (securityfs).
EVENT_LOG: Final = Path("/sys/kernel/security/tpm0/binary_bios_measurements")
#: The TPM devices tried when no TCTI is configured: the in-kernel resource manager first.
DEVICES: Final = (Path("/dev/tpmrm0"), Path("/dev/tpm0"))
#: Where Trustee's TPM attester expects a provisioned AK.
DEFAULT_AK: Final = "0x81010002"
#: The quoted PCRs: the whole SHA-256 bank, as Trustee's attester quotes it.
DEFAULT_SELECTION: Final = "sha256:" + ",".join(str(i) for i in range(24))
#: The quote's qualifying data is a ``TPM2B_DATA``: at most a SHA-512 digest.
MAX_REPORT_DATA: Final = 64
#: Seconds one tpm2-tools command may take (an RSA signature on a slow TPM takes ~1 s).
DEFAULT_TIMEOUT: Final = 30.0
TOOLS: Final = ("tpm2_quote", "tpm2_readpublic")
_DIGEST_SIZES: Final[Mapping[str, int]] = {"sha1": 20, "sha256": 32, "sha384": 48,
                                           "sha512": 64}
#: TPM_RC_HANDLE (0x18b) and TPM_RC_VALUE on a handle: no object at the AK's handle.
_NO_OBJECT: Final = re.compile(r"errorcode \(0x0*18b\)|tpm:handle\(\d\):the handle is not correct")
_PROVISION_HINT: Final = (
    "provision one, e.g.: tpm2_createek -c ek.ctx -G rsa -u ek.pub && tpm2_createak -C ek.ctx "
    "-c ak.ctx -G rsa -g sha256 -s rsassa -u ak.pem -f pem && tpm2_evictcontrol -C o -c ak.ctx "
    f"{DEFAULT_AK}")


@dataclass(frozen=True)
class TpmCollected:
    """One quote as tpm2-tools returned it, the AK's public key and the event log."""

    attest: bytes
    """``TPMS_ATTEST`` (``tpm2_quote -m``)."""
    signature: bytes
    """``TPMT_SIGNATURE`` (``tpm2_quote -s``)."""
    pcrs: tuple[bytes, ...]
    """The quoted PCR values in selection order."""
    ak_public: bytes
    """The AK's DER SubjectPublicKeyInfo (``tpm2_readpublic -f der``)."""
    eventlog: bytes | None

    def evidence(self) -> dict[str, Any]:
        """Trustee's TPM attester JSON (standard base64, PCRs in hex)."""
        b64 = base64.b64encode
        out: dict[str, Any] = {
            "ak_public": b64(self.ak_public).decode(),
            "tpm_quote": {"message": b64(self.attest).decode(),
                          "signature": b64(self.signature).decode(),
                          "pcrs": [value.hex() for value in self.pcrs]},
        }
        if self.eventlog is not None:
            out["eventlog"] = b64(self.eventlog).decode()
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.evidence(), indent=1).encode() + b"\n"


def parse_selection(spec: str) -> list[tuple[str, list[int]]]:
    """``sha1:0,1+sha256:0-23`` (tpm2-tools' PCR list syntax, ranges allowed) as
    ``[(bank, indices)]``.

    Raises:
        MisuseError: an unknown bank, an index outside 0-23 or a malformed item.
    """
    out: list[tuple[str, list[int]]] = []
    for part in spec.split("+"):
        bank, _, items = part.partition(":")
        if bank not in _DIGEST_SIZES or not items:
            raise MisuseError(f"PCR selection {spec!r}: {part!r} is not BANK:INDICES with BANK "
                              f"one of {', '.join(_DIGEST_SIZES)}")
        indices: set[int] = set()
        for item in items.split(","):
            low, _, high = item.partition("-")
            if not low.isdigit() or (high and not high.isdigit()):
                raise MisuseError(f"PCR selection {spec!r}: {item!r} is not an index or range")
            indices.update(range(int(low), int(high or low) + 1))
        if not indices <= set(range(24)):
            raise MisuseError(f"PCR selection {spec!r}: PCR indices are 0-23")
        out.append((bank, sorted(indices)))
    return out


def split_values(values: bytes, selection: Sequence[tuple[str, Sequence[int]]]) -> list[bytes]:
    """``tpm2_quote -F values`` output (the PCR values concatenated in selection order) cut
    into one value per selected PCR.

    Raises:
        CollectorError: the output's size is not what the selection needs.
    """
    sizes = [_DIGEST_SIZES[bank] for bank, indices in selection for _ in indices]
    if len(values) != sum(sizes):
        raise CollectorError(f"tpm2_quote wrote {len(values)} bytes of PCR values; the "
                             f"selection needs {sum(sizes)}")
    out, offset = [], 0
    for size in sizes:
        out.append(values[offset:offset + size])
        offset += size
    return out


@dataclass
class HardwareTpmCollector:
    """Collects a quote from this machine's TPM with tpm2-tools (see the module docstring)."""

    ak: str = DEFAULT_AK
    """The AK: a persistent handle (``0x81......``) or a saved context file."""
    tcti: str | None = None
    """A TCTI string (``device:/dev/tpmrm0``, ``swtpm:host=127.0.0.1,port=2321``); None:
    ``TPM2TOOLS_TCTI``, else the first of :data:`DEVICES` present."""
    selection: str = DEFAULT_SELECTION
    hash_alg: str = "sha256"
    """The hash the AK signs with (``tpm2_quote -g``)."""
    eventlog: Path | None = EVENT_LOG
    """The event log to send; None: send none. An absent file is sent as no log."""
    require_eventlog: bool = False
    path: str | None = None
    """Where to look for tpm2-tools (``PATH`` syntax); None: this process's ``PATH``."""
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    devices: Sequence[Path] = DEVICES
    timeout: float = DEFAULT_TIMEOUT

    def __call__(self, report_data: bytes) -> dict[str, Any]:
        return self.collect(report_data).evidence()

    def collect(self, report_data: bytes) -> TpmCollected:
        """A quote with ``report_data`` as its qualifying data.

        Raises:
            MisuseError: ``report_data`` is longer than 64 bytes, or the selection does not
                parse.
            CollectorUnavailableError: tpm2-tools is not installed, or no TPM is configured
                or present.
            CollectorError: a tpm2-tools command failed or timed out (the message holds its
                error and, when the AK is missing, how to provision one), or the event log is
                unreadable (or absent when required).
        """
        if len(report_data) > MAX_REPORT_DATA:
            raise MisuseError(f"report data is {len(report_data)} bytes; a TPM quote's "
                              f"qualifying data is at most {MAX_REPORT_DATA}")
        selection = parse_selection(self.selection)
        tools = self._tools()
        env = {**self.environ, "TPM2TOOLS_TCTI": self._tcti()}
        with tempfile.TemporaryDirectory(prefix="veritee-tpm-") as work:
            run = _Runner(tools, env, Path(work), self.timeout)
            ak_public = run.output("tpm2_readpublic", "-c", self.ak, "-f", "der", "-o",
                                   "ak.der", name="ak.der", what=self._ak_hint)
            attest = run.output("tpm2_quote", "-c", self.ak, "-l", self.selection, "-q",
                                report_data.hex(), "-m", "quote.msg", "-s", "quote.sig",
                                "-o", "quote.pcrs", "-F", "values", "-g", self.hash_alg,
                                name="quote.msg", what=self._ak_hint)
            signature = run.read("quote.sig")
            values = split_values(run.read("quote.pcrs"), selection)
        return TpmCollected(attest, signature, tuple(values), ak_public, self._eventlog())

    def _ak_hint(self, stderr: str) -> str:
        text = stderr.lower()
        if _NO_OBJECT.search(text) or "cannot make sense of object context" in text:
            return f"; the AK {self.ak} is not in this TPM: {_PROVISION_HINT}"
        return ""

    def _tools(self) -> dict[str, str]:
        found = {tool: shutil.which(tool, path=self.path) for tool in (*TOOLS,
                                                                       "tpm2_flushcontext")}
        missing = [tool for tool in TOOLS if found[tool] is None]
        if missing:
            raise CollectorUnavailableError(
                f"tpm2-tools is not installed ({', '.join(missing)} not found on "
                f"{'PATH' if self.path is None else self.path!r}): install the tpm2-tools "
                "package (apt-get install tpm2-tools)")
        return {tool: where for tool, where in found.items() if where is not None}

    def _tcti(self) -> str:
        if self.tcti:
            return self.tcti
        configured = self.environ.get("TPM2TOOLS_TCTI")
        if configured:
            return configured
        for device in self.devices:
            if device.exists():
                return f"device:{device}"
        raise CollectorUnavailableError(
            f"no TPM: {' and '.join(str(d) for d in self.devices)} are absent and "
            "TPM2TOOLS_TCTI is not set (enable the VM's vTPM, load tpm_tis/tpm_crb, or point "
            "TPM2TOOLS_TCTI at a TPM, e.g. swtpm:host=127.0.0.1,port=2321)")

    def _eventlog(self) -> bytes | None:
        if self.eventlog is None:
            return None
        try:
            return self.eventlog.read_bytes()
        except FileNotFoundError as exc:
            if self.require_eventlog:
                raise CollectorError(f"no event log at {self.eventlog} (securityfs not "
                                     "mounted, or the firmware kept no log)") from exc
            return None
        except OSError as exc:
            raise CollectorError(f"cannot read the event log {self.eventlog}: "
                                 f"{exc.strerror or exc} (it is readable by root only; run as "
                                 "root or collect without it: eventlog=None)") from exc


@dataclass(frozen=True)
class _Runner:
    """Runs tpm2-tools in a work directory with a timeout, flushing after each command."""

    tools: Mapping[str, str]
    env: Mapping[str, str]
    work: Path
    timeout: float

    def run(self, tool: str, *args: str, what: Callable[[str], str] | None = None) -> None:
        try:
            done = subprocess.run(
                [self.tools[tool], *args], cwd=self.work, env=dict(self.env),
                capture_output=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise CollectorError(f"{tool} took longer than {self.timeout:g} s (TCTI "
                                 f"{self.env['TPM2TOOLS_TCTI']})") from exc
        except OSError as exc:
            raise CollectorError(f"cannot run {tool}: {exc}") from exc
        finally:
            self.flush()
        if done.returncode != 0:
            stderr = done.stderr.decode(errors="replace").strip()
            hint = what(stderr) if what is not None else ""
            last = stderr.splitlines()[-3:] if stderr else ["(no message)"]
            raise CollectorError(f"{tool} failed (exit {done.returncode}, TCTI "
                                 f"{self.env['TPM2TOOLS_TCTI']}){hint}: {' | '.join(last)}")

    def output(self, tool: str, *args: str, name: str,
               what: Callable[[str], str] | None = None) -> bytes:
        self.run(tool, *args, what=what)
        return self.read(name)

    def read(self, name: str) -> bytes:
        try:
            return (self.work / name).read_bytes()
        except OSError as exc:
            raise CollectorError(f"tpm2-tools wrote no {name}") from exc

    def flush(self) -> None:
        flush = self.tools.get("tpm2_flushcontext")
        if flush is None:
            return
        for kind in ("-t", "-s"):
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run([flush, kind], cwd=self.work, env=dict(self.env),
                               capture_output=True, timeout=self.timeout, check=False)


__all__ = ["DEFAULT_AK", "DEFAULT_SELECTION", "EVENT_LOG", "MAX_REPORT_DATA",
           "HardwareTpmCollector", "TpmCollected", "parse_selection", "split_values"]
