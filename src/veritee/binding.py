"""How a guest binds the broker's nonce and its own public key into its evidence.

The KBS protocol (service-anchors.md §1.3) hashes the RFC 8785 canonical JSON of the
structured runtime data ``{"nonce", "tee-pubkey"[, "additional-evidence"]}`` and puts the
digest in the evidence's report-data field. This module holds the canonical JSON, the digest
and the per-TEE rule for how the digest sits in that field.

Unlike Trustee, nothing here truncates: a digest longer than the field is an error, so the
hash algorithm must be chosen to fit (``default_hash_algorithm``). STYLE.md §11.

Standard library only (DESIGN.md, layer "errors, common types").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from veritee.errors import BindingError, MisuseError, UnknownTeeError

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
    except RecursionError:
        raise MisuseError("value is nested too deeply to canonicalise") from None
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
    except UnicodeEncodeError:
        raise MisuseError(
            f"string {text[:40]!r} holds a lone surrogate (not Unicode text)"
        ) from None
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


# -- where the digest goes, per TEE -------------------------------------------------------------

Rule = Literal["pad", "prefix", "exact"]


@dataclass(frozen=True, slots=True)
class ReportDataRule:
    """How a digest sits in a TEE's report-data field.

    * ``pad``: the field is ``field_size`` bytes: the digest, then zero bytes.
    * ``prefix``: the field starts with the digest; the rest is not compared.
    * ``exact``: the field is the digest itself (no padding).

    In every case a digest longer than ``field_size`` is refused (never truncated).
    """

    field_size: int
    rule: Rule


#: Per-TEE binding (service-anchors.md §1.3 table, Trustee's verifiers).
REPORT_DATA_RULES: Final[dict[str, ReportDataRule]] = {
    "snp": ReportDataRule(64, "pad"),           # REPORT_DATA, SEV-SNP ABI Table 23
    "tdx": ReportDataRule(64, "pad"),           # REPORTDATA
    "sgx": ReportDataRule(64, "pad"),           # REPORTDATA
    "cca": ReportDataRule(64, "pad"),           # realm challenge
    "csv": ReportDataRule(64, "pad"),           # Hygon CSV REPORT_DATA
    "se": ReportDataRule(64, "prefix"),         # user_data; SHA-512 compared to its first bytes
    "tpm": ReportDataRule(32, "pad"),           # quote nonce (Trustee truncates; we pick sha256)
    "az-snp-vtpm": ReportDataRule(64, "exact"),  # TPM quote nonce
    "az-tdx-vtpm": ReportDataRule(64, "exact"),  # TPM quote nonce
    "sample": ReportDataRule(64, "exact"),
    "sampledevice": ReportDataRule(64, "exact"),
}

_DEFAULT_HASH: Final[dict[str, HashAlgorithm]] = {
    "se": "sha512",   # Trustee imposes it in the challenge (selected-hash-algorithm)
    "tpm": "sha256",  # the 32-byte nonce: a longer digest would need truncation
}


def report_data_rule(tee: str) -> ReportDataRule:
    """The binding rule of ``tee``; raises UnknownTeeError for a TEE with no rule."""
    try:
        return REPORT_DATA_RULES[tee]
    except KeyError:
        raise UnknownTeeError(
            f"no report-data rule for TEE {tee!r}; known: {', '.join(sorted(REPORT_DATA_RULES))}"
        ) from None


def default_hash_algorithm(tee: str) -> HashAlgorithm:
    """The hash the broker selects for ``tee``: sha384 (KBS default), sha512 for ``se``,
    sha256 for ``tpm`` (its 32-byte nonce)."""
    report_data_rule(tee)
    return _DEFAULT_HASH.get(tee, "sha384")


def expected_report_data(tee: str, digest: bytes) -> bytes:
    """The bytes ``tee``'s report-data field must hold (or start with, for ``prefix``).

    Raises:
        UnknownTeeError: no rule for ``tee``.
        MisuseError: ``digest`` is longer than the field; choose a shorter hash.
    """
    rule = report_data_rule(tee)
    _fits(tee, rule, digest)
    if rule.rule == "pad":
        return digest + bytes(rule.field_size - len(digest))
    return bytes(digest)


def check_report_data(tee: str, actual: bytes, digest: bytes) -> None:
    """Check that the report-data field ``actual`` carries ``digest`` under ``tee``'s rule.

    Raises:
        BindingError: it does not; the message names both values.
        UnknownTeeError, MisuseError: as :func:`expected_report_data`.
    """
    rule = report_data_rule(tee)
    expected = expected_report_data(tee, digest)
    if rule.rule == "prefix":
        matches = hmac.compare_digest(bytes(actual[: len(expected)]), expected)
        how = f"to start with {expected.hex()}"
    else:
        matches = len(actual) == len(expected) and hmac.compare_digest(bytes(actual), expected)
        how = f"{expected.hex()} ({len(expected)} bytes)"
    if not matches:
        raise BindingError(
            f"{tee} report data is {bytes(actual).hex()} ({len(actual)} bytes); "
            f"expected {how}: the evidence is not bound to this nonce and key"
        )


def _fits(tee: str, rule: ReportDataRule, digest: bytes) -> None:
    if not digest:
        raise MisuseError("the runtime-data digest is empty")
    if len(digest) > rule.field_size:
        raise MisuseError(
            f"a {len(digest)}-byte digest does not fit {tee}'s {rule.field_size}-byte "
            f"report-data field (no truncation); use {default_hash_algorithm(tee)}"
        )


__all__ = [
    "HASH_ALGORITHMS",
    "REPORT_DATA_RULES",
    "HashAlgorithm",
    "ReportDataRule",
    "canonical_json",
    "check_report_data",
    "default_hash_algorithm",
    "expected_report_data",
    "report_data_rule",
    "runtime_data_digest",
]
