"""AMD KDS: the URLs of VCEKs, chains and CRLs, and what `veritee collateral fetch` asks for."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from veritee.collateral import CollateralSource, MemoryCache, Response
from veritee.errors import MisuseError
from veritee.evidence import decode_evidence
from veritee.tee.snp import kds
from veritee.tee.snp.kds import KDS_BASE_URL
from veritee.tee.snp.layout import parse_report
from veritee.testing.snp import SnpEmulator


def test_kds_urls() -> None:
    tcb = {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115, "fmc": 2}
    hwid = bytes(range(64))
    assert kds.vcek_url("milan", hwid, tcb) == (
        f"{KDS_BASE_URL}/vcek/v1/Milan/{hwid.hex()}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115")
    assert kds.vcek_url("turin", hwid[:8], tcb) == (
        f"{KDS_BASE_URL}/vcek/v1/Turin/0001020304050607"
        "?fmcSPL=2&blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115")
    assert kds.chain_url("genoa", "vlek") == f"{KDS_BASE_URL}/vlek/v1/Genoa/cert_chain"
    assert kds.crl_url("turin", "vcek") == f"{KDS_BASE_URL}/vcek/v1/Turin/crl"


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("Turin with a 64-byte hwID", lambda: kds.vcek_url("turin", bytes(64), {"fmc": 0})),
        ("Milan with an 8-byte hwID", lambda: kds.vcek_url("milan", bytes(8), {})),
        ("unknown product", lambda: kds.chain_url("venice", "vcek")),
        ("KDS spelling instead of the claim's", lambda: kds.crl_url("Milan", "vcek")),
        ("unknown signer", lambda: kds.crl_url("milan", "ask")),
    ],
)
def test_kds_misuse(name: str, call: Callable[[], object]) -> None:
    with pytest.raises(MisuseError):
        call()


class _Answers:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def get(self, url: str) -> Response:
        self.asked.append(url)
        return Response(200, b"new crl")


def test_crl_is_refreshed_daily_online_and_kept_offline() -> None:
    now = [1_000_000.0]
    cache = MemoryCache(clock=lambda: now[0])
    url = kds.crl_url("milan", "vcek")
    cache.put(url, b"old crl")
    now[0] += kds.CRL_REFRESH_SECONDS + 1
    assert kds.crl(CollateralSource(cache=cache), "milan", "vcek") == b"old crl"
    answers = _Answers()
    assert kds.crl(CollateralSource(cache=cache, fetcher=answers), "milan", "vcek") == b"new crl"
    assert answers.asked == [url]


@pytest.mark.parametrize(
    ("name", "age", "out_of_date", "online", "expected"),
    [
        ("current, an hour old: cached", 3600, False, True, b"old crl"),
        ("out of date, stored long ago: fetched", kds.CRL_RETRY_SECONDS + 1, True, True,
         b"new crl"),
        ("out of date, stored minutes ago: cached", kds.CRL_RETRY_SECONDS - 1, True, True,
         b"old crl"),
        ("out of date, offline: cached", kds.CRL_REFRESH_SECONDS * 30, True, False,
         b"old crl"),
    ],
)
def test_crl_is_refreshed_when_its_next_update_has_passed(name: str, age: float,
                                                          out_of_date: bool, online: bool,
                                                          expected: bytes) -> None:
    now = [1_000_000.0]
    cache = MemoryCache(clock=lambda: now[0])
    url = kds.crl_url("genoa", "vlek")
    cache.put(url, b"old crl")
    now[0] += age
    answers = _Answers()
    seen: list[bytes] = []

    def judge(blob: bytes) -> bool:
        seen.append(blob)
        return out_of_date

    source = CollateralSource(cache=cache, fetcher=answers if online else None)
    assert kds.crl(source, "genoa", "vlek", out_of_date=judge) == expected
    assert answers.asked == ([url] if expected == b"new crl" else [])
    assert seen == ([b"old crl"] if online else [])


@pytest.mark.parametrize(("product", "signer"), [("milan", "vcek"), ("genoa", "vlek"),
                                                  ("turin", "vcek")])
def test_collateral_requests_name_the_chip_tcb_chain_and_crl(product: str, signer: str) -> None:
    emu = SnpEmulator(product=product, signer=signer)  # type: ignore[arg-type]
    requests = kds.collateral_requests(decode_evidence(emu.report()))
    urls = [r.url for r in requests]
    expected = [kds.chain_url(product, signer), kds.crl_url(product, signer)]
    if signer == "vcek":  # a VLEK cannot be fetched; its report has no CHIP_ID
        expected.insert(0, kds.report_vcek_url(parse_report(emu.report()), product))
    assert urls == expected
    assert all(r.service == kds.SERVICE for r in requests)
