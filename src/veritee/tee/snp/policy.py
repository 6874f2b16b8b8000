"""SEV-SNP's appraisal hooks: Trustee's claim names in the policy input, and the native
evaluator of the default policy (``veritee/appraisal/policies/snp.rego``).

The native evaluator returns exactly what rego-cpp returns for ``snp.rego`` on the inputs
:func:`veritee.appraisal.native.acceptable` admits (equivalence-tested against regopy);
whoever edits ``snp.rego`` edits :func:`default_policy` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from veritee.appraisal.native import (
    UNDEFINED,
    absent_or_false,
    is_number,
    members,
    safe_string,
)


def trustee_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
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


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# -- the native evaluator of snp.rego ---------------------------------------------------------

_TCB_REFS: Final = (("bootloader", "snp_bootloader"), ("tee", "snp_tee"),
                    ("snp", "snp_snp"), ("microcode", "snp_microcode"))


def _lower_in(value: Any, references: Any) -> bool:
    """``is_string(v); some m in refs; is_string(m); lower(m) == lower(v)``."""
    if type(value) is not str:
        return False
    found_in = members(references) if references is not UNDEFINED else []
    wanted = safe_string(value).lower()
    found = False
    for member in found_in:
        if type(member) is str and safe_string(member).lower() == wanted:
            found = True
    return found


def _tcb_passing(snp: Mapping[str, Any], refs: Mapping[str, Any]) -> set[str]:
    """``tcb_unchecked | tcb_meets``."""
    tcb = snp.get("reported_tcb", UNDEFINED)
    passing = set()
    for component, name in _TCB_REFS:
        reference = refs.get(name, UNDEFINED)
        if absent_or_false(reference):
            passing.add(component)
            continue
        value = tcb.get(component, UNDEFINED) if type(tcb) is dict else UNDEFINED
        if not is_number(value):
            continue
        if any(is_number(minimum) and value >= minimum for minimum in members(reference)):
            passing.add(component)
    return passing


def _genuine(snp: Mapping[str, Any], refs: Mapping[str, Any]) -> bool:
    emulated = snp.get("emulated", UNDEFINED)
    if emulated is False:
        return True
    allowed = refs.get("allow_emulated", UNDEFINED)
    return emulated is True and type(allowed) is list and len(allowed) == 1 and (
        allowed[0] is True)


def _flag_off(snp: Mapping[str, Any], flag: str) -> bool:
    flags = snp.get("policy_flags", UNDEFINED)
    return type(flags) is dict and flags.get(flag, UNDEFINED) is False


def default_policy(document: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """``policies/snp.rego``: its ``checks``, ``trust_claims`` and the claim rules."""
    refs = data.get("reference", UNDEFINED)
    refs = refs if type(refs) is dict else {}
    snp = document.get("snp", UNDEFINED)
    snp = snp if type(snp) is dict else {}
    measurement_known = _lower_in(snp.get("measurement", UNDEFINED),
                                  refs.get("snp_launch_measurement", UNDEFINED))
    passing = _tcb_passing(snp, refs)
    genuine = _genuine(snp, refs)
    debug_off, migrate_ma_off = _flag_off(snp, "debug"), _flag_off(snp, "migrate_ma")
    host_refs = refs.get("snp_host_data", UNDEFINED)
    host_data_known = absent_or_false(host_refs) or _lower_in(
        snp.get("host_data", UNDEFINED), host_refs)
    claims = {
        "configuration": 2 if debug_off and migrate_ma_off and host_data_known else 36,
        "executables": 3 if measurement_known else 33,
        "hardware": (2 if len(passing) == len(_TCB_REFS) else 97) if genuine else 96,
        "instance-identity": 2 if genuine else 96,
    }
    held = {"measurement": measurement_known, "emulated": genuine, "debug": debug_off,
            "migrate_ma": migrate_ma_off, "host_data": host_data_known,
            **{component: component in passing for component, _ in _TCB_REFS}}
    return {"checks": [{**entry, "held": held[key]} for key, entry in _SNP_CHECKS],
            "configuration": claims["configuration"], "executables": claims["executables"],
            "hardware": claims["hardware"], "instance_identity": claims["instance-identity"],
            "trust_claims": claims}


def _tcb_check(component: str, reference: str) -> tuple[str, dict[str, Any]]:
    return component, {"field": f"reported_tcb.{component}",
                       "name": f"snp.reported_tcb.{component}", "reference": reference,
                       "rule": "min"}


#: The static part of snp.rego's ``checks`` (keys in rego-cpp's output order), by what holds.
_SNP_CHECKS: Final[tuple[tuple[str, dict[str, Any]], ...]] = (
    ("measurement", {"field": "measurement", "name": "snp.measurement",
                     "reference": "snp_launch_measurement", "rule": "in"}),
    *(_tcb_check(component, reference) for component, reference in _TCB_REFS),
    ("emulated", {"expected": False, "field": "emulated",
                  "hint": "evidence from emulated roots passes only with reference value "
                          "allow_emulated = [true]",
                  "name": "snp.emulated", "rule": "eq"}),
    ("debug", {"expected": False, "field": "policy_flags.debug", "name": "snp.policy.debug",
               "rule": "eq"}),
    ("migrate_ma", {"expected": False, "field": "policy_flags.migrate_ma",
                    "name": "snp.policy.migrate_ma", "rule": "eq"}),
    ("host_data", {"field": "host_data", "name": "snp.host_data", "optional": True,
                   "reference": "snp_host_data", "rule": "in"}),
)


__all__ = ["default_policy", "trustee_claims"]
