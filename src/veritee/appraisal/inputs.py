"""The input document an attestation policy sees, shaped as Trustee's AS shapes it.

```
{"<tee>": claims + Trustee-compatible aliases,
 "report_data": "<hex>", "runtime_data_claims": {...},
 "init_data": "<hex>", "init_data_claims": {...}}
```

(service-anchors.md §1.5, ``transform_claims``). Each platform may name a function that adds
the flat claim names Trustee's verifier emits, so a Trustee policy ports with little change. The
aliases carry veritee's types (integers, booleans, lowercase hex), not Trustee's strings;
reference values must use the same types. An alias never replaces a claim of the same name,
except the names the hook lists in its ``replaces`` attribute (where Trustee's value has another
shape than veritee's claim; the platform's docs say which).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from veritee.claims import claim_at
from veritee.errors import MisuseError

#: Adds Trustee's claim names for one TEE (a platform's ``policy_input`` hook).
Aliases = Callable[[Mapping[str, Any]], dict[str, Any]]


def policy_input(tee: str, claims: Mapping[str, Any], *,
                 runtime_data: Mapping[str, Any] | None = None,
                 init_data: Mapping[str, Any] | None = None,
                 aliases: Aliases | None = None,
                 init_data_claim: str | None = None,
                 settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``input`` document for ``tee``'s attestation policy.

    ``runtime_data`` is the structured runtime data the evidence is bound to (nonce,
    tee-pubkey, ...); ``init_data`` the parsed init-data claims; ``aliases`` the platform's
    Trustee claim names; ``init_data_claim`` the claim holding the TEE's init-data field. The
    top-level ``init_data`` and ``report_data`` are the hex values of the TEE's binding
    fields, or ``""``. ``input.veritee`` carries the broker's settings that policies may
    read (``require_revocation``: a CRL must have been checked), ``{}`` when none.

    Raises:
        MisuseError: ``claims``, ``runtime_data`` or ``init_data`` is not a mapping.
    """
    for name, value in (("claims", claims), ("runtime_data", runtime_data),
                        ("init_data", init_data)):
        if value is not None and not isinstance(value, Mapping):
            raise MisuseError(f"{name} is a {type(value).__name__}, not a mapping")
    tee_claims = dict(claims)
    replaces: frozenset[str] = getattr(aliases, "replaces", frozenset())
    for name, value in (aliases(claims) if aliases is not None else {}).items():
        if name in replaces:
            tee_claims[name] = value
        else:
            tee_claims.setdefault(name, value)
    return {
        tee: tee_claims,
        "report_data": _hex(claims.get("report_data")),
        "runtime_data_claims": dict(runtime_data or {}),
        "init_data": _hex(claim_at(dict(claims), init_data_claim)) if init_data_claim else "",
        "init_data_claims": dict(init_data or {}),
        "veritee": dict(settings or {}),
    }


def _hex(value: Any) -> str:
    return value if isinstance(value, str) else ""


__all__ = ["Aliases", "policy_input"]
