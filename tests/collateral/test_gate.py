"""The gate around vendor fetches: failures remembered, a budget per client, bounded
concurrency. A fake clock; no network."""

from __future__ import annotations

import threading

import pytest

from veritee.collateral import CollateralSource, Response
from veritee.collateral.gate import FetchGate
from veritee.errors import CollateralMissingError, CollateralUnavailableError

URL = "https://vendor.example/v1/vcek/abcd"


class Vendor:
    def __init__(self, status: int = 404, *, block: threading.Event | None = None) -> None:
        self.status = status
        self.asked: list[str] = []
        self.block = block

    def get(self, url: str) -> Response:
        self.asked.append(url)
        if self.block is not None:
            self.block.wait(5)
        return Response(self.status, b"body" if self.status == 200 else b"")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_failed_url_is_not_asked_again_until_its_ttl() -> None:
    clock, vendor = Clock(), Vendor(404)
    gate = FetchGate(failure_ttl=60, per_client_per_minute=0, clock=clock)
    source = CollateralSource(fetcher=gate.wrap(vendor, "203.0.113.1"))
    for _ in range(5):
        with pytest.raises(CollateralMissingError, match="HTTP 404"):
            source.get(URL, "VCEK")
    assert vendor.asked == [URL]
    clock.now += 61
    with pytest.raises(CollateralMissingError):
        source.get(URL, "VCEK")
    assert len(vendor.asked) == 2


def test_each_client_has_a_budget_of_fetches() -> None:
    clock, vendor = Clock(), Vendor(200)
    gate = FetchGate(per_client_per_minute=2, clock=clock)
    mallory = gate.wrap(vendor, "198.51.100.66")
    assert mallory.get(URL + "/1").status == 200
    assert mallory.get(URL + "/2").status == 200
    with pytest.raises(CollateralUnavailableError, match="too many vendor fetches"):
        mallory.get(URL + "/3")
    assert gate.wrap(vendor, "192.0.2.1").get(URL + "/4").status == 200  # another client
    clock.now += 60
    assert mallory.get(URL + "/5").status == 200


def test_fetches_in_flight_are_bounded() -> None:
    release = threading.Event()
    vendor = Vendor(200, block=release)
    gate = FetchGate(concurrency=1, queue_seconds=0.05, per_client_per_minute=0)
    first = threading.Thread(target=gate.wrap(vendor, "a").get, args=(URL,))
    first.start()
    while not vendor.asked:
        threading.Event().wait(0.01)
    with pytest.raises(CollateralUnavailableError, match="in flight"):
        gate.wrap(vendor, "b").get(URL + "/other")
    release.set()
    first.join()
    assert gate.wrap(vendor, "b").get(URL + "/other").status == 200
