"""SEV-SNP's appraisal hooks: Trustee's claim names in the policy input, and the native
evaluator of the default policy (``veritee/appraisal/policies/snp.rego``).

The native evaluator returns exactly what regorus returns for ``snp.rego`` on the inputs
:func:`veritee.appraisal.native.acceptable` admits (equivalence-tested against regorus);
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
                    ("snp", "snp_snp"), ("microcode", "snp_microcode"), ("fmc", "snp_fmc"))


def _lower_in(value: Any, index: Any) -> bool:
    """``is_string(v); index[lower(v)] == true`` (``index``: a name's ``reference_lower``)."""
    if type(value) is not str:
        return False
    if type(index) is not dict:
        return False
    return index.get(safe_string(value).lower()) is True


def _tcb_passing(snp: Mapping[str, Any], refs: Mapping[str, Any]) -> set[str]:
    """``tcb_not_applicable | tcb_meets``: a component without a reference value fails."""
    tcb = snp.get("reported_tcb", UNDEFINED)
    tcb = tcb if type(tcb) is dict else {}
    passing = set() if "fmc" in tcb else {"fmc"}
    for component, name in _TCB_REFS:
        value = tcb.get(component, UNDEFINED)
        if not is_number(value):
            continue
        reference = refs.get(name, UNDEFINED)
        if reference is UNDEFINED:
            continue
        if any(is_number(minimum) and value >= minimum for minimum in members(reference)):
            passing.add(component)
    return passing


def _is_true_list(value: Any) -> bool:
    """``value == [true]``."""
    return type(value) is list and len(value) == 1 and value[0] is True


def _genuine(snp: Mapping[str, Any], refs: Mapping[str, Any]) -> bool:
    emulated = snp.get("emulated", UNDEFINED)
    if emulated is False:
        return True
    return emulated is True and _is_true_list(refs.get("allow_emulated", UNDEFINED))


def _vmpl_ok(snp: Mapping[str, Any], refs: Mapping[str, Any]) -> bool:
    vmpl = snp.get("vmpl", UNDEFINED)
    allowed = refs.get("snp_vmpl", UNDEFINED)
    if absent_or_false(allowed):
        return is_number(vmpl) and vmpl == 0
    if not is_number(vmpl):
        return False
    return any(is_number(value) and value == vmpl for value in members(allowed))


def _flag_ok(snp: Mapping[str, Any], flag: str, allowed: bool) -> bool:
    """``flag == false``, or ``flag == true`` when a reference value allows it."""
    flags = snp.get("policy_flags", UNDEFINED)
    value = flags.get(flag, UNDEFINED) if type(flags) is dict else UNDEFINED
    return value is False or (allowed and value is True)


def _revocation(document: Mapping[str, Any], snp: Mapping[str, Any]) -> tuple[bool, bool]:
    """(``revocation_required``, ``revocation_ok``)."""
    settings = document.get("veritee", UNDEFINED)
    required = type(settings) is dict and settings.get("require_revocation") is True
    return required, not required or snp.get("revocation", UNDEFINED) == "checked"


def default_policy(document: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """``policies/snp.rego``: its ``checks``, ``trust_claims`` and the claim rules."""
    refs = data.get("reference", UNDEFINED)
    refs = refs if type(refs) is dict else {}
    lowered = data.get("reference_lower", UNDEFINED)
    lowered = lowered if type(lowered) is dict else {}
    snp = document.get("snp", UNDEFINED)
    snp = snp if type(snp) is dict else {}
    passing = _tcb_passing(snp, refs)
    required, revocation_ok = _revocation(document, snp)
    allowed = {flag: _is_true_list(refs.get(name, UNDEFINED)) for flag, name in _FLAG_REFS}
    host_refs = refs.get("snp_host_data", UNDEFINED)
    held = {
        "measurement": _lower_in(snp.get("measurement", UNDEFINED),
                                 lowered.get("snp_launch_measurement", UNDEFINED)),
        **{component: component in passing for component, _ in _TCB_REFS},
        "revocation": revocation_ok,
        "emulated": _genuine(snp, refs),
        "vmpl": _vmpl_ok(snp, refs),
        **{flag: _flag_ok(snp, flag, allowed[flag]) for flag, _ in _FLAG_REFS},
        "host_data": absent_or_false(host_refs) or _lower_in(snp.get("host_data", UNDEFINED),
                                                             lowered.get("snp_host_data")),
    }
    claims = _trust_claims(held)
    vmpl_listed = not absent_or_false(refs.get("snp_vmpl", UNDEFINED))
    return {"checks": _checks(held, required=required, vmpl_listed=vmpl_listed,
                              allowed=allowed),
            "configuration": claims["configuration"], "executables": claims["executables"],
            "hardware": claims["hardware"], "instance_identity": claims["instance-identity"],
            "trust_claims": claims}


def _trust_claims(held: Mapping[str, bool]) -> dict[str, int]:
    genuine, vmpl_ok = held["emulated"], held["vmpl"]
    tcb_current = all(held[component] for component, _ in _TCB_REFS)
    configured = vmpl_ok and all(held[key] for key in ("debug", "migrate_ma", "host_data"))
    return {
        "configuration": 2 if configured else 36 if vmpl_ok else 96,
        "executables": 3 if held["measurement"] else 33,
        "hardware": (2 if tcb_current and held["revocation"] else 97) if genuine else 96,
        "instance-identity": 2 if genuine else 96,
    }


def _checks(held: Mapping[str, bool], *, required: bool, vmpl_listed: bool,
            allowed: Mapping[str, bool]) -> list[dict[str, Any]]:
    """snp.rego's ``checks``, in its order."""
    entries = [
        ("measurement", _MEASUREMENT_CHECK),
        *((component, _tcb_check(component, name)) for component, name in _TCB_REFS),
        ("revocation", _REVOCATION_CHECKS[required]),
        ("emulated", _EMULATED_CHECK),
        ("vmpl", _VMPL_CHECKS[vmpl_listed]),
        *((flag, _flag_check(flag, name, allowed[flag])) for flag, name in _FLAG_REFS),
        ("host_data", _HOST_DATA_CHECK),
    ]
    return [{**entry, "held": held[key]} for key, entry in entries]


# -- the static parts of snp.rego's ``checks`` (keys in the engine's output order) -----------------

_FLAG_REFS: Final = (("debug", "snp_allow_debug"), ("migrate_ma", "snp_allow_migrate_ma"))


def _tcb_check(component: str, reference: str) -> dict[str, Any]:
    return {"field": f"reported_tcb.{component}", "name": f"snp.reported_tcb.{component}",
            "reference": reference, "rule": "min"}


def _flag_check(flag: str, reference: str, allowed: bool) -> dict[str, Any]:
    if allowed:
        return {"expected": [False, True], "field": f"policy_flags.{flag}",
                "name": f"snp.policy.{flag}", "reference": reference, "rule": "in"}
    return {"expected": False, "field": f"policy_flags.{flag}",
            "hint": f"refused unless reference value {reference} = [true]",
            "name": f"snp.policy.{flag}", "rule": "eq"}


_MEASUREMENT_CHECK: Final[dict[str, Any]] = {
    "field": "measurement", "name": "snp.measurement", "reference": "snp_launch_measurement",
    "rule": "in"}
#: By whether the broker requires revocation.
_REVOCATION_CHECKS: Final[dict[bool, dict[str, Any]]] = {
    True: {"expected": "checked", "field": "revocation",
           "hint": "the broker requires a checked CRL from AMD's ARK (require_revocation) and "
                   "none could be obtained (AMD KDS unreachable, or no current CRL)",
           "name": "snp.revocation", "rule": "eq"},
    False: {"detail": "revocation is not required by the broker "
                      "(input.veritee.require_revocation is not true); the claim is not judged",
            "field": "revocation", "name": "snp.revocation"},
}
_EMULATED_CHECK: Final[dict[str, Any]] = {
    "expected": False, "field": "emulated",
    "hint": "evidence from emulated roots passes only with reference value "
            "allow_emulated = [true]",
    "name": "snp.emulated", "rule": "eq"}
#: By whether reference value snp_vmpl is set.
_VMPL_CHECKS: Final[dict[bool, dict[str, Any]]] = {
    False: {"expected": 0, "field": "vmpl",
            "hint": "only VMPL 0 passes (a less privileged context chooses its own "
                    "REPORT_DATA) unless reference value snp_vmpl lists the allowed VMPLs",
            "name": "snp.vmpl", "rule": "eq"},
    True: {"field": "vmpl", "name": "snp.vmpl", "reference": "snp_vmpl", "rule": "in"},
}
_HOST_DATA_CHECK: Final[dict[str, Any]] = {
    "field": "host_data", "name": "snp.host_data", "optional": True,
    "reference": "snp_host_data", "rule": "in"}


__all__ = ["default_policy", "trustee_claims"]
