"""How a guest binds the broker's nonce and its own public key into its evidence.

The KBS protocol (service-anchors.md §1.3) hashes the RFC 8785 canonical JSON of the
structured runtime data ``{"nonce", "tee-pubkey"[, "additional-evidence"]}`` and puts the
digest in the evidence's report-data field. This module holds the canonical JSON, the digest
and the rule type for how the digest sits in that field (each platform descriptor names its
own rule and default hash algorithm).

Unlike Trustee, nothing here truncates: a digest longer than the field is an error, so the
hash algorithm must be chosen to fit. STYLE.md §11.

Standard library only (DESIGN.md, layer "errors, common types").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from veritee.errors import BindingError, MalformedEvidenceError, MisuseError

# -- RFC 8785 (JSON Canonicalization Scheme) --------------------------------------------------


def canonical_json(value: Any) -> bytes:
    """``value`` as RFC 8785 canonical JSON (UTF-8).

    Objects have their keys sorted by UTF-16 code units (RFC 8785 §3.2.3), there is no
    whitespace, strings are escaped as ECMAScript's ``JSON.stringify`` does (§3.2.2.2) and
    numbers take ECMAScript's shortest round-trip form (§3.2.2.3: ``1e+21``, ``1e-7``,
    ``-0`` → ``0``).

    Raises:
        MisuseError: ``value`` holds something JSON cannot represent exactly: NaN or an
            infinity, an integer no IEEE 754 double equals, a non-string object key, a string
            with a lone surrogate, or a type other than dict/list/tuple/str/int/float/bool/None.
    """
    parts: list[str] = []
    try:
        _encode(value, parts)
    except RecursionError as exc:
        raise MisuseError("value is nested too deeply to canonicalise") from exc
    return "".join(parts).encode("utf-8")


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        out.append(_integer(value))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, Mapping):
        _object(value, out)
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise MisuseError(f"{type(value).__name__} is not a JSON type (RFC 8785 §3.2)")


def _object(value: Mapping[Any, Any], out: list[str]) -> None:
    for key in value:
        if not isinstance(key, str):
            raise MisuseError(f"object key {key!r} is a {type(key).__name__}, not a string")
    out.append("{")
    for index, key in enumerate(sorted(value, key=_utf16_key)):
        if index:
            out.append(",")
        out.append(_string(key))
        out.append(":")
        _encode(value[key], out)
    out.append("}")


def _utf16_key(key: str) -> bytes:
    """Sort key: big-endian UTF-16 bytes order exactly as UTF-16 code units do (§3.2.3)."""
    return key.encode("utf-16-be", errors="surrogatepass")


def _string(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MisuseError(
            f"string {text[:40]!r} holds a lone surrogate (not Unicode text)"
        ) from exc
    # json.dumps(ensure_ascii=False) escapes exactly what JSON.stringify escapes: '"', '\\',
    # \b \t \n \f \r, and other C0 controls as lowercase \u00xx.
    return json.dumps(text, ensure_ascii=False)


def _integer(value: int) -> str:
    if float(value) != value:
        raise MisuseError(
            f"integer {value} has no exact IEEE 754 double form (RFC 8785 §3.2.2.3); "
            "send it as a string"
        )
    if abs(value) < 10**21:
        return str(value)
    return _number(float(value))


def _number(value: float) -> str:
    """ECMAScript Number::toString (ECMA-262 §7.1.12.1) for a finite double."""
    if not math.isfinite(value):
        raise MisuseError(f"{value} is not a JSON number (RFC 8785 §3.2.2.3)")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    digits, point = _shortest_digits(abs(value))
    k, n = len(digits), point
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * -n + digits
    else:
        exponent = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        body = f"{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"
    return sign + body


def _shortest_digits(value: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of ``value`` and where the point goes.

    Returns ``(digits, n)`` with value = 0.digits × 10**n; Python's ``repr`` gives the
    shortest digits that round-trip, as ECMAScript requires.
    """
    mantissa, _, exponent = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    raw = whole + fraction
    stripped = raw.lstrip("0")
    point = len(whole) + int(exponent or 0) - (len(raw) - len(stripped))
    return stripped.rstrip("0"), point


# -- the runtime-data digest --------------------------------------------------------------------

HashAlgorithm = Literal["sha256", "sha384", "sha512"]
HASH_ALGORITHMS: Final[frozenset[str]] = frozenset({"sha256", "sha384", "sha512"})


def runtime_data_digest(runtime_data: Mapping[str, Any], algorithm: str = "sha384") -> bytes:
    """``H(JCS(runtime_data))``: the value a guest puts in its report-data field.

    Raises:
        MisuseError: unknown ``algorithm`` or runtime data that is not canonical JSON.
    """
    if algorithm not in HASH_ALGORITHMS:
        raise MisuseError(
            f"hash algorithm {algorithm!r} is not one of {', '.join(sorted(HASH_ALGORITHMS))}"
        )
    return hashlib.new(algorithm, canonical_json(runtime_data)).digest()


# -- where the digest goes ----------------------------------------------------------------------

Rule = Literal["pad", "prefix", "exact"]


@dataclass(frozen=True, slots=True)
class ReportDataRule:
    """How a digest sits in a TEE's report-data field (each platform descriptor names its
    rule, from service-anchors.md §1.3).

    * ``pad``: the field is ``field_size`` bytes: the digest, then zero bytes.
    * ``prefix``: the field starts with the digest; the rest is not compared.
    * ``exact``: the field is the digest itself (no padding).

    In every case a digest longer than ``field_size`` is refused (never truncated).
    """

    field_size: int
    rule: Rule

    def expected(self, digest: bytes) -> bytes:
        """The bytes the field must hold (or start with, for ``prefix``).

        Raises:
            MisuseError: ``digest`` is empty or longer than the field; choose a shorter hash.
        """
        if not digest:
            raise MisuseError("the runtime-data digest is empty")
        if len(digest) > self.field_size:
            raise MisuseError(
                f"a {len(digest)}-byte digest does not fit the {self.field_size}-byte "
                "report-data field (no truncation); choose a shorter hash algorithm")
        if self.rule == "pad":
            return digest + bytes(self.field_size - len(digest))
        return bytes(digest)

    def check(self, actual: bytes, digest: bytes, *, tee: str = "the") -> None:
        """Check that the report-data field ``actual`` carries ``digest``.

        Raises:
            BindingError: it does not; the message names both values.
            MisuseError: as :meth:`expected`.
        """
        expected = self.expected(digest)
        if self.rule == "prefix":
            matches = hmac.compare_digest(bytes(actual[: len(expected)]), expected)
            how = f"to start with {expected.hex()}"
        else:
            matches = len(actual) == len(expected) and hmac.compare_digest(bytes(actual),
                                                                           expected)
            how = f"{expected.hex()} ({len(expected)} bytes)"
        if not matches:
            raise BindingError(
                f"{tee} report data is {bytes(actual).hex()} ({len(actual)} bytes); "
                f"expected {how}: the evidence is not bound to this nonce and key"
            )


# -- init-data ----------------------------------------------------------------------------------

#: The names the CoCo init-data specification allows for its digest algorithm.
INIT_DATA_ALGORITHMS: Final[dict[str, HashAlgorithm]] = {
    "sha256": "sha256", "sha-256": "sha256", "sha384": "sha384", "sha-384": "sha384",
    "sha512": "sha512", "sha-512": "sha512"}
#: Init-data bodies larger than this are refused (real ones are a few KiB of TOML).
MAX_INIT_DATA_BYTES: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class InitData:
    """An init-data document as the guest presented it, and its digest."""

    body: str
    algorithm: HashAlgorithm
    digest: bytes
    """H(the body's exact UTF-8 bytes) with the algorithm the document names."""
    claims: dict[str, Any]
    """The document's ``data`` table (what policies see once the digest is bound)."""


def parse_init_data(fmt: str, body: str) -> InitData:
    """Read an init-data document (kbs ``init-data``: ``{"format": "toml", "body": ...}``;
    the CoCo init-data specification: ``version``, ``algorithm``, ``data``).

    The digest is over the body exactly as delivered, so another encoding of the same
    content gives another digest (service-anchors.md §1.3).

    Raises:
        MalformedEvidenceError: not TOML, too large or too deep, no known ``algorithm``, or a
            ``data`` that is not a table.
    """
    if fmt != "toml":
        raise MalformedEvidenceError(f"init-data format {fmt!r} is not supported; use 'toml'")
    raw = body.encode("utf-8", errors="strict") if _is_text(body) else b""
    if not raw:
        raise MalformedEvidenceError("init-data body is empty or not Unicode text")
    if len(raw) > MAX_INIT_DATA_BYTES:
        raise MalformedEvidenceError(
            f"init-data body is {len(raw)} bytes; at most {MAX_INIT_DATA_BYTES}")
    try:
        document = tomllib.loads(body)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise MalformedEvidenceError(f"init-data body is not valid TOML: {exc}") from exc
    name = document.get("algorithm")
    algorithm = INIT_DATA_ALGORITHMS.get(name.lower()) if isinstance(name, str) else None
    if algorithm is None:
        raise MalformedEvidenceError(
            f"init-data algorithm is {name!r}; one of {', '.join(INIT_DATA_ALGORITHMS)}")
    data = document.get("data", {})
    if not isinstance(data, dict):
        raise MalformedEvidenceError("init-data 'data' must be a table")
    return InitData(body, algorithm, hashlib.new(algorithm, raw).digest(), data)


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


__all__ = [
    "HASH_ALGORITHMS",
    "INIT_DATA_ALGORITHMS",
    "HashAlgorithm",
    "InitData",
    "ReportDataRule",
    "canonical_json",
    "parse_init_data",
    "runtime_data_digest",
]
