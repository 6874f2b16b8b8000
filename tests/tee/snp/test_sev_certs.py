"""SEV platform certificates and chains: AMD's real Naples and Rome chains (virtee/sev test
data, read in place from the corpus), the pinned ARK/ASK of five products, round trips, and
a table of tampered chains, each named after the defect it catches."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import corpus_dir
from veritee.errors import (
    ChainError,
    MalformedEvidenceError,
    MisuseError,
    SignatureError,
    UnsupportedVersionError,
    UntrustedRootError,
)
from veritee.tee.snp import sevcert, sevroots
from veritee.tee.snp.sevcert import AmdCaCert, SevCert, SevChain, Usage
from veritee.testing.snp.sev import SevFirmware, emulated_product, emulated_sev_roots

ROLES = ("pdh", "pek", "oca", "cek")


def legacy(product: str) -> Path:
    return corpus_dir("amd", "virtee-sev", f"sev-legacy-{product}")


def sev_bytes(product: str) -> bytes:
    folder = legacy(product)
    return b"".join((folder / f"{role}.cert").read_bytes() for role in ROLES)


def root(product: str) -> sevcert.SevRoot:
    return next(r for r in sevroots.pinned_roots() if r.product == product)


def full_export(product: str) -> bytes:
    pinned = root(product)
    return sev_bytes(product) + pinned.ask.to_bytes() + pinned.ark.to_bytes()


# --- pinned roots ----------------------------------------------------------------------------


def test_shipped_roots_match_their_pins() -> None:
    for product, (ark_pin, ask_pin) in sevroots.PINS.items():
        assert hashlib.sha256(sevroots.root_file(product, "ark")).hexdigest() == ark_pin
        assert hashlib.sha256(sevroots.root_file(product, "ask")).hexdigest() == ask_pin


def test_shipped_roots_are_the_corpus_files() -> None:
    folder = corpus_dir("amd", "virtee-sev", "builtin-sev")
    for product in sevroots.PRODUCTS:
        for role in ("ark", "ask"):
            assert sevroots.root_file(product, role) == (folder / f"{product}_{role}.cert"
                                                         ).read_bytes()


@pytest.mark.parametrize("product", sevroots.PRODUCTS)
def test_every_builtin_ark_and_ask_verifies(product: str) -> None:
    pinned = root(product)
    pinned.ark.verify_signed_by(pinned.ark)
    pinned.ask.verify_signed_by(pinned.ark)
    assert (pinned.ark.role, pinned.ask.role) == ("ARK", "ASK")
    assert pinned.ark.modulus_bits == (2048 if product == "naples" else 4096)
    assert AmdCaCert.parse(pinned.ark.to_bytes()).to_bytes() == sevroots.root_file(product, "ark")


def test_pinned_mapping_and_unknown_product() -> None:
    assert set(sevroots.pinned()) == set(sevroots.PRODUCTS)
    with pytest.raises(MisuseError, match="venice"):
        sevroots.root_file("venice", "ark")


# --- real chains -----------------------------------------------------------------------------


@pytest.mark.parametrize(("product", "api"), [("naples", (0, 16)), ("rome", (0, 22))])
def test_real_chain_verifies_in_every_form(product: str, api: tuple[int, int]) -> None:
    alone = sevcert.parse_chain(sev_bytes(product))
    full = sevcert.parse_chain(full_export(product))
    qemu = sevcert.chain_from_fields(alone.to_qemu())
    for chain in (alone, full, qemu):
        verified = sevcert.verify_platform_chain(chain)
        assert verified.product == product
        assert (verified.pek_api, verified.pdh_api) == (api, api)
        assert verified.pdh_public_key.curve.name == "secp384r1"
        assert not verified.emulated
        assert verified.cek_id == hashlib.sha256(chain.cek.pubkey).hexdigest()
    assert sevcert.verify_platform_chain(alone, product=product).product == product
    assert full.to_export() == full_export(product)


@pytest.mark.parametrize("product", ["naples", "rome"])
@pytest.mark.parametrize("role", ROLES)
def test_real_certificates_round_trip(product: str, role: str) -> None:
    raw = (legacy(product) / f"{role}.cert").read_bytes()
    cert = SevCert.parse(raw)
    assert cert.to_bytes() == raw
    assert cert.name == role.upper()
    assert cert.signed_bytes == raw[:0x414]


def test_chain_from_fields_base64_export() -> None:
    import base64

    chain = sevcert.chain_from_fields({"chain": base64.b64encode(full_export("rome")).decode()})
    assert chain.ark is not None
    assert sevcert.verify_platform_chain(chain).product == "rome"


# --- tampered chains ---------------------------------------------------------------------------


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes((data[at] ^ 0x01,)) + data[at + 1:]


def at_cert(index: int, offset: int) -> int:
    return index * sevcert.SEV_CERT_SIZE + offset


def with_ark(data: bytes, ark: AmdCaCert) -> bytes:
    return data[:-len(ark.to_bytes())] + ark.to_bytes()


def foreign_ark(data: bytes) -> bytes:
    return with_ark(data, emulated_product("milan").root.ark)


def swap(a: int, b: int) -> Callable[[bytes], bytes]:
    def run(data: bytes) -> bytes:
        certs = [data[i * 0x824:(i + 1) * 0x824] for i in range(4)]
        certs[a], certs[b] = certs[b], certs[a]
        return b"".join(certs) + data[4 * 0x824:]
    return run


def pdh_resigned_by_other_pek(data: bytes) -> bytes:
    pdh = SevCert.parse(data[:0x824])
    other = SevFirmware("milan", seed="other-platform").keys.pek
    forged = pdh.signed(Usage.PEK, sevcert.Algo.ECDSA_SHA256, other)
    return forged.to_bytes() + data[0x824:]


def cek_from_naples(data: bytes) -> bytes:
    naples = sevcert.parse_chain(sev_bytes("naples"))
    return data[:3 * 0x824] + naples.cek.to_bytes() + data[4 * 0x824:]


def oca_slot_usage(data: bytes) -> bytes:
    oca = SevCert.parse(data[2 * 0x824:3 * 0x824])
    bad = replace(oca, sig1=replace(oca.sig1, usage=Usage.PEK))
    return data[:2 * 0x824] + bad.to_bytes() + data[3 * 0x824:]


CASES: list[tuple[str, Callable[[bytes], bytes], type[Exception], str]] = [
    ("pdh_signature_flipped", lambda d: flip(d, at_cert(0, 0x41C + 5)), SignatureError, "PDH"),
    ("pek_cek_signature_flipped", lambda d: flip(d, at_cert(1, 0x624 + 3)), SignatureError,
     "CEK key"),
    ("cek_signature_flipped", lambda d: flip(d, at_cert(3, 0x41C + 9)), SignatureError,
     "CEK's signature"),
    ("pek_key_off_curve", lambda d: flip(d, at_cert(1, 0x10 + 8)), MalformedEvidenceError,
     "not a point"),
    ("ask_modulus_flipped", lambda d: flip(d, len(d) - 3200 + 0x40 + 512 + 17), SignatureError,
     "ASK"),
    ("pdh_api_version_flipped", lambda d: flip(d, at_cert(0, 5)), SignatureError, "PEK key"),
    ("pdh_in_pek_position", swap(0, 1), ChainError, "PDH position"),
    ("oca_self_slot_names_pek", oca_slot_usage, ChainError, "no signature slot for the OCA"),
    ("unpinned_ark", foreign_ark, UntrustedRootError, "not a pinned ARK"),
    ("ark_signature_flipped", lambda d: flip(d, len(d) - 7), UntrustedRootError, "pinned ARK"),
    ("ask_signature_flipped", lambda d: flip(d, len(d) - 1600 - 9), SignatureError, "ASK"),
    ("cek_signed_by_other_product_ask", cek_from_naples, ChainError, "naples ASK"),
    ("pdh_signed_by_wrong_key", pdh_resigned_by_other_pek, SignatureError, "PDH's signature"),
    ("truncated", lambda d: d[:-1], MalformedEvidenceError, "bytes"),
    ("oversized", lambda d: d + b"\0", MalformedEvidenceError, "bytes"),
    ("sev_chain_truncated", lambda d: d[:4 * 0x824 - 1], MalformedEvidenceError, "bytes"),
    ("cert_version_2", lambda d: bytes((2,)) + d[1:], UnsupportedVersionError, "VERSION"),
    ("unknown_usage", lambda d: d[:8] + (0x1005).to_bytes(4, "little") + d[12:],
     MalformedEvidenceError, "PUBKEY_USAGE"),
    ("unknown_algo", lambda d: d[:12] + (0x104).to_bytes(4, "little") + d[16:],
     MalformedEvidenceError, "PUBKEY_ALGO"),
    ("unknown_curve", lambda d: d[:16] + (3).to_bytes(4, "little") + d[20:],
     MalformedEvidenceError, "CURVE"),
    ("reserved_byte_set", lambda d: flip(d, 6), MalformedEvidenceError, "reserved"),
]


@pytest.mark.parametrize(("name", "tamper", "error", "message"), CASES,
                         ids=[c[0] for c in CASES])
def test_tampered_rome_chain_fails_with_its_error(
        name: str, tamper: Callable[[bytes], bytes], error: type[Exception], message: str) -> None:
    data = tamper(full_export("rome"))
    with pytest.raises(error, match=message):
        sevcert.verify_platform_chain(sevcert.parse_chain(data))


def test_cek_of_other_product_without_ca_chain_is_named() -> None:
    chain = sevcert.parse_chain(sev_bytes("naples"))
    with pytest.raises(ChainError, match="naples ASK, not by the rome"):
        sevcert.verify_platform_chain(chain, product="rome")


def test_cek_signed_by_no_pinned_ask_is_untrusted() -> None:
    chain = sevcert.parse_chain(flip(sev_bytes("naples"), at_cert(3, 0x41C + 9)))
    with pytest.raises(UntrustedRootError, match="none of the pinned ASKs"):
        sevcert.verify_platform_chain(chain)


def test_unknown_product_is_misuse() -> None:
    with pytest.raises(MisuseError, match="venice"):
        sevcert.verify_platform_chain(sevcert.parse_chain(sev_bytes("rome")), product="venice")


def test_emulated_chain_needs_emulated_roots() -> None:
    firmware = SevFirmware()
    chain = sevcert.parse_chain(firmware.export_full())
    with pytest.raises(UntrustedRootError):
        sevcert.verify_platform_chain(chain)
    verified = sevcert.verify_platform_chain(chain, roots=emulated_sev_roots())
    assert (verified.product, verified.emulated) == ("rome", True)
    alone = replace(chain, ask=None, ark=None)
    with pytest.raises(UntrustedRootError):
        sevcert.verify_platform_chain(alone)
    pinned_and_emulated = sevroots.pinned_roots() + emulated_sev_roots()
    assert sevcert.verify_platform_chain(alone, roots=pinned_and_emulated).emulated


@pytest.mark.parametrize(("mutate", "error", "message"), [
    (lambda d: bytes((2,)) + d[1:], UnsupportedVersionError, "VERSION"),
    (lambda d: d[:0x24] + b"\x14" + d[0x25:], MalformedEvidenceError, "KEY_USAGE"),
    (lambda d: d[:0x3C] + (1024).to_bytes(4, "little") + d[0x40:], MalformedEvidenceError,
     "MODULUS_BITS"),
    (lambda d: flip(d, 0x30), MalformedEvidenceError, "reserved"),
    (lambda d: d[:-1], MalformedEvidenceError, "bytes"),
    (lambda d: d[:0x20], MalformedEvidenceError, "shorter"),
], ids=["version", "usage", "modulus_size", "reserved", "truncated", "header_cut"])
def test_bad_ca_certificates(mutate: Callable[[bytes], bytes], error: type[Exception],
                             message: str) -> None:
    with pytest.raises(error, match=message):
        AmdCaCert.parse(mutate(sevroots.root_file("rome", "ask")))


def test_ask_with_wrong_certifying_id_is_a_chain_error() -> None:
    pinned = root("milan")
    bad = replace(pinned.ask, certifying_id=bytes(16))
    with pytest.raises(ChainError, match="CERTIFYING_ID"):
        bad.verify_signed_by(pinned.ark)


def test_built_chain_round_trips() -> None:
    chain: SevChain = SevFirmware("milan").chain
    again = sevcert.parse_chain(chain.to_export())
    assert again == chain
    assert again.to_export() == chain.to_export()
