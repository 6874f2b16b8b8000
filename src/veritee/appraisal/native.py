"""Native evaluators for the policies veritee ships, equivalent to their Rego source.

rego-cpp takes 1–3 ms per evaluation of the default policies (most of it converting the
input document), and serialises evaluations; the broker runs one attestation policy and one
resource policy per flow. So the two policies veritee ships and most deployments keep —
the default SEV-SNP attestation policy (``policies/snp.rego``) and the default resource
policy (``policies/resource_default.rego``) — also exist here as Python functions that
return exactly the outputs :class:`~veritee.appraisal.rego.CompiledPolicy` returns for them.

The rules:

* A native evaluator is used only when the policy text is *exactly* the shipped text
  (:func:`native_for`); any other policy, including an edited copy, runs in regopy.
* It works on a domain where its result is the same as rego-cpp's by construction and by
  test: a document regopy passes unchanged (:func:`acceptable`), and read values of plain
  types — strings of printable ASCII without quotes or backslashes, integers within 64 bits,
  booleans, null, lists. Outside that domain (a float, a non-ASCII string, a submodule
  that is not an object, ...) it declines and the policy runs in regopy, so a corner of
  Rego semantics (Unicode ``lower``, mixed-type comparison, set ordering of unusual values)
  is never re-implemented by guesswork.
* ``tests/test_policy_native.py`` checks equality of the outputs and of the whole
  :class:`~veritee.appraisal.result.Appraisal`/``Decision`` against regopy on generated
  claim sets and token claim sets (hypothesis), and the policy tests run on both paths.

Whoever edits a shipped ``.rego`` file must edit its evaluator here; the equivalence tests
fail until both agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from veritee.appraisal import rego
from veritee.appraisal.defaults import DEFAULT_RESOURCE_POLICY, default_attestation_policy

_UNDEFINED: Final = object()
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_DEPTH: Final = 32          # rego._MAX_PLAIN_DEPTH


class _Decline(Exception):
    """The input is outside the evaluator's domain: evaluate in regopy."""


Evaluator = Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]]


# -- the domain ------------------------------------------------------------------------------


def acceptable(value: Any, depth: int = 0) -> bool:
    """Whether regopy takes ``value`` through ``set_input`` unchanged and without error:
    :func:`veritee.appraisal.rego._plain` with exact types, and strings encodable as UTF-8."""
    kind = type(value)
    if kind is str:
        return _text(value)
    if kind is int:
        return bool(_INT64_MIN <= value <= _INT64_MAX)
    if value is None or kind is bool:
        return True
    if depth >= _MAX_DEPTH:
        return False
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not _text(key) or not acceptable(item, depth + 1):
                return False
        return True
    if kind is list:
        return all(acceptable(item, depth + 1) for item in value)
    return False


def _text(value: str) -> bool:
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _safe_string(value: str) -> str:
    """``value`` if it is printable ASCII without ``"`` and ``\\`` (else decline)."""
    if not (value.isascii() and value.isprintable()) or '"' in value or "\\" in value:
        raise _Decline
    return value


def _number(value: Any) -> bool:
    """Rego's ``is_number``, declining floats and integers beyond 64 bits."""
    kind = type(value)
    if kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _Decline
        return True
    if kind is float:
        raise _Decline
    return False


def _members(collection: Any) -> list[Any]:
    """What ``some x in collection`` iterates, for an array; anything else declines."""
    if type(collection) is not list:
        raise _Decline
    return collection


def _absent_or_false(value: Any) -> bool:
    """Rego's ``not x``: x is undefined or false."""
    return value is _UNDEFINED or value is False


# -- policies/snp.rego -----------------------------------------------------------------------

_TCB_REFS: Final = (("bootloader", "snp_bootloader"), ("tee", "snp_tee"),
                    ("snp", "snp_snp"), ("microcode", "snp_microcode"))


def _lower_in(value: Any, references: Any) -> bool:
    """``is_string(v); some m in refs; is_string(m); lower(m) == lower(v)``."""
    if type(value) is not str:
        return False
    members = _members(references) if references is not _UNDEFINED else []
    wanted = _safe_string(value).lower()
    found = False
    for member in members:
        if type(member) is str and _safe_string(member).lower() == wanted:
            found = True
    return found


def _tcb_passing(snp: Mapping[str, Any], refs: Mapping[str, Any]) -> set[str]:
    """``tcb_unchecked | tcb_meets``."""
    tcb = snp.get("reported_tcb", _UNDEFINED)
    passing = set()
    for component, name in _TCB_REFS:
        reference = refs.get(name, _UNDEFINED)
        if _absent_or_false(reference):
            passing.add(component)
            continue
        value = tcb.get(component, _UNDEFINED) if type(tcb) is dict else _UNDEFINED
        if not _number(value):
            continue
        if any(_number(minimum) and value >= minimum for minimum in _members(reference)):
            passing.add(component)
    return passing


def _genuine(snp: Mapping[str, Any], refs: Mapping[str, Any]) -> bool:
    emulated = snp.get("emulated", _UNDEFINED)
    if emulated is False:
        return True
    allowed = refs.get("allow_emulated", _UNDEFINED)
    return emulated is True and type(allowed) is list and len(allowed) == 1 and (
        allowed[0] is True)


def _flag_off(snp: Mapping[str, Any], flag: str) -> bool:
    flags = snp.get("policy_flags", _UNDEFINED)
    return type(flags) is dict and flags.get(flag, _UNDEFINED) is False


def snp_default(document: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """``policies/snp.rego``: its ``checks``, ``trust_claims`` and the claim rules."""
    refs = data.get("reference", _UNDEFINED)
    refs = refs if type(refs) is dict else {}
    snp = document.get("snp", _UNDEFINED)
    snp = snp if type(snp) is dict else {}
    measurement_known = _lower_in(snp.get("measurement", _UNDEFINED),
                                  refs.get("snp_launch_measurement", _UNDEFINED))
    passing = _tcb_passing(snp, refs)
    genuine = _genuine(snp, refs)
    debug_off, migrate_ma_off = _flag_off(snp, "debug"), _flag_off(snp, "migrate_ma")
    host_refs = refs.get("snp_host_data", _UNDEFINED)
    host_data_known = _absent_or_false(host_refs) or _lower_in(
        snp.get("host_data", _UNDEFINED), host_refs)
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


# -- policies/resource_default.rego ----------------------------------------------------------

_NO_SUBMODS: Final = {"detail": "the attestation token has no submodules", "held": False,
                      "name": "submods"}


def resource_default(document: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """``policies/resource_default.rego``: ``allow`` and the set ``checks``."""
    plugin = data.get("plugin", _UNDEFINED)
    submods = document.get("submods", _UNDEFINED)
    submods = submods if type(submods) is dict else {}
    checks: list[dict[str, Any]] = []
    if plugin is not _UNDEFINED:
        if type(plugin) is not str:
            raise _Decline
        checks.append({"actual": _safe_string(plugin), "expected": "resource",
                       "held": plugin == "resource", "name": "plugin", "rule": "eq"})
    if not submods:
        checks.append(dict(_NO_SUBMODS))
    statuses = []
    for name, submod in submods.items():
        if type(submod) is not dict:
            raise _Decline              # object.get on a non-object is an error in Rego
        status = submod.get("ear.status")
        if status is not None:
            if type(status) is not str:
                raise _Decline
            _safe_string(status)
        statuses.append(status)
        checks.append({"actual": status, "expected": "affirming", "held": status == "affirming",
                       "name": f"submods.{_safe_string(name)}.ear.status", "rule": "eq"})
    allow = (plugin == "resource" and bool(submods)
             and all(status == "affirming" for status in statuses))
    return {"allow": allow, "checks": sorted(checks, key=_set_order)}


def _set_order(entry: Mapping[str, Any]) -> str:
    """rego-cpp orders set members by their JSON text (keys sorted); on the domain above
    (strings without quotes, backslashes or control characters, booleans, null) the compact
    JSON text sorts the same way."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"))


# -- choosing and running ----------------------------------------------------------------------

def _shipped() -> dict[tuple[str, str], Evaluator]:
    return {("attestation", default_attestation_policy("snp")): snp_default,
            ("resource", DEFAULT_RESOURCE_POLICY): resource_default}


_SHIPPED: Final = _shipped()


def native_for(kind: str, source: str) -> Evaluator | None:
    """The native evaluator of the shipped policy whose text is exactly ``source``."""
    return _SHIPPED.get((kind, source))


class NativePolicy:
    """A shipped policy evaluated natively on its domain and in regopy outside it, with
    the interface of :class:`~veritee.appraisal.rego.CompiledPolicy`."""

    def __init__(self, *, policy_id: str, text: rego.PolicyText, evaluator: Evaluator,
                 data: Mapping[str, Any], fallback: Callable[[], rego.CompiledPolicy]) -> None:
        rego.data_json(data)            # the same refusal as a build of the bundle
        self.policy_id = policy_id
        self.text = text
        self.data = data
        self._evaluator = evaluator if acceptable(dict(data)) else None
        self._fallback = fallback

    def evaluate(self, document: Any) -> Any:
        """The policy's outputs for ``document`` (as :meth:`CompiledPolicy.evaluate`)."""
        if self._evaluator is not None and type(document) is dict and acceptable(document):
            try:
                return self._evaluator(document, self.data)
            except _Decline:
                pass
        return self.regopy().evaluate(document)

    def regopy(self) -> rego.CompiledPolicy:
        """The policy compiled by regopy (built on first use, cached by the engine)."""
        return self._fallback()


__all__ = ["NativePolicy", "acceptable", "native_for", "resource_default", "snp_default"]
