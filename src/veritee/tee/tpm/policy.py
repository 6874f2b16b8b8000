"""What attestation policies see of a TPM quote besides veritee's claims, and how init-data is
bound through PCR 8.

Policy input (the platform's ``policy_input`` hook, :func:`policy_input`): Trustee's TPM
verifier names (trustee ``deps/verifier/src/tpm/mod.rs``: ``pcr00`` … ``pcr23``, the SHA-256
bank in hex; ``init_data``, SHA-256 PCR 8; ``report_data``, the quote's extraData) and what
the event log says once the quote vouches for it:

- ``bound_pcrs`` {bank: [index]}: the PCRs that have events, are quoted and replay to the
  quoted value (``eventlog_pcrs`` equal to ``pcrs``). Only their events say anything.
- ``uefi_event_logs``: the events (:func:`veritee.tee.tpm.replay.event_json`: ``type_name``,
  ``index``, ``digests[].digest``, ``details.string``, ``details.device_paths``,
  ``data_verified``, ...) of the bound PCRs, under the name Trustee's policies read UEFI
  event logs by. Each keeps only its digests of the banks its PCR is bound in (a log may put
  any digest in a bank the quote does not vouch for); ``EV_NO_ACTION`` events, which extend
  nothing, are left out.
- ``secure_boot`` (bool): the ``SecureBoot`` variable measured into PCR 7, when PCR 7 is bound.
- ``kernel_cmdline`` (str): the kernel command line the boot loader measured (GRUB's
  ``kernel_cmdline:`` event, systemd-boot's text in PCR 12 or, before systemd 251, PCR 8),
  when its PCR is bound and the text is what the digest covers; the last one wins.

The events are read from the claim ``event_log`` ({"events": [...]}, the shape other rooms
give their logs), or a list under that name.

Init-data (research note se-pef-tpm-gpu.md §3.6 step 9, trustee ``verify_init_data``): the
guest extends SHA-256 PCR 8 once, from zero, with the init-data digest, so
``PCR8 = SHA-256(0^32 || digest)``. Rego has no hash over bytes, so the policy cannot compute
this; :data:`INIT_DATA` is the init-data rule that makes the broker refuse a mismatch
(``InitDataMismatchError``) before any policy runs. It reads the claim ``init_data``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from veritee.errors import EvidenceError
from veritee.eventlog import EV_IPL, EV_NO_ACTION
from veritee.tee.platform import InitDataRule
from veritee.tee.tpm.replay import BANKS, GRUB_PREFIXES, PCR_COUNT, secure_boot_state

#: The PCR the init-data digest is extended into (trustee ``INITDATA_PCR``).
INIT_DATA_PCR: Final = 8
#: (PCR, prefix) of the events carrying the kernel command line; "" takes the whole text.
_CMDLINE_EVENTS: Final = ((8, "kernel_cmdline: "), (8, "grub_kernel_cmdline "), (12, ""),
                          (8, ""))
_GRUB_TEXT: Final = tuple(p.decode() for p in GRUB_PREFIXES)


#: For the descriptor's ``init_data``: the quoted SHA-256 PCR 8 (hex), extended once from zero
#: by the init-data digest.
INIT_DATA: Final = InitDataRule(claim="pcrs.sha256.8", size=32, extended=True)


def init_data_pcr8(digest: bytes) -> bytes:
    """SHA-256 PCR 8 after one extension, from zero, by ``digest`` fitted to 32 bytes (a
    longer digest keeps its first 32 bytes, a shorter one is zero-padded, as for every
    init-data field): ``SHA-256(0^32 || digest)``."""
    return INIT_DATA.fit(digest)


def policy_input(claims: Mapping[str, Any]) -> dict[str, Any]:
    """Trustee's TPM claim names and the event log's bound events, from veritee's claims."""
    sha256 = _mapping(_mapping(claims.get("pcrs")).get("sha256"))
    bound = bound_pcrs(claims)
    events = [e for e in (_bound_event(e, bound) for e in _events(claims)) if e is not None]
    aliases: dict[str, Any] = {f"pcr{i:02}": sha256.get(str(i)) for i in range(PCR_COUNT)}
    aliases |= {
        "init_data": sha256.get(str(INIT_DATA_PCR)),
        "report_data": claims.get("extra_data"),
        "bound_pcrs": bound,
        "uefi_event_logs": events,
        "secure_boot": _secure_boot(events),
        "kernel_cmdline": kernel_cmdline(events),
    }
    return {name: value for name, value in aliases.items() if value is not None}


def bound_pcrs(claims: Mapping[str, Any]) -> dict[str, list[int]]:
    """{bank: [index]} of the PCRs whose replayed value (``eventlog_pcrs``) is the quoted one
    (``pcrs``), banks in claim order."""
    quoted, replayed = _mapping(claims.get("pcrs")), _mapping(claims.get("eventlog_pcrs"))
    out: dict[str, list[int]] = {}
    for bank in BANKS:
        ours, theirs = _mapping(replayed.get(bank)), _mapping(quoted.get(bank))
        same = sorted(int(i) for i, v in ours.items()
                      if _index(i) and _same_hex(v, theirs.get(i)))
        if same:
            out[bank] = same
    return out


def kernel_cmdline(events: Sequence[Mapping[str, Any]]) -> str | None:
    """The kernel command line of the last event that carries one verifiably (``events`` in
    :func:`~veritee.tee.tpm.replay.event_json` form, already bound)."""
    found: str | None = None
    for event in events:
        text = _details(event).get("string")
        if event.get("type") != EV_IPL or event.get("data_verified") is not True or \
                not isinstance(text, str):
            continue
        for pcr, prefix in _CMDLINE_EVENTS:
            if event.get("index") == pcr and _cmdline_prefix(text, prefix):
                found = text[len(prefix):]
                break
    return found


def _cmdline_prefix(text: str, prefix: str) -> bool:
    """``text`` starts with ``prefix``; the whole-text form is not GRUB's (its commands)."""
    if prefix:
        return text.startswith(prefix)
    return not text.startswith(_GRUB_TEXT)


def _secure_boot(events: Sequence[Mapping[str, Any]]) -> bool | None:
    if not any(e.get("index") == 7 for e in events):
        return None
    try:
        return secure_boot_state(events)
    except EvidenceError:
        return None


def _bound_event(event: Any, bound: Mapping[str, list[int]]) -> dict[str, Any] | None:
    """The event with only the digests of the banks in which its PCR is bound (a log may
    carry another digest in a bank the quote does not vouch for); None when there is none,
    and for EV_NO_ACTION events, which extend nothing (so nothing vouches for them)."""
    if not isinstance(event, Mapping) or not isinstance(event.get("digests"), list) or \
            event.get("type") == EV_NO_ACTION:
        return None
    digests = [d for d in event["digests"] if isinstance(d, Mapping)
               and isinstance(d.get("alg"), str)
               and event.get("index") in bound.get(d["alg"], ())]
    return {**event, "digests": digests} if digests else None


def _events(claims: Mapping[str, Any]) -> list[Any]:
    log = claims.get("event_log")
    events = log.get("events") if isinstance(log, Mapping) else log
    return list(events) if isinstance(events, list) else []


def _index(key: Any) -> bool:
    return isinstance(key, str) and key.isdecimal() and int(key) < PCR_COUNT


def _same_hex(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and bool(a) and a.lower() == b.lower()


def _details(event: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(event.get("details"))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


__all__ = ["INIT_DATA", "INIT_DATA_PCR", "bound_pcrs", "init_data_pcr8",
           "kernel_cmdline", "policy_input"]
