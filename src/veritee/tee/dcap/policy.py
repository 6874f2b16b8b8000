"""What attestation policies see of a TDX quote besides veritee's claims: Trustee's TDX claim
shape (trustee ``deps/verifier/src/tdx/claims.rs`` and its parsed-claims document), so that an
operator's Trustee policy runs unchanged.

Trustee's names, as veritee fills them: ``quote.header`` {``version``, ``att_key_type``,
``tee_type`` (``"81000000"``), ``reserved``, ``vendor_id``, ``user_data``} and ``quote.body``
{``tcb_svn``, ``mr_seam``, ``mrsigner_seam``, ``seam_attributes``, ``td_attributes``, ``xfam``,
``mr_td``, ``mr_config_id``, ``mr_owner``, ``mr_owner_config``, ``rtmr_0`` … ``rtmr_3``,
``report_data``, and for TD report 1.5 ``tee_tcb_svn2``, ``mr_servicetd``}, hex of the raw
bytes; ``quote.type`` and ``quote.size`` for version 5; ``td_attributes`` {``debug``,
``key_locker``, ``perfmon``, ``protection_keys``, ``septve_disable``}; ``tcb_status`` (as
veritee names it: ``UpToDate``, ...); ``collateral_expiration_status`` (``"0"`` current,
``"1"`` used past its nextUpdate); ``advisory_ids``; ``uefi_event_logs`` (the replayed CCEL:
``type_name``, ``digests[].digest``, ``details.device_paths``, ``details.string``, ...);
``init_data`` (MRCONFIGID).

``td_attributes`` is the one name where Trustee's value (an object of flags) and veritee's claim
(the hex of the field, CONTRACT.md §1) differ. In the policy input Trustee's object replaces
it (:data:`trustee_claims.replaces`); the hex stays at ``quote.body.td_attributes``, and
``veritee verify`` still prints the claim.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_BODY = (("tcb_svn", "tee_tcb_svn"), ("mr_seam", "mr_seam"),
         ("mrsigner_seam", "mr_signer_seam"), ("seam_attributes", "seam_attributes"),
         ("td_attributes", "td_attributes"), ("xfam", "xfam"), ("mr_td", "mr_td"),
         ("mr_config_id", "mr_config_id"), ("mr_owner", "mr_owner"),
         ("mr_owner_config", "mr_owner_config"), ("rtmr_0", "rtmr0"), ("rtmr_1", "rtmr1"),
         ("rtmr_2", "rtmr2"), ("rtmr_3", "rtmr3"), ("report_data", "report_data"),
         ("tee_tcb_svn2", "tee_tcb_svn2"), ("mr_servicetd", "mr_service_td"))
_FLAGS = (("debug", "debug"), ("key_locker", "kl"), ("perfmon", "perfmon"),
          ("protection_keys", "pks"), ("septve_disable", "sept_ve_disable"))
_BODY_TYPES = {"td10": (2, 584), "td15": (3, 648)}


def trustee_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    """Trustee's TDX claim names, from veritee's claims."""
    quote: dict[str, Any] = {
        "header": dict(_mapping(claims.get("header"))),
        "body": {theirs: claims[ours] for theirs, ours in _BODY if ours in claims},
    }
    if claims.get("quote_version") == 5 and claims.get("body_type") in _BODY_TYPES:
        kind, size = _BODY_TYPES[claims["body_type"]]
        quote["type"] = kind.to_bytes(2, "little").hex()
        quote["size"] = size.to_bytes(4, "little").hex()
    flags = _mapping(claims.get("td_attributes_flags"))
    log = _mapping(claims.get("event_log"))
    aliases = {
        "quote": quote,
        "td_attributes": {theirs: flags.get(ours) for theirs, ours in _FLAGS},
        "collateral_expiration_status": "1" if claims.get("collateral_expired") else "0",
        "uefi_event_logs": list(log.get("events") or []),
        "init_data": claims.get("mr_config_id"),
    }
    return {name: value for name, value in aliases.items() if value is not None}


trustee_claims.replaces = frozenset({"td_attributes"})  # type: ignore[attr-defined]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
