"""The plan of plain Rego policies (:mod:`veritee.appraisal.plan`) against regorus.

Generated policies of the planned subset (defaults, several definitions of a rule, rule
references, comparisons, ``in``, ``not``, type checks, ``count``, ``startswith``, object and
array literals, ``query_reference_value``) over generated inputs that mix the types Rego
compares across (``1`` and ``true``, ``1`` and ``1.0``, integers near 2**53 and 2**63, strings
beyond ASCII): wherever the plan gives a result it must be regorus's result, output for
output; where regorus fails (conflicting values), the plan must not give one. Policies outside
the subset must not be planned at all.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from veritee.appraisal import plan, rego
from veritee.appraisal.errors import PolicyError

FIELDS = ("a", "b", "c", "n")
RULES = ("r0", "r1", "r2", "r3", "r4")
PACKAGES = frozenset({rego.POLICY_PACKAGE, rego.OUTPUT_PACKAGE})

SCALAR = (st.none() | st.booleans() | st.integers(-3, 5) | st.sampled_from([2**53, 2**53 + 1,
          2**63 - 1, -(2**63)]) | st.sampled_from([1.0, 2.5, -0.0, 9007199254740993.0])
          | st.text(alphabet="ab\u00e9\u4e2d", max_size=3))
VALUE = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=3), max_leaves=6)
CONSTANT = (st.none() | st.booleans() | st.integers(-3, 5) | st.sampled_from([2**53 + 1])
            | st.text(alphabet="ab\u00e9", max_size=2))


def _rego(value: Any) -> str:
    return json.dumps(value)


@st.composite
def terms(draw: st.DrawFn, earlier: tuple[str, ...]) -> str:
    field = draw(st.sampled_from(FIELDS))
    forms = [
        f"input.{field}",
        f"input.n.{field}",
        f'input["n"]["{field}"]',
        f"input.{field}[{draw(st.integers(-1, 2))}]",
        _rego(draw(CONSTANT)),
        f"[{_rego(draw(CONSTANT))}, input.{field}]",
        f'{{"k": input.{field}}}',
        f"count(input.{field})",
        f'query_reference_value("{field}")',
        f"data.reference.{field}",
    ]
    if earlier:
        rule = draw(st.sampled_from(earlier))
        forms += [rule, f"data.policy.{rule}", f'{rule}["k"]']
    return draw(st.sampled_from(forms))


@st.composite
def expressions(draw: st.DrawFn, earlier: tuple[str, ...]) -> str:
    left = draw(terms(earlier))
    right = draw(terms(earlier))
    field = draw(st.sampled_from(FIELDS))
    form = draw(st.sampled_from([
        f"{left} == {right}", f"{left} != {right}", f"{left} < {right}",
        f"{left} >= {right}", f"{left} in {right}", f"{left}", f"not {left}",
        f"not {left} == {right}", f"is_number({left})", f"is_string({left})",
        f"is_boolean({left})", f"is_object({left})", f"is_array({left})", f"is_null({left})",
        f'startswith(input.{field}, "a")', f'endswith({left}, "b")',
    ]))
    return str(form)


@st.composite
def rules(draw: st.DrawFn, index: int) -> list[str]:
    name, earlier = RULES[index], RULES[:index]
    lines = []
    if draw(st.booleans()):
        lines.append(f"default {name} := {_rego(draw(CONSTANT))}")
    for _ in range(draw(st.integers(1, 2))):
        body = draw(st.lists(expressions(earlier), min_size=1, max_size=3))
        value = draw(terms(earlier))
        shape = draw(st.integers(0, 3))
        if shape == 0:
            lines.append(f"{name} := {value}")
        elif shape == 1 and not body[0].startswith("{"):   # `if {` opens a body
            lines.append(f"{name} if {body[0]}")
        elif shape <= 2:
            lines.append(f"{name} := {value} if {{\n\t" + "\n\t".join(body) + "\n}")
        else:
            lines.append(f"{name} := {value} if {{ " + "; ".join(body) + " }")
    return lines


@st.composite
def policies(draw: st.DrawFn) -> str:
    lines = ["package policy", "", "import rego.v1", ""]
    for index in range(draw(st.integers(1, len(RULES)))):
        lines += [*draw(rules(index)), ""]
    return "\n".join(lines)


def _compiled(source: str, *, planned: bool) -> rego.CompiledPolicy:
    text = rego.PolicyText.read(source, policy_id="generated")
    return rego.CompiledPolicy(policy_id="generated", text=text, outputs=text.rules & set(RULES),
                               data={"reference": {"a": [1, "a", True], "b": {"x": 2.5},
                                                   "n": []}}, planned=planned)


def _outcome(policy: rego.CompiledPolicy, document: Any) -> Any:
    try:
        return policy.evaluate(document)
    except PolicyError:
        return "error"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies(), st.dictionaries(st.sampled_from(FIELDS), VALUE, max_size=4))
def test_the_plan_gives_regorus_results(source: str, document: dict[str, Any]) -> None:
    try:
        reference = _compiled(source, planned=False)
    except PolicyError:
        event("regorus does not compile it")
        return
    planned = _compiled(source, planned=True)
    assert planned.plan is not None, source
    try:
        mine = planned.plan.evaluate(document, {"reference": {"a": [1, "a", True],
                                                             "b": {"x": 2.5}, "n": []}})
    except plan.Undecided:
        event("undecided")
        mine = None
    theirs = _outcome(reference, document)
    if mine is not None:
        event("decided")
        assert mine == theirs, (source, document)
        assert json.dumps(mine) == json.dumps(theirs), "the same key order and number forms"
    assert _outcome(planned, document) == theirs


TRUST = 'package policy\n\nimport rego.v1\n\nok if input.a == 1\n\ndefault x := 0\n\nx := 3 if ok\n'


def test_a_plain_policy_is_planned_and_decides() -> None:
    policy = _compiled(TRUST.replace("x", "r0").replace("ok", "r1"), planned=True)
    assert policy.plan is not None
    assert policy.plan.evaluate({"a": 1}, {}) == {"r0": 3, "r1": True}
    assert policy.plan.evaluate({"a": True}, {}) == {"r0": 0, "r1": None}   # true is not 1
    assert policy.plan.evaluate({"a": 1.0}, {}) == {"r0": 3, "r1": True}


@pytest.mark.parametrize("body", [
    "x := 1 if { some i; input.a[i] == 1 }",
    "x := 1 if { every v in input.a { v == 1 } }",
    "x := 1 if input.a == 1 with input as {}",
    "x := 1 if input.a == 1\nelse := 2",
    "x contains 1 if input.a",
    "f(v) := v\nx := f(1)",
    "x := input.a + 1",
    "x = 1",
    "x := 1.5",
    "x := input.a [0]",
    "x := y",
    "x := 1 if {\n\tinput.a\n\t== 1\n}",
    "x := object.get(input, \"a\", 1)",
    "x := lower(input.a)",
    "x := data.veritee_output.result",
    "x := data.policy",
    "x := {1, 2}",
    "x := {\"a\": 1, \"a\": 2}",
    "count := 1",
    "x := \"\\ud800\"",
    "x := 1 if y\ny := 1 if x",
    "x.y := 1",
    "x := 1 if {}",
])
def test_constructs_outside_the_subset_are_not_planned(body: str) -> None:
    source = f"package policy\n\nimport rego.v1\n\n{body}\n"
    assert plan.plan(source, ["x"], package="policy", builtins_module=True,
                     packages=PACKAGES) is None


def test_other_imports_are_not_planned() -> None:
    source = "package policy\n\nimport future.keywords.if\n\nx if input.a\n"
    assert plan.plan(source, ["x"], package="policy", builtins_module=True,
                     packages=PACKAGES) is None


def test_a_policy_defining_query_reference_value_is_not_planned_for_it() -> None:
    source = 'package policy\n\nimport rego.v1\n\nx := query_reference_value("a")\n'
    assert plan.plan(source, ["x"], package="policy", builtins_module=False,
                     packages=PACKAGES) is None


@pytest.mark.parametrize(("source", "document", "why"), [
    ("x := 1 if input.a\nx := 2 if input.b", {"a": True, "b": True}, "conflicting"),
    ("x if input.a < input.b", {"a": 1, "b": "z"}, "different types"),
    ("x := input.a", {"a": 1.0}, "float in an output"),
    ("x if input.a == input.b", {"a": 2**53 + 1, "b": 9007199254740992.0}, "2**53"),
    ("x := count(input.a)", {"a": 1}, "count"),
    ("x if input.a in input.b", {"a": 1, "b": "1"}, "`in`"),
    ("x := data.reference", {}, "package"),
])
def test_evaluations_the_plan_is_not_sure_of_go_to_regorus(
        source: str, document: dict[str, Any], why: str) -> None:
    text = f"package policy\n\nimport rego.v1\n\n{source}\n"
    planned = plan.plan(text, ["x"], package="policy", builtins_module=True, packages=PACKAGES)
    assert planned is not None
    with pytest.raises(plan.Undecided, match=re.escape(why)):
        planned.evaluate(document, {"reference": {}, "policy": 1} if why == "package" else {})


def test_a_conflict_is_regorus_error_through_the_compiled_policy() -> None:
    source = ("package policy\n\nimport rego.v1\n\nr0 := 1 if input.a\n\nr0 := 2 if input.b\n")
    policy = _compiled(source, planned=True)
    assert policy.plan is not None
    with pytest.raises(PolicyError, match="failed"):
        policy.evaluate({"a": True, "b": True})
    assert policy.evaluate({"a": True, "b": False}) == {"r0": 1}


REGO_ALPHABET = st.sampled_from(list('package policy import rego.v1 default x y := if { } [ ] ( ) '
                                     '. , ; : " ` # \n \t == != < >= in not input data 0 -1 9 '
                                     '"a" true null \\ \ud800 é'))


@settings(max_examples=300, deadline=None)
@given(st.lists(REGO_ALPHABET, max_size=60).map("".join)
       | st.text(max_size=200).map(lambda t: "package policy\n\n" + t))
def test_any_text_is_planned_or_left_to_regorus_never_an_error(source: str) -> None:
    """The reader takes hostile text: it gives a plan or None, never an exception."""
    result = plan.plan(source, ["x"], package="policy", builtins_module=True,
                       packages=PACKAGES)
    if result is not None:
        with contextlib.suppress(plan.Undecided):
            result.evaluate({"a": 1}, {})


def test_deep_nesting_is_not_planned_past_the_recursion_limit() -> None:
    source = "package policy\n\nx := " + "[" * 3000 + "]" * 3000 + "\n"
    assert plan.plan(source, ["x"], package="policy", builtins_module=True,
                     packages=PACKAGES) is None
