"""SGX evidence collection inside an enclave LibOS: Gramine or Occlum (and enclave-cc).

Which LibOS runs is decided by what exists, as the Confidential Containers SGX attester does
it: Gramine's ``/dev/attestation/attestation_type`` first (:mod:`.gramine`), then Occlum's
``/dev/sgx`` (:mod:`.occlum`; the attester also accepts an ``OCCLUM`` environment variable,
which veritee does not read, so that ``root=`` alone decides). The evidence is the
Confidential Containers SGX attester JSON ``{"quote": <base64>}`` (trustee ``SgxEvidence``).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from veritee.attester.dcap import gramine, occlum
from veritee.attester.dcap.quotes import check_report_data, checked_quote
from veritee.attester.errors import CollectorUnavailableError
from veritee.attester.ioctl import Ioctl

SgxSource = Literal["gramine", "occlum"]


@dataclass(frozen=True)
class SgxCollected:
    """One SGX quote as collected, and the LibOS interface it came from."""

    quote: bytes
    source: SgxSource

    def evidence(self) -> dict[str, str]:
        """The CoCo SGX attester JSON (standard base64), as the verifier reads it."""
        return {"quote": base64.b64encode(self.quote).decode()}

    def to_json(self) -> bytes:
        return json.dumps(self.evidence(), indent=1).encode() + b"\n"


def collect_sgx(report_data: bytes, *, root: Path = Path("/"),
                ioctl: Ioctl | None = None) -> SgxCollected:
    """A quote over ``report_data`` (exactly 64 bytes) from the LibOS found under ``root``.

    Raises:
        MisuseError: ``report_data`` is not 64 bytes.
        CollectorUnavailableError: neither LibOS interface is here (the message names both
            paths), or the one found cannot make DCAP quotes (Gramine without ``dcap``).
        CollectorError: the LibOS refused, or returned no SGX quote over ``report_data``.
    """
    check_report_data(report_data, "SGX")
    source: SgxSource
    if gramine.attestation_type(root) is not None:
        source, quote = "gramine", gramine.gramine_quote(report_data, root=root)
    elif (root / occlum.DEVICE).exists():
        source = "occlum"
        quote = occlum.occlum_quote(report_data, device=root / occlum.DEVICE, ioctl=ioctl)
    else:
        raise CollectorUnavailableError(_no_libos(root))
    where = root / (gramine.ATTESTATION / "quote" if source == "gramine" else occlum.DEVICE)
    return SgxCollected(checked_quote(quote, tee="sgx", report_data=report_data,
                                      source=f"{source} ({where})"), source)


def _no_libos(root: Path) -> str:
    host = ""
    if (root / "dev/sgx_enclave").exists():
        host = f"; {root / 'dev/sgx_enclave'} exists: this process runs on an SGX host, " \
            "outside any enclave"
    return (f"not inside an SGX enclave LibOS: {root / gramine.ATTESTATION / 'attestation_type'}"
            f" (Gramine) and {root / occlum.DEVICE} (Occlum, enclave-cc) are absent; run veritee "
            "inside Gramine (sgx.remote_attestation = \"dcap\") or inside Occlum built with "
            f"DCAP support{host}")


__all__ = ["SgxCollected", "SgxSource", "collect_sgx"]
