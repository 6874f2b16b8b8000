"""Collateral from Intel PCS through the generic collateral client (a fake PCS on the
emulated platform): an online verifier fetches what the quote needs with its issuer chains,
an offline one afterwards verifies from the cache alone (the air-gapped broker), and
``veritee collateral fetch``'s requests are exactly those URLs."""

from __future__ import annotations

import pytest

from veritee.collateral import CollateralSource, MemoryCache
from veritee.collateral.base import Response
from veritee.errors import CollateralMissingError, CollateralUnavailableError, VeriteeError
from veritee.evidence import Evidence
from veritee.tee import get_verifier
from veritee.tee.dcap import pcs
from veritee.testing.dcap import DcapEmulator, FakePcs


@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_online_then_offline_from_the_cache(tee: str) -> None:
    emulator = DcapEmulator(tee=tee)  # type: ignore[arg-type]
    service = FakePcs()
    service.add(emulator)
    cache = MemoryCache()
    evidence = Evidence.from_json(emulator.coco_evidence())
    online = CollateralSource(cache=cache, fetcher=service)
    claims = get_verifier(tee, trust_emulated=True).verify(
        evidence, report_data=None, collateral=online, now=emulator.now).to_dict()
    assert claims["tcb_status"] == "UpToDate" and claims["revocation"] == "checked"
    asked = set(service.requests)
    assert {r.url for r in pcs.collateral_requests(evidence)} == asked
    offline = CollateralSource(cache=cache)
    again = get_verifier(tee, trust_emulated=True).verify(
        evidence, report_data=None, collateral=offline, now=emulator.now).to_dict()
    assert again["tcb_status"] == "UpToDate"
    assert set(service.requests) == asked          # nothing more was fetched


def test_an_unknown_platform_is_undecided_and_a_broken_service_unavailable() -> None:
    emulator = DcapEmulator()
    evidence = Evidence.from_json(emulator.coco_evidence())
    with pytest.raises(CollateralMissingError, match="collateral fetch --tee tdx"):
        get_verifier("tdx", trust_emulated=True).verify(
            evidence, report_data=None, collateral=CollateralSource(fetcher=FakePcs()),
            now=emulator.now)
    broken = FakePcs(fail_status=503)
    broken.add(emulator)
    with pytest.raises(CollateralUnavailableError):
        get_verifier("tdx", trust_emulated=True).verify(
            evidence, report_data=None, collateral=CollateralSource(fetcher=broken),
            now=emulator.now)


def test_the_urls_are_pcs_v4() -> None:
    fmspc = bytes.fromhex("00806f050000")
    urls = [r.url for r in pcs.requests("tdx", fmspc, "platform")]
    assert urls[0].endswith("/tdx/certification/v4/tcb?fmspc=00806f050000")
    assert urls[1].endswith("/tdx/certification/v4/qe/identity")
    assert urls[3].endswith("/sgx/certification/v4/pckcrl?ca=platform&encoding=der")


@pytest.mark.parametrize("body", [b"", b"{", b"[1]", b"{\"tcbInfo\": 1}", b"\x30\x03\x02\x01",
                                  b"not a crl", b"{\"enclaveIdentity\": {}, \"signature\": 7}"])
def test_garbage_from_pcs_is_a_typed_error(body: bytes) -> None:
    emulator = DcapEmulator()
    service = FakePcs()
    service.add(emulator)
    url = pcs.tcb_info_url("tdx", bytes.fromhex(emulator.tcb_info.value["fmspc"]))
    service.serve(url, Response(200, body, 60, {}))
    with pytest.raises(VeriteeError) as caught:
        get_verifier("tdx", trust_emulated=True).verify(
            Evidence.from_json(emulator.coco_evidence()), report_data=None,
            collateral=CollateralSource(fetcher=service), now=emulator.now)
    assert type(caught.value).__name__ in ("MalformedEvidenceError", "CollateralUnavailableError",
                                           "SignatureError")
