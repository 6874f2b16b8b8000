"""Checks every DCAP collector makes on its input and on what the platform returned.

The quote is parsed with the verifier's layout (:func:`veritee.tee.dcap.quote.parse_quote`,
bytes only, no signatures): a collector refuses to send something that is not a quote of its
TEE, or a quote over other report data (another process wrote its own in between, as
configfs-tsm's ``generation`` and Gramine's process-local files otherwise leave unnoticed).
Padding after the quote (configfs-tsm and Occlum buffers) is kept: the verifier ignores it.
"""

from __future__ import annotations

from typing import Final, Literal

from veritee.attester.errors import CollectorError
from veritee.errors import MalformedEvidenceError, MisuseError
from veritee.tee.dcap.quote import parse_quote

REPORT_DATA_SIZE: Final = 64


def check_report_data(report_data: bytes, tee: str) -> None:
    """Report data must be exactly 64 bytes: nothing is padded or cut (STYLE.md §11).

    Raises:
        MisuseError: it is not.
    """
    if len(report_data) != REPORT_DATA_SIZE:
        raise MisuseError(f"report data is {len(report_data)} bytes; {tee} takes exactly "
                          f"{REPORT_DATA_SIZE} (hash or pad it explicitly)")


def checked_quote(quote: bytes, *, tee: Literal["sgx", "tdx"], report_data: bytes,
                  source: str) -> bytes:
    """``quote`` unchanged, once it parses as a ``tee`` quote carrying ``report_data``.

    Raises:
        CollectorError: ``source`` returned no quote (empty, short, malformed), another TEE's
            quote, or a quote over other report data.
    """
    try:
        parsed = parse_quote(quote)
    except MalformedEvidenceError as exc:
        raise CollectorError(f"{source} returned {len(quote)} bytes that are not a DCAP quote: "
                             f"{exc.detail}") from exc
    if parsed.tee != tee:
        raise CollectorError(f"{source} returned a quote of TEE type {parsed.tee!r}, not "
                             f"{tee!r}")
    if parsed.report_data != report_data:
        raise CollectorError(f"{source} returned a quote whose report data is "
                             f"{parsed.report_data.hex()}, not the {report_data.hex()} asked "
                             "for")
    return quote


__all__ = ["REPORT_DATA_SIZE", "check_report_data", "checked_quote"]
