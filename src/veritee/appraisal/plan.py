"""Plain Rego, planned: policies made only of complete rules over comparisons, evaluated as
Python closures instead of in regorus.

An operator's attestation policy is most often a list of ordinary rules, each comparing a
claim with a literal or a reference value, that together set a trust vector. regorus spends
about 5 µs per such rule on the project machine (a 200-rule policy: 1.1-1.8 ms per
appraisal); the closures built here take a fraction of that. Nothing is given up for it:

* :func:`plan` accepts a policy only if every rule is in the subset below, and otherwise
  returns None (the policy then runs in regorus alone). Reading is strict: anything the
  planner does not recognise token by token (a variable, ``some``, ``with``, ``else``, a
  function, a partial rule, arithmetic, a float literal, a newline where Rego would continue
  the expression, a selector after a space, ...) leaves the policy unplanned.
* An evaluation whose exact Rego result the plan cannot be sure of raises
  :class:`Undecided`, and that one evaluation runs in regorus: two definitions of a rule
  giving different values (regorus's conflict error), an ordering between values of
  different types, a count of a number, a float in an output (regorus prints ``1.0`` as
  ``1``), numbers beyond 2**53 compared with a float, a ``data`` document that has a key of
  the policy's package.
* The policy is still compiled and probed by regorus (:mod:`veritee.appraisal.rego`), so
  compile errors are regorus's; ``tests/appraisal/test_plan.py`` checks generated policies
  and inputs against regorus, output for output.

The subset (Rego v1, ``package policy``, optionally ``import rego.v1``)::

    rule  := "default" NAME ":=" constant
           | NAME ":=" term ["if" body]
           | NAME "if" body
    body  := "{" expr (NEWLINE | ";") ... "}" | expr
    expr  := ["not"] term [("==" | "!=" | "<" | "<=" | ">" | ">=" | "in") term]
    term  := string | integer | true | false | null | [term, ...] | {string: term, ...}
           | ref | call
    ref   := (input | data.NAME | RULE) ("." NAME | "[" string-or-integer "]")*
    call  := is_number | is_string | is_boolean | is_array | is_object | is_null | count
             | startswith | endswith | query_reference_value, applied to terms
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["Plan", "Undecided", "plan"]


class Undecided(Exception):
    """The plan cannot give this evaluation's exact Rego result: ask regorus."""


class _Unplannable(Exception):
    """The policy is outside the subset (internal to :func:`plan`)."""


#: Undefined (Rego's "no value"), distinct from every JSON value.
_UNDEF: Final[Any] = type("Undefined", (), {"__repr__": lambda self: "<undefined>"})()
_KEYWORDS: Final = frozenset({
    "as", "contains", "data", "default", "else", "every", "false", "if", "import", "in",
    "input", "not", "null", "package", "some", "true", "with"})
_INT_LIMIT: Final = 2 ** 63
_EXACT_FLOAT: Final = 2 ** 53
_TOKEN: Final = re.compile(r"""
    (?P<space>[ \t\r]+) | (?P<comment>\#[^\n]*) | (?P<newline>\n)
  | (?P<string>"(?:[^"\\\n]|\\.)*") | (?P<raw>`[^`]*`)
  | (?P<number>-?[0-9][0-9A-Za-z_.]*)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>:=|==|!=|<=|>=|[<>{}\[\]().,;:])
""", re.VERBOSE)
_INTEGER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)")

Term = Callable[["_Context"], Any]
Expr = Callable[["_Context"], bool]


# -- tokens -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    start: int
    end: int


def _tokens(source: str) -> list[_Token]:
    found, position = [], 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None:
            raise _Unplannable(f"character {source[position]!r}")
        kind = match.lastgroup or ""
        if kind not in ("space", "comment"):
            found.append(_Token(kind, match.group(), match.start(), match.end()))
        position = match.end()
    found.append(_Token("end", "", position, position))
    return found


# -- values -----------------------------------------------------------------------------------

_NULL, _BOOLEAN, _NUMBER, _STRING, _ARRAY, _OBJECT = range(6)


def _kind(value: Any) -> int:
    kind = type(value)
    if kind is str:
        return _STRING
    if kind is bool:
        return _BOOLEAN
    if kind is int or kind is float:
        return _NUMBER
    if kind is dict or isinstance(value, Mapping):
        return _OBJECT
    if kind is list or kind is tuple:
        return _ARRAY
    if value is None:
        return _NULL
    raise Undecided(f"a {kind.__name__} is not a JSON value")


def _mixed(one: Any, other: Any) -> tuple[Any, Any]:
    """An integer and a float, if regorus compares them exactly (it may compare an integer
    with a float as two doubles, which is exact only up to 2**53)."""
    if abs(one) > _EXACT_FLOAT or abs(other) > _EXACT_FLOAT:
        raise Undecided("an integer and a float beyond 2**53 compared")
    return one, other


def _equal(one: Any, other: Any) -> bool:
    """Rego's equality: values of different types are never equal (``true != 1``)."""
    kind = type(one)
    if kind is type(other) and (kind is str or kind is bool or kind is int):
        return bool(one == other)
    left, right = _kind(one), _kind(other)
    if left != right:
        return False
    if left == _NUMBER:
        if type(one) is not type(other):
            _mixed(one, other)
        return bool(one == other)
    if left == _ARRAY:
        return len(one) == len(other) and all(map(_equal, one, other))
    if left == _OBJECT:
        return one.keys() == other.keys() and all(_equal(one[k], other[k]) for k in one)
    return bool(one == other)


def _order(one: Any, other: Any) -> tuple[Any, Any]:
    """Both values, if Python orders them as Rego does (two strings or two numbers)."""
    left, right = _kind(one), _kind(other)
    if left == right == _STRING:
        return one, other
    if left == right == _NUMBER:
        return _mixed(one, other) if type(one) is not type(other) else (one, other)
    raise Undecided("an ordering of values of different types")


def _member(item: Any, collection: Any) -> bool:
    kind = _kind(collection)
    if kind == _ARRAY:
        return any(_equal(item, element) for element in collection)
    if kind == _OBJECT:
        return any(_equal(item, element) for element in collection.values())
    raise Undecided("`in` over a value that is not an array or object")


def _holds(value: Any) -> bool:
    """A bare term holds when it is defined and not ``false``."""
    return value is not _UNDEF and value is not False


def _ordered(test: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(one: Any, other: Any) -> bool:
        kind = type(one)
        if kind is type(other) and (kind is int or kind is str or kind is float):
            return bool(test(one, other))
        left, right = _order(one, other)
        return bool(test(left, right))
    return compare


_COMPARE: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "==": _equal,
    "!=": lambda a, b: not _equal(a, b),
    "<": _ordered(operator.lt),
    "<=": _ordered(operator.le),
    ">": _ordered(operator.gt),
    ">=": _ordered(operator.ge),
    "in": _member,
}


def _count(value: Any) -> int:
    if _kind(value) in (_STRING, _ARRAY, _OBJECT):
        return len(value)
    raise Undecided("count of a value that is not a string, array or object")


def _affix(test: str) -> Callable[[Any, Any], bool]:
    def call(text: Any, affix: Any) -> bool:
        if type(text) is not str or type(affix) is not str:
            raise Undecided(f"{test} of a value that is not a string")
        return bool(getattr(text, test)(affix))
    return call


_BUILTINS: Final[dict[str, tuple[int, Callable[..., Any]]]] = {
    "is_number": (1, lambda v: (type(v) is int or type(v) is float) or (
        type(v) is not bool and _kind(v) == _NUMBER)),
    "is_string": (1, lambda v: _kind(v) == _STRING),
    "is_boolean": (1, lambda v: _kind(v) == _BOOLEAN),
    "is_array": (1, lambda v: _kind(v) == _ARRAY),
    "is_object": (1, lambda v: _kind(v) == _OBJECT),
    "is_null": (1, lambda v: _kind(v) == _NULL),
    "count": (1, _count),
    "startswith": (2, _affix("startswith")),
    "endswith": (2, _affix("endswith")),
}


def _select(value: Any, key: Any) -> Any:
    """``value[key]``, or undefined."""
    kind = type(value)
    if kind is dict:
        return value.get(key, _UNDEF) if type(key) is str else _UNDEF
    if value is _UNDEF:
        return _UNDEF
    if kind is list or kind is tuple:
        if type(key) is int and 0 <= key < len(value):
            return value[key]
        return _UNDEF
    if isinstance(value, Mapping) and type(key) is str:
        return value.get(key, _UNDEF)
    return _UNDEF


def _exact_output(value: Any) -> Any:
    """``value`` as regorus would give it back, or :class:`Undecided`."""
    kind = _kind(value)
    if kind == _NUMBER and type(value) is float:
        raise Undecided("a float in an output (regorus prints 1.0 as 1)")
    if kind == _ARRAY:
        return [_exact_output(item) for item in value]
    if kind == _OBJECT:
        return {key: _exact_output(value[key]) for key in sorted(value)}
    return value


# -- evaluation -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Context:
    input: Any
    data: Any
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Definition:
    value: Term
    body: tuple[Expr, ...]


class _Rule:
    """One complete rule: its definitions and default, evaluated once per evaluation."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.definitions: list[_Definition] = []
        self.default: Any = _UNDEF

    def value(self, context: _Context) -> Any:
        values = context.values
        found = values.get(self.name, _UNDEF)
        if found is _UNDEF and self.name not in values:
            found = values[self.name] = self._evaluate(context)
        return found

    def _evaluate(self, context: _Context) -> Any:
        result = _UNDEF
        for definition in self.definitions:
            for expr in definition.body:
                if not expr(context):
                    break
            else:
                value = definition.value(context)
                if value is _UNDEF:
                    continue
                if result is not _UNDEF and not _equal(result, value):
                    raise Undecided(f"rule {self.name!r} has conflicting values")
                result = value
        return self.default if result is _UNDEF else result


class Plan:
    """A planned policy: :meth:`evaluate` gives the same outputs as regorus, or raises
    :class:`Undecided`."""

    def __init__(self, rules: Mapping[str, _Rule], outputs: Sequence[str],
                 packages: frozenset[str]) -> None:
        self._rules = dict(rules)
        self._outputs = tuple(outputs)
        self._packages = packages

    def evaluate(self, document: Any, data: Any) -> dict[str, Any]:
        """``{output: value or None}`` for ``document`` as ``input``.

        Raises:
            Undecided: regorus must evaluate this one.
        """
        if type(document) is not dict or not isinstance(data, Mapping):
            raise Undecided("the input or data is not an object")
        if any(package in data for package in self._packages):
            raise Undecided("data has a key of a policy package")
        context = _Context(document, data)
        result: dict[str, Any] = {}
        for name in self._outputs:
            rule = self._rules.get(name)
            value = _UNDEF if rule is None else rule.value(context)
            result[name] = None if value is _UNDEF else _exact_output(value)
        return result


# -- reading ----------------------------------------------------------------------------------


class _Reader:
    """Recursive descent over the tokens; every unexpected token is :class:`_Unplannable`."""

    def __init__(self, source: str, *, builtins_module: bool, package: str,
                 packages: frozenset[str]) -> None:
        self.tokens = _tokens(source)
        self.packages = packages
        self.at = 0
        self.package = package
        self.builtins_module = builtins_module
        self.rules: dict[str, _Rule] = {}
        self.references: list[tuple[str, _Token]] = []
        self.edges: dict[str, set[str]] = {}
        self.current = ""
        self.defined: set[str] = set()

    # token helpers
    def peek(self, offset: int = 0) -> _Token:
        return self.tokens[min(self.at + offset, len(self.tokens) - 1)]

    def take(self, kind: str | None = None, text: str | None = None) -> _Token:
        token = self.peek()
        if (kind is not None and token.kind != kind) or (text is not None and token.text != text):
            raise _Unplannable(f"unexpected {token.text or 'end'!r} at offset {token.start}")
        self.at += 1
        return token

    def accept(self, text: str) -> bool:
        if self.peek().text == text and self.peek().kind in ("op", "name"):
            self.at += 1
            return True
        return False

    def newlines(self) -> None:
        while self.peek().kind == "newline":
            self.at += 1

    def end_of_line(self) -> None:
        if self.peek().kind != "end":
            self.take("newline")

    # module
    def module(self) -> dict[str, _Rule]:
        self.newlines()
        self.take("name", "package")
        self.take("name", self.package)
        self.end_of_line()
        self.newlines()
        if self.peek().text == "import":
            self.at += 1
            for part in ("rego", ".", "v1"):
                self.take(text=part)
            self.end_of_line()
            self.newlines()
        while self.peek().kind != "end":
            self.rule()
            self.end_of_line()
            self.newlines()
        self._resolve()
        return self.rules

    def rule(self) -> None:
        if self.accept("default"):
            rule = self._rule(self.take("name").text)
            self.take("op", ":=")
            value = self.term()
            if rule.default is not _UNDEF or getattr(value, "constant", _UNDEF) is _UNDEF:
                raise _Unplannable(f"default of {rule.name!r}")
            rule.default = value.constant  # type: ignore[attr-defined]
            return
        rule = self._rule(self.take("name").text)
        if self.accept(":="):
            value = self.term()
            body = self.body() if self.accept("if") else ()
        else:
            self.take("name", "if")
            value, body = _constant(True), self.body()
        rule.definitions.append(_Definition(value, body))

    def _rule(self, name: str) -> _Rule:
        self.current = name
        if name in _KEYWORDS or name in _BUILTINS or name == "query_reference_value":
            raise _Unplannable(f"a rule named {name!r}")
        self.defined.add(name)
        return self.rules.setdefault(name, _Rule(name))

    def body(self) -> tuple[Expr, ...]:
        if self.peek().text != "{":
            return (self.expr(),)
        self.take("op", "{")
        exprs = []
        while True:
            while self.peek().kind == "newline" or self.peek().text == ";":
                self.at += 1
            if self.accept("}"):
                break
            exprs.append(self.expr())
            if self.peek().text not in ("}", ";") and self.peek().kind != "newline":
                raise _Unplannable(f"unexpected {self.peek().text!r} after an expression")
        if not exprs:
            raise _Unplannable("an empty body")
        return tuple(exprs)

    def expr(self) -> Expr:
        negate = self.accept("not")
        left = self.term()
        operator = self.peek().text if self.peek().kind in ("op", "name") else ""
        if operator in _COMPARE:
            self.at += 1
            self.newlines()
            right, compare = self.term(), _COMPARE[operator]
            constant = getattr(right, "constant", _UNDEF)
            if constant is not _UNDEF:
                def holds(context: _Context) -> bool:
                    one = left(context)
                    return one is not _UNDEF and compare(one, constant)
            else:
                def holds(context: _Context) -> bool:
                    one, other = left(context), right(context)
                    return one is not _UNDEF and other is not _UNDEF and compare(one, other)
        else:
            def holds(context: _Context) -> bool:
                return _holds(left(context))
        if negate:
            return lambda context: not holds(context)
        return holds

    # terms
    def term(self) -> Term:
        token = self.take()
        if token.kind in ("string", "raw", "number") or token.text in ("true", "false", "null"):
            return _constant(_literal(token))
        if token.text == "[":
            return self._array()
        if token.text == "{":
            return self._object()
        if token.kind != "name":
            raise _Unplannable(f"unexpected {token.text!r}")
        if self.peek().text == "(" and self.peek().start == token.end:
            return self._call(token.text)
        return self._ref(token)

    def _array(self) -> Term:
        items = self._list("]", self.term)
        constants = [getattr(item, "constant", _UNDEF) for item in items]
        if all(c is not _UNDEF for c in constants):
            return _constant(constants)

        def array(context: _Context) -> Any:
            values = [item(context) for item in items]
            return _UNDEF if any(v is _UNDEF for v in values) else values
        return array

    def _object(self) -> Term:
        pairs = self._list("}", self._pair)
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            raise _Unplannable("an object literal with a repeated key")
        constants = {key: getattr(item, "constant", _UNDEF) for key, item in pairs}
        if all(c is not _UNDEF for c in constants.values()):
            return _constant(constants)

        def obj(context: _Context) -> Any:
            out = {}
            for key, item in pairs:
                value = item(context)
                if value is _UNDEF:
                    return _UNDEF
                out[key] = value
            return out
        return obj

    def _pair(self) -> tuple[str, Term]:
        key = _literal(self.take())
        if type(key) is not str:
            raise _Unplannable("an object key that is not a string")
        self.take("op", ":")
        self.newlines()
        return key, self.term()

    def _list(self, close: str, item: Callable[[], Any]) -> list[Any]:
        items: list[Any] = []
        self.newlines()
        while not self.accept(close):
            items.append(item())
            self.newlines()
            if not self.accept(","):
                self.newlines()
                self.take("op", close)
                break
            self.newlines()
        return items

    def _call(self, name: str) -> Term:
        self.take("op", "(")
        args = self._list(")", self.term)
        if name == "query_reference_value" and self.builtins_module and len(args) == 1:
            (arg,) = args
            return lambda context: _select(_select(context.data, "reference"), arg(context))
        if name not in _BUILTINS or _BUILTINS[name][0] != len(args):
            raise _Unplannable(f"a call of {name!r} with {len(args)} arguments")
        function = _BUILTINS[name][1]
        if len(args) == 1:
            (arg,) = args

            def unary(context: _Context) -> Any:
                value = arg(context)
                return _UNDEF if value is _UNDEF else function(value)
            return unary

        def call(context: _Context) -> Any:
            values = [arg(context) for arg in args]
            return _UNDEF if any(v is _UNDEF for v in values) else function(*values)
        return call

    def _ref(self, head: _Token) -> Term:
        keys = list(self._selectors(head))
        if head.text == "input":
            base: Term = lambda context: context.input  # noqa: E731
        elif head.text == "data":
            if not keys or type(keys[0]) is not str:
                raise _Unplannable("`data` without a name")
            if keys[0] == self.package:
                if len(keys) < 2 or type(keys[1]) is not str:
                    raise _Unplannable(f"data.{self.package} without a rule")
                head, keys = _Token("name", keys[1], head.start, head.end), keys[2:]
                return self._rule_ref(head, keys)
            if keys[0] in self.packages:
                raise _Unplannable(f"data.{keys[0]} is a policy package")
            base = lambda context: context.data  # noqa: E731
        elif head.text in _KEYWORDS:
            raise _Unplannable(f"unexpected {head.text!r}")
        else:
            return self._rule_ref(head, keys)
        return _path(base, keys)

    def _rule_ref(self, head: _Token, keys: list[Any]) -> Term:
        self.references.append((head.text, head))
        self.edges.setdefault(self.current, set()).add(head.text)
        if head.text in _KEYWORDS or head.text in _BUILTINS:
            raise _Unplannable(f"unexpected {head.text!r}")
        return _path(self.rules.setdefault(head.text, _Rule(head.text)).value, keys)

    def _selectors(self, head: _Token) -> Iterator[Any]:
        end = head.end
        while self.peek().start == end and self.peek().text in (".", "["):
            if self.take().text == ".":
                key = self.take("name")
                yield key.text
            else:
                key = self.take()
                value = _literal(key)
                if type(value) not in (str, int):
                    raise _Unplannable("a selector that is not a string or integer")
                yield value
                key = self.take("op", "]")
            end = key.end

    def _resolve(self) -> None:
        for name, token in self.references:
            if name not in self.defined:
                raise _Unplannable(f"{name!r} at offset {token.start} is not a rule")
        _acyclic(self.edges)


def _acyclic(edges: Mapping[str, set[str]]) -> None:
    """Refuse a rule that depends on itself (regorus refuses it too; here it would recurse)."""
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise _Unplannable(f"rule {name!r} depends on itself")
        state[name] = 1
        for other in edges.get(name, ()):
            visit(other)
        state[name] = 2
    for name in edges:
        visit(name)


def _path(base: Term, keys: Sequence[Any]) -> Term:
    if not keys:
        return base
    if len(keys) == 1:
        (key,) = keys

        def one(context: _Context) -> Any:
            value = base(context)
            if type(value) is dict and type(key) is str:
                return value.get(key, _UNDEF)
            return _select(value, key)
        return one

    def get(context: _Context) -> Any:
        value = base(context)
        for key in keys:
            if type(value) is dict and type(key) is str:
                value = value.get(key, _UNDEF)
            else:
                value = _select(value, key)
            if value is _UNDEF:
                break
        return value
    return get


def _constant(value: Any) -> Term:
    def constant(context: _Context) -> Any:
        return value
    constant.constant = value  # type: ignore[attr-defined]
    return constant


def _literal(token: _Token) -> Any:
    if token.kind == "string":
        value = json.loads(token.text)
        if any(0xD800 <= ord(char) <= 0xDFFF for char in value):
            raise _Unplannable("a string literal with a surrogate")
        return value
    if token.kind == "raw":
        return token.text[1:-1]
    if token.kind == "number":
        if not _INTEGER.fullmatch(token.text) or not -_INT_LIMIT <= int(token.text) < _INT_LIMIT:
            raise _Unplannable(f"the number {token.text} (only 64-bit integers are planned)")
        return int(token.text)
    if token.text in ("true", "false", "null"):
        return {"true": True, "false": False, "null": None}[token.text]
    raise _Unplannable(f"unexpected {token.text!r}")


def plan(source: str, outputs: Sequence[str], *, package: str, builtins_module: bool,
         packages: frozenset[str]) -> Plan | None:
    """The plan of ``source`` (a policy regorus has compiled), or None when it is not in the
    subset. ``builtins_module``: ``query_reference_value`` is veritee's function module;
    ``packages``: the top-level names of every module's package (a ``data`` document
    carrying one is left to regorus)."""
    try:
        rules = _Reader(source, builtins_module=builtins_module, package=package,
                        packages=packages).module()
    except (_Unplannable, ValueError, RecursionError):
        return None
    return Plan(rules, outputs, packages)
