"""Collateral: the HTTP fetcher (retries, limits), AMD KDS URLs and answers, the caches and
the operator's files. No test reaches the network: httpx runs on a MockTransport."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from veritee.collateral import CollateralSource, HttpFetcher, MemoryCache, read_collateral_path
from veritee.collateral import fetch as fetch_module
from veritee.collateral.amd import KDS_BASE_URL, KdsClient
from veritee.collateral.cache import DirectoryCache
from veritee.collateral.fetch import Response
from veritee.errors import CollateralMissingError, CollateralUnavailableError, MisuseError

URL = f"{KDS_BASE_URL}/vcek/v1/Milan/cert_chain"


class _Clock:
    """Stands in for the ``time`` module of one collateral module (never the global one)."""

    def __init__(self, now: float, sleeps: list[float] | None = None) -> None:
        self.now = now
        self.sleeps = sleeps if sleeps is not None else []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def fetcher(answers: list[httpx.Response | Exception], *,
            retries: int = 3) -> tuple[HttpFetcher, list[httpx.Request]]:
    """A fetcher whose transport gives ``answers`` in turn (the last one repeats)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return HttpFetcher(retries=retries, backoff=0, transport=httpx.MockTransport(handler)), seen


# -- HttpFetcher ----------------------------------------------------------------------------------


RETRY_CASES: list[tuple[str, list[httpx.Response | Exception], int, bytes | type[Exception]]] = [
    ("200 at once", [httpx.Response(200, content=b"body")], 1, b"body"),
    ("429 then 200", [httpx.Response(429), httpx.Response(200, content=b"ok")], 2, b"ok"),
    ("503, 502, 500 then 200", [httpx.Response(503), httpx.Response(502), httpx.Response(500),
                                httpx.Response(200, content=b"ok")], 4, b"ok"),
    ("429 forever", [httpx.Response(429)], 4, CollateralUnavailableError),
    ("503 forever", [httpx.Response(503)], 4, CollateralUnavailableError),
    ("connection refused is not retried", [httpx.ConnectError("refused"),
                                           httpx.Response(200, content=b"ok")], 1,
     CollateralUnavailableError),
    ("dropped read, then 200", [httpx.ReadError("reset"),
                                httpx.Response(200, content=b"ok")], 2, b"ok"),
    ("timeouts forever", [httpx.ReadTimeout("slow")], 4, CollateralUnavailableError),
]


@pytest.mark.parametrize(("name", "answers", "requests", "expected"), RETRY_CASES,
                         ids=[c[0] for c in RETRY_CASES])
def test_http_fetcher_retries(name: str, answers: list[httpx.Response | Exception],
                              requests: int, expected: bytes | type[Exception]) -> None:
    http, seen = fetcher(answers)
    if isinstance(expected, bytes):
        response = http.get(URL)
        assert (response.status, response.body) == (200, expected)
    else:
        attempts = f"after {requests} attempt{'s' if requests > 1 else ''}"
        with pytest.raises(expected, match=attempts):
            http.get(URL)
    assert len(seen) == requests
    assert all(str(r.url) == URL for r in seen)
    assert seen[0].headers["user-agent"] == "veritee"


@pytest.mark.parametrize("status", [404, 400, 403])
def test_http_fetcher_returns_final_answers_without_retry(status: int) -> None:
    http, seen = fetcher([httpx.Response(status, content=b"no")])
    assert http.get(URL) == Response(status, b"no", None)
    assert len(seen) == 1


def test_http_fetcher_backs_off_exponentially(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(fetch_module, "time", _Clock(time.time(), sleeps))
    http, _ = fetcher([httpx.Response(429)])
    http.backoff = 0.5
    with pytest.raises(CollateralUnavailableError):
        http.get(URL)
    assert sleeps == [0.5, 1.0, 2.0]


def test_http_fetcher_reads_cache_control() -> None:
    http, _ = fetcher([httpx.Response(200, content=b"x",
                                      headers={"Cache-Control": "public, max-age=3600"})])
    assert http.get(URL).max_age == 3600.0
    http, _ = fetcher([httpx.Response(200, content=b"x",
                                      headers={"Cache-Control": "max-age=soon"})])
    assert http.get(URL).max_age is None


def test_http_fetcher_refuses_oversized_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_module, "MAX_RESPONSE_BYTES", 1000)
    http, seen = fetcher([httpx.Response(200, content=b"x" * 1001)])
    with pytest.raises(CollateralUnavailableError, match="larger than 1000 bytes"):
        http.get(URL)
    assert len(seen) == 1


def test_http_fetcher_follows_redirects() -> None:
    http, seen = fetcher([httpx.Response(302, headers={"Location": URL + "?x=1"}),
                          httpx.Response(200, content=b"moved")])
    assert http.get(URL).body == b"moved"
    assert str(seen[1].url) == URL + "?x=1"


# -- KdsClient --------------------------------------------------------------------------------


def test_kds_urls() -> None:
    kds = KdsClient(MemoryCache())
    tcb = {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115, "fmc": 2}
    hwid = bytes(range(64))
    assert kds.vcek_url("Milan", hwid, tcb) == (
        f"{KDS_BASE_URL}/vcek/v1/Milan/{hwid.hex()}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115")
    assert kds.vcek_url("Turin", hwid[:8], tcb) == (
        f"{KDS_BASE_URL}/vcek/v1/Turin/0001020304050607"
        "?fmcSPL=2&blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115")
    assert kds.chain_url("Genoa", "vlek") == f"{KDS_BASE_URL}/vlek/v1/Genoa/cert_chain"
    assert kds.crl_url("Turin", "vcek") == f"{KDS_BASE_URL}/vcek/v1/Turin/crl"


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("Turin with a 64-byte hwID", lambda k: k.vcek_url("Turin", bytes(64), {"fmc": 0})),
        ("Milan with an 8-byte hwID", lambda k: k.vcek_url("Milan", bytes(8), {})),
        ("unknown product", lambda k: k.chain_url("Venice", "vcek")),
        ("lower-case product", lambda k: k.crl_url("milan", "vcek")),
        ("unknown signer", lambda k: k.crl_url("Milan", "ask")),
    ],
)
def test_kds_misuse(name: str, call: Callable[[KdsClient], object]) -> None:
    with pytest.raises(MisuseError):
        call(KdsClient(MemoryCache()))


class _Answers:
    """A fetcher answering from a table, recording what it was asked."""

    def __init__(self, **answers: Response) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def get(self, url: str) -> Response:
        self.asked.append(url)
        return self.answers.get(url.rsplit("/", 1)[-1], Response(404, b""))


KDS_CASES: list[tuple[str, Response, bytes | type[Exception]]] = [
    ("200", Response(200, b"chain"), b"chain"),
    ("404", Response(404, b"Not Found"), CollateralMissingError),
    ("429", Response(429, b""), CollateralUnavailableError),
    ("503", Response(503, b""), CollateralUnavailableError),
    ("200 with an empty body", Response(200, b""), CollateralUnavailableError),
]


@pytest.mark.parametrize(("name", "answer", "expected"), KDS_CASES, ids=[c[0] for c in KDS_CASES])
def test_kds_answers(name: str, answer: Response, expected: bytes | type[Exception]) -> None:
    cache = MemoryCache()
    kds = KdsClient(cache, _Answers(cert_chain=answer))
    if isinstance(expected, bytes):
        assert kds.cert_chain("Milan", "vcek") == expected
        assert cache.get(URL) == expected
    else:
        with pytest.raises(expected):
            kds.cert_chain("Milan", "vcek")
        assert cache.get(URL) is None


def test_kds_cache_first_and_offline() -> None:
    cache = MemoryCache()
    cache.put(URL, b"cached")
    answers = _Answers()
    assert KdsClient(cache, answers).cert_chain("Milan", "vcek") == b"cached"
    assert answers.asked == []
    with pytest.raises(CollateralMissingError, match="offline cache"):
        KdsClient(cache).cert_chain("Genoa", "vcek")


def test_kds_crl_is_refreshed_online_and_kept_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = MemoryCache()
    crl_url = f"{KDS_BASE_URL}/vcek/v1/Milan/crl"
    cache.put(crl_url, b"old crl")
    later = time.time() + 2 * 24 * 3600
    monkeypatch.setattr("veritee.collateral.cache.time", _Clock(later))
    assert KdsClient(cache).crl("Milan", "vcek") == b"old crl"  # offline: stale beats none
    answers = _Answers(crl=Response(200, b"new crl"))
    assert KdsClient(cache, answers).crl("Milan", "vcek") == b"new crl"
    assert answers.asked == [crl_url]


# -- caches ------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "directory"])
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> MemoryCache | DirectoryCache:
    return MemoryCache() if request.param == "memory" else DirectoryCache(tmp_path / "cache")


def test_cache_put_get_and_max_age(cache: MemoryCache | DirectoryCache,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache.get("k") is None
    cache.put("k", b"v1")
    cache.put("k", b"v2")
    assert cache.get("k") == b"v2"
    assert cache.get("k", max_age=60) == b"v2"
    later = time.time() + 120
    monkeypatch.setattr("veritee.collateral.cache.time", _Clock(later))
    assert cache.get("k", max_age=60) is None
    assert cache.get("k") == b"v2"
    assert cache.get("other key") is None


def test_directory_cache_survives_any_key_and_detects_damage(tmp_path: Path) -> None:
    cache = DirectoryCache(tmp_path)
    key = f"{KDS_BASE_URL}/vcek/v1/Milan/../../etc?x=/&y=\n"
    cache.put(key, b"body")
    assert DirectoryCache(tmp_path).get(key) == b"body"  # persistent
    assert [e["key"] for e in cache.entries()] == [key]
    assert all(p.parent == tmp_path for p in tmp_path.iterdir())
    body = next(tmp_path.glob("*.bin"))
    body.write_bytes(b"tampered")
    assert cache.get(key) is None  # digest in the note no longer matches
    note = next(tmp_path.glob("*.json"))
    note.write_text("{not json")
    assert cache.get(key) is None
    assert cache.entries() == []
    note.write_text(json.dumps({"key": "another key", "sha256": "", "stored_at": 0}))
    assert cache.get(key) is None


# -- operator files ------------------------------------------------------------------------------


def test_collateral_source_from_paths(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.pem").write_bytes(b"B")
    (tmp_path / "d" / "sub" / "a.der").write_bytes(b"A")
    (tmp_path / "e.der").write_bytes(b"E")
    source = CollateralSource.from_paths([tmp_path / "e.der"], [tmp_path / "d"])
    assert source.blobs == (b"E", b"B", b"A")
    assert source.offline and source.fetcher is None


def test_collateral_directory_skips_huge_files(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("veritee.collateral.MAX_COLLATERAL_FILE", 10)
    (tmp_path / "small").write_bytes(b"s")
    (tmp_path / "big").write_bytes(b"b" * 11)
    assert read_collateral_path(tmp_path) == [b"s"]


@pytest.mark.parametrize("which", ["endorsements", "collateral"])
def test_unreadable_paths_are_misuse(tmp_path: Path, which: str) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(MisuseError, match="cannot read"):
        CollateralSource.from_paths(**{which: [missing]})


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_permission_denied_is_misuse(tmp_path: Path) -> None:
    path = tmp_path / "secret.pem"
    path.write_bytes(b"x")
    path.chmod(0)
    with pytest.raises(MisuseError, match="cannot read"):
        CollateralSource.from_paths([path])
