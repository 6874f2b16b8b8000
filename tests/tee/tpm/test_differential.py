"""veritee's TPM quote check against keylime's (``keylime.tpm.tpm_util.checkquote``, the peer
the project pins) on the same quotes: the corpus keylime and swtpm quotes (read in place,
skipped when absent), quotes taken from a real swtpm here (skipped without swtpm), and
emulated quotes, genuine and tampered. Each case states what both must do; where they differ
on purpose the case names the divergence and why:

- ``rsapss``: keylime accepts only RSASSA for RSA keys (``checkquote`` refuses sigAlg 0x16);
  veritee verifies RSA-PSS, which TPMs make and tpm2_checkquote accepts (note §3.2).
- ``sha1-bank-sha256-signature``: keylime hashes the PCRs of the bank named by the
  *signature's* hash, so a SHA-1 bank quoted with a SHA-256 signature (GCE's quotes) fails
  with a KeyError; veritee selects the banks the quote selects (note §3.2 pitfall 1).
- ``sha384-signature``: the same reason for a SHA-256 bank signed with SHA-384.
- ``sha1-signature``: keylime accepts a quote signed with SHA-1 when configured for SHA-1;
  veritee refuses SHA-1 signatures unless ``allow_sha1_signatures`` (as go-tpm-tools does),
  while SHA-1 *banks* are fine. (Its message then says no supplied key verifies the
  signature, because the keylime form names no AK and every key is tried.)
- ``two-banks-unequal``: keylime reads the signature bank's selection once per selection
  entry, so two banks of different sizes fail; veritee takes each bank's own selection.
- ``two-banks-equal`` is accepted by both, keylime's only by coincidence: it walks the
  SHA-256 selection once per bank, which consumes the SHA-1 values as if they were SHA-256
  ones, and returns only the last bank's values (checked below).

keylime is given the signature's hash as ``exp_hash_alg`` (its configured hash), and the nonce
as bytes (its pull mode).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pytest

from conftest import CORPUS
from veritee import errors
from veritee.collateral import CollateralSource
from veritee.evidence import decode_evidence
from veritee.tee.tpm import structures
from veritee.tee.tpm.verify import TpmVerifier
from veritee.testing.tpm import (
    Swtpm,
    SwtpmAk,
    TpmEmulator,
    clock_offset,
    keylime_quote,
    public_pem,
    read_pcr_blob,
)

logging.getLogger("keylime.config").setLevel(logging.ERROR)  # it warns of a missing config
from keylime.tpm import tpm_util  # noqa: E402 - after silencing its import-time warning

NOW = datetime(2026, 6, 1, tzinfo=UTC)
NONCE = b"veritee differential nonce"
Outcome = Literal["accept", "refuse"]


@dataclass(frozen=True)
class Quote:
    attest: bytes
    signature: bytes
    blob: bytes
    ak_pem: bytes
    nonce: bytes

    @property
    def hash_alg(self) -> str:
        return structures.parse_signature(self.signature).hash


def keylime(quote: Quote) -> tuple[Outcome, Any]:
    try:
        pcrs = tpm_util.checkquote(quote.ak_pem, quote.nonce, quote.signature,
                                   quote.attest, quote.blob, quote.hash_alg)
    except Exception as exc:
        return "refuse", exc
    return "accept", pcrs


def veritee(quote: Quote) -> tuple[Outcome, Any]:
    evidence = decode_evidence(keylime_quote(quote.attest, quote.signature, quote.blob))
    try:
        claims = TpmVerifier().verify(evidence, report_data=quote.nonce,
                                      collateral=CollateralSource.of(quote.ak_pem), now=NOW)
    except errors.EvidenceError as exc:
        return "refuse", exc
    return "accept", claims.to_dict()


# -- ways to break a quote ------------------------------------------------------------------------


def _flip(data: bytes, at: int) -> bytes:
    changed = bytearray(data)
    changed[at] ^= 1
    return bytes(changed)


def flip_attest(q: Quote) -> Quote:
    return replace(q, attest=_flip(q.attest, clock_offset(q.attest)))


def flip_signature(q: Quote) -> Quote:
    return replace(q, signature=_flip(q.signature, len(q.signature) - 5))


def other_nonce(q: Quote) -> Quote:
    return replace(q, nonce=q.nonce + b"!")


def flip_pcr(q: Quote) -> Quote:
    # The first value of the first TPML_DIGEST: after the selection (132 bytes), the list
    # count (4), the list's own count (4) and the value's size (2).
    return replace(q, blob=_flip(q.blob, 4 + 16 * 8 + 4 + 4 + 2))


def other_ak(q: Quote) -> Quote:
    """The quote checked against another AK than its signer (the emulator's foreign AK)."""
    return replace(q, ak_pem=public_pem(TpmEmulator(knob="foreign_ak").signing_key))


BREAKS: dict[str, Callable[[Quote], Quote]] = {
    "tampered-attest": flip_attest, "tampered-signature": flip_signature,
    "wrong-nonce": other_nonce, "changed-pcr": flip_pcr, "foreign-ak": other_ak,
}


# -- sources ---------------------------------------------------------------------------------------


def _corpus(folder: str, files: tuple[str, str, str, str], nonce: Callable[[Path], bytes]
            ) -> Quote:
    path = CORPUS / "ibm-tpm-gpu" / "tpm" / folder
    if not path.is_dir():
        pytest.skip(f"corpus folder ibm-tpm-gpu/tpm/{folder} is absent (set VERITEE_CORPUS)")
    attest, signature, blob, ak = (path / name for name in files)
    return Quote(attest.read_bytes(), signature.read_bytes(), blob.read_bytes(),
                 ak.read_bytes(), nonce(path))


def corpus_keylime() -> Quote:
    return _corpus("keylime", ("quote.bin", "sig.bin", "pcrblob.bin", "ak.pem"),
                   lambda p: (p / "nonce.txt").read_bytes().strip())


def corpus_swtpm() -> Quote:
    return _corpus("swtpm", ("quote.msg", "quote.sig", "quote.pcrs", "ak.pem"),
                   lambda p: bytes.fromhex((p / "nonce.hex").read_text().strip()))


def emulated(**settings: Any) -> Callable[[], Quote]:
    def make() -> Quote:
        emulator = TpmEmulator(**settings)
        quote = emulator.quote(NONCE)
        return Quote(quote.attest, quote.signature, quote.pcr_blob(), emulator.ak_pem, NONCE)
    return make


_SWTPM: dict[str, Any] = {}


def _swtpm_aks() -> tuple[Swtpm, dict[str, SwtpmAk]]:
    if not Swtpm.available():
        pytest.skip("swtpm and tpm2-tools are not installed")
    if "tpm" not in _SWTPM:
        pytest.skip("the swtpm fixture did not start")
    return _SWTPM["tpm"], _SWTPM["aks"]


def real(kind: str, selection: dict[str, list[int]] | None = None) -> Callable[[], Quote]:
    def make() -> Quote:
        tpm, aks = _swtpm_aks()
        quote = tpm.quote(aks[kind], NONCE, selection or {"sha256": [0, 1, 7, 8, 16]})
        return Quote(quote.attest, quote.signature, quote.pcr_blob, quote.ak.pem, NONCE)
    return make


@pytest.fixture(scope="module", autouse=True)
def _swtpm() -> Iterator[None]:
    if not Swtpm.available():
        yield
        return
    with Swtpm() as tpm:
        tpm.extend(8, {"sha1": b"\x33" * 20, "sha256": b"\x44" * 32})
        _SWTPM.update(tpm=tpm, aks={k: tpm.create_ak(k) for k in ("rsa", "ecdsa", "rsa-pss")})
        yield
        _SWTPM.clear()


# -- the table ------------------------------------------------------------------------------------

AGREE: dict[str, Callable[[], Quote]] = {
    "corpus-keylime": corpus_keylime,
    "corpus-swtpm": corpus_swtpm,
    "swtpm-rsassa": real("rsa"),
    "swtpm-ecdsa": real("ecdsa"),
    "emulated-rsassa": emulated(),
    "emulated-ecdsa": emulated(ak="ecdsa"),
    "emulated-24-pcrs": emulated(selection=(("sha256", tuple(range(24))),)),
}
#: Emulator knobs that make the keylime form wrong; both verifiers must refuse each.
KNOBS = ("wrong_nonce", "pcr_changed", "bad_signature", "tampered_attest", "foreign_ak",
         "wrong_digest_hash", "bad_magic", "not_a_quote")
#: (source, keylime's outcome, veritee's outcome), see the module docstring.
DIVERGE: dict[str, tuple[Callable[[], Quote], Outcome, Outcome]] = {
    "rsapss-emulated": (emulated(ak="rsa-pss"), "refuse", "accept"),
    "rsapss-swtpm": (real("rsa-pss"), "refuse", "accept"),
    "sha1-bank-sha256-signature": (emulated(selection=(("sha1", (0, 7)),)), "refuse", "accept"),
    "sha384-signature": (emulated(sig_hash="sha384"), "refuse", "accept"),
    "sha1-signature": (emulated(sig_hash="sha1", selection=(("sha1", (0, 7)),)),
                       "accept", "refuse"),
    "two-banks-unequal": (emulated(selection=(("sha1", (0,)), ("sha256", (0, 7)))),
                          "refuse", "accept"),
    "two-banks-unequal-swtpm": (real("rsa", {"sha1": [0], "sha256": [0, 8]}),
                                "refuse", "accept"),
}


def _cases() -> Iterator[Any]:
    for name, source in AGREE.items():
        yield pytest.param(source, None, "accept", id=name)
        for broken, how in BREAKS.items():
            yield pytest.param(source, how, "refuse", id=f"{name}-{broken}")


@pytest.mark.parametrize(("source", "how", "expected"), list(_cases()))
def test_keylime_and_veritee_agree(source: Callable[[], Quote],
                                   how: Callable[[Quote], Quote] | None,
                                   expected: Outcome) -> None:
    quote = source() if how is None else how(source())
    ours, theirs = veritee(quote), keylime(quote)
    assert (ours[0], theirs[0]) == (expected, expected), (ours[1], theirs[1])
    if expected == "accept":
        bank = structures.parse_attest(quote.attest).pcr_select[0].bank
        assert ours[1]["pcrs"][bank] == {str(i): v for i, v in theirs[1].items()}


@pytest.mark.parametrize("knob", KNOBS)
def test_both_refuse_each_emulator_defect(knob: str) -> None:
    quote = emulated(knob=knob)()
    assert (veritee(quote)[0], keylime(quote)[0]) == ("refuse", "refuse")


@pytest.mark.parametrize(("source", "theirs", "ours"),
                         [pytest.param(*case, id=name) for name, case in DIVERGE.items()])
def test_documented_divergences(source: Callable[[], Quote], theirs: Outcome,
                                ours: Outcome) -> None:
    quote = source()
    assert keylime(quote)[0] == theirs
    assert veritee(quote)[0] == ours


def test_a_two_bank_quote_of_equal_sizes_passes_keylime_by_coincidence() -> None:
    quote = emulated(selection=(("sha1", (0, 7)), ("sha256", (0, 7))))()
    (ours, claims), (theirs, pcrs) = veritee(quote), keylime(quote)
    assert (ours, theirs) == ("accept", "accept")
    values = read_pcr_blob(quote.blob)
    assert claims["pcrs"]["sha1"] == {str(i): v.hex() for b, i, v in values if b == "sha1"}
    assert claims["pcrs"]["sha256"] == {str(i): v for i, v in pcrs.items()}
    assert sorted(pcrs) == [0, 7]  # keylime returns one bank: the SHA-1 values are lost
