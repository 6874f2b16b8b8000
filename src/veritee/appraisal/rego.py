"""Rego policies compiled and evaluated with regopy (rego-cpp), and what we learn from their text.

Measured with regopy 1.5.2 on the project machine (scratch scripts, not kept; best of several
runs on a shared 2-vCPU machine), for a default attestation policy and real verifier claims
with aliases:

* A compiled bundle (``Interpreter.build`` + ``query_bundle``) is about 6× faster than the
  interpreter (``query``) and is what we use: ≈1.1 ms per evaluation including ≈0.4 ms to pass
  the input, against ≈6.9 ms interpreted. Building a bundle takes ≈7 ms. The policy's
  ``checks`` are a static array whose values veritee fills in (:mod:`.explain`): copying the
  values inside Rego made the same policy ≈3× slower.
* A bundle carries the ``data`` document it was built with: ``add_data`` on the interpreter
  that runs it is ignored, and ``with data.x as ...`` in the query either has no effect or
  aborts the whole process (``with input as input.y``: a C++ exception that ends in
  ``terminate``). So a bundle is built per (policy, data document): per reference-value set
  for attestation policies, per resource path for resource policies, and kept in an LRU.
  For the same reason policies may not use ``with`` at all (:func:`prepare_source`).
* ``set_input(dict)`` silently corrupts some values (integers beyond 64 bits wrap, floats
  keep six decimals so ``1e-07`` becomes 0, strings stop at NUL), but it is ≈0.35 ms faster
  than JSON text for a typical input (0.40 against 0.75 ms). So documents holding only values it
  passes faithfully (null, booleans, 64-bit integers, strings without NUL, lists, dicts with
  string keys) go through ``set_input``, and anything else as JSON text (``set_input_term``).
* rego-cpp's parser for the data document misreads floats in exponent form (``1e-07``
  becomes an opaque ``json-number``); the input parser reads them right. Floats in data are
  therefore written in positional form (``0.0000001``) by :func:`data_json`.
* An ``Interpreter`` is not thread-safe: two threads sharing one corrupted each other's input
  (``RegoError: Invalid collection``). Threads with their own interpreters (sharing a bundle)
  gave correct results but no speed-up (2 threads: ≈2.8k/s against ≈3.0k/s for one, small
  query): rego-cpp serialises. So each compiled policy keeps one interpreter behind a
  lock; another thread waits for it, which costs nothing rego-cpp would not cost anyway.
* A bare query of a false rule reads as undefined; results are always bound to a variable
  (``result := data.veritee_output.result``), and the raw output is read and freed in one
  place (:func:`_query_bundle`) rather than through regopy's ``Output`` object.
* rego-cpp is lax at build time: an unsafe variable makes a rule undefined rather than an
  error, and an unknown function fails only when reached. Calls are therefore checked
  against ``Interpreter.is_builtin`` and the policy's own functions when it is compiled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Generic, TypeVar

import regopy
from regopy.rego_shared import (
    rego_bundle_query,
    rego_free_output,
    rego_node_get,
    rego_node_size,
    rego_node_type,
    rego_node_value,
    rego_output_node,
    rego_output_ok,
    rego_output_string,
)

from veritee.appraisal.errors import PolicyError

POLICY_PACKAGE: Final = "policy"
POLICY_MODULE: Final = "policy.rego"
OUTPUT_PACKAGE: Final = "veritee_output"
OUTPUT_MODULE: Final = "veritee_output.rego"
RESULT_VAR: Final = "result"
UNSAFE_MARKER: Final = re.compile(r"(?m)^#\s*veritee:\s*unsafe\b")
#: ``# veritee: tees <tee>[, <tee> ...]`` — the TEEs an attestation policy applies to.
TEES_DIRECTIVE: Final = re.compile(r"(?m)^#[ \t]*veritee:[ \t]*tees\b[ \t]*([^\n]*)$")
_TEE_NAME: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


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
_WITH: Final = re.compile(r"\bwith\b")
_QRV: Final = re.compile(r"\bquery_reference_value\s*\(")
_INPUT_PATH: Final = re.compile(r"\binput((?:\.[A-Za-z_]\w*|\[\s*\"[^\"\n]*\"\s*\])+)")
_PATH_PART: Final = re.compile(r"\.([A-Za-z_]\w*)|\[\s*\"([^\"\n]*)\"\s*\]")
_REFERENCE: Final = re.compile(r"\bdata\.reference(?:\.([A-Za-z_]\w*)|\[\s*\"([^\"\n]*)\"\s*\])")


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


def prepare_source(source: str, *, policy_id: str) -> str:
    """The policy text as regopy compiles it.

    * Trustee's ``query_reference_value("name")`` builtin is rewritten to
      ``data.reference["name"]`` (regopy cannot register builtins from Python; the reference
      values are the ``data.reference`` document). A missing name is undefined rather than
      Trustee's ``null``; ``x in ...`` and ``== ...`` fail either way.
    * The package must be ``policy`` (Trustee's rule), and ``with`` is refused: rego-cpp
      aborts the process on some ``with`` forms (module docstring).

    Raises:
        PolicyError: for a wrong package, a ``with``, or a ``query_reference_value`` whose
            argument is not a string literal.
    """
    if not isinstance(source, str):
        raise PolicyError(f"policy {policy_id!r} is a {type(source).__name__}, not Rego text")
    code = code_only(source)
    package = _PACKAGE.search(code)
    if package is None or package.group(1) != POLICY_PACKAGE:
        found = package.group(1) if package else "none"
        raise PolicyError(f"policy {policy_id!r} must be `package {POLICY_PACKAGE}` "
                          f"(found {found})")
    if (match := _WITH.search(code)) is not None:
        line, column = line_column(source, match.start())
        raise PolicyError(f"policy {policy_id!r} line {line}:{column}: `with` is not supported "
                          "(rego-cpp 1.5.2 can abort the process on it)")
    return _rewrite_reference_calls(source, code, policy_id)


def _rewrite_reference_calls(source: str, code: str, policy_id: str) -> str:
    pieces: list[str] = []
    last = 0
    for match in _QRV.finditer(code):
        literal = re.compile(r"\s*(\"(?:[^\"\\\n]|\\.)*\")\s*\)").match(source, match.end())
        if literal is None:
            line, column = line_column(source, match.start())
            raise PolicyError(f"policy {policy_id!r} line {line}:{column}: query_reference_value "
                              "takes one string literal; write data.reference[name] instead")
        pieces += [source[last:match.start()], f"data.reference[{literal.group(1)}]"]
        last = literal.end()
    pieces.append(source[last:])
    return "".join(pieces)


#: Where a resource policy rewritten by :func:`request_rewrite` finds the token's claims and
#: the request (Trustee's ``data`` document of a resource request) in its input.
CLAIMS_KEY: Final = "veritee_claims"
REQUEST_KEY: Final = "veritee_request"
_ROOT: Final = re.compile(r"(?<![\w.])(input|data)\b")
_REQUEST_REF: Final = re.compile(
    r"data(?:\.(plugin|query)\b|\[\s*\"(plugin|resource-path|query)\"\s*\])")
_DATA_RULE: Final = re.compile(r"data\.(?!plugin\b|query\b)[A-Za-z_]\w*")


def request_rewrite(source: str) -> str | None:
    """A resource policy that reads the request from ``input`` instead of ``data``, or None
    when that cannot be done soundly.

    Trustee gives a resource policy the token's claims as ``input`` and the request as
    ``data`` (``plugin``, ``resource-path``, ``query``). rego-cpp bakes ``data`` into the
    compiled bundle (module docstring), so that shape costs one bundle build (≈7 ms) per
    resource path. Rewritten, the policy runs on one bundle for every path, with the input
    ``{"veritee_claims": <claims>, "veritee_request": <request>}``: every ``input`` becomes
    ``input.veritee_claims`` (the policy sees exactly the claims, as before) and each
    ``data.plugin``, ``data["resource-path"]``, ``data.query`` (or ``data["plugin"]``, ...)
    becomes ``input.veritee_request[...]``. Other ``data.<name>`` references (the policy's
    own rules, ``data.policy.allow``) stay; any other use of ``data`` (``data[x]``, ``data``
    itself) makes the rewrite unsound, and None is returned.
    """
    code = code_only(source)
    pieces: list[str] = []
    last = 0
    for match in _ROOT.finditer(code):
        start = match.start()
        if match.group(1) == "input":
            replacement, end = f"input.{CLAIMS_KEY}", match.end()
        elif (request := _REQUEST_REF.match(source, start)) is not None:
            name = request.group(1) or request.group(2)
            replacement, end = f'input.{REQUEST_KEY}["{name}"]', request.end()
        elif _DATA_RULE.match(code, start) is not None:
            continue
        else:
            return None
        pieces += [source[last:start], replacement]
        last = end
    pieces.append(source[last:])
    return "".join(pieces)


def line_column(source: str, offset: int) -> tuple[int, int]:
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


@dataclass(frozen=True, slots=True)
class PolicyText:
    """What veritee reads from a policy's text (cheaply, with regular expressions)."""

    source: str
    """The prepared source (after :func:`prepare_source`)."""
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
        prepared = prepare_source(source, policy_id=policy_id)
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
        references = {(match.group(1) or match.group(2)): None
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
    undefined), so one evaluation reads every output and rule values are computed once."""
    lines = [f"package {OUTPUT_PACKAGE}", ""]
    members = []
    for name in sorted(names):
        lines += [f"default {name} := null", f"{name} := data.{POLICY_PACKAGE}.{name}", ""]
        members.append(f'"{name}": {name}')
    lines.append(f"{RESULT_VAR} := {{{', '.join(members)}}}")
    return "\n".join(lines) + "\n"


# -- compiling and evaluating ----------------------------------------------------------------


class CompiledPolicy:
    """One policy built with one data document into a regopy bundle.

    Evaluation is serialised by a lock around the one interpreter that runs the bundle.
    """

    def __init__(self, *, policy_id: str, text: PolicyText, outputs: Iterable[str],
                 data: Mapping[str, Any]) -> None:
        self.policy_id = policy_id
        self.text = text
        self._lock = threading.Lock()
        builder = _interpreter()
        module = output_module(outputs)
        sources = {POLICY_MODULE: text.source, OUTPUT_MODULE: module}
        try:
            builder.add_module(POLICY_MODULE, text.source)
            builder.add_module(OUTPUT_MODULE, module)
            builder.add_data_json(data_json(data))
            self._bundle = builder.build(f"{RESULT_VAR} := data.{OUTPUT_PACKAGE}.{RESULT_VAR}")
        except regopy.RegoError as exc:
            raise PolicyError(f"policy {policy_id!r} does not compile: "
                              f"{compile_error_message(str(exc), sources)}") from exc
        if not self._bundle.ok():
            raise PolicyError(f"policy {policy_id!r} does not compile (rego-cpp built no bundle)")
        _check_calls(policy_id, text, builder)
        self._runner = _interpreter()

    def evaluate(self, document: Any) -> Any:
        """The policy's outputs for ``document`` as ``input``: ``{name: value or None}``.

        Raises:
            PolicyError: the input is not JSON, or evaluation failed (conflicting rule values,
                a builtin error with strict errors, ...).
        """
        plain = _plain(document)
        term = None if plain else _to_json(document, what="policy input")
        with self._lock:
            try:
                if term is None:
                    self._runner.set_input(document)
                else:
                    self._runner.set_input_term(term)
                ok, text, errors = _query_bundle(self._runner, self._bundle)
            except regopy.RegoError as exc:
                raise PolicyError(f"policy {self.policy_id!r} could not run: "
                                  f"{compile_error_message(str(exc), {})}") from exc
            except UnicodeEncodeError as exc:
                raise PolicyError(f"policy input is not Unicode text: {exc}") from exc
        if not ok:
            raise PolicyError(f"policy {self.policy_id!r} failed: {errors or text}")
        if text == "undefined":
            return None
        try:
            results = json.loads(text)
        except ValueError as exc:      # rego-cpp reports some errors as an "ok" S-expression
            raise PolicyError(f"policy {self.policy_id!r} failed: "
                              f"{compile_error_message(text, {})}") from exc
        first = results[0] if isinstance(results, list) and results else results
        bindings = first.get("bindings") if isinstance(first, dict) else None
        return bindings.get(RESULT_VAR) if isinstance(bindings, dict) else None


def _query_bundle(runner: Any, bundle: Any) -> tuple[bool, str, str]:
    """Run ``bundle`` and return (ok, output text, error messages), freeing the output.

    This is ``Interpreter.query_bundle`` without regopy's ``Output`` wrapper, which parses
    the text as JSON in its constructor and so raises on the error S-expressions rego-cpp
    returns for some failures ("Function not found"), losing the message; reading the raw
    output here also sidesteps the Output lifetime pitfall (env-peers-perf.md §2).
    """
    impl = rego_bundle_query(runner._impl, bundle._impl)
    try:
        ok = bool(rego_output_ok(impl))
        text = rego_output_string(impl)
        errors: list[str] = []
        if not ok:
            _collect_errors(rego_output_node(impl), errors)
        return ok, text, "; ".join(errors)
    finally:
        rego_free_output(impl)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_PLAIN_DEPTH: Final = 32


def _plain(value: Any, depth: int = 0) -> bool:
    """Whether regopy's ``set_input`` passes ``value`` without changing it (module docstring)."""
    if value is None or value is True or value is False:
        return True
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, int):
        return _INT64_MIN <= value <= _INT64_MAX
    if depth >= _MAX_PLAIN_DEPTH:
        return False
    if type(value) is dict:
        return all(isinstance(key, str) and "\x00" not in key and _plain(item, depth + 1)
                   for key, item in value.items())
    if type(value) is list:
        return all(_plain(item, depth + 1) for item in value)
    return False


_CALL: Final = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)[ \t]*\(")
_KEYWORDS: Final = frozenset({"if", "else", "some", "every", "not", "in", "contains", "with",
                              "default", "import", "package", "as"})


def _check_calls(policy_id: str, text: PolicyText, interpreter: regopy.Interpreter) -> None:
    """Refuse calls to functions that are neither builtins nor defined by the policy."""
    code = code_only(text.source)
    known: set[str] = set()
    for match in _CALL.finditer(code):
        name = match.group(1)
        if (name in known or name in _KEYWORDS or name in text.rules
                or name.split(".", 1)[0] in ("data", "input")):
            continue
        if not interpreter.is_builtin(name):
            line, column = line_column(text.source, match.start(1))
            raise PolicyError(f"policy {policy_id!r} does not compile: {POLICY_MODULE}:{line}:"
                              f"{column}: unknown function {name}")
        known.add(name)


def _interpreter() -> regopy.Interpreter:
    interpreter = regopy.Interpreter()
    interpreter.log_level = regopy.LogLevel.NONE   # rego-cpp prints errors otherwise
    return interpreter


def _to_json(value: Any, *, what: str) -> str:
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError) as exc:
        raise PolicyError(f"{what} is not JSON: {exc}") from exc
    return text


def data_json(data: Any) -> str:
    """``data`` as JSON text for rego-cpp's data parser: floats in positional form."""
    _to_json(data, what="policy data")          # the same refusals as for the input
    return _data_json(data)


def _data_json(value: Any) -> str:
    if isinstance(value, float):
        text = format(Decimal(repr(value)), "f")
        return text if "." in text else text + ".0"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(key), ensure_ascii=False)}:{_data_json(item)}"
                              for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_data_json(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)


_ERROR_HEAD: Final = re.compile(r"\(error(?=\s)")
_ERROR_LOCATION: Final = re.compile(r"\s*(\d+):")
_ERROR_MESSAGE: Final = re.compile(r"\(errormsg (\d+):")


def compile_error_message(text: str, sources: Mapping[str, str]) -> str:
    """rego-cpp's error S-expression as ``module:line:column: message`` lines."""
    messages = []
    for segment in _ERROR_HEAD.split(text)[1:]:
        message = _ERROR_MESSAGE.search(segment)
        if message is None:
            continue
        what = segment[message.end():message.end() + int(message.group(1))]
        messages.append(_locate(segment, sources) + what)
    return "; ".join(messages) or text.strip()


def _locate(segment: str, sources: Mapping[str, str]) -> str:
    size = _ERROR_LOCATION.match(segment)
    if size is None:
        return ""
    start = size.end()
    name = segment[start:start + int(size.group(1))]
    place = re.match(r"\|(\d+)\|(\d+)", segment[start + int(size.group(1)):])
    if place is None or name not in sources:
        return f"{name}: " if name else ""
    source, offset = sources[name], int(place.group(1))
    line, column = line_column(source, offset)
    near = source[offset:offset + int(place.group(2))].strip()
    return f"{name}:{line}:{column}: " + (f"near {near!r}: " if near else "")


_ERROR_TEXT_NODES: Final = frozenset({int(regopy.NodeKind.ErrorMessage),
                                      int(regopy.NodeKind.ErrorCode)})


def _collect_errors(node: Any, parts: list[str], depth: int = 0) -> None:
    """The text of the ``ErrorMessage``/``ErrorCode`` nodes under ``node`` (a raw handle)."""
    if not node or depth > 8:
        return
    with contextlib.suppress(regopy.RegoError, ValueError):
        if int(rego_node_type(node)) in _ERROR_TEXT_NODES:
            parts.append(rego_node_value(node))
            return
        for index in range(rego_node_size(node)):
            _collect_errors(rego_node_get(node, index), parts, depth + 1)


def source_digest(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8", errors="surrogatepass")).hexdigest()


def data_digest(data: Mapping[str, Any]) -> str:
    try:
        text = json.dumps(data, sort_keys=True, allow_nan=False, ensure_ascii=False,
                          separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise PolicyError(f"policy data is not JSON: {exc}") from exc
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


_Entry = TypeVar("_Entry")


class PolicyCache(Generic[_Entry]):
    """A bounded LRU of compiled policies, safe to share between threads."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("a policy cache holds at least one entry")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, ...], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()

    def get(self, key: tuple[str, ...], build: Callable[[], _Entry]) -> _Entry:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
        with self._build_lock:    # builds are rare; one at a time keeps rego-cpp simple
            with self._lock:
                entry = self._entries.get(key)
            if entry is None:
                entry = build()
            with self._lock:
                self._entries[key] = entry
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        return entry

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


__all__ = [
    "CLAIMS_KEY",
    "REQUEST_KEY",
    "CompiledPolicy",
    "PolicyCache",
    "PolicyText",
    "RuleBody",
    "code_only",
    "compile_error_message",
    "data_digest",
    "data_json",
    "output_module",
    "prepare_source",
    "request_rewrite",
    "source_digest",
]
