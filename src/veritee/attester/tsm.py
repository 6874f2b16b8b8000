"""Linux configfs-tsm reports: ``/sys/kernel/config/tsm/report/<entry>/``.

The kernel ABI (Documentation/ABI/testing/configfs-tsm-report): ``mkdir`` an entry, write up
to 64 bytes of caller data to ``inblob`` (and options such as ``privlevel``), read
``outblob`` (the TEE driver's report) and ``auxblob`` (for
``sev_guest`` the GHCB certificate table), and ``rmdir`` the entry. ``provider`` names the
TEE driver (``sev_guest``, ``tdx_guest``). ``generation`` counts the writes to the entry:
when it advanced by more than our own writes, another process wrote in between and the
report may hold its data, so the read is retried.

A report from a service provider (Linux 6.11+, ``drivers/virt/coco/tsm.c``): the write-only
text attributes ``service_provider`` (``svsm`` for an SEV-SNP guest under an SVSM),
``service_guid`` (the service to attest; the null GUID: all services) and
``service_manifest_version`` are written as ``options`` beside ``inblob``, and the read-only
``manifestblob`` holds the manifest the report binds. ``sev_guest`` shows these only to a
guest that runs above VMPL 0 (under an SVSM); where they are absent, writing one fails with
:class:`CollectorUnavailableError`.

The file system is reached through :class:`TsmFs` so that tests run against a fake kernel.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from veritee.attester.errors import CollectorError, CollectorUnavailableError

DEFAULT_TSM_ROOT: Final = Path("/sys/kernel/config/tsm/report")
MAX_INBLOB: Final = 64
#: Attempts before giving up when other writers keep changing ``generation``.
DEFAULT_ATTEMPTS: Final = 3


class TsmFs(Protocol):
    """The few file operations configfs-tsm needs (raise OSError as the OS does)."""

    def is_dir(self, path: Path) -> bool: ...

    def listdir(self, path: Path) -> list[str]: ...

    def mkdir(self, path: Path) -> None: ...

    def rmdir(self, path: Path) -> None: ...

    def read(self, path: Path) -> bytes: ...

    def write(self, path: Path, data: bytes) -> None: ...


class OsTsmFs:
    """:class:`TsmFs` on the real file system."""

    def is_dir(self, path: Path) -> bool:
        return path.is_dir()

    def listdir(self, path: Path) -> list[str]:
        return os.listdir(path)

    def mkdir(self, path: Path) -> None:
        os.mkdir(path)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def read(self, path: Path) -> bytes:
        with open(path, "rb", buffering=0) as handle:
            return handle.read()

    def write(self, path: Path, data: bytes) -> None:
        # The attribute exists once the entry does (no O_CREAT); configfs takes the whole
        # value in one write(2) and commits a binary attribute when the file is closed.
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):
            raise OSError(errno.EIO, f"short write to {path} ({written} of {len(data)} bytes)")


@dataclass(frozen=True)
class TsmReport:
    """What one configfs-tsm entry returned."""

    provider: str
    outblob: bytes
    auxblob: bytes
    generation: int
    manifestblob: bytes = b""
    """The service provider's manifest (read only when asked for)."""


def tsm_report(inblob: bytes, *, root: Path = DEFAULT_TSM_ROOT, fs: TsmFs | None = None,
               provider: str | None = None, privlevel: int | None = None,
               options: Sequence[tuple[str, str]] = (), manifest: bool = False,
               attempts: int = DEFAULT_ATTEMPTS) -> TsmReport:
    """Ask the TSM provider for a report over ``inblob``.

    ``options`` are further text attributes written after ``inblob`` and ``privlevel``, in
    order (``[("service_provider", "svsm"), ("service_guid", "c476f1eb-...")]``);
    ``manifest`` reads ``manifestblob`` too.

    Raises:
        CollectorUnavailableError: configfs-tsm is not mounted or not present at ``root``, or
            its provider is not ``provider``.
        CollectorError: permission denied, the provider refused, or other writers kept
            interfering for ``attempts`` tries.
    """
    if len(inblob) > MAX_INBLOB:
        raise CollectorError(f"inblob is {len(inblob)} bytes; configfs-tsm takes at most 64")
    fs = fs or OsTsmFs()
    _check_root(fs, root)
    entry = _make_entry(fs, root)
    try:
        found = _text(fs, entry / "provider")
        if provider is not None and found != provider:
            raise CollectorUnavailableError(
                f"configfs-tsm at {root} is provided by {found!r}, not {provider!r}: this "
                f"guest runs in another TEE"
            )
        for _ in range(max(1, attempts)):
            report = _once(fs, entry, found, inblob, [*_privlevel(privlevel), *options],
                           manifest=manifest)
            if report is not None:
                return report
        raise CollectorError(
            f"configfs-tsm entry {entry}: its generation kept changing during {attempts} "
            "attempts (another process is writing to it)"
        )
    finally:
        _remove(fs, entry)


def _check_root(fs: TsmFs, root: Path) -> None:
    if fs.is_dir(root):
        return
    configfs = root.parent.parent  # /sys/kernel/config for the default root
    try:
        mounted = fs.is_dir(configfs) and bool(fs.listdir(configfs))
    except OSError:
        mounted = False
    if not mounted:
        raise CollectorUnavailableError(
            f"configfs-tsm is not mounted at {root}: mount -t configfs none {configfs}, "
            "or use /dev/sev-guest"
        )
    raise CollectorUnavailableError(
        f"configfs-tsm reports are absent at {root}: the kernel lacks CONFIG_TSM_REPORTS "
        "(Linux 6.7+) or no TEE guest driver is loaded (modprobe sev-guest); or use "
        "/dev/sev-guest"
    )


def _make_entry(fs: TsmFs, root: Path) -> Path:
    for _ in range(8):
        entry = root / f"veritee-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            fs.mkdir(entry)
        except FileExistsError:
            continue
        except OSError as exc:
            raise _os_error(exc, f"creating {entry}") from exc
        return entry
    raise CollectorError(f"could not create a fresh entry under {root}")


def _privlevel(privlevel: int | None) -> list[tuple[str, str]]:
    return [] if privlevel is None else [("privlevel", str(privlevel))]


def _once(fs: TsmFs, entry: Path, provider: str, inblob: bytes,
          options: Sequence[tuple[str, str]], *, manifest: bool) -> TsmReport | None:
    """One write-and-read round; None when another writer changed ``generation``."""
    before = _generation(fs, entry)
    writes = [("inblob", inblob), *((name, f"{value}\n".encode()) for name, value in options)]
    for name, data in writes:
        _write(fs, entry / name, data)
    outblob = _read(fs, entry / "outblob")
    auxblob = _read_optional(fs, entry / "auxblob")
    manifestblob = _read(fs, entry / "manifestblob") if manifest else b""
    after = _generation(fs, entry)
    if after != before + len(writes):
        return None
    if not outblob:
        raise CollectorError(f"configfs-tsm provider {provider!r} returned an empty outblob")
    return TsmReport(provider, outblob, auxblob, after, manifestblob)


def _generation(fs: TsmFs, entry: Path) -> int:
    text = _text(fs, entry / "generation")
    try:
        return int(text)
    except ValueError as exc:
        raise CollectorError(f"{entry / 'generation'} holds {text[:20]!r}, not a number") from exc


def _text(fs: TsmFs, path: Path) -> str:
    return _read(fs, path).decode("ascii", "replace").strip()


def _read(fs: TsmFs, path: Path) -> bytes:
    try:
        return fs.read(path)
    except OSError as exc:
        raise _os_error(exc, f"reading {path}") from exc


def _read_optional(fs: TsmFs, path: Path) -> bytes:
    """An attribute some providers lack (``auxblob`` without host certificates)."""
    try:
        return fs.read(path)
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise _os_error(exc, f"reading {path}") from exc


def _write(fs: TsmFs, path: Path, data: bytes) -> None:
    try:
        fs.write(path, data)
    except OSError as exc:
        raise _os_error(exc, f"writing {path.name} of {path.parent}") from exc


def _remove(fs: TsmFs, entry: Path) -> None:
    with contextlib.suppress(OSError):  # best effort: a leftover entry costs a few bytes
        fs.rmdir(entry)


def _os_error(exc: OSError, doing: str) -> CollectorError:
    reason = exc.strerror or str(exc)
    if isinstance(exc, PermissionError):
        return CollectorError(f"permission denied {doing}: run as root (or grant write "
                              "access to the configfs-tsm report directory)")
    if exc.errno == errno.EINVAL and "privlevel" in doing:
        return CollectorError(f"{doing}: the provider refused the privilege level ({reason}); "
                              "it must be at least privlevel_floor")
    if isinstance(exc, FileNotFoundError):
        return CollectorUnavailableError(f"{doing}: {reason} (the TSM provider lacks this "
                                         "attribute)")
    return CollectorError(f"{doing}: {reason} (errno {exc.errno})")
