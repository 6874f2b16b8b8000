"""The policy engine: attestation policies turn claims into a trust vector, resource policies
turn an attestation result into a release decision. Both explain themselves.

Attestation policies are Trustee-shaped (service-anchors.md §1.5): ``package policy``, input
``{"<tee>": claims, "report_data", "runtime_data_claims", "init_data", "init_data_claims"}``,
reference values in ``data.reference``, and either a ``trust_claims`` object or top-level
rules named after the AR4SI claims (``executables``, ``hardware``, ``configuration``,
``instance_identity``, ``file_system``, ``runtime_opaque``, ``storage_opaque``,
``sourced_data``; the hyphenated names cannot be Rego rule names). Values are integers in
[-127, 127]. An optional ``checks`` output names each rule with the values it compared
(see :mod:`veritee.appraisal.explain`); for a policy without it the explanation comes from
the trust vector, the rules' defaults and the inputs their bodies read.

Resource policies: input = the verified EAR claims; data = ``{"plugin": "resource",
"resource-path": [repository, type, tag]}``, set per evaluation (one compiled policy serves
every path); output ``allow`` (anything but ``true`` denies) and optional ``checks``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from veritee.appraisal import rego
from veritee.appraisal.errors import PolicyError
from veritee.appraisal.explain import (
    ABSENT,
    check_from_entry,
    resolve,
    show,
)
from veritee.appraisal.inputs import Aliases, policy_input
from veritee.appraisal.native import BUILTIN, Evaluator, NativePolicy
from veritee.appraisal.prepared import PreparedReferences
from veritee.appraisal.result import Appraisal, Check, Decision
from veritee.appraisal.vector import CLAIM_MAX, CLAIM_MIN, TRUST_CLAIMS, ear_status, ear_tier
from veritee.errors import MisuseError

log = logging.getLogger(__name__)

#: Rego rule name of each AR4SI claim (hyphens cannot appear in rule names).
CLAIM_RULES: Final = {claim: claim.replace("-", "_") for claim in TRUST_CLAIMS}
ATTESTATION_OUTPUTS: Final = frozenset({"trust_claims", "checks", *CLAIM_RULES.values()})
RESOURCE_OUTPUTS: Final = frozenset({"allow", "checks"})

PolicyKind = Literal["attestation", "resource"]


class PolicyEngine:
    """Compiles policies once and evaluates them; one instance serves many threads.

    Compiled policies are cached by (kind, policy id, SHA-256 of the source) in an LRU of
    ``max_compiled`` entries, each for one generation of the reference values: an attestation
    policy's engine holds the prepared reference values (:class:`~veritee.appraisal.prepared.
    PreparedReferences`), so a new set of values means one compilation that replaces the
    entry, and nothing per appraisal. Shipped policies with a native evaluator run natively
    (:mod:`veritee.appraisal.native`).
    """

    def __init__(self, *, max_compiled: int = 256, native: bool = True,
                 natives: Mapping[tuple[str, str], Evaluator] | None = None) -> None:
        """``natives``: native evaluators of shipped policies, by ``(kind, exact text)``
        (the platforms' default attestation policies; the built-in resource policy's is
        always known). ``native=False`` runs every policy in regorus."""
        self._cache: rego.PolicyCache[rego.CompiledPolicy | NativePolicy] = rego.PolicyCache(
            max_compiled)
        self.native = native
        self._natives: dict[tuple[str, str], Evaluator] = {**BUILTIN, **(natives or {})}
        self._counts: Counter[str] = Counter()

    # -- attestation ---------------------------------------------------------------------------

    def appraise(self, *, tee: str, claims: Mapping[str, Any], policy_id: str, policy: str,
                 reference_values: Mapping[str, list[Any]] | PreparedReferences,
                 runtime_data: Mapping[str, Any] | None = None,
                 init_data: Mapping[str, Any] | None = None,
                 policy_version: int | None = None, aliases: Aliases | None = None,
                 init_data_claim: str | None = None,
                 settings: Mapping[str, Any] | None = None) -> Appraisal:
        """Appraise ``claims`` of ``tee`` under ``policy``; never raises for failing claims.
        ``aliases`` and ``init_data_claim`` shape the policy input as the platform says,
        ``settings`` become ``input.veritee`` (:func:`~veritee.appraisal.inputs.policy_input`).
        ``reference_values``: prepared once per change by a caller that appraises often
        (:class:`~veritee.appraisal.prepared.PreparedReferences`), or a mapping prepared here.

        Raises:
            PolicyError: the policy does not compile, fails while running, or sets no valid
                trust vector (values must be integers in [-127, 127]).
            ReferenceValueError: ``reference_values`` is not ``{name: [values]}``.
            MisuseError: ``tee`` is empty or ``claims`` is not a mapping.
        """
        if not isinstance(tee, str) or not tee:
            raise MisuseError(f"tee must be a TEE name, not {tee!r}")
        document = policy_input(tee, claims, runtime_data=runtime_data, init_data=init_data,
                                aliases=aliases, init_data_claim=init_data_claim,
                                settings=settings)
        prepared = PreparedReferences.build(reference_values)
        references = prepared.values
        compiled = self.compile("attestation", policy_id, policy, prepared)
        outputs = compiled.evaluate(document)
        vector, from_rules = _trust_vector(policy_id, outputs)
        status = ear_status(vector)
        checks = _attestation_checks(compiled, outputs, document=document, tee=tee,
                                     references=references, vector=vector,
                                     from_rules=from_rules)
        return Appraisal(tee=tee, policy_id=policy_id, policy_version=policy_version,
                         trust_vector=vector, status=status, checks=tuple(checks),
                         annotated=document)

    def check_policy(self, source: str, *, kind: PolicyKind | None = None,
                     policy_id: str = "policy") -> None:
        """Compile ``source`` without evaluating it; with ``kind``, also require the outputs
        that kind of policy needs (``trust_claims`` or a claim rule; ``allow``).

        Raises:
            PolicyError: it does not compile (the message carries regorus's, with module,
                line and column), or it defines none of the outputs ``kind`` needs.
        """
        text = rego.PolicyText.read(source, policy_id=policy_id)
        if kind is not None:
            needed = ({"trust_claims", *CLAIM_RULES.values()} if kind == "attestation"
                      else {"allow"})
            if not text.rules & needed:
                raise PolicyError(f"{kind} policy {policy_id!r} defines none of "
                                  f"{', '.join(sorted(needed))}")
        if kind == "resource":
            self.compile("resource", policy_id, source, None)
        else:
            self.compile("attestation", policy_id, source, PreparedReferences.build({}))

    # -- resources -----------------------------------------------------------------------------

    def allow_resource(self, *, policy: str, ear_claims: Mapping[str, Any], path: Sequence[str],
                       policy_id: str = "resource") -> Decision:
        """Whether ``policy`` releases the resource at ``path`` to the holder of a token
        with ``ear_claims``. Anything but ``allow == true`` denies.

        Raises:
            PolicyError: the policy does not compile or fails while running.
            MisuseError: ``path`` is not a sequence of strings or ``ear_claims`` not a mapping.
        """
        if isinstance(path, str) or not all(isinstance(part, str) for part in path) or not path:
            raise MisuseError(f"resource path must be a list of strings, not {path!r}")
        if not isinstance(ear_claims, Mapping):
            raise MisuseError(f"EAR claims are a {type(ear_claims).__name__}, not a mapping")
        route = tuple(path)
        compiled, outputs = self._resource_outputs(policy_id, policy, ear_claims, route)
        if compiled.text.unsafe:
            log.warning("resource policy %r is marked unsafe; evaluating it for %s",
                        policy_id, "/".join(route))
        allow = outputs.get("allow") if isinstance(outputs, Mapping) else None
        if not isinstance(allow, bool):
            log.warning("resource policy %r set allow to %r, not a boolean: denied",
                        policy_id, allow)
        checks = _resource_checks(policy_id, outputs, ear_claims)
        checks.append(Check(
            name="policy.allow", held=allow is True,
            detail=(f"resource policy {policy_id} set allow to {show(allow)} "
                    f"for {'/'.join(route)}"),
            values={"actual": allow, "expected": True}))
        return Decision(allow=allow is True, checks=tuple(checks), policy_id=policy_id,
                        path=route)

    def _resource_outputs(self, policy_id: str, policy: str, ear_claims: Mapping[str, Any],
                          route: tuple[str, ...]) -> tuple[rego.CompiledPolicy | NativePolicy,
                                                           Any]:
        """Evaluate a resource policy; the request is its ``data``, given per evaluation."""
        compiled = self.compile("resource", policy_id, policy, None)
        return compiled, compiled.evaluate(ear_claims, {"plugin": "resource",
                                                        "resource-path": list(route)})

    # -- compiling -----------------------------------------------------------------------------

    def _native_for(self, kind: str, source: str) -> Evaluator | None:
        """The native evaluator of the shipped policy whose text is exactly ``source``."""
        return self._natives.get((kind, source))

    @property
    def compiled_count(self) -> int:
        """How many compiled policies (per policy text and data document) are cached."""
        return len(self._cache)

    @property
    def evaluations(self) -> dict[str, int]:
        """How often shipped policies ran natively (``native``) and how often an input
        outside the native domain sent them to regorus (``declined``)."""
        return dict(self._counts)

    def native_evaluator(self, kind: str, source: str) -> Evaluator | None:
        """The native evaluator this engine uses for ``source`` (None: regorus runs it)."""
        return self._native_for(kind, source) if self.native else None

    def compile(self, kind: PolicyKind, policy_id: str, source: str,
                references: PreparedReferences | None) -> rego.CompiledPolicy | NativePolicy:
        """The policy ``source`` compiled with ``references`` as its data (cached; None: data
        is given per evaluation, as for resource policies), natively evaluated when it is a
        shipped policy with a native evaluator.

        Raises:
            PolicyError: it does not compile.
        """
        if not isinstance(source, str):
            raise PolicyError(f"policy {policy_id!r} is a {type(source).__name__}, not Rego text")
        evaluator = self._native_for(kind, source) if self.native else None
        generation = "" if references is None else references.generation
        key = (kind, policy_id, rego.source_digest(source))
        outputs = ATTESTATION_OUTPUTS if kind == "attestation" else RESOURCE_OUTPUTS
        data = None if references is None else references.document

        def build() -> rego.CompiledPolicy:
            text = rego.PolicyText.read(source, policy_id=policy_id)
            return rego.CompiledPolicy(policy_id=policy_id, text=text,
                                       outputs=outputs & text.rules, data=data,
                                       planned=self.native)

        def compiled() -> rego.CompiledPolicy:
            policy = self._cache.get((*key, "regorus"), build, generation=generation)
            assert isinstance(policy, rego.CompiledPolicy)
            return policy

        if evaluator is None:
            return compiled()

        def build_native() -> NativePolicy:
            return NativePolicy(policy_id=policy_id, text=rego.PolicyText.read(
                source, policy_id=policy_id), evaluator=evaluator, data=data, fallback=compiled,
                counts=self._counts)

        return self._cache.get((*key, "native"), build_native, generation=generation)


# -- attestation outputs -----------------------------------------------------------------------


def _trust_vector(policy_id: str, outputs: Any) -> tuple[dict[str, int], bool]:
    """The full eight-claim vector, and whether it came from per-claim rules."""
    if not isinstance(outputs, Mapping):
        raise PolicyError(f"policy {policy_id!r} produced no output")
    claims = outputs.get("trust_claims")
    from_rules = claims is None
    if from_rules:
        claims = {claim: outputs[rule] for claim, rule in CLAIM_RULES.items()
                  if outputs.get(rule) is not None}
    elif not isinstance(claims, Mapping):
        raise PolicyError(f"policy {policy_id!r}: trust_claims is {show(claims)}, not an object")
    if not claims:
        raise PolicyError(f"policy {policy_id!r} set no trust claim (define trust_claims or "
                          f"rules named {', '.join(CLAIM_RULES.values())})")
    for claim, value in claims.items():
        if claim not in CLAIM_RULES:
            raise PolicyError(f"policy {policy_id!r}: {claim!r} is not an AR4SI trust claim "
                              f"({', '.join(TRUST_CLAIMS)})")
        if isinstance(value, bool) or not isinstance(value, int) or not (
                CLAIM_MIN <= value <= CLAIM_MAX):
            raise PolicyError(f"policy {policy_id!r}: trust claim {claim} is {show(value)}, "
                              f"not an integer in [{CLAIM_MIN}, {CLAIM_MAX}]")
    return {claim: claims.get(claim, 0) for claim in TRUST_CLAIMS}, from_rules


def _attestation_checks(compiled: rego.CompiledPolicy | NativePolicy, outputs: Mapping[str, Any], *,
                        document: Mapping[str, Any], tee: str,
                        references: Mapping[str, Any], vector: Mapping[str, int],
                        from_rules: bool) -> list[Check]:
    text = compiled.text
    entries = _check_entries(outputs.get("checks"), compiled.policy_id)
    if entries is None:
        return [_claim_check(text, claim, value, document=document, references=references,
                             from_rules=from_rules)
                for claim, value in vector.items() if claim in _set_claims(outputs, from_rules)]
    checks = [check_from_entry(entry, claims=document.get(tee), references=references)
              for entry in entries]
    if not any(not check.held for check in checks):
        checks += [_claim_check(text, claim, value, document=document, references=references,
                                from_rules=from_rules)
                   for claim, value in vector.items()
                   if ear_tier(value) in ("warning", "contraindicated")]
    return checks


def _set_claims(outputs: Mapping[str, Any], from_rules: bool) -> set[str]:
    if not from_rules:
        return set(outputs["trust_claims"])
    return {claim for claim, rule in CLAIM_RULES.items() if outputs.get(rule) is not None}


def _check_entries(value: Any, policy_id: str) -> list[Mapping[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise PolicyError(f"policy {policy_id!r}: checks is {show(value)}, not a list or set")
    for index, entry in enumerate(value):
        if not (isinstance(entry, Mapping) and isinstance(entry.get("name"), str)
                and isinstance(entry.get("held"), bool)):
            raise PolicyError(f"policy {policy_id!r}: checks[{index}] is {show(entry)}; each "
                              "check needs a string name and a boolean held")
    return value


def _claim_check(text: rego.PolicyText, claim: str, value: int, *,
                 document: Mapping[str, Any], references: Mapping[str, Any],
                 from_rules: bool) -> Check:
    """Explain one trust claim of a policy that does not name its checks."""
    tier = ear_tier(value)
    held = tier in ("affirming", "none")
    rule = CLAIM_RULES[claim] if from_rules else "trust_claims"
    detail = f"{claim} is {value} ({tier})"
    values: dict[str, Any] = {"actual": value, "tier": tier, "rule": rule}
    if from_rules and rule in text.defaults and text.defaults[rule] == value:
        detail += f", the default of rule {rule}: no {rule} rule held"
        values["default"] = value
    if not held:
        read, refs = _rule_reads(text.reads.get(rule, ()), document, references)
        if read:
            shown = [f"{name} = {show(found)}" for name, found in read.items()]
            shown += [f"reference {name} = {show(found)}" if found is not None
                      else f"no reference value {name}" for name, found in refs.items()]
            detail += "; it reads " + ", ".join(shown)
            values["inputs"], values["references"] = read, refs
    return Check(name=claim, held=held, detail=detail, values=values)


def _rule_reads(bodies: Sequence[rego.RuleBody], document: Mapping[str, Any],
                references: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The input values and reference values read by the rule bodies that apply to this
    input (those reading at least one input value that is present and not an object)."""
    read: dict[str, Any] = {}
    refs: dict[str, Any] = {}
    for body in bodies:
        found = {"input." + ".".join(path): resolve(document, path) for path in body.paths}
        found = {name: value for name, value in found.items()
                 if value is not ABSENT and not isinstance(value, Mapping)}
        if found:
            read.update(found)
            refs.update({name: references.get(name) for name in body.references})
    return read, refs


# -- resource outputs --------------------------------------------------------------------------


def _resource_checks(policy_id: str, outputs: Any, ear_claims: Mapping[str, Any]) -> list[Check]:
    entries = _check_entries(outputs.get("checks") if isinstance(outputs, Mapping) else None,
                             policy_id)
    if entries is not None:
        return [check_from_entry(entry, claims=ear_claims, references={}) for entry in entries]
    submods = ear_claims.get("submods")
    if not isinstance(submods, Mapping):
        return [Check(name="submods", held=False, detail="the token has no submods object")]
    checks = []
    for name, submod in submods.items():
        status = submod.get("ear.status") if isinstance(submod, Mapping) else None
        held = status == "affirming"
        checks.append(Check(
            name=f"submods.{name}.ear.status", held=held,
            detail=f"ear.status is {show(status)}" + ("" if held else ', expected "affirming"'),
            values={"actual": status, "expected": "affirming"}))
    return checks


__all__ = ["CLAIM_RULES", "PolicyEngine", "PolicyKind"]
