"""Report-data binding: RFC 8785 canonical JSON, the runtime-data digest, per-TEE padding."""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Any

import pytest

from veritee import binding
from veritee.binding import ReportDataRule
from veritee.errors import BindingError, MisuseError
from veritee.tee import Platform, platforms

# service-anchors.md §1.3: the runtime data a guest-components client hashes.
VECTOR_RUNTIME_DATA = {
    "tee-pubkey": {
        "kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    },
    "nonce": base64.b64encode(bytes(range(32))).decode(),
    "additional-evidence": "",
}
VECTOR_SHA384 = (
    "dfa65d498315212bdaf8857231cf0482172933db271f15856bf30db447227eb5"
    "b1dd9e29fcc1fb9076fb00792c3bb7e7"
)


def test_kbs_binding_vector() -> None:
    digest = binding.runtime_data_digest(VECTOR_RUNTIME_DATA)
    assert digest.hex() == VECTOR_SHA384
    assert ReportDataRule(64, "pad").expected(digest) == digest + bytes(16)


def test_trustee_unit_vector() -> None:
    # trustee attestation-service/src/lib.rs unit test
    value = {"b": 1, "a": "test", "c": {"d": "e"}}
    assert binding.canonical_json(value) == b'{"a":"test","b":1,"c":{"d":"e"}}'
    assert binding.runtime_data_digest(value).hex().startswith("e71ce8e7")


# RFC 8785 §3.2.3: keys sort by UTF-16 code units, so an astral character (a surrogate pair
# starting 0xD83D) sorts before U+FB33 although its code point is larger.
def test_key_order_utf16() -> None:
    value = {"\u20ac": "Euro", "\r": "CR", "\ufb33": "Hebrew", "1": "One",
             "\U0001f600": "Smiley", "\u0080": "Control", "\u00f6": "o-umlaut"}
    expected = ('{"\\r":"CR","1":"One","\u0080":"Control","\u00f6":"o-umlaut",'
                '"\u20ac":"Euro","\U0001f600":"Smiley","\ufb33":"Hebrew"}')
    assert binding.canonical_json(value) == expected.encode()


# RFC 8785 Appendix B: IEEE 754 bit patterns and their ECMAScript form.
NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), NUMBERS)
def test_number_form(bits: str, text: str) -> None:
    (value,) = struct.unpack(">d", bytes.fromhex(bits))
    assert binding.canonical_json(value) == text.encode()


@pytest.mark.parametrize(("value", "text"), [
    (0, "0"), (-7, "-7"), (10**20, "100000000000000000000"), (10**21, "1e+21"),
    (2**53, "9007199254740992"), (0.1, "0.1"), (1e21, "1e+21"), (1e-7, "1e-7"),
    (-0.0, "0"), (123.0, "123"), (True, "true"), (None, "null"),
])
def test_scalars(value: Any, text: str) -> None:
    assert binding.canonical_json(value) == text.encode()


def test_string_escapes() -> None:
    # JSON.stringify escapes only '"', '\\' and C0 controls; U+2028 and DEL stay literal.
    text = 'a"b\\c\b\f\n\r\t\x01\x1f\x7f\u2028é'
    assert binding.canonical_json(text) == (
        '"a\\"b\\\\c\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\u2028é"'.encode()
    )


def test_arrays_keep_order_and_nest() -> None:
    assert binding.canonical_json({"z": [3, {"b": [], "a": {}}], "a": (1,)}) == (
        b'{"a":[1],"z":[3,{"a":{},"b":[]}]}'
    )


@pytest.mark.parametrize(("name", "value"), [
    ("nan", float("nan")),
    ("infinity", float("inf")),
    ("negative infinity", -float("inf")),
    ("nested nan", {"a": [1.0, float("nan")]}),
    ("integer beyond double precision", 2**53 + 1),
    ("non-string key", {1: "a"}),
    ("lone surrogate", "\ud800"),
    ("lone surrogate key", {"\udc00": 1}),
    ("bytes", b"abc"),
    ("set", {1, 2}),
    ("object", object()),
])
def test_refuses_non_json(name: str, value: Any) -> None:
    with pytest.raises(MisuseError):
        binding.canonical_json(value)


def test_refuses_deep_nesting() -> None:
    value: Any = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(MisuseError, match="nested too deeply"):
        binding.canonical_json(value)


@pytest.mark.parametrize("algorithm", ["sha256", "sha384", "sha512"])
def test_digest_algorithms(algorithm: str) -> None:
    digest = binding.runtime_data_digest({"nonce": "n"}, algorithm)
    assert digest == hashlib.new(algorithm, b'{"nonce":"n"}').digest()


def test_unknown_algorithm() -> None:
    with pytest.raises(MisuseError, match="md5"):
        binding.runtime_data_digest({}, "md5")


# -- the rules --------------------------------------------------------------------------------

D256, D384, D512 = bytes(range(32)), bytes(range(48)), bytes(range(64))
PAD64, PAD32 = ReportDataRule(64, "pad"), ReportDataRule(32, "pad")
EXACT64, PREFIX256 = ReportDataRule(64, "exact"), ReportDataRule(256, "prefix")


@pytest.mark.parametrize(("rule", "digest", "expected"), [
    (PAD64, D384, D384 + bytes(16)),
    (PAD64, D512, D512),
    (PAD64, D256, D256 + bytes(32)),
    (PAD32, D256, D256),
    (PREFIX256, D512, D512),
    (EXACT64, D384, D384),
])
def test_expected_report_data(rule: ReportDataRule, digest: bytes, expected: bytes) -> None:
    assert rule.expected(digest) == expected
    rule.check(expected, digest)


@pytest.mark.parametrize(("rule", "digest"), [
    (PAD32, D384),   # Trustee would truncate to 32 bytes; we refuse
    (PAD32, D512),
    (PAD64, D512 + b"\x00"),
    (EXACT64, D512 + b"\x01"),
])
def test_digest_too_long_is_refused(rule: ReportDataRule, digest: bytes) -> None:
    with pytest.raises(MisuseError, match="no truncation"):
        rule.expected(digest)
    with pytest.raises(MisuseError, match="no truncation"):
        rule.check(digest, digest)


@pytest.mark.parametrize(("name", "rule", "actual", "digest"), [
    ("other digest", PAD64, D384[::-1] + bytes(16), D384),
    ("unpadded field", PAD64, D384, D384),
    ("non-zero padding", PAD64, D384 + b"\x01" + bytes(15), D384),
    ("field too long", PAD64, D384 + bytes(17), D384),
    ("padded where exact", EXACT64, D384 + bytes(16), D384),
    ("truncated where exact", EXACT64, D384[:32], D384),
    ("prefix differs", PREFIX256, b"\xff" + D512[1:] + bytes(192), D512),
    ("prefix too short", PREFIX256, D512[:63], D512),
])
def test_check_report_data_mismatch(name: str, rule: ReportDataRule, actual: bytes,
                                    digest: bytes) -> None:
    with pytest.raises(BindingError) as info:
        rule.check(actual, digest, tee="this")
    assert actual.hex() in info.value.detail
    assert digest.hex() in info.value.detail
    assert info.value.detail.startswith("this report data is")


def test_prefix_ignores_the_rest() -> None:
    PREFIX256.check(D512 + b"\xaa" * 192, D512)


@pytest.mark.parametrize("platform", platforms(), ids=lambda p: p.tee)
def test_every_platforms_default_hash_fits_its_field(platform: Platform) -> None:
    size = hashlib.new(platform.hash_algorithm).digest_size
    assert size <= platform.report_data.field_size
    digest = binding.runtime_data_digest(VECTOR_RUNTIME_DATA, platform.hash_algorithm)
    platform.report_data.check(platform.report_data.expected(digest), digest)


def test_empty_digest_is_misuse() -> None:
    with pytest.raises(MisuseError):
        PAD64.expected(b"")
