"""decode_evidence: every outer form users hold, and only MalformedEvidenceError on bad input."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.errors import MalformedEvidenceError
from veritee.evidence import MAX_EVIDENCE_BYTES, Evidence, decode_evidence

BLOB = bytes(range(256)) * 5  # binary with every byte value


@pytest.mark.parametrize(
    ("name", "text", "form"),
    [
        ("raw", BLOB, "raw"),
        ("hex", BLOB.hex().encode(), "hex"),
        ("HEX", BLOB.hex().upper().encode(), "hex"),
        ("0x hex", b"0x" + BLOB.hex().encode(), "hex"),
        ("hex with whitespace", b"\n".join(BLOB.hex().encode()[i:i + 64]
                                           for i in range(0, 2560, 64)) + b"\n", "hex"),
        ("base64", base64.b64encode(BLOB), "base64"),
        ("base64 wrapped", base64.encodebytes(BLOB), "base64"),
        ("base64url", base64.urlsafe_b64encode(BLOB), "base64"),
        ("base64url unpadded", base64.urlsafe_b64encode(BLOB[:-1]).rstrip(b"="), "base64"),
    ],
)
def test_text_forms_decode_to_the_same_bytes(name: str, text: bytes, form: str) -> None:
    evidence = decode_evidence(text)
    assert evidence.form == form, name
    expected = BLOB[:-1] if "unpadded" in name else BLOB
    assert evidence.data == expected, name


@pytest.mark.parametrize("document", [{"outblob": "AAAA"}, [1, 2, 3], {"a": {"b": [None]}}])
def test_json_is_kept_as_document(document: Any) -> None:
    text = json.dumps(document, indent=2).encode()
    evidence = decode_evidence(b"\n " + text + b"\n")
    assert evidence.form == "json"
    assert evidence.json == document


@pytest.mark.parametrize(
    ("name", "blob"),
    [
        ("empty", b""),
        ("one byte over the limit", b"\x00" * (MAX_EVIDENCE_BYTES + 1)),
    ],
)
def test_refused(name: str, blob: bytes) -> None:
    with pytest.raises(MalformedEvidenceError):
        decode_evidence(blob)


@pytest.mark.parametrize("blob", [b"[" * 100_000, b"{\"a\":" * 50_000, b"[" * 900 + b"]" * 900])
def test_deep_json_does_not_escape_as_recursion_error(blob: bytes) -> None:
    evidence = decode_evidence(blob)  # read as raw bytes or as JSON, never RecursionError
    assert evidence.form in ("raw", "json")


def test_invalid_json_falls_back_to_raw() -> None:
    # A CBOR text string of length 27 starts with "{" (0x7b): not JSON, kept as raw bytes.
    blob = b"\x7b" + bytes(27)
    assert decode_evidence(blob) == Evidence(data=blob, form="raw")


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=3000),
    st.text(alphabet="0123456789abcdefABCDEFx \n", max_size=300).map(str.encode),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcxyz0189+/-_= \n", max_size=300).map(str.encode),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                 lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c,
                                                                     max_size=3),
                 max_leaves=10).map(lambda d: json.dumps(d).encode()),
))
def test_arbitrary_bytes_give_evidence_or_malformed(blob: bytes) -> None:
    try:
        evidence = decode_evidence(blob)
    except MalformedEvidenceError:
        return
    assert evidence.form in ("raw", "hex", "base64", "json")
    assert evidence.data


def _circular() -> dict[str, Any]:
    document: dict[str, Any] = {}
    document["self"] = document
    return document


@pytest.mark.parametrize(
    ("name", "document"),
    [
        ("lone surrogate text", "\ud800abc"),
        ("not JSON-serialisable", {"a": object()}),
        ("circular", _circular()),
        ("empty text", ""),
    ],
)
def test_from_json_refuses_with_malformed(name: str, document: Any) -> None:
    with pytest.raises(MalformedEvidenceError):
        Evidence.from_json(document)


def test_from_json_accepts_documents_and_text() -> None:
    assert Evidence.from_json({"outblob": "AA"}).json == {"outblob": "AA"}
    assert Evidence.from_json(BLOB.hex()).data == BLOB
