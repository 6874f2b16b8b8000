"""Hostile SEV certificates, chains and secret tables meet typed errors only (STYLE.md §8):
random, truncated, bit-flipped and oversized bytes through every parser and chain input
form. The only exceptions allowed out are MalformedEvidenceError (and its leaves) from the
parsers, and the EvidenceError leaves from chain verification."""

from __future__ import annotations

import base64
import contextlib
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee.errors import EvidenceError, MalformedEvidenceError
from veritee.tee.snp import session, sevcert
from veritee.tee.snp.sevcert import AmdCaCert, SevCert
from veritee.testing.snp.sev import SevFirmware, emulated_product, emulated_sev_roots

FIRMWARE = SevFirmware()
EXPORT = FIRMWARE.export_full()
ASK = emulated_product("rome").root.ask.to_bytes()
TABLE = session.build_secret_table([(uuid.UUID(int=5), b"secret"), (uuid.UUID(int=6), b"")])
FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for at, bit in flips:
        out[at % len(out)] ^= 1 << bit
    return bytes(out[:cut] if cut is not None else out)


flips = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 7)), max_size=4)
cuts = st.one_of(st.none(), st.integers(0, len(EXPORT) + 8))


@FAST
@given(st.binary(max_size=0x900))
def test_random_bytes_as_certificates(data: bytes) -> None:
    for parse in (SevCert.parse, AmdCaCert.parse, sevcert.parse_chain):
        with contextlib.suppress(MalformedEvidenceError):
            parse(data)


@FAST
@given(flips, cuts)
def test_mutated_sev_certificate(flip: list[tuple[int, int]], cut: int | None) -> None:
    data = mutate(EXPORT[:sevcert.SEV_CERT_SIZE], flip, cut)
    try:
        cert = SevCert.parse(data)
    except MalformedEvidenceError:
        return
    assert cert.to_bytes() == data


@FAST
@given(flips, cuts)
def test_mutated_ca_certificate(flip: list[tuple[int, int]], cut: int | None) -> None:
    data = mutate(ASK, flip, cut)
    try:
        cert = AmdCaCert.parse(data)
    except MalformedEvidenceError:
        return
    assert cert.to_bytes() == data


@FAST
@given(flips, cuts, st.sampled_from(["export", "fields", "qemu"]))
def test_mutated_chain_in_every_form(flip: list[tuple[int, int]], cut: int | None,
                                     form: str) -> None:
    data = mutate(EXPORT, flip, cut)
    try:
        if form == "export":
            chain = sevcert.parse_chain(data)
        elif form == "fields":
            chain = sevcert.chain_from_fields({"chain": base64.b64encode(data).decode()})
        else:
            chain = sevcert.chain_from_qemu(base64.b64encode(data[:0x824]).decode(),
                                            base64.b64encode(data[0x824:4 * 0x824]).decode())
        verified = sevcert.verify_platform_chain(chain, roots=emulated_sev_roots())
    except EvidenceError:
        return
    assert verified.emulated


@FAST
@given(st.dictionaries(st.sampled_from(["chain", "pdh", "cert-chain", "other"]),
                       st.one_of(st.text(max_size=40), st.integers(), st.none(),
                                 st.binary(max_size=8)), max_size=3))
def test_random_chain_fields(fields: dict[str, object]) -> None:
    with contextlib.suppress(MalformedEvidenceError):
        sevcert.chain_from_fields(fields)


@FAST
@given(st.binary(max_size=300))
def test_random_secret_tables(data: bytes) -> None:
    with contextlib.suppress(MalformedEvidenceError):
        session.parse_secret_table(session.TABLE_GUID.bytes_le + data)


@FAST
@given(flips, st.one_of(st.none(), st.integers(0, len(TABLE) + 8)))
def test_mutated_secret_table(flip: list[tuple[int, int]], cut: int | None) -> None:
    try:
        entries = session.parse_secret_table(mutate(TABLE, flip, cut))
    except MalformedEvidenceError:
        return
    assert all(isinstance(guid, uuid.UUID) for guid, _ in entries)


@FAST
@given(st.builds(lambda e: [(uuid.UUID(int=i + 1), d) for i, d in enumerate(e)],
                 st.lists(st.binary(max_size=64), max_size=6)))
def test_secret_table_round_trip(entries: list[tuple[uuid.UUID, bytes]]) -> None:
    table = session.build_secret_table(entries)
    assert len(table) % 16 == 0
    assert session.parse_secret_table(table) == entries


@FAST
@given(st.binary(max_size=200), st.integers(0, 2**32 - 1))
def test_random_session_input_to_the_firmware(blob: bytes, policy: int) -> None:
    godh = EXPORT[:sevcert.SEV_CERT_SIZE]  # a PDH-usage certificate, like a GODH
    with contextlib.suppress(EvidenceError):
        session.open_session(FIRMWARE.keys.pdh, godh, blob.ljust(128, b"\0")[:128], policy)
