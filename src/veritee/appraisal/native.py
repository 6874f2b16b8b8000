"""Native evaluators for the policies veritee ships, equivalent to their Rego source.

regorus takes ≈0.3 ms per evaluation of a platform's default policy, its native evaluator
≈0.05 ms (docs/ARCHITECTURE.md, "The Rego engine"); the broker runs one attestation policy
and one resource policy per flow. So the policies veritee ships and most deployments keep — the
default resource policy (``policies/resource_default.rego``, here) and each platform's
default attestation policy (in the platform's room, named by its descriptor's
``policy_native``) — also exist as Python functions that return exactly the outputs
:class:`~veritee.appraisal.rego.CompiledPolicy` returns for them. This module holds the
domain checks and Rego's semantics that every such evaluator shares.

The rules:

* A native evaluator is used only when the policy text is *exactly* the shipped text (the
  engine is given a table ``(kind, text) → evaluator``); any other policy, including an
  edited copy, runs in regorus.
* It works on a domain where its result is the same as regorus's by construction and by
  test: a document the engine takes unchanged (:func:`acceptable`), and read values of plain
  types — strings of printable ASCII without quotes or backslashes, integers within 64 bits,
  booleans, null, lists. Outside that domain (a float, a non-ASCII string, a submodule
  that is not an object, ...) it declines and the policy runs in regorus, so a corner of
  Rego semantics (Unicode ``lower``, mixed-type comparison, set ordering of unusual values)
  is never re-implemented by guesswork.
* ``tests/test_policy_native.py`` checks equality of the outputs and of the whole
  :class:`~veritee.appraisal.result.Appraisal`/``Decision`` against regorus on generated
  claim sets and token claim sets (hypothesis), and the policy tests run on both paths.

Whoever edits a shipped ``.rego`` file must edit its evaluator; the equivalence tests fail
until both agree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Final

from veritee.appraisal import rego
from veritee.appraisal.defaults import DEFAULT_RESOURCE_POLICY

UNDEFINED: Final = object()
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_DEPTH: Final = 32          # within rego.MAX_DOCUMENT_DEPTH


class Decline(Exception):
    """The input is outside the evaluator's domain: evaluate in regorus."""


Evaluator = Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]]


# -- the domain ------------------------------------------------------------------------------


def acceptable(value: Any, depth: int = 0) -> bool:
    """Whether the engine takes ``value`` unchanged (:func:`veritee.appraisal.rego.checked`),
    with exact types and without floats or NUL characters."""
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


def safe_string(value: str) -> str:
    """``value`` if it is printable ASCII without ``"`` and ``\\`` (else decline)."""
    if not (value.isascii() and value.isprintable()) or '"' in value or "\\" in value:
        raise Decline
    return value


def is_number(value: Any) -> bool:
    """Rego's ``is_number``, declining floats and integers beyond 64 bits."""
    kind = type(value)
    if kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise Decline
        return True
    if kind is float:
        raise Decline
    return False


def members(collection: Any) -> list[Any]:
    """What ``some x in collection`` iterates, for an array; anything else declines."""
    if type(collection) is not list:
        raise Decline
    return collection


def absent_or_false(value: Any) -> bool:
    """Rego's ``not x``: x is undefined or false."""
    return value is UNDEFINED or value is False


# -- policies/resource_default.rego ----------------------------------------------------------

_NO_SUBMODS: Final = {"detail": "the attestation token has no submodules", "held": False,
                      "name": "submods"}


def resource_default(document: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """``policies/resource_default.rego``: ``allow`` and the set ``checks``."""
    plugin = data.get("plugin", UNDEFINED)
    submods = document.get("submods", UNDEFINED)
    submods = submods if type(submods) is dict else {}
    checks: list[dict[str, Any]] = []
    if plugin is not UNDEFINED:
        if type(plugin) is not str:
            raise Decline
        checks.append({"actual": safe_string(plugin), "expected": "resource",
                       "held": plugin == "resource", "name": "plugin", "rule": "eq"})
    if not submods:
        checks.append(dict(_NO_SUBMODS))
    statuses = []
    for name, submod in submods.items():
        if type(submod) is not dict:
            raise Decline              # object.get on a non-object is an error in Rego
        status = submod.get("ear.status")
        if status is not None:
            if type(status) is not str:
                raise Decline
            safe_string(status)
        statuses.append(status)
        checks.append({"actual": status, "expected": "affirming", "held": status == "affirming",
                       "name": f"submods.{safe_string(name)}.ear.status", "rule": "eq"})
    allow = (plugin == "resource" and bool(submods)
             and all(status == "affirming" for status in statuses))
    return {"allow": allow, "checks": sorted(checks, key=_set_order)}


def _set_order(entry: Mapping[str, Any]) -> str:
    """The canonical order the engine gives set-valued outputs (:func:`rego.canonical`)."""
    return rego.canonical(entry)


# -- choosing and running ----------------------------------------------------------------------

#: The evaluators of the policies this package ships itself (the platforms' default
#: attestation policies bring their own: :class:`~veritee.tee.platform.Platform`
#: ``policy_native``).
BUILTIN: Final[dict[tuple[str, str], Evaluator]] = {
    ("resource", DEFAULT_RESOURCE_POLICY): resource_default}


class NativePolicy:
    """A shipped policy evaluated natively on its domain and in regorus outside it, with
    the interface of :class:`~veritee.appraisal.rego.CompiledPolicy`."""

    def __init__(self, *, policy_id: str, text: rego.PolicyText, evaluator: Evaluator,
                 data: Mapping[str, Any] | None,
                 fallback: Callable[[], rego.CompiledPolicy],
                 counts: Counter[str] | None = None) -> None:
        """``data``: the document every evaluation sees, or None to pass one to each
        :meth:`evaluate` (as :class:`~veritee.appraisal.rego.CompiledPolicy` takes it)."""
        if data is not None:
            rego.checked(data, what="policy data")     # the same refusal as the engine's
        self.policy_id = policy_id
        self.text = text
        self.data = data
        self._evaluator = evaluator if data is None or acceptable(dict(data)) else None
        self._fallback = fallback
        self._counts: Counter[str] = counts if counts is not None else Counter()

    def evaluate(self, document: Any, data: Mapping[str, Any] | None = None) -> Any:
        """The policy's outputs for ``document`` (as :meth:`CompiledPolicy.evaluate`);
        counts ``native`` or ``declined`` (evaluated in regorus) in the engine's tally."""
        given = self.data if data is None else data
        if (self._evaluator is not None and given is not None and type(document) is dict
                and acceptable(document) and (data is None or acceptable(dict(data)))):
            try:
                result = self._evaluator(document, given)
            except Decline:
                pass
            else:
                self._counts["native"] += 1
                return result
        self._counts["declined"] += 1
        return self.compiled().evaluate(document, data)

    def compiled(self) -> rego.CompiledPolicy:
        """The policy compiled by regorus (built on first use, cached by the engine)."""
        return self._fallback()


__all__ = ["BUILTIN", "UNDEFINED", "Decline", "Evaluator", "NativePolicy", "absent_or_false",
           "acceptable", "is_number", "members", "resource_default", "safe_string"]
