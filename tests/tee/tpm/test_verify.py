"""The verifier on synthetic evidence: go-tpm-tools attestations (multi-quote, AK certificate
chain, event log), Trustee JSON, and the verdict rules — rejected beats undecided, supplied
anchors that trust no one reject."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from support.protobuf import pb
from veritee.collateral import CollateralFile, CollateralSource
from veritee.errors import (
    BindingError,
    CollateralMissingError,
    ExpiredError,
    MisuseError,
    SignatureError,
    UntrustedRootError,
)
from veritee.evidence import Evidence, decode_evidence
from veritee.tee.tpm.anchors import TpmRoot
from veritee.tee.tpm.structures import (
    AK_ATTRIBUTES,
    HASH_IDS,
    RESTRICTED,
    PcrSelection,
    build_attest,
    build_public,
    build_signature,
    pcr_digest,
)
from veritee.tee.tpm.verify import TpmVerifier
from veritee.testing import pki
from veritee.testing import tpm as emu

NOW = datetime(2026, 1, 1, tzinfo=UTC)
NONCE = b"\x90\x09"
BANKS = ("sha1", "sha256")
EVENTS = emu.default_events(BANKS)
PCRS = emu.replay(EVENTS, BANKS)
LOG = emu.build_event_log(EVENTS, BANKS)
INDICES = tuple(range(10))


@cache
def key(name: str) -> Any:
    return pki.load_key(name)


def pem(name: str) -> bytes:
    return bytes(key(name).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def quote(bank: str, *, nonce: bytes = NONCE, signer: str = "tpm-ak",
          values: dict[int, bytes] | None = None) -> tuple[bytes, bytes, dict[int, bytes]]:
    """A quote over ``bank``'s PCRs 0-9, signed RSASSA-SHA256 whatever the bank."""
    values = values or {i: PCRS[bank][i] for i in INDICES}
    attest = build_attest(qualified_signer=b"\0\x0b" + bytes(32), extra_data=nonce,
                          pcr_select=[PcrSelection(bank, INDICES)],
                          pcr_digest=pcr_digest([values[i] for i in INDICES], "sha256"))
    raw = key(signer).sign(attest, padding.PKCS1v15(), hashes.SHA256())
    return attest, build_signature("rsassa", "sha256", raw), values


def go(*, quotes: list[tuple[str, tuple[bytes, bytes, dict[int, bytes]]]] | None = None,
       ak: str = "tpm-ak", cert: bytes | None = None, inter: tuple[bytes, ...] = (),
       log: bytes | None = LOG) -> Evidence:
    quotes = quotes if quotes is not None else [(b, quote(b)) for b in BANKS]
    out = pb(1, build_public(key(ak).public_key()))
    for bank, (attest, sig, values) in quotes:
        entries = b"".join(pb(2, pb(1, i) + pb(2, v)) for i, v in values.items())
        out += pb(2, pb(1, attest) + pb(2, sig) + pb(3, pb(1, HASH_IDS[bank]) + entries))
    if log:
        out += pb(3, log)
    if cert:
        out += pb(6, cert)
    out += b"".join(pb(7, c) for c in inter)
    return decode_evidence(out)


def run(evidence: Evidence, *files: bytes, nonce: bytes | None = NONCE,
        verifier: TpmVerifier | None = None) -> dict[str, Any]:
    return (verifier or TpmVerifier()).verify(
        evidence, report_data=nonce, collateral=CollateralSource.of(*files), now=NOW).to_dict()


# -- go-tpm-tools ---------------------------------------------------------------------------


def test_go_trusted_by_key() -> None:
    claims = run(go(), pem("tpm-ak"))
    assert claims["evidence_form"] == "go-tpm-tools" and claims["ak_trust"] == "key"
    assert claims["pcr_select"] == {"sha1": list(INDICES), "sha256": list(INDICES)}
    assert len(claims["quotes"]) == 2 and claims["quotes"][0]["pcr_select"] == {
        "sha1": list(INDICES)}
    assert claims["pcrs"]["sha256"]["7"] == PCRS["sha256"][7].hex()
    assert claims["eventlog_pcrs"]["sha1"]["0"] == PCRS["sha1"][0].hex()
    assert claims["event_log"]["events"] and claims["signer"]


def test_go_trusted_by_certificate_chain() -> None:
    cert = emu.ak_certificate(key("tpm-ak"))
    claims = run(go(cert=cert), emu.emulated_ca_pem())
    assert claims["ak_trust"] == "certificate" and claims["emulated"] is False


def test_go_emulated_roots() -> None:
    verifier = TpmVerifier().with_roots(
        TpmRoot.from_bytes(emu.emulated_ca_pem(), "emulated CA", emulated=True))
    claims = run(go(cert=emu.ak_certificate(key("tpm-ak"))), verifier=verifier)
    assert claims["emulated"] is True and claims["ak_trust"] == "certificate"


def test_go_certificate_of_foreign_ca() -> None:
    cert = emu.ak_certificate(key("tpm-ak"), emu.FOREIGN_CA_KEY)
    with pytest.raises(UntrustedRootError, match="does not chain"):
        run(go(cert=cert), emu.emulated_ca_pem())


def test_go_certificate_of_another_key() -> None:
    cert = emu.ak_certificate(key("tpm-foreign-ak"))
    with pytest.raises(BindingError, match="another key"):
        run(go(cert=cert), emu.emulated_ca_pem())


def test_go_expired_chain() -> None:
    cert = emu.ak_certificate(key("tpm-ak"))
    with pytest.raises(ExpiredError):
        TpmVerifier().verify(go(cert=cert), report_data=NONCE,
                             collateral=CollateralSource.of(emu.emulated_ca_pem()),
                             now=datetime(2051, 1, 1, tzinfo=UTC))


def test_go_no_anchor_undecided() -> None:
    with pytest.raises(CollateralMissingError) as caught:
        run(go(cert=emu.ak_certificate(key("tpm-ak"))))
    assert caught.value.claims is not None and caught.value.claims["pcr_select"]


def test_go_untrusted_key() -> None:
    with pytest.raises(UntrustedRootError, match="none of the 1 supplied"):
        run(go(), pem("tpm-foreign-ak"))


@pytest.mark.parametrize("anchors", [(), ("tpm-ak",)])
def test_go_second_quote_badly_signed(anchors: tuple[str, ...]) -> None:
    """Rejected beats undecided: the evidence's own AK does not sign quote 1."""
    bad = [("sha1", quote("sha1")), ("sha256", quote("sha256", signer="tpm-foreign-ak"))]
    with pytest.raises(SignatureError, match="quote 1"):
        run(go(quotes=bad), *(pem(a) for a in anchors))


def test_go_quotes_with_different_nonces() -> None:
    mixed = [("sha1", quote("sha1")), ("sha256", quote("sha256", nonce=b"other"))]
    with pytest.raises(BindingError, match="extraData"):
        run(go(quotes=mixed), pem("tpm-ak"), nonce=None)


def test_go_event_log_contradicts_quote() -> None:
    changed = {i: PCRS["sha256"][i] for i in INDICES} | {4: b"\x44" * 32}
    quotes = [("sha1", quote("sha1")), ("sha256", quote("sha256", values=changed))]
    for files in ((), (pem("tpm-ak"),)):
        with pytest.raises(BindingError, match="event log contradicts"):
            run(go(quotes=quotes), *files)


def test_go_wrong_nonce_without_anchor() -> None:
    with pytest.raises(BindingError, match="9009"):
        run(go(), nonce=b"\x90\x0a")


def test_go_without_nonce_reports_it() -> None:
    claims = run(go(), pem("tpm-ak"), nonce=None)
    assert claims["extra_data"] == NONCE.hex()


# -- Trustee JSON ------------------------------------------------------------------------------


def trustee(signer: str = "tpm-ak", ak: str = "tpm-ak") -> Evidence:
    attest, sig, values = quote("sha256", signer=signer)
    spki = key(ak).public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    doc = {"ak_public": base64.b64encode(spki).decode(),
           "tpm_quote": {"message": base64.b64encode(attest).decode(),
                         "signature": base64.b64encode(sig).decode(),
                         "pcrs": [values[i].hex() for i in INDICES]}}
    return decode_evidence(json.dumps(doc).encode())


def test_trustee_verified_and_undecided() -> None:
    assert run(trustee(), pem("tpm-ak"))["evidence_form"] == "trustee"
    with pytest.raises(CollateralMissingError):
        run(trustee())


def test_trustee_own_ak_does_not_sign() -> None:
    with pytest.raises(SignatureError):
        run(trustee(signer="tpm-foreign-ak"))


def test_trustee_ak_not_trusted() -> None:
    with pytest.raises(UntrustedRootError):
        run(trustee(), pem("tpm-foreign-ak"))


# -- anchors and misuse --------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["pem", "der", "tpmt", "tpm2b", "jwk"])
def test_anchor_forms(form: str) -> None:
    public = key("tpm-ak").public_key()
    numbers = public.public_numbers()
    raw = build_public(public)

    def b64u(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(
            b"=").decode()

    blob = {"pem": pem("tpm-ak"),
            "der": public.public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo),
            "tpmt": raw, "tpm2b": len(raw).to_bytes(2, "big") + raw,
            "jwk": json.dumps({"kty": "RSA", "n": b64u(numbers.n),
                               "e": b64u(numbers.e)}).encode()}[form]
    assert run(go(), blob)["ak_trust"] == "key"


def test_unusable_endorsement_is_misuse() -> None:
    with pytest.raises(MisuseError, match="holds no AK"):
        run(go(), b"not a key")
    directory = CollateralSource(files=(CollateralFile("x", b"not a key", "directory"),))
    with pytest.raises(CollateralMissingError):
        TpmVerifier().verify(go(), report_data=NONCE, collateral=directory, now=NOW)


def test_misuse() -> None:
    with pytest.raises(MisuseError, match="time zone"):
        TpmVerifier().verify(go(), report_data=None, collateral=CollateralSource(),
                             now=datetime(2026, 1, 1))
    with pytest.raises(MisuseError, match="66"):
        run(go(), nonce=bytes(67))


def test_with_roots_keeps_options() -> None:
    verifier = TpmVerifier().with_roots([pem("tpm-ak")])
    assert len(verifier.roots) == 1 and run(go(), verifier=verifier)["ak_trust"] == "key"


def test_go_unrestricted_ak_refused() -> None:
    """An AK that is not a restricted signing key could sign a forged TPMS_ATTEST."""
    evidence = go()
    restricted = build_public(key("tpm-ak").public_key())
    loose = build_public(key("tpm-ak").public_key(), attributes=AK_ATTRIBUTES & ~RESTRICTED,
                         scheme="rsassa")
    forged = decode_evidence(evidence.data.replace(restricted, loose))
    with pytest.raises(SignatureError, match="restricted"):
        run(forged, pem("tpm-ak"))


def test_go_ak_scheme_enforced() -> None:
    """The AK's TPMT_PUBLIC fixes RSASSA: an RSAPSS signature is refused."""
    attest, _, values = quote("sha256")
    raw = key("tpm-ak").sign(attest, padding.PSS(padding.MGF1(hashes.SHA256()), 32),
                             hashes.SHA256())
    pss = (attest, build_signature("rsapss", "sha256", raw), values)
    with pytest.raises(SignatureError, match="fixes RSASSA"):
        run(go(quotes=[("sha256", pss)], log=None), pem("tpm-ak"))


def test_trustee_per_bank_form() -> None:
    """guest-components' newer TPM evidence: a PEM AK and one quote per bank."""
    banks = {}
    for bank in BANKS:
        attest, sig, values = quote(bank)
        banks[bank.upper()] = {"attest_body": base64.b64encode(attest).decode(),
                               "attest_sig": base64.b64encode(sig).decode(),
                               "pcrs": [values[i].hex() for i in INDICES]}
    doc = {"ak_pubkey": pem("tpm-ak").decode(), "quote": banks,
           "eventlog": base64.b64encode(LOG).decode()}
    claims = run(decode_evidence(json.dumps(doc).encode()), pem("tpm-ak"))
    assert claims["evidence_form"] == "trustee" and len(claims["quotes"]) == 2
    assert claims["eventlog_pcrs"]["sha256"]["9"] == PCRS["sha256"][9].hex()
    with pytest.raises(UntrustedRootError):
        run(decode_evidence(json.dumps(doc).encode()), pem("tpm-foreign-ak"))
