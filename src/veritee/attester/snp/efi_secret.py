"""Secrets the host injected into a SEV or SEV-ES guest before it ran, read in the guest.

OVMF publishes the launch secret area as the EFI configuration table
``LINUX_EFI_COCO_SECRET_AREA_GUID``; Linux's ``efi_secret`` module
(``drivers/virt/coco/efi_secret``) exposes each entry of its secret table as a file
``/sys/kernel/security/secrets/coco/<entry GUID>`` (the GUID in lowercase). Reading the file
gives the entry's data; deleting it wipes the entry from memory.
"""

from __future__ import annotations

import errno
import uuid
from pathlib import Path
from typing import Final

from veritee.attester.errors import CollectorError, CollectorUnavailableError

DEFAULT_ROOT: Final = Path("/sys/kernel/security/secrets/coco")
#: An entry larger than this is not a launch secret (the whole area is a few pages).
MAX_SECRET: Final = 1 << 20
_HOW: Final = ("load the efi_secret module (modprobe efi_secret) and mount securityfs at "
               "/sys/kernel/security (mount -t securityfs securityfs /sys/kernel/security); "
               "the guest must be a SEV or SEV-ES guest whose host injected a launch secret")


def list_injected_secrets(root: Path = DEFAULT_ROOT) -> list[uuid.UUID]:
    """The GUIDs of the entries present, sorted (names that are not GUIDs are ignored).

    Raises:
        CollectorUnavailableError: ``root`` is absent (no securityfs, no ``efi_secret``).
        CollectorError: ``root`` cannot be read (permission).
    """
    try:
        names = [entry.name for entry in root.iterdir()]
    except FileNotFoundError as exc:
        raise CollectorUnavailableError(f"no injected secrets at {root}: {_HOW}") from exc
    except NotADirectoryError as exc:
        raise CollectorUnavailableError(f"{root} is not a folder: {_HOW}") from exc
    except OSError as exc:
        raise _os_error(exc, f"cannot list {root}") from exc
    return sorted(guid for guid in map(_guid, names) if guid is not None)


def read_injected_secret(guid: uuid.UUID, *, root: Path = DEFAULT_ROOT) -> bytes:
    """The data of the entry ``guid``.

    Raises:
        CollectorUnavailableError: ``root`` is absent (no securityfs, no ``efi_secret``).
        CollectorError: no such entry (the message lists those present), no permission, or
            an entry over 1 MiB.
    """
    path = _entry(guid, root)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SECRET + 1)
    except FileNotFoundError as exc:
        raise _absent(guid, root) from exc
    except OSError as exc:
        raise _os_error(exc, f"cannot read the injected secret {path}") from exc
    if len(data) > MAX_SECRET:
        raise CollectorError(f"the injected secret {path} is over {MAX_SECRET} bytes: not a "
                             "launch secret entry")
    return data


def wipe_injected_secret(guid: uuid.UUID, *, root: Path = DEFAULT_ROOT) -> None:
    """Delete the entry ``guid`` (``efi_secret`` then wipes it from the guest's memory).

    Raises:
        CollectorUnavailableError: ``root`` is absent.
        CollectorError: no such entry, or no permission.
    """
    path = _entry(guid, root)
    try:
        path.unlink()
    except FileNotFoundError as exc:
        raise _absent(guid, root) from exc
    except OSError as exc:
        raise _os_error(exc, f"cannot wipe the injected secret {path}") from exc


def _entry(guid: uuid.UUID, root: Path) -> Path:
    if not root.is_dir():
        raise CollectorUnavailableError(f"no injected secrets at {root}: {_HOW}")
    return root / str(guid)


def _absent(guid: uuid.UUID, root: Path) -> CollectorError:
    present = list_injected_secrets(root)
    listed = ", ".join(map(str, present)) if present else "none"
    return CollectorError(f"no injected secret {guid} under {root}; present: {listed} (did the "
                          "host inject it with `veritee host sev-launch`, or was it wiped?)")


def _os_error(exc: OSError, what: str) -> CollectorError:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return CollectorError(f"{what}: permission denied (securityfs secrets are root's: "
                              "run as root)")
    return CollectorError(f"{what}: {exc.strerror or exc}")


def _guid(name: str) -> uuid.UUID | None:
    try:
        guid = uuid.UUID(name)
    except ValueError:
        return None
    return guid if str(guid) == name else None


__all__ = ["DEFAULT_ROOT", "MAX_SECRET", "list_injected_secrets", "read_injected_secret",
           "wipe_injected_secret"]
