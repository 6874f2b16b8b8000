"""Collateral from Intel PCS through the generic collateral client (a fake PCS on the
emulated platform): an online verifier fetches what the quote needs with its issuer chains,
an offline one afterwards verifies from the cache alone (the air-gapped broker), and
``veritee collateral fetch``'s requests are exactly those URLs."""

from __future__ import annotations

import pytest

from veritee.collateral import CollateralSource, MemoryCache
from veritee.errors import CollateralMissingError, CollateralUnavailableError
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
