"""A TPM's TCG PC Client event log: its PCRs replayed and compared with the quoted ones, its
events as policies read them, and the Secure Boot state it records.

Sources: research note se-pef-tpm-gpu.md §3.2-3.3 (replay: ``PCR[i] = H(PCR[i] || digest)``
per bank from zero, ``EV_NO_ACTION`` skipped, StartupLocality setting PCR 0's start; every
PCR with events must equal the quoted value); TCG PC Client PFP 1.05 §3.3.4 (PCR usage: 24
PCRs, 7 = Secure Boot policy, 8-9 = the OS loader's commands and files) and §10.4.4
(``EV_EFI_VARIABLE_DRIVER_CONFIG``: ``UEFI_VARIABLE_DATA`` of the Secure Boot variables);
go-attestation ``ParseSecurebootState`` (as go-tpm-tools' ``MachineState`` reads it: the
``SecureBoot`` variable of the EFI global-variable GUID, one byte, 1 = enabled).

The log is parsed and replayed by :mod:`veritee.eventlog`. Replay proves the digests, not the
event data: :func:`data_verified` says whether an event's data is what its digests cover, so
that a policy reading an event's text (a kernel command line, a variable) reads only what
was measured.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Final

from veritee import eventlog
from veritee.errors import BindingError, MalformedEvidenceError
from veritee.eventlog import EV_IPL, EV_NO_ACTION, Event, EventLog

#: The PCR banks a quote and a log may share, in the order the claims list them.
BANKS: Final = ("sha1", "sha256", "sha384", "sha512")
#: PCRs of a PC Client TPM (PFP §3.3.4, TPM 2.0 PC Client PTP: 24 PCRs).
PCR_COUNT: Final = 24
#: The PCR holding the Secure Boot policy (PFP §3.3.4.8).
SECURE_BOOT_PCR: Final = 7
#: EFI_GLOBAL_VARIABLE (UEFI 2.10 §3.3), as :mod:`veritee.eventlog` prints GUIDs.
EFI_GLOBAL_VARIABLE: Final = "8BE4DF61-93CA-11D2-AA0D-00E098032B8C"
#: Descriptions GRUB puts before the command or command line it measures; the digest covers
#: the text after them (with or without its final NUL, by GRUB version).
GRUB_PREFIXES: Final = (b"grub_cmd: ", b"grub_cmd ", b"kernel_cmdline: ",
                        b"grub_kernel_cmdline ")

#: Algorithm name -> hashlib name, for the registered algorithms this Python can hash.
_HASHLIB_NAMES: Final = {a.name: a.hashlib_name for a in eventlog.ALGORITHMS.values()
                         if a.hashlib_name in hashlib.algorithms_available}
#: Replayed or quoted PCR values: {bank: {index: value}}.
Pcrs = dict[str, dict[int, bytes]]


def parse_log(log: bytes | EventLog) -> EventLog:
    """The parsed log, once every event that extends a PCR names one of the TPM's 24.

    Raises:
        MalformedEvidenceError: the log does not parse, or an event extends PCR 24 or above.
    """
    parsed = log if isinstance(log, EventLog) else eventlog.parse(log)
    for event in parsed.events:
        if event.type != EV_NO_ACTION and not 0 <= event.index < PCR_COUNT:
            raise MalformedEvidenceError(
                f"event {event.number} ({event.type_name}) extends PCR {event.index}; a TPM "
                f"has PCRs 0-{PCR_COUNT - 1}")
    return parsed


def replay_pcrs(log: bytes | EventLog) -> Pcrs:
    """Every bank the log has digests for (of ``sha1``, ``sha256``, ``sha384``, ``sha512``),
    replayed: {bank: {index: value}}, only the indices events extend. PCR 0 starts at the
    StartupLocality event's locality when the log has one (:func:`veritee.eventlog.replay`).

    Raises:
        MalformedEvidenceError: the log does not parse, an event extends no TPM PCR, or an
            extending event lacks a digest of a bank the log declares.
    """
    parsed = parse_log(log)
    return {alg.name: parsed.replay(alg.name) for alg in parsed.algorithms if alg.name in BANKS}


def check_replay(replayed: Mapping[str, Mapping[int, bytes]],
                 quoted: Mapping[str, Mapping[int, bytes]]) -> list[str]:
    """Raise unless every PCR that has events and is quoted replays to the quoted value.

    What cannot be checked is not refused, and is returned as notes (empty when every PCR
    with events was compared): a bank the log has but the quote lacks, PCRs with events that
    the quote does not select, and banks the quote has but the log has no digests for (their
    quoted values are then unexplained by the log). Only the PCRs :func:`bound_pcrs` returns
    vouch for their events.

    Raises:
        BindingError: every PCR that differs, naming the bank, the index and both values.
    """
    notes: list[str] = []
    mismatches: list[str] = []
    for bank in _ordered(replayed):
        ours, theirs = replayed[bank], quoted.get(bank)
        if theirs is None:
            notes.append(f"the quote has no {bank} bank: {bank} PCRs {_indices(ours)} of the "
                         "event log are not checked")
            continue
        unquoted = [i for i in ours if i not in theirs]
        if unquoted:
            notes.append(f"{bank} PCRs {_indices(unquoted)} have events but are not quoted: "
                         "not checked")
        mismatches += [f"{bank} PCR {i} replays to {bytes(ours[i]).hex()} from the event log, "
                       f"the quote says {bytes(theirs[i]).hex()}"
                       for i in sorted(ours) if i in theirs and bytes(ours[i]) != bytes(theirs[i])]
    if mismatches:
        raise BindingError("the event log contradicts the quote: " + "; ".join(mismatches))
    notes += [f"the event log has no {bank} digests: the quoted {bank} PCRs are not checked "
              "against it" for bank in _ordered(quoted) if bank not in replayed]
    return notes


def bound_pcrs(replayed: Mapping[str, Mapping[int, bytes]],
               quoted: Mapping[str, Mapping[int, bytes]]) -> dict[str, list[int]]:
    """The PCRs whose events the quote vouches for: {bank: [index]}, those that have events,
    are quoted, and replay to the quoted value."""
    out: dict[str, list[int]] = {}
    for bank in _ordered(replayed):
        theirs = quoted.get(bank, {})
        same = [i for i in sorted(replayed[bank])
                if i in theirs and bytes(replayed[bank][i]) == bytes(theirs[i])]
        if same:
            out[bank] = same
    return out


def _ordered(banks: Iterable[str]) -> list[str]:
    """Bank names in BANKS order, others after them by name."""
    return sorted(banks, key=lambda b: (BANKS.index(b) if b in BANKS else len(BANKS), b))


def _indices(indices: Iterable[int]) -> str:
    return ", ".join(str(i) for i in sorted(indices))


# --- events for policies -----------------------------------------------------------------------


def data_verified(event: Event) -> bool:
    """Whether the event's data is what its digests cover, in every bank this Python can
    hash (and it has at least one): the data as logged; for odd-sized data, the data and
    one more zero byte (systemd-boot logs its UTF-16 text one byte short of what it
    measures); for GRUB's ``EV_IPL`` text, the text after its description prefix
    (:data:`GRUB_PREFIXES`), with or without its final NUL. False for events whose digest
    covers something else (an image, a file)."""
    candidates = _measured_forms(event)
    checked = False
    for name, digest in event.digests:
        hash_name = _HASHLIB_NAMES.get(name)
        if hash_name is None:
            continue
        checked = True
        if not any(hashlib.new(hash_name, c).digest() == digest for c in candidates):
            return False
    return checked


def _measured_forms(event: Event) -> list[bytes]:
    data = event.data
    forms = [data]
    if len(data) % 2:
        forms.append(data + b"\0")
    if event.type == EV_IPL:
        for prefix in GRUB_PREFIXES:
            if data.startswith(prefix):
                rest = data[len(prefix):]
                forms += [rest, rest.rstrip(b"\0"), rest.rstrip(b"\0") + b"\0"]
    return forms


def event_json(event: Event) -> dict[str, Any]:
    """One event as policies read it: :meth:`~veritee.eventlog.Event.to_json` (number, index,
    type, type_name, digests, details), the device path also as Trustee lists it
    (``details.device_paths``) and ``data_verified`` (:func:`data_verified`)."""
    out = event.to_json()
    path = event.details.device_path
    if path is not None:
        out["details"]["device_paths"] = list(path.trustee_texts())
    out["data_verified"] = data_verified(event)
    return out


def events_json(log: bytes | EventLog) -> list[dict[str, Any]]:
    """Every event of the log in log order (:func:`event_json`), the Spec ID header of a
    crypto-agile log left out.

    Raises:
        MalformedEvidenceError: the log does not parse (:func:`parse_log`).
    """
    parsed = parse_log(log)
    skip = 1 if parsed.spec_id is not None else 0
    return [event_json(event) for event in parsed.events[skip:]]


# --- Secure Boot -------------------------------------------------------------------------------


def secure_boot(log: bytes | EventLog) -> bool | None:
    """The Secure Boot state the firmware measured into PCR 7: True when every
    ``EV_EFI_VARIABLE_DRIVER_CONFIG`` event of the ``SecureBoot`` global variable says 1,
    False when one says 0 or is empty (the form EDK2 measures when the variable does not
    exist), None when the log has no such event. It is worth what PCR 7 is worth: only when
    PCR 7 is quoted and replays (:func:`bound_pcrs`).

    Raises:
        MalformedEvidenceError: the log does not parse, or the variable is longer than a byte.
        BindingError: the variable's data is not what the event's digests cover.
    """
    return secure_boot_state(events_json(log))


def secure_boot_state(events: Iterable[Mapping[str, Any]]) -> bool | None:
    """:func:`secure_boot` over events in :func:`event_json` form.

    Raises:
        MalformedEvidenceError: the ``SecureBoot`` data is longer than a byte or not hex.
        BindingError: a ``SecureBoot`` event's data is not what its digests cover.
    """
    states = [_secure_boot_value(e) for e in events if _is_secure_boot(e)]
    return all(states) if states else None


def _is_secure_boot(event: Mapping[str, Any]) -> bool:
    details = event.get("details")
    return (event.get("index") == SECURE_BOOT_PCR
            and event.get("type") == eventlog.EV_EFI_VARIABLE_DRIVER_CONFIG
            and isinstance(details, Mapping)
            and details.get("variable_guid") == EFI_GLOBAL_VARIABLE
            and details.get("unicode_name") == "SecureBoot")


def _secure_boot_value(event: Mapping[str, Any]) -> bool:
    where = f"event {event.get('number')} (SecureBoot variable)"
    if event.get("data_verified") is not True:
        raise BindingError(f"{where}: the variable data is not what the event's digests cover")
    value = event["details"].get("variable_data", "")
    try:
        data = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        data = None
    if data is None or len(data) > 1:
        raise MalformedEvidenceError(f"{where}: the data is {value!r}, expected one byte")
    return data == b"\x01"


__all__ = [
    "BANKS",
    "EFI_GLOBAL_VARIABLE",
    "PCR_COUNT",
    "Pcrs",
    "bound_pcrs",
    "check_replay",
    "data_verified",
    "event_json",
    "events_json",
    "parse_log",
    "replay_pcrs",
    "secure_boot",
    "secure_boot_state",
]
