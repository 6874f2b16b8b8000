"""The input document an attestation policy sees, shaped as Trustee's AS shapes it.

```
{"<tee>": claims + Trustee-compatible aliases,
 "report_data": "<hex>", "runtime_data_claims": {...},
 "init_data": "<hex>", "init_data_claims": {...}}
```

(service-anchors.md §1.5, ``transform_claims``). One mapping function per TEE adds the flat
claim names Trustee's verifier emits, so a Trustee policy ports with little change. The
aliases carry veritee's types (integers, booleans, lowercase hex), not Trustee's strings;
reference values must use the same types. An alias never replaces a claim of the same name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from veritee.errors import MisuseError


def snp_aliases(claims: Mapping[str, Any]) -> dict[str, Any]:
    """Trustee's flat SNP claim names (trustee ``deps/verifier/src/snp``), from ours."""
    tcb = _mapping(claims.get("reported_tcb"))
    policy = _mapping(claims.get("policy_flags"))
    platform = _mapping(claims.get("platform_flags"))
    aliases = {
        "reported_tcb_bootloader": tcb.get("bootloader"),
        "reported_tcb_tee": tcb.get("tee"),
        "reported_tcb_snp": tcb.get("snp"),
        "reported_tcb_microcode": tcb.get("microcode"),
        "reported_tcb_fmc": tcb.get("fmc"),
        "policy_abi_major": policy.get("abi_major"),
        "policy_abi_minor": policy.get("abi_minor"),
        "policy_smt_allowed": policy.get("smt"),
        "policy_migrate_ma": policy.get("migrate_ma"),
        "policy_debug_allowed": policy.get("debug"),
        "policy_single_socket": policy.get("single_socket"),
        "platform_smt_enabled": platform.get("smt_en"),
        "platform_tsme_enabled": platform.get("tsme_en"),
        "init_data": claims.get("host_data"),
    }
    return {name: value for name, value in aliases.items() if value is not None}


#: Per TEE: the function adding Trustee's claim names.
CLAIM_ALIASES: Final[dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]]] = {
    "snp": snp_aliases,
}

#: Per TEE: the claim that carries the init-data digest (service-anchors.md §1.3 table).
INIT_DATA_CLAIM: Final[dict[str, str]] = {
    "snp": "host_data",
}


def policy_input(tee: str, claims: Mapping[str, Any], *,
                 runtime_data: Mapping[str, Any] | None = None,
                 init_data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``input`` document for ``tee``'s attestation policy.

    ``runtime_data`` is the structured runtime data the evidence is bound to (nonce,
    tee-pubkey, ...); ``init_data`` the parsed init-data claims. The top-level ``init_data``
    and ``report_data`` are the hex values of the TEE's binding fields, or ``""``.

    Raises:
        MisuseError: ``claims``, ``runtime_data`` or ``init_data`` is not a mapping.
    """
    for name, value in (("claims", claims), ("runtime_data", runtime_data),
                        ("init_data", init_data)):
        if value is not None and not isinstance(value, Mapping):
            raise MisuseError(f"{name} is a {type(value).__name__}, not a mapping")
    tee_claims = dict(claims)
    for name, value in CLAIM_ALIASES.get(tee, _no_aliases)(claims).items():
        tee_claims.setdefault(name, value)
    init_claim = INIT_DATA_CLAIM.get(tee)
    return {
        tee: tee_claims,
        "report_data": _hex(claims.get("report_data")),
        "runtime_data_claims": dict(runtime_data or {}),
        "init_data": _hex(claims.get(init_claim)) if init_claim else "",
        "init_data_claims": dict(init_data or {}),
    }


def _no_aliases(claims: Mapping[str, Any]) -> dict[str, Any]:
    return {}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _hex(value: Any) -> str:
    return value if isinstance(value, str) else ""


__all__ = ["CLAIM_ALIASES", "INIT_DATA_CLAIM", "policy_input", "snp_aliases"]
