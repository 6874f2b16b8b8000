"""The guest owner's session: KDF, TEK/TIK wrapping, LAUNCH_MEASURE and LAUNCH_SECRET vectors
(research note amd-sev.md §3.3, §3.5, §3.6; virtee/sev and virtee/sevctl test vectors, their
inputs read in place from the corpus), the secret table and the guest policy."""

from __future__ import annotations

import base64
import hashlib
import uuid

import pytest

from conftest import corpus_dir
from veritee.errors import MalformedEvidenceError, MisuseError, SignatureError
from veritee.tee.snp import session
from veritee.tee.snp.session import SevPolicy

ZERO = bytes(16)


def sevctl(*parts: str) -> bytes:
    return corpus_dir("amd", "sevctl", *parts[:-1]).joinpath(parts[-1]).read_bytes()


def test_kdf_vector() -> None:
    # virtee/sev session::key tests: KDF(0^16, 16, 0^16, "sev-master-secret")
    assert session.kdf(ZERO, b"sev-master-secret", ZERO, 16).hex() == \
        "ab4d269fcc62bedb4511d56c386ce706"
    assert session.master_secret(ZERO, ZERO).hex() == "ab4d269fcc62bedb4511d56c386ce706"


def test_kdf_longer_output_is_counter_mode() -> None:
    long = session.kdf(b"k", b"label", b"ctx", 48)
    assert len(long) == 48
    assert session.kdf(b"k", b"label", b"ctx", 16) != long[:16]  # L is part of the input
    with pytest.raises(MisuseError):
        session.kdf(b"k", b"l", b"", 0)


def test_wrapping_vectors() -> None:
    kek, kik = session.kek_kik(session.master_secret(ZERO, ZERO))
    wrap_tk, wrap_mac = session.wrap_transport_keys(ZERO, ZERO, kek=kek, kik=kik, wrap_iv=ZERO)
    policy_mac = session.policy_mac(ZERO, 0).hex()
    for value, head, tail in ((wrap_tk.hex(), "2137bc7f", "f02c02c4"),
                              (wrap_mac.hex(), "3176c075", "e6aeed7d"),
                              (policy_mac, "aa7855e1", "5287b4af")):
        assert value.startswith(head) and value.endswith(tail), value
    assert len(wrap_tk) == 32 and len(wrap_mac) == 32


MEASURE_ROW_1 = ("xkvRAfyaSizgonxAjZIAkR8TmolUabBKQKb6KJCDDSM=", "wxP6tRHCFrFQWxsuqZA8QA==",
                 "lswbxWxI9gckya16JQvdFtpYmNO4b+3inAPpqsgoBI7DE/q1EcIWsVBbGy6pkDxA")


def test_launch_measure_sevctl_vector() -> None:
    tik = sevctl("measurement", "tik1.bin")
    digest, mnonce, expected = (base64.b64decode(v) for v in MEASURE_ROW_1)
    measure = session.launch_measure(tik, 1, 40, 40, 0x03, digest, mnonce)
    assert measure + mnonce == expected
    session.check_launch_measure(measure, tik=tik, api_major=1, api_minor=40, build_id=40,
                                 policy=3, launch_digest=digest, mnonce=mnonce)


def test_launch_measure_virtee_naples_vector() -> None:
    tik = bytes.fromhex("66320db73158a35a255d051758e95ed4")
    mnonce = bytes.fromhex("4fbe0bedbad6c86ae8f68971d103e554")
    measure = session.launch_measure(tik, 0, 18, 15, 0, hashlib.sha256(b"").digest(), mnonce)
    assert measure.hex() == "6faab2daae389bcd3405a05d6cafe33c0414f7bedd0bae19ba5f38b7fd1664ea"


@pytest.mark.parametrize("change", ["api_minor", "build_id", "policy", "launch_digest",
                                    "mnonce", "tik"])
def test_check_launch_measure_refuses_any_change(change: str) -> None:
    tik = sevctl("measurement", "tik1.bin")
    digest, mnonce, expected = (base64.b64decode(v) for v in MEASURE_ROW_1)
    fields = {"tik": tik, "api_major": 1, "api_minor": 40, "build_id": 40, "policy": 3,
              "launch_digest": digest, "mnonce": mnonce}
    value = fields[change]
    fields[change] = bytes(len(value)) if isinstance(value, bytes) else value + 1
    with pytest.raises(SignatureError, match="LAUNCH_MEASURE"):
        session.check_launch_measure(expected[:32], **fields)  # type: ignore[arg-type]


def test_check_launch_measure_wrong_size_is_malformed() -> None:
    with pytest.raises(MalformedEvidenceError, match="MEASURE is 31"):
        session.check_launch_measure(bytes(31), tik=ZERO, api_major=0, api_minor=0, build_id=0,
                                     policy=0, launch_digest=bytes(32), mnonce=ZERO)


SECRET_GUID = uuid.UUID("736869e5-84f0-4973-92ec-06879ce3da0b")
SECRET_HEADER = "AAAAAKxUdO1N0yx9mJ7FI9klWey8FSzeYQ4X8K71VzNKLU/KQsIsQxLjtbhaPUewqshX5Q=="
SECRET_PAYLOAD = ("0U3e5PcXv0UW+H4tSBFKOdCYfKE1+j38Bc2fuO16mYiyI+sWx7INfn+lgYj56GL12yyinDa+lVfC"
                  "CwD/2w5cPA==")


def secret_vector() -> tuple[bytes, bytes, bytes, bytes, bytes]:
    tek, tik = sevctl("secret", "tek1.bin"), sevctl("secret", "tik1.bin")
    measure = base64.b64decode(
        "TLeA7607lZQntLjRY1/i+sbtdSZ+75zxpz4Px9hzpBLwItF5Q2o4prA++3ZZv9ZS")[:32]
    iv = base64.b64decode("rFR07U3TLH2YnsUj2SVZ7A==")
    return tek, tik, measure, iv, sevctl("secret", "secret1.txt")


def test_launch_secret_sevctl_vector() -> None:
    tek, tik, measure, iv, secret = secret_vector()
    table = session.build_secret_table([(SECRET_GUID, secret)])
    packet = session.secret_packet(tek, tik, measure, table, iv=iv)
    assert base64.b64encode(packet.header).decode() == SECRET_HEADER
    assert base64.b64encode(packet.ciphertext).decode() == SECRET_PAYLOAD
    assert (packet.flags, packet.iv) == (0, iv)
    opened = session.open_secret_packet(tek, tik, measure, packet.header, packet.ciphertext)
    assert session.parse_secret_table(opened) == [(SECRET_GUID, secret)]


@pytest.mark.parametrize("wrong", ["tik", "measure", "ciphertext", "header_mac"])
def test_open_secret_packet_refuses_a_wrong_mac(wrong: str) -> None:
    tek, tik, measure, _, _ = secret_vector()
    header, ciphertext = base64.b64decode(SECRET_HEADER), base64.b64decode(SECRET_PAYLOAD)
    if wrong == "tik":
        tik = ZERO
    elif wrong == "measure":
        measure = bytes(32)
    elif wrong == "ciphertext":
        ciphertext = ciphertext[:-1] + bytes((ciphertext[-1] ^ 1,))
    else:
        header = header[:-1] + bytes((header[-1] ^ 1,))
    with pytest.raises(SignatureError, match="MAC"):
        session.open_secret_packet(tek, tik, measure, header, ciphertext)


def test_open_secret_packet_bad_header() -> None:
    with pytest.raises(MalformedEvidenceError, match="52"):
        session.open_secret_packet(ZERO, ZERO, bytes(32), bytes(51), b"")
    with pytest.raises(MalformedEvidenceError, match="FLAGS"):
        session.open_secret_packet(ZERO, ZERO, bytes(32), b"\x01" + bytes(51), b"")


# --- the secret table --------------------------------------------------------------------------


def test_secret_table_layout_and_round_trip() -> None:
    entries = [(uuid.UUID(int=1), b"one"), (uuid.UUID(int=2), b""), (uuid.UUID(int=3), b"x" * 40)]
    table = session.build_secret_table(entries)
    assert len(table) % 16 == 0
    assert table[:16] == session.TABLE_GUID.bytes_le
    total = int.from_bytes(table[16:20], "little")
    assert total == 20 + sum(20 + len(d) for _, d in entries)  # sevctl: before padding
    assert session.parse_secret_table(table) == entries


def test_secret_table_accepts_the_padded_total_and_trailing_zeros() -> None:
    table = session.build_secret_table([(SECRET_GUID, b"abc")])
    padded = table[:16] + len(table).to_bytes(4, "little") + table[20:]
    assert session.parse_secret_table(padded) == [(SECRET_GUID, b"abc")]
    assert session.parse_secret_table(table + bytes(4096)) == [(SECRET_GUID, b"abc")]


def test_secret_table_build_refuses_duplicates() -> None:
    with pytest.raises(MisuseError):
        session.build_secret_table([(SECRET_GUID, b"a"), (SECRET_GUID, b"b")])


def _table(total: int, body: bytes) -> bytes:
    return session.TABLE_GUID.bytes_le + total.to_bytes(4, "little") + body


ENTRY = SECRET_GUID.bytes_le + (24).to_bytes(4, "little") + b"abcd"
BAD_TABLES = [
    ("short", b"\0" * 19, "shorter"),
    ("wrong_guid", bytes(16) + (20).to_bytes(4, "little"), "header GUID"),
    ("total_beyond_data", _table(200, ENTRY), "total length is 200"),
    ("total_below_header", _table(3, ENTRY), "total length is 3"),
    ("entry_longer_than_total", _table(44, SECRET_GUID.bytes_le + (99).to_bytes(4, "little")
                                       + b"abcd"), "length 99"),
    ("entry_length_below_header", _table(44, SECRET_GUID.bytes_le + (4).to_bytes(4, "little")
                                         + b"abcd"), "length 4"),
    ("duplicate_entry", _table(68, ENTRY + ENTRY), "twice"),
    ("garbage_after_entries", _table(44, ENTRY) + b"\x01" + bytes(3), "must be zero"),
    ("oversized", _table(20, b"") + bytes(0x10000), "over"),
]


@pytest.mark.parametrize(("name", "data", "message"), BAD_TABLES, ids=[t[0] for t in BAD_TABLES])
def test_bad_secret_tables(name: str, data: bytes, message: str) -> None:
    with pytest.raises(MalformedEvidenceError, match=message):
        session.parse_secret_table(data)


# --- session blob and policy ---------------------------------------------------------------


def test_session_blob_round_trip_and_size() -> None:
    blob = bytes(range(128))
    assert session.SessionBlob.parse(blob).to_bytes() == blob
    with pytest.raises(MalformedEvidenceError, match="127"):
        session.SessionBlob.parse(blob[:127])


def test_godh_certificate_has_pdh_usage_and_empty_slots() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from veritee.tee.snp.sevcert import SevCert, Usage

    key = ec.derive_private_key(7, ec.SECP384R1())
    cert = SevCert.parse(session.godh_certificate(key.public_key()).to_bytes())
    assert cert.usage == Usage.PDH and cert.sig1.empty and cert.sig2.empty
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()


@pytest.mark.parametrize("value", [0, 0x1, 0x5, 0x3F, 0x00170001, 0xFFFF003F])
def test_policy_round_trip(value: int) -> None:
    policy = SevPolicy.from_int(value)
    assert policy.to_int() == value
    claims = policy.to_claims()
    assert claims["es"] == bool(value & 4)
    assert claims["debug_allowed"] == (not value & 1)


def test_policy_fields() -> None:
    policy = SevPolicy.from_int(0x18170005)
    assert (policy.nodbg, policy.noks, policy.es, policy.api_major, policy.api_minor) == \
        (True, False, True, 0x17, 0x18)


@pytest.mark.parametrize("value", [0x40, 0x8000, -1, 2**32])
def test_policy_reserved_or_out_of_range(value: int) -> None:
    with pytest.raises(MalformedEvidenceError, match="policy"):
        SevPolicy.from_int(value)
