"""Rego policies evaluated with regorus, and what veritee reads from their text.

regorus is the Rust Rego engine Trustee itself uses; veritee takes it from the package index
as ``gordon-to-regorus`` (a fork of microsoft/regorus that publishes Python wheels), pinned by
version and hash. Why this engine, and the figures, are in docs/ARCHITECTURE.md ("The Rego
engine"). What this module relies on, measured with 0.13.0 on the project machine:

* An ``Engine`` holds the policy modules and the ``data`` document; an evaluation sets only
  the input (≈0.3 ms for a platform's default policy, ≈5 µs for a one-rule policy), so ``data``
  (the prepared reference values, :mod:`veritee.appraisal.prepared`) is added once per
  engine, never per evaluation. A resource policy's ``data`` (the request: two keys) is set
  per evaluation, which costs microseconds.
* An ``Engine`` may be used, and dropped, only by the thread that created it: from any
  other thread it panics, and the process may then crash. Clones are cheap but equally bound.
  So each thread keeps its own engine of each compiled policy, built on that thread's first
  evaluation, in a module-level thread-local table that is dropped only by its thread
  (:func:`_thread_engines`); memory is one copy of a policy's ``data`` per thread that
  evaluates it.
* Values reach the engine as Python objects. A string with a lone surrogate crashed the
  process and integers beyond 64 bits either fail ("not an i64") or compare as doubles, so
  every input and data document is checked first (:func:`checked`), and a value outside
  plain JSON within 64-bit integers is a :class:`PolicyError`, not a silent change.
* The parser's time grows exponentially with bracket nesting (12 levels 0.6 s, 18 levels
  18 s, 22 levels more than 30 s), so a policy nesting brackets more than
  :data:`MAX_NESTING` deep is refused before it is parsed.
* A call of an unknown function is reported when a rule making it is evaluated, not when the
  policy is compiled: such a policy fails at appraisal (the guest is refused) with the
  function named.
* Trustee's ``query_reference_value(name)`` is a builtin there; here it is a function in a
  second module of ``package policy`` (:data:`BUILTINS_SOURCE`), so policies run unchanged
  and are never rewritten.
* Outputs are read as JSON (a set of objects cannot become a Python set), so a set arrives as
  an array in regorus's order; set-valued outputs are put in canonical order (the compact
  JSON text of each member, keys sorted), the order native evaluators produce.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import regorus

from veritee.appraisal import plan
from veritee.appraisal.errors import PolicyError

POLICY_PACKAGE: Final = "policy"
POLICY_MODULE: Final = "policy.rego"
OUTPUT_PACKAGE: Final = "veritee_output"
OUTPUT_MODULE: Final = "veritee_output.rego"
BUILTINS_MODULE: Final = "veritee_builtins.rego"
#: Trustee's custom builtin as a Rego function: a missing name is undefined (so ``x in ...``
#: and ``== ...`` fail either way).
BUILTINS_SOURCE: Final = (f"package {POLICY_PACKAGE}\n\n"
                          "query_reference_value(name) := data.reference[name]\n")
RESULT_RULE: Final = "result"
#: Deepest bracket nesting (``(``, ``[``, ``{``, rule bodies included) a policy may use.
MAX_NESTING: Final = 10
#: Deepest nesting of an input or data document.
MAX_DOCUMENT_DEPTH: Final = 64
UNSAFE_MARKER: Final = re.compile(r"(?m)^#\s*veritee:\s*unsafe\b")
#: ``# veritee: tees <tee>[, <tee> ...]`` — the TEEs an attestation policy applies to.
TEES_DIRECTIVE: Final = re.compile(r"(?m)^#[ \t]*veritee:[ \t]*tees\b[ \t]*([^\n]*)$")
_TEE_NAME: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_QRV_DEFINED: Final = re.compile(r"(?m)^query_reference_value\s*\(")
_V1_IMPORT: Final = re.compile(r"(?m)^\s*import\s+rego\.v1\b")


def declared_tees(source: str) -> frozenset[str] | None:
    """The TEEs named by the policy's ``# veritee: tees ...`` line; None without one.

    Raises:
        PolicyError: the line names something that is not a TEE name, or nothing.
    """
    match = TEES_DIRECTIVE.search(source) if isinstance(source, str) else None
    if match is None:
        return None
    names = [n for n in re.split(r"[\s,]+", match.group(1).strip()) if n]
    bad = [n for n in names if not _TEE_NAME.fullmatch(n)]
    if not names or bad:
        raise PolicyError(f"the '# veritee: tees' line must list TEE names, found "
                          f"{match.group(1).strip()!r}")
    return frozenset(names)

_RULE_HEAD: Final = re.compile(
    r"(?m)^(?:default[ \t]+)?([A-Za-z_]\w*)[ \t]*(?=:=|=|\bif\b|\{|\bcontains\b|\[|\()")
_DEFAULT: Final = re.compile(r"(?m)^default[ \t]+([A-Za-z_]\w*)[ \t]*:?=[ \t]*([^\n]+?)[ \t]*$")
_PACKAGE: Final = re.compile(r"\bpackage\s+([A-Za-z_][\w.]*)")
_INPUT_PATH: Final = re.compile(r"\binput((?:\.[A-Za-z_]\w*|\[\s*\"[^\"\n]*\"\s*\])+)")
_PATH_PART: Final = re.compile(r"\.([A-Za-z_]\w*)|\[\s*\"([^\"\n]*)\"\s*\]")
_REFERENCE: Final = re.compile(
    r"\bdata\.reference(?:\.([A-Za-z_]\w*)|\[\s*\"([^\"\n]*)\"\s*\])"
    r"|\bquery_reference_value\s*\(\s*\"([^\"\n]*)\"\s*\)")


# -- reading policy text ---------------------------------------------------------------------


def code_only(source: str) -> str:
    """``source`` with comments and string contents blanked out (offsets kept).

    Quotes stay, so a regex over the result finds code tokens and where literals start.
    """
    out = list(source)
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c == "#":
            while i < n and source[i] != "\n":
                out[i] = " "
                i += 1
        elif c in "\"`":
            i = _blank_string(source, out, i)
        else:
            i += 1
    return "".join(out)


def _blank_string(source: str, out: list[str], start: int) -> int:
    quote, i, n = source[start], start + 1, len(source)
    while i < n and source[i] != quote:
        if quote == '"' and source[i] == "\\" and i + 1 < n:
            out[i] = " "
            i += 1
        if source[i] != "\n":
            out[i] = " "
        i += 1
    return i + 1


def check_source(source: str, *, policy_id: str) -> str:
    """``source`` if veritee will compile it: Rego text in ``package policy`` (Trustee's
    rule) whose brackets nest at most :data:`MAX_NESTING` deep.

    Raises:
        PolicyError: not text, another package, or nested too deep.
    """
    if not isinstance(source, str):
        raise PolicyError(f"policy {policy_id!r} is a {type(source).__name__}, not Rego text")
    code = code_only(source)
    package = _PACKAGE.search(code)
    if package is None or package.group(1) != POLICY_PACKAGE:
        found = package.group(1) if package else "none"
        raise PolicyError(f"policy {policy_id!r} must be `package {POLICY_PACKAGE}` "
                          f"(found {found})")
    depth = 0
    for index, char in enumerate(code):
        if char in "([{":
            depth += 1
            if depth > MAX_NESTING:
                line, column = line_column(source, index)
                raise PolicyError(f"policy {policy_id!r} line {line}:{column}: brackets nest "
                                  f"more than {MAX_NESTING} deep (the Rego parser's time "
                                  "grows exponentially with nesting)")
        elif char in ")]}":
            depth = max(0, depth - 1)
    return source


def line_column(source: str, offset: int) -> tuple[int, int]:
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


@dataclass(frozen=True, slots=True)
class PolicyText:
    """What veritee reads from a policy's text (cheaply, with regular expressions)."""

    source: str
    """The source, checked by :func:`check_source`."""
    rules: frozenset[str]
    """Names of the rules the policy defines at top level."""
    defaults: dict[str, Any]
    """``default name := value`` for each rule with a JSON-literal default."""
    reads: dict[str, tuple[RuleBody, ...]]
    """Per rule: the input paths and reference-value names each of its bodies mentions."""
    unsafe: bool
    """The policy is marked ``# veritee: unsafe``."""
    tees: frozenset[str] | None = None
    """The TEEs it declares it applies to (``# veritee: tees ...``); None: any."""

    @classmethod
    def read(cls, source: str, *, policy_id: str) -> PolicyText:
        prepared = check_source(source, policy_id=policy_id)
        code = code_only(prepared)
        rules = frozenset(m.group(1) for m in _RULE_HEAD.finditer(code)) - {"default", "import",
                                                                           "package"}
        defaults: dict[str, Any] = {}
        for match in _DEFAULT.finditer(code):
            try:
                defaults[match.group(1)] = json.loads(prepared[match.start(2):match.end(2)])
            except ValueError:
                continue
        return cls(source=prepared, rules=rules, defaults=defaults,
                   reads={rule: _reads(prepared, code, rule) for rule in rules},
                   unsafe=UNSAFE_MARKER.search(source) is not None,
                   tees=declared_tees(source))


@dataclass(frozen=True, slots=True)
class RuleBody:
    """What one body of a rule reads: input paths and reference-value names."""

    paths: tuple[tuple[str, ...], ...]
    references: tuple[str, ...]


def _reads(source: str, code: str, rule: str) -> tuple[RuleBody, ...]:
    bodies = []
    for head in re.finditer(rf"(?m)^{re.escape(rule)}\b[^\n]*", code):
        body = source[head.start():_body_end(code, head.start(), head.end())]
        paths = {tuple(a or b for a, b in _PATH_PART.findall(match.group(1))): None
                 for match in _INPUT_PATH.finditer(body)}
        references = {(match.group(1) or match.group(2) or match.group(3)): None
                      for match in _REFERENCE.finditer(body)}
        if paths or references:
            bodies.append(RuleBody(tuple(paths), tuple(references)))
    return tuple(bodies)


def _body_end(code: str, start: int, line_end: int) -> int:
    """End of the rule starting at ``start``: its matching ``}``, or the end of its line."""
    brace = code.find("{", start, line_end)
    if brace < 0:
        return line_end
    depth = 0
    for index in range(brace, len(code)):
        if code[index] == "{":
            depth += 1
        elif code[index] == "}":
            depth -= 1
            if depth == 0:
                return index + 1
    return len(code)


def output_module(names: Iterable[str]) -> str:
    """A module collecting ``data.policy.<name>`` for each name into one object (null if
    undefined), and the names whose value is a set, so one evaluation reads every output
    and rule values are computed once."""
    lines = [f"package {OUTPUT_PACKAGE}", "", "import rego.v1", ""]
    members = []
    for name in sorted(names):
        lines += [f"default {name} := null", f"{name} := data.{POLICY_PACKAGE}.{name}", ""]
        members.append(f'"{name}": {name}')
    kinds = [f'"{name}": is_set({name})' for name in sorted(names)]
    lines.append(f'{RESULT_RULE} := {{"values": {{{", ".join(members)}}}, '
                 f'"sets": {{{", ".join(kinds)}}}}}')
    return "\n".join(lines) + "\n"


# -- compiling and evaluating ----------------------------------------------------------------


class CompiledPolicy:
    """One policy compiled by regorus, with its ``data`` document (or ``data`` given per
    evaluation), evaluated by one engine per thread (module docstring)."""

    def __init__(self, *, policy_id: str, text: PolicyText, outputs: Iterable[str],
                 data: Mapping[str, Any] | None, planned: bool = True) -> None:
        """``data``: the document every evaluation sees, or None to pass one to each
        :meth:`evaluate`. ``planned``: a policy of plain rules is evaluated by its plan
        (:mod:`veritee.appraisal.plan`) where the plan decides; False: always by regorus.

        Raises:
            PolicyError: the policy does not compile, or ``data`` is not a document the
                engine takes faithfully (:func:`checked`).
        """
        self.policy_id = policy_id
        self.text = text
        self._data = None if data is None else checked(data, what="policy data")
        outputs = sorted(outputs)
        self._modules = [(POLICY_MODULE, text.source), (OUTPUT_MODULE, output_module(outputs))]
        builtins = ("query_reference_value" not in text.rules
                    and _QRV_DEFINED.search(code_only(text.source)) is None)
        if builtins:
            self._modules.append((BUILTINS_MODULE, BUILTINS_SOURCE))
        self._v0 = False
        self._token = next(_TOKENS)
        engine = self._build()
        problem = self._probe(engine)
        if problem is not None:
            del engine           # dropped here, by its own thread: the error must not hold it
            raise PolicyError(f"policy {policy_id!r} does not compile: {problem}")
        self._keep(engine)
        self.plan = None if self._v0 or not planned else plan.plan(
            text.source, outputs, package=POLICY_PACKAGE, builtins_module=builtins,
            packages=frozenset({POLICY_PACKAGE, OUTPUT_PACKAGE}))
        """The policy's plan, or None: it is not plain rules (or ``planned`` was False)."""

    def _probe(self, engine: Any) -> str | None:
        """Evaluate once on an empty input: regorus reports conflicting rule definitions and
        unsafe variables only when it first evaluates a policy. The problem, or None."""
        try:
            if self._data is None:
                engine.add_data({})
            engine.set_input({})
            engine.eval_rule_as_json(f"data.{OUTPUT_PACKAGE}.{RESULT_RULE}")
        except RuntimeError as exc:
            message = engine_message(exc)
            if any(kind in message for kind in _STATIC_ERRORS):
                return message
        return None

    def _build(self) -> Any:
        """A new engine for this thread. Errors never hold a reference to an engine (an
        engine dropped by another thread panics: module docstring)."""
        try:
            return self._new_engine()
        except _BuildError as exc:
            if self._v0 or _V1_IMPORT.search(self.text.source) or not _v0_hint(exc.message):
                raise PolicyError(f"policy {self.policy_id!r} does not compile: "
                                  f"{exc.message}") from None
        self._v0 = True            # written for Rego v0 (no `import rego.v1`, rules without `if`)
        try:
            return self._new_engine()
        except _BuildError as exc:
            raise PolicyError(f"policy {self.policy_id!r} does not compile: "
                              f"{exc.message}") from None

    def _new_engine(self) -> Any:
        engine = regorus.Engine()
        problem = None
        try:
            if self._v0:
                engine.set_rego_v0(True)
            for name, source in self._modules:
                engine.add_policy(name, source)
            if self._data is not None:
                engine.add_data(self._data)
        except RuntimeError as exc:
            problem = engine_message(exc)
        if problem is not None:
            del engine
            raise _BuildError(problem)
        return engine

    def _engine(self) -> Any:
        engine = _thread_engines().get(self._token)
        if engine is None:
            engine = self._build()
        self._keep(engine)
        return engine

    def _keep(self, engine: Any) -> None:
        """This thread's engine of this policy, the most recently used of its table."""
        engines = _thread_engines()
        engines[self._token] = engine
        engines.move_to_end(self._token)
        while len(engines) > MAX_ENGINES_PER_THREAD:
            engines.popitem(last=False)

    def __del__(self) -> None:
        _RETIRED.append(getattr(self, "_token", 0))

    def evaluate(self, document: Any, data: Mapping[str, Any] | None = None) -> Any:
        """The policy's outputs for ``document`` as ``input``: ``{name: value or None}``;
        ``data`` only for a policy compiled without one.

        Raises:
            PolicyError: the input is not a document the engine takes faithfully, or
                evaluation failed (conflicting rule values, an unknown function, ...).
        """
        checked(document, what="policy input")
        if self.plan is not None:
            try:
                return self.plan.evaluate(document, self._plan_data(data))
            except plan.Undecided:
                pass                    # this evaluation is regorus's (plan module docstring)
        engine = self._engine()
        try:
            if data is not None:
                engine.clear_data()
                engine.add_data(checked(data, what="policy data"))
            engine.set_input(document)
            text = engine.eval_rule_as_json(f"data.{OUTPUT_PACKAGE}.{RESULT_RULE}")
        except RuntimeError as exc:
            raise PolicyError(f"policy {self.policy_id!r} failed: {engine_message(exc)}") from exc
        result = json.loads(text) if text else None
        if not isinstance(result, dict):
            return None
        values = result.get("values")
        if not isinstance(values, dict):
            return None
        sets = result.get("sets")
        for name, is_set in (sets.items() if isinstance(sets, dict) else ()):
            if is_set is True and isinstance(values.get(name), list):
                values[name] = sorted(values[name], key=canonical)
        return values

    def _plan_data(self, data: Mapping[str, Any] | None) -> Mapping[str, Any]:
        if data is not None:
            return checked(data, what="policy data")   # type: ignore[no-any-return]
        return {} if self._data is None else self._data


#: Each thread's engines, by policy token. Module-level and never destroyed: an engine must
#: be dropped by the thread that made it (module docstring), so the engines of a policy that
#: is gone are dropped by their own thread when it next evaluates (:data:`_RETIRED`), or when
#: its least recently used engines are trimmed to :data:`MAX_ENGINES_PER_THREAD`.
_THREAD = threading.local()
_TOKENS = itertools.count(1)
#: Tokens of policies that are gone (appended from any thread, read by each).
_RETIRED: list[int] = []
MAX_ENGINES_PER_THREAD: Final = 64


def _thread_engines() -> OrderedDict[int, Any]:
    engines: OrderedDict[int, Any] | None = getattr(_THREAD, "engines", None)
    if engines is None:
        engines = _THREAD.engines = OrderedDict()
        _THREAD.retired_seen = 0
    seen: int = _THREAD.retired_seen
    if len(_RETIRED) > seen:
        for token in _RETIRED[seen:]:
            engines.pop(token, None)
        _THREAD.retired_seen = len(_RETIRED)
    return engines


class _BuildError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def canonical(value: Any) -> str:
    """The order of a set's members: their compact JSON text, keys sorted."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def checked(value: Any, *, what: str) -> Any:
    """``value`` if the engine takes it faithfully: JSON values (dicts with string keys,
    lists, strings encodable as UTF-8, finite floats, integers within 64 bits, booleans,
    null) nested at most :data:`MAX_DOCUMENT_DEPTH` deep.

    Raises:
        PolicyError: naming the first value that is not.
    """
    if _plain(value, 0):
        return value
    problem = _problem(value, 0)        # the slow walk names the value (or admits subclasses)
    if problem is not None:
        raise PolicyError(f"{what} cannot be evaluated exactly: {problem}")
    return value


def _plain(value: Any, depth: int) -> bool:
    """The fast path of :func:`checked`: exact JSON types only (one type test per value)."""
    kind = type(value)
    if kind is str:
        return value.isascii() or _utf8(value)
    if kind is dict:
        if depth >= MAX_DOCUMENT_DEPTH:
            return False
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or _utf8(key)):
                return False
            if not _plain_item(item, depth):
                return False
        return True
    if kind is list:
        if depth >= MAX_DOCUMENT_DEPTH:
            return False
        return all(_plain_item(item, depth) for item in value)
    return _plain_item(value, depth)


def _plain_item(item: Any, depth: int) -> bool:
    kind = type(item)
    if kind is str:
        return item.isascii() or _utf8(item)
    if item is None or kind is bool:
        return True
    if kind is int:
        return bool(_INT64_MIN <= item <= _INT64_MAX)
    if kind is float:
        return math.isfinite(item)
    if kind is dict or kind is list:
        return _plain(item, depth + 1)
    return False


def _problem(value: Any, depth: int) -> str | None:
    if isinstance(value, str):
        return None if _utf8(value) else f"the string {value[:40]!r} is not Unicode text"
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if _INT64_MIN <= value <= _INT64_MAX else f"{value} is beyond 64 bits"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value} is not a finite number"
    if depth >= MAX_DOCUMENT_DEPTH:
        return f"it nests more than {MAX_DOCUMENT_DEPTH} levels deep"
    if isinstance(value, Mapping | list | tuple):
        return _container_problem(value, depth)
    return f"a {type(value).__name__} is not a JSON value"


def _container_problem(value: Mapping[Any, Any] | list[Any] | tuple[Any, ...],
                       depth: int) -> str | None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"the key {key!r} is not a string"
            if not _utf8(key):
                return f"the key {key[:40]!r} is not Unicode text"
            problem = _problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    for item in value:
        problem = _problem(item, depth + 1)
        if problem is not None:
            return problem
    return None


def _utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: Errors regorus finds in a policy's text on its first evaluation, whatever the input.
_STATIC_ERRORS: Final = ("unsafe", "rule conflicts", "could not find function", "recursion",
                         "expecting")
_ENGINE_LOCATION: Final = re.compile(r"-->\s*([^\s:]+):(\d+):(\d+)")
_ENGINE_ERROR: Final = re.compile(r"(?m)^error:\s*(.+)$")


def engine_message(exc: BaseException) -> str:
    """regorus's error as ``module:line:column: message`` (its backtrace left out)."""
    text = str(exc).split("Stack backtrace:", 1)[0].strip()
    location = _ENGINE_LOCATION.search(text)
    error = _ENGINE_ERROR.search(text)
    if error is None:
        return " ".join(text.split()) or type(exc).__name__
    if location is None:
        return error.group(1).strip()
    module, line, column = location.groups()
    return f"{module}:{line}:{column}: {error.group(1).strip()}"


def _v0_hint(message: str) -> bool:
    return "`if` keyword is required" in message or "`contains` keyword is required" in message


def source_digest(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8", errors="surrogatepass")).hexdigest()


_Entry = TypeVar("_Entry")


class PolicyCache(Generic[_Entry]):
    """A bounded LRU of compiled policies, safe to share between threads.

    Each key holds one *generation* (of the reference values compiled in): asking for a key
    with another generation replaces the entry, so superseded reference values (which may be
    large) never wait in the cache for eviction.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("a policy cache holds at least one entry")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, ...], tuple[str, _Entry]] = OrderedDict()
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()

    def get(self, key: tuple[str, ...], build: Callable[[], _Entry], *,
            generation: str = "") -> _Entry:
        found = self._lookup(key, generation)
        if found is not None:
            return found
        with self._build_lock:    # builds are rare; one at a time
            entry = self._lookup(key, generation)
            if entry is None:
                entry = build()
            with self._lock:
                self._entries[key] = (generation, entry)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        return entry

    def _lookup(self, key: tuple[str, ...], generation: str) -> _Entry | None:
        with self._lock:
            held = self._entries.get(key)
            if held is None or held[0] != generation:
                return None
            self._entries.move_to_end(key)
            return held[1]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


__all__ = [
    "BUILTINS_SOURCE",
    "MAX_NESTING",
    "CompiledPolicy",
    "PolicyCache",
    "PolicyText",
    "RuleBody",
    "canonical",
    "check_source",
    "checked",
    "code_only",
    "declared_tees",
    "engine_message",
    "output_module",
    "source_digest",
]
