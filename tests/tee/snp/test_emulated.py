"""The SNP verifier on emulated evidence: every version, product, signer and wire form; every
negative knob; collateral from a fake KDS and its cache; CRLs; bindings."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from veritee.collateral import CollateralSource, MemoryCache
from veritee.errors import (
    BindingError,
    ChainError,
    CollateralMissingError,
    CollateralUnavailableError,
    ExpiredError,
    MisuseError,
    RevokedError,
    UntrustedRootError,
    VeriteeError,
)
from veritee.evidence import decode_evidence
from veritee.tee import get_verifier
from veritee.tee.snp import certtable
from veritee.tee.snp.claims import SnpClaims
from veritee.tee.snp.evidence import parse_snp_evidence, report_from_fields
from veritee.tee.snp.kds import CRL_RETRY_SECONDS, KDS_BASE_URL, crl_url
from veritee.tee.snp.layout import REPORT_SIZE, SIGNED_SIZE, parse_report
from veritee.tee.snp.verify import SnpVerifier
from veritee.testing import pki
from veritee.testing.snp import (
    KNOB_ERRORS,
    KNOBS,
    PRODUCTS,
    SIGNERS,
    VERSIONS,
    FakeKds,
    SnpEmulator,
    coco_json,
)

NONCE = bytes(range(64))

#: Every wire form of one piece of evidence (CONTRACT.md §1, amd-sev.md §1.6).
FORMS: dict[str, Callable[[SnpEmulator, bytes], bytes]] = {
    "extended-raw": lambda e, rd: e.extended_report(rd),
    "extended-hex": lambda e, rd: e.extended_report(rd).hex().encode(),
    "extended-base64": lambda e, rd: base64.b64encode(e.extended_report(rd)),
    "configfs-tsm": lambda e, rd: json.dumps(e.configfs_tsm(rd)).encode(),
    "coco": lambda e, rd: json.dumps(e.coco_evidence(rd)).encode(),
    "kbs": lambda e, rd: json.dumps({"primary_evidence": e.coco_evidence(rd)}).encode(),
}
MATRIX = [(v, p, s) for v in VERSIONS for p in PRODUCTS for s in SIGNERS]


@functools.cache
def emulator(version: int = 3, product: str = "milan", signer: str = "vcek",
             knob: str | None = None) -> SnpEmulator:
    """One emulator per combination for the whole module (its certificates are built once)."""
    return SnpEmulator(product=product, signer=signer, version=version,  # type: ignore[arg-type]
                       knob=knob)  # type: ignore[arg-type]


@functools.cache
def trusting() -> SnpVerifier:
    verifier = get_verifier("snp", trust_emulated=True)
    assert isinstance(verifier, SnpVerifier)
    return verifier


def verify(blob: bytes, emu: SnpEmulator, *, collateral: CollateralSource | None = None,
           report_data: bytes | None = None, now: datetime | None = None,
           verifier: Any = None) -> SnpClaims:
    claims = (verifier or trusting()).verify(
        decode_evidence(blob), report_data=report_data,
        collateral=collateral or CollateralSource(), now=now or emu.now)
    assert isinstance(claims, SnpClaims)
    return claims


def pem(der: bytes) -> bytes:
    """PEM text of a DER certificate (without loading it: VCEKs have serial 0)."""
    return (b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der)
            + b"-----END CERTIFICATE-----\n")


def resign(emu: SnpEmulator, report: bytes) -> bytes:
    """``report`` with a fresh signature by the emulator's VCEK/VLEK."""
    der = emu.vek_key.sign(report[:SIGNED_SIZE], ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    return (report[:SIGNED_SIZE] + r.to_bytes(72, "little") + s.to_bytes(72, "little")
            + report[SIGNED_SIZE + 144:])


# -- the matrix --------------------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("version", "product", "signer"), MATRIX)
def test_matrix_verifies(version: int, product: str, signer: str, form: str) -> None:
    emu = emulator(version, product, signer)
    claims = verify(FORMS[form](emu, NONCE), emu, report_data=NONCE)
    out = claims.to_dict()
    assert (out["version"], out["product"], out["signer"]) == (version, product, signer)
    assert out["emulated"] is True
    assert out["report_data"] == NONCE.hex()
    assert out["measurement"] == emu.measurement.hex()
    assert out["reported_tcb"] == emu.reported_tcb.components()
    assert ("fmc" in out["reported_tcb"]) == (product == "turin")
    assert (out["cpuid"] is None) == (version == 2)
    assert ("launch_mit_vector" in out) == (version >= 5)
    assert out["vek"]["csp_id"] is None if signer == "vcek" else out["vek"]["csp_id"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("version", "product", "signer"), MATRIX)
def test_matrix_refused_without_trusting_emulated_roots(version: int, product: str,
                                                        signer: str, form: str) -> None:
    emu = emulator(version, product, signer)
    with pytest.raises(UntrustedRootError, match="not a pinned AMD root") as info:
        verify(FORMS[form](emu, NONCE), emu, verifier=get_verifier("snp"))
    assert "emulated roots are trusted only when" in info.value.detail


def test_bare_report_without_endorsements_is_refused_without_trust() -> None:
    # No emulated certificate anywhere: the emulated VCEK cannot chain to AMD's roots.
    emu = emulator()
    with pytest.raises(VeriteeError):
        verify(emu.report(), emu, verifier=get_verifier("snp"),
               collateral=CollateralSource.of(*(emu.chain["vek"],)))


# -- negative knobs (STYLE §16: name, how to build, expected error) -----------------------------


#: Knobs that break something a VLEK does not have (a VLEK certifies no chip id).
VCEK_ONLY_KNOBS = frozenset({"chip_id_mismatch"})


@pytest.mark.parametrize("signer", SIGNERS)
@pytest.mark.parametrize("knob", KNOBS)
def test_knob_gives_its_error(knob: str, signer: str) -> None:
    if signer == "vlek" and knob in VCEK_ONLY_KNOBS:
        pytest.skip(f"{knob} has no VLEK counterpart")
    emu = emulator(3, "genoa", signer, knob)
    expected = KNOB_ERRORS[knob]
    with pytest.raises(expected) as info:
        verify(emu.extended_report(), emu,
               collateral=CollateralSource.of(*tuple(emu.endorsements())))
    assert type(info.value) is expected, info.value.detail


@pytest.mark.parametrize("form", FORMS)
def test_foreign_ark_in_any_form_is_untrusted(form: str) -> None:
    emu = emulator(knob="foreign_ark")
    with pytest.raises(UntrustedRootError, match="ARK-Milan from the evidence"):
        verify(FORMS[form](emu, NONCE), emu)


def test_foreign_ark_among_endorsements_is_untrusted() -> None:
    emu, foreign = emulator(), emulator(knob="foreign_ark")
    with pytest.raises(UntrustedRootError, match="from the endorsement endorsement\\[1\\]"):
        verify(emu.report(), emu, collateral=CollateralSource.of(
            emu.chain["vek"], foreign.chain["ark"]))


def test_failure_keeps_the_parsed_claims() -> None:
    emu = emulator(knob="tcb_mismatch")
    with pytest.raises(BindingError) as info:
        verify(emu.extended_report(NONCE), emu)
    assert info.value.claims is not None
    assert info.value.claims["report_data"] == NONCE.hex()
    assert info.value.claims["product"] == "milan"


# -- REPORTED_TCB's reserved bytes --------------------------------------------------------------

#: TCB_VERSION's reserved bytes by product line (amd-sev.md §1.5).
TCB_RESERVED = {"milan": range(2, 6), "genoa": range(2, 6), "turin": range(4, 7)}
_REPORTED_TCB = 0x180


@pytest.mark.parametrize("signer", SIGNERS)
@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize(("product", "at"), [(p, i) for p, r in TCB_RESERVED.items()
                                             for i in r])
def test_reserved_tcb_byte_in_a_signed_report_is_refused(product: str, at: int, version: int,
                                                         signer: str) -> None:
    # The genuine VCEK/VLEK signs a report whose REPORTED_TCB has one reserved byte set: the
    # components still match the certificate, the whole 8 bytes do not.
    emu = emulator(version, product, signer)
    raw = bytearray(emu.report())
    raw[_REPORTED_TCB + at] = 0x01
    forged = resign(emu, bytes(raw)) + emu.cert_table()
    with pytest.raises(BindingError, match=r"REPORTED_TCB is .*: its reserved bytes") as info:
        verify(forged, emu)
    zero = "00" * len(TCB_RESERVED[product])
    assert info.value.detail.endswith(f"{signer.upper()} says {zero}")


# -- where the VCEK / VLEK comes from ------------------------------------------------------------


@pytest.mark.parametrize("product", PRODUCTS)
def test_vlek_report_without_any_vlek_is_undecided(product: str) -> None:
    emu = emulator(3, product, "vlek")
    table_without_vlek = certtable.build_cert_table([
        (certtable.GUID_ARK, emu.chain["ark"]), (certtable.GUID_ASK, emu.chain["ask"])])
    for blob in (emu.report(), emu.report() + table_without_vlek):
        with pytest.raises(CollateralMissingError, match="VLEK") as info:
            verify(blob, emu, collateral=CollateralSource(fetcher=FakeKds()))
        assert info.value.status == "undecided"


@pytest.mark.parametrize("signer", SIGNERS)
def test_bare_report_with_endorsed_vek(signer: str) -> None:
    emu = emulator(2, "genoa", signer)
    vek_pem = pem(emu.chain["vek"])
    claims = verify(emu.report(), emu, collateral=CollateralSource.of(*(vek_pem,)))
    assert (claims.product, claims.signer, claims.evidence_form) == ("genoa", signer, "report")


#: product → the KDS URL path and query the VCEK of the emulator's default TCB lives at
#: (57230 §4.1; Turin: 8-byte hwID and fmcSPL first, amd-sev.md §2.1).
KDS_URLS = {
    "milan": "/vcek/v1/Milan/{hwid}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115",
    "genoa": "/vcek/v1/Genoa/{hwid}?blSPL=10&teeSPL=0&snpSPL=23&ucodeSPL=84",
    "turin": "/vcek/v1/Turin/{hwid}?fmcSPL=0&blSPL=1&teeSPL=0&snpSPL=2&ucodeSPL=71",
}


@pytest.mark.parametrize("product", PRODUCTS)
def test_vcek_fetched_from_kds_then_served_offline_from_the_cache(product: str) -> None:
    emu = emulator(3, product)
    kds = FakeKds()
    kds.add(emu)
    cache = MemoryCache()
    claims = verify(emu.report(), emu, collateral=CollateralSource(cache=cache, fetcher=kds))
    hwid = emu.chip_id[:8] if product == "turin" else emu.chip_id
    url = KDS_BASE_URL + KDS_URLS[product].format(hwid=hwid.hex())
    crl = crl_url(product, "vcek")
    assert kds.requests == [url, crl]   # the VCEK, then the CRL (revocation is checked)
    assert len(hwid) == (8 if product == "turin" else 64)
    assert cache.get(url) == emu.chain["vek"]
    assert (claims.product, claims.revocation) == (product, "checked")

    offline = CollateralSource(cache=cache, fetcher=None)
    claims = verify(emu.report(), emu, collateral=offline)
    assert (claims.product, claims.revocation) == (product, "checked")
    assert kds.requests == [url, crl]  # no second request


def test_v2_report_tries_milan_then_genoa_at_kds() -> None:
    # Without CPUID and with a 64-byte chip id, the product is unknown: Milan, then Genoa.
    emu = emulator(2, "genoa")
    kds = FakeKds()
    kds.add(emu)
    claims = verify(emu.report(), emu, collateral=CollateralSource(fetcher=kds))
    assert claims.product == "genoa"
    assert [u.split("/")[5] for u in kds.requests] == ["Milan", "Genoa", "Genoa"]
    assert kds.requests[-1] == crl_url("genoa", "vcek")


@pytest.mark.parametrize(
    ("status", "expected"),
    [(404, CollateralMissingError), (429, CollateralUnavailableError),
     (503, CollateralUnavailableError), (500, CollateralUnavailableError)],
)
def test_kds_failure_is_undecided(status: int, expected: type[VeriteeError]) -> None:
    emu = emulator(3, "milan")
    kds = FakeKds(fail_status=status)
    with pytest.raises(expected) as info:
        verify(emu.report(), emu, collateral=CollateralSource(fetcher=kds))
    assert type(info.value) is expected
    assert info.value.status == "undecided"
    assert f"HTTP {status}" in info.value.detail
    assert len(kds.requests) == 1


def test_offline_without_vcek_is_undecided() -> None:
    emu = emulator(3, "turin")
    with pytest.raises(CollateralMissingError, match="offline cache"):
        verify(emu.report(), emu)


def test_masked_chip_id_cannot_be_looked_up() -> None:
    emu = emulator(3, "milan")
    fields = parse_report(emu.report())
    masked = resign(emu, fields.raw[:0x1A0] + bytes(64) + fields.raw[0x1E0:])
    with pytest.raises(CollateralMissingError, match="CHIP_ID is masked"):
        verify(masked, emu, collateral=CollateralSource(fetcher=FakeKds()))
    # With its VCEK given, a masked chip id still verifies (the signature binds the VCEK).
    claims = verify(masked, emu, collateral=CollateralSource.of(*(emu.chain["vek"],)))
    assert not any(claims.report.chip_id)


# -- CRLs ----------------------------------------------------------------------------------------


_test_key = functools.cache(pki.load_key)


def _crl(emu: SnpEmulator, *, revoke: bool = False, key: str | None = None,
         issuer: str | None = None, days_from: float = -1, days_to: float = 30,
         revoked_on: float = -1) -> bytes:
    """A CRL of ``emu``'s ARK valid from ``days_from`` to ``days_to`` (days from ``emu.now``),
    listing the ASK/ASVK as revoked on ``revoked_on`` when ``revoke``."""
    signer = _test_key(key or f"snp-{emu.product}-ark")
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.amd_name(issuer or f"ARK-{emu.title}"))
        .last_update(emu.now + pki.days(days_from))
        .next_update(emu.now + pki.days(days_to))
    )
    if revoke:
        serial = x509.load_der_x509_certificate(emu.chain["ask"]).serial_number
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial)
            .revocation_date(emu.now + pki.days(revoked_on)).build())
    crl = builder.sign(signer, hashes.SHA384(), rsa_padding=pki.PSS_SHA384)
    return crl.public_bytes(serialization.Encoding.DER)


CRL_CASES: list[tuple[str, Callable[[SnpEmulator], list[bytes]], str | type[VeriteeError]]] = [
    ("no CRL", lambda e: [], "not_checked"),
    ("valid CRL listing nothing", lambda e: [e.crl(revoke_intermediate=False)], "checked"),
    ("valid CRL as PEM", lambda e: [x509.load_der_x509_crl(e.crl(
        revoke_intermediate=False)).public_bytes(serialization.Encoding.PEM)], "checked"),
    ("CRL listing the ASK", lambda e: [e.crl(revoke_intermediate=True)], RevokedError),
    ("stale CRL", lambda e: [_crl(e, days_from=-60, days_to=-30)], ExpiredError),
    ("CRL from the future", lambda e: [_crl(e, days_from=1, days_to=30)], ExpiredError),
    ("CRL not signed by the ARK", lambda e: [_crl(e, key="snp-foreign-ark")], ChainError),
    ("CRL of another product's ARK", lambda e: [_crl(e, issuer="ARK-Genoa",
                                                     key="snp-genoa-ark")], "not_checked"),
    ("one good, one revoking", lambda e: [_crl(e), _crl(e, revoke=True)], RevokedError),
]


@pytest.mark.parametrize("signer", SIGNERS)
@pytest.mark.parametrize(("name", "build", "expected"), CRL_CASES, ids=[c[0] for c in CRL_CASES])
def test_crl(name: str, build: Callable[[SnpEmulator], list[bytes]],
             expected: str | type[VeriteeError], signer: str) -> None:
    emu = emulator(3, "milan", signer)
    collateral = CollateralSource.of(*tuple(build(emu)))
    if isinstance(expected, str):
        assert verify(emu.extended_report(), emu, collateral=collateral).revocation == expected
    else:
        with pytest.raises(expected) as info:
            verify(emu.extended_report(), emu, collateral=collateral)
        assert type(info.value) is expected, info.value.detail


def test_crl_from_the_collateral_cache() -> None:
    emu = emulator(3, "turin", "vlek")
    cache = MemoryCache()
    url = crl_url("turin", "vlek")
    cache.put(url, emu.crl(revoke_intermediate=True))
    with pytest.raises(RevokedError, match="SEV-VLEK-Turin"):
        verify(emu.extended_report(), emu, collateral=CollateralSource(cache=cache))


@pytest.mark.parametrize(("revoke", "expected"), [(False, "checked"), (True, RevokedError)])
@pytest.mark.parametrize("form", ["extended-report", "coco"])
def test_crl_shipped_with_the_evidence(form: str, revoke: bool,
                                       expected: str | type[VeriteeError]) -> None:
    # virtee/sev CertType::CRL in a certificate table or a CoCo cert_chain; "Empty" entries
    # are skipped.
    emu = emulator(3, "genoa")
    crl = emu.crl(revoke_intermediate=revoke)
    if form == "coco":
        document = emu.coco_evidence()
        document["cert_chain"] += [{"cert_type": "CRL", "data": list(crl)},
                                   {"cert_type": "Empty", "data": []}]
        blob = json.dumps(document).encode()
    else:
        blob = emu.report() + certtable.build_cert_table([
            (certtable.GUID_ARK, emu.chain["ark"]), (certtable.GUID_ASK, emu.chain["ask"]),
            (certtable.GUID_VCEK, emu.chain["vek"]), (certtable.GUID_CRL, crl)])
    if isinstance(expected, str):
        assert verify(blob, emu).revocation == expected
    else:
        with pytest.raises(expected):
            verify(blob, emu)


# -- revocation in a default deployment: AMD's CRL from KDS, the cache, or nothing ---------------

Build = Callable[[SnpEmulator], bytes]


def _stale(e: SnpEmulator) -> bytes:
    return _crl(e, days_from=-60, days_to=-30)


class Revocation(NamedTuple):
    name: str
    served: Build | int | None
    """What KDS serves at the CRL URL: a CRL, or the HTTP status of every answer; None:
    offline (no fetcher)."""
    cached: Build | None
    """The CRL already in the collateral cache, stored ``cached_age`` seconds ago."""
    supplied: Callable[[SnpEmulator], list[bytes]]
    """CRLs the operator gives (endorsements)."""
    expected: str | type[VeriteeError]
    fetched: bool
    """Whether the CRL was asked of KDS."""
    cached_age: float = CRL_RETRY_SECONDS + 1


REVOCATION: list[Revocation] = [Revocation(*case) for case in [
    # Online: AMD's CRL is fetched and checked without the operator supplying anything.
    ("KDS CRL listing nothing", lambda e: e.crl(revoke_intermediate=False), None,
     lambda e: [], "checked", True),
    ("KDS CRL revoking the ASK", lambda e: e.crl(revoke_intermediate=True), None,
     lambda e: [], RevokedError, True),
    ("KDS has no CRL", 404, None, lambda e: [], "not_checked", True),
    ("KDS down", 503, None, lambda e: [], "not_checked", True),
    ("KDS rate-limits", 429, None, lambda e: [], "not_checked", True),
    ("KDS CRL signed by another key", lambda e: _crl(e, key="snp-foreign-ark"), None,
     lambda e: [], ChainError, True),
    ("KDS CRL of another product's ARK", lambda e: _crl(e, issuer="ARK-Genoa",
                                                        key="snp-genoa-ark"), None,
     lambda e: [], "not_checked", True),
    ("KDS answers something else", lambda e: b"<html>maintenance</html>", None,
     lambda e: [], "not_checked", True),
    ("KDS CRL out of date", _stale, None, lambda e: [], "not_checked", True),
    ("out-of-date KDS CRL revoking the ASK",
     lambda e: _crl(e, revoke=True, days_from=-60, days_to=-30, revoked_on=-90), None,
     lambda e: [], RevokedError, True),
    ("revocation dated after the verification time",
     lambda e: _crl(e, revoke=True, revoked_on=5), None, lambda e: [], "checked", True),
    # The cache: used until it is out of date, then refreshed.
    ("fresh cached CRL: not fetched again", 503, lambda e: e.crl(revoke_intermediate=False),
     lambda e: [], "checked", False),
    ("fresh cached CRL revoking the ASK", 503, lambda e: e.crl(revoke_intermediate=True),
     lambda e: [], RevokedError, False),
    ("out-of-date cached CRL refreshed", lambda e: e.crl(revoke_intermediate=False), _stale,
     lambda e: [], "checked", True),
    ("out-of-date cached CRL refreshed to a revocation",
     lambda e: e.crl(revoke_intermediate=True), _stale, lambda e: [], RevokedError, True),
    ("out-of-date cached CRL, KDS down", 503, _stale, lambda e: [], "not_checked", True),
    ("out-of-date cached CRL stored minutes ago: not asked again",
     lambda e: e.crl(revoke_intermediate=False), _stale, lambda e: [], "not_checked", False,
     CRL_RETRY_SECONDS - 60),
    # The operator's CRLs beside AMD's.
    ("supplied out-of-date CRL, KDS current", lambda e: e.crl(revoke_intermediate=False),
     None, lambda e: [_stale(e)], "checked", True),
    ("supplied out-of-date CRL, KDS down", 503, None, lambda e: [_stale(e)], ExpiredError,
     True),
    ("supplied current CRL, KDS down", 503, None,
     lambda e: [e.crl(revoke_intermediate=False)], "checked", True),
    ("supplied CRL listing nothing, KDS revoking", lambda e: e.crl(revoke_intermediate=True),
     None, lambda e: [e.crl(revoke_intermediate=False)], RevokedError, True),
    # Offline: the cache and the operator's CRLs, as given.
    ("offline, cached current CRL", None, lambda e: e.crl(revoke_intermediate=False),
     lambda e: [], "checked", False),
    ("offline, cached CRL revoking the ASK", None, lambda e: e.crl(revoke_intermediate=True),
     lambda e: [], RevokedError, False),
    ("offline, cached out-of-date CRL", None, _stale, lambda e: [], ExpiredError, False),
    ("offline, cached CRL signed by another key", None,
     lambda e: _crl(e, key="snp-foreign-ark"), lambda e: [], ChainError, False),
    ("offline, nothing", None, None, lambda e: [], "not_checked", False),
]]


@pytest.mark.parametrize("signer", SIGNERS)
@pytest.mark.parametrize("case", REVOCATION, ids=[case.name for case in REVOCATION])
def test_revocation(case: Revocation, signer: str) -> None:
    emu = emulator(3, "milan", signer)
    url = crl_url("milan", signer)
    clock = [1_000_000.0]
    cache = MemoryCache(clock=lambda: clock[0])
    if case.cached is not None:
        cache.put(url, case.cached(emu))
        clock[0] += case.cached_age
    fake = None
    if case.served is not None:
        status = case.served if isinstance(case.served, int) else None
        fake = FakeKds(fail_status=status)
        if not isinstance(case.served, int):
            fake.serve(url, case.served(emu))
    files = CollateralSource.of(*case.supplied(emu)).files
    collateral = CollateralSource(files=files, cache=cache, fetcher=fake)
    blob = emu.extended_report()   # the VCEK/VLEK comes with it: only the CRL is fetched
    if isinstance(case.expected, str):
        assert verify(blob, emu, collateral=collateral).revocation == case.expected
    else:
        with pytest.raises(case.expected) as info:
            verify(blob, emu, collateral=collateral)
        assert type(info.value) is case.expected, info.value.detail
    assert (fake.requests if fake else []) == ([url] if case.fetched else [])


def test_revocation_messages_name_the_crl() -> None:
    emu = emulator(3, "genoa")
    fake = FakeKds()
    fake.serve(crl_url("genoa", "vcek"), emu.crl(revoke_intermediate=True))
    with pytest.raises(RevokedError, match=r"SEV-Genoa \(serial 131073\) is revoked since "
                                           r".* by the ARK-Genoa CRL"):
        verify(emu.extended_report(), emu, collateral=CollateralSource(fetcher=fake))
    fake.serve(crl_url("genoa", "vcek"), _crl(emu, key="snp-foreign-ark"))
    with pytest.raises(ChainError, match="naming ARK-Genoa as its issuer is not signed"):
        verify(emu.extended_report(), emu, collateral=CollateralSource(fetcher=fake))
    with pytest.raises(ExpiredError, match="no ARK-Genoa CRL is current"):
        verify(emu.extended_report(), emu, collateral=CollateralSource.of(_stale(emu)))


# -- report data --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected", "error"),
    [
        ("equal", NONCE, None),
        ("different", bytes(64), BindingError),
        ("one bit off", bytes([NONCE[0] ^ 1]) + NONCE[1:], BindingError),
        ("32 bytes", NONCE[:32], MisuseError),
        ("65 bytes", NONCE + b"\x00", MisuseError),
        ("empty", b"", MisuseError),
    ],
)
def test_report_data(name: str, expected: bytes, error: type[VeriteeError] | None) -> None:
    emu = emulator()
    if error is None:
        assert verify(emu.extended_report(NONCE), emu, report_data=expected)
        return
    with pytest.raises(error) as info:
        verify(emu.extended_report(NONCE), emu, report_data=expected)
    assert type(info.value) is error
    if error is BindingError:
        assert NONCE.hex() in info.value.detail and expected.hex() in info.value.detail


def test_naive_verification_time_is_misuse() -> None:
    emu = emulator()
    with pytest.raises(MisuseError, match="no time zone"):
        verify(emu.extended_report(), emu, now=emu.now.replace(tzinfo=None))


# -- product identification ---------------------------------------------------------------------


@pytest.mark.parametrize("signer", SIGNERS)
def test_v2_turin_report_uses_the_turin_tcb_layout(signer: str) -> None:
    emu = emulator(2, "turin", signer)
    report = parse_report(emu.report())
    assert report.cpuid_fam_id == report.cpuid_mod_id == 0  # no CPUID in a v2 report
    claims = verify(emu.extended_report(), emu)
    assert claims.product == "turin"
    assert claims.to_dict()["reported_tcb"] == {"bootloader": 1, "tee": 0, "snp": 2,
                                                "microcode": 71, "fmc": 0}


@pytest.mark.parametrize(
    ("chain_product", "cpuid", "says"),
    [("milan", (0x19, 0x11), "genoa"), ("genoa", (0x19, 0x01), "milan"),
     ("milan", (0x19, 0xA0), "genoa")],
)
def test_cpuid_product_must_match_the_chain(chain_product: str, cpuid: tuple[int, int],
                                            says: str) -> None:
    emu = emulator(3, chain_product)
    raw = bytearray(emu.report())
    raw[0x188], raw[0x189] = cpuid
    forged = resign(emu, bytes(raw))
    with pytest.raises(BindingError, match=f"identifies a {says} CPU"):
        verify(forged + emu.cert_table(), emu)


# -- layout ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "product", "signer"), MATRIX)
def test_layout_round_trip_and_coco_fields(version: int, product: str, signer: str) -> None:
    emu = emulator(version, product, signer)
    blob = emu.extended_report(NONCE)
    report = parse_report(blob)
    assert report.to_bytes() == blob[:REPORT_SIZE]
    assert report.version == version
    body = coco_json(report.raw, emu.chain, signer, turin=product == "turin")
    assert report_from_fields(body["attestation_report"]) == report.raw


@pytest.mark.parametrize(
    ("name", "rewrite"),
    [
        ("byte fields as hex", lambda k, v: bytes(v).hex() if isinstance(v, list) else v),
        ("byte fields as base64", lambda k, v: base64.b64encode(bytes(v)).decode()
         if isinstance(v, list) else v),
        ("integers as strings", lambda k, v: str(v) if isinstance(v, int) else v),
        ("hex integers", lambda k, v: hex(v) if isinstance(v, int) else v),
    ],
)
def test_report_from_fields_encodings(name: str, rewrite: Callable[[str, Any], Any]) -> None:
    emu = emulator(5, "turin")
    report = emu.report(NONCE)
    body = coco_json(report, emu.chain, "vcek", turin=True)["attestation_report"]
    body = {k: rewrite(k, v) for k, v in body.items()}
    body["signature"] = {k: rewrite(k, v) for k, v in body["signature"].items()}
    assert report_from_fields(body) == report


def test_report_from_fields_camel_case_and_u64_tcbs() -> None:
    # go-sev-guest protojson: camelCase, uint64 as decimal strings, bytes as base64.
    emu = emulator(3, "milan")
    report = parse_report(emu.report(NONCE))
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    fields = {
        "version": 3, "guestSvn": 0, "policy": str(report.policy), "familyId": b64(bytes(16)),
        "imageId": b64(bytes(16)), "vmpl": 0, "signatureAlgo": 1,
        "currentTcb": str(int.from_bytes(report.current_tcb, "little")),
        "platformInfo": str(report.platform_info), "signerInfo": report.signer_info,
        "reportData": b64(report.report_data), "measurement": b64(report.measurement),
        "hostData": b64(report.host_data), "idKeyDigest": b64(report.id_key_digest),
        "authorKeyDigest": b64(report.author_key_digest), "reportId": b64(report.report_id),
        "reportIdMa": b64(report.report_id_ma),
        "reportedTcb": str(int.from_bytes(report.reported_tcb, "little")),
        "cpuidFamId": report.cpuid_fam_id, "cpuidModId": report.cpuid_mod_id,
        "cpuidStep": report.cpuid_step, "chipId": b64(report.chip_id),
        "committedTcb": str(int.from_bytes(report.committed_tcb, "little")),
        "currentBuild": report.current_build, "currentMinor": report.current_minor,
        "currentMajor": report.current_major, "committedBuild": report.committed_build,
        "committedMinor": report.committed_minor, "committedMajor": report.committed_major,
        "launchTcb": str(int.from_bytes(report.launch_tcb, "little")),
        "signature": b64(report.raw[SIGNED_SIZE:]),
    }
    assert report_from_fields(fields) == report.raw
    document = {"report": fields, "certificateChain": {
        "vcekCert": b64(emu.chain["vek"]), "askCert": b64(emu.chain["ask"]),
        "arkCert": b64(emu.chain["ark"])}}
    claims = verify(json.dumps(document).encode(), emu)
    assert claims.evidence_form == "go-sev-guest"


def test_report_from_older_virtee_serde_fields() -> None:
    # virtee/sev before report v3 support: CPUID inside _reserved_1, no mitigation vectors
    # by name (_reserved_4), TCBs with a _reserved array; newer: "current": {major, ...}.
    emu = emulator(5, "genoa")
    report = parse_report(emu.report(NONCE))
    body = coco_json(report.raw, emu.chain, "vcek", turin=False)["attestation_report"]
    for name in ("cpuid_fam_id", "cpuid_mod_id", "cpuid_step", "launch_mit_vector",
                 "current_mit_vector", "key_info", "current_build", "current_minor",
                 "current_major"):
        body.pop(name)
    body["_reserved_1"] = list(report.raw[0x188:0x1A0])
    body["_reserved_4"] = list(report.raw[0x1F8:0x2A0])
    body["_author_key_en"] = report.signer_info
    body["current"] = {"major": 1, "minor": 55, "build": 40}
    for tcb in ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"):
        body[tcb] = {**body[tcb], "_reserved": [0, 0, 0, 0]}
        body[tcb].pop("fmc")
    assert report_from_fields(body) == report.raw


def test_hcl_wrapped_report_is_found() -> None:
    emu = emulator(3, "milan")
    hcl = b"HCLA" + bytes(0x1C) + emu.report(NONCE) + bytes(20)
    snp = parse_snp_evidence(decode_evidence(hcl))
    assert snp.form == "hcl" and snp.report.report_data == NONCE
    claims = verify(hcl, emu, collateral=CollateralSource.of(*(emu.chain["vek"],)))
    assert claims.evidence_form == "hcl"


def test_bytes_a_tool_appended_are_ignored() -> None:
    emu = emulator(4, "genoa")
    blob = emu.report(NONCE) + b"\x00" * 100 + b"trailer"
    claims = verify(blob, emu, collateral=CollateralSource.of(*(emu.chain["vek"],)))
    assert claims.evidence_form == "report"
