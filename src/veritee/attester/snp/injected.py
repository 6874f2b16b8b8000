"""``veritee attest --tee sev|sev-es``: the secret the host injected at launch, read back
inside the guest (the descriptors' ``injected_secret``).

The broker puts each resource into the launch secret's table under the GUID the host's
request named, or else the one derived from its path (:func:`veritee.tee.snp.sev_launch.
secret_guid`); the guest derives the same GUID from the path it asks for, or takes a GUID
given as the resource (as Confidential Containers' offline SEV KBC expects
``e6f5a162-d67f-4750-a67c-5d065f2a9910``).
"""

from __future__ import annotations

import uuid
from pathlib import Path

from veritee.attester.snp.efi_secret import DEFAULT_ROOT, read_injected_secret
from veritee.tee.snp.sev_launch import secret_guid


def entry_guid(resource: str) -> uuid.UUID:
    """The secret-table GUID of ``resource``: itself when it is a GUID, else derived from
    the path."""
    try:
        return uuid.UUID(resource)
    except ValueError:
        return secret_guid(resource)


def read_resource(resource: str, folder: Path | None = None) -> bytes:
    """The injected secret for ``resource`` (a path or a GUID).

    Raises:
        CollectorUnavailableError: no efi_secret tree here.
        CollectorError: the launch secret holds no such entry.
    """
    return read_injected_secret(entry_guid(resource), root=folder or DEFAULT_ROOT)
