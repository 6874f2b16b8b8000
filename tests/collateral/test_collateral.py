"""Collateral: the HTTP fetcher (retries, limits), the generic client (cache → fetch →
cache, offline), the caches and the operator's files. No test reaches the network: httpx
runs on a MockTransport."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest

from veritee.collateral import (
    CollateralSource,
    DirectoryCache,
    MemoryCache,
    Response,
    read_collateral_path,
)
from veritee.collateral.fetch import HttpFetcher
from veritee.errors import CollateralMissingError, CollateralUnavailableError, MisuseError

URL = "https://vendor.example/v1/chain"


class Clock:
    """A clock the tests move (given to the caches, never patched into a module)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


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


def test_http_fetcher_backs_off_exponentially() -> None:
    sleeps: list[float] = []
    http, _ = fetcher([httpx.Response(429)])
    http.backoff = 0.5
    http.sleep = sleeps.append
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


def test_http_fetcher_refuses_oversized_answers() -> None:
    http, seen = fetcher([httpx.Response(200, content=b"x" * 1001)])
    http.max_response_bytes = 1000
    with pytest.raises(CollateralUnavailableError, match="larger than 1000 bytes"):
        http.get(URL)
    assert len(seen) == 1


def test_http_fetcher_follows_redirects() -> None:
    http, seen = fetcher([httpx.Response(302, headers={"Location": URL + "?x=1"}),
                          httpx.Response(200, content=b"moved")])
    assert http.get(URL).body == b"moved"
    assert str(seen[1].url) == URL + "?x=1"


# -- the generic client ---------------------------------------------------------------------


class _Answers:
    """A fetcher answering from a table, recording what it was asked."""

    def __init__(self, **answers: Response) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def get(self, url: str) -> Response:
        self.asked.append(url)
        return self.answers.get(url.rsplit("/", 1)[-1], Response(404, b""))


CLIENT_CASES: list[tuple[str, Response, bytes | type[Exception]]] = [
    ("200", Response(200, b"chain"), b"chain"),
    ("404", Response(404, b"Not Found"), CollateralMissingError),
    ("429", Response(429, b""), CollateralUnavailableError),
    ("503", Response(503, b""), CollateralUnavailableError),
    ("200 with an empty body", Response(200, b""), CollateralUnavailableError),
]


@pytest.mark.parametrize(("name", "answer", "expected"), CLIENT_CASES,
                         ids=[c[0] for c in CLIENT_CASES])
def test_client_answers(name: str, answer: Response, expected: bytes | type[Exception]) -> None:
    cache = MemoryCache()
    source = CollateralSource(cache=cache, fetcher=_Answers(chain=answer))
    if isinstance(expected, bytes):
        assert source.get(URL, "chain", service="the vendor") == expected
        assert cache.get(URL) == expected
    else:
        with pytest.raises(expected, match=r"chain|vendor"):
            source.get(URL, "chain", service="the vendor")
        assert cache.get(URL) is None


def test_client_cache_first_and_offline() -> None:
    cache = MemoryCache()
    cache.put(URL, b"cached")
    answers = _Answers()
    assert CollateralSource(cache=cache, fetcher=answers).get(URL, "chain") == b"cached"
    assert answers.asked == []
    with pytest.raises(CollateralMissingError, match="offline cache"):
        CollateralSource(cache=cache).get(URL + "/other", "chain")


def test_client_refreshes_old_answers_online_and_keeps_them_offline() -> None:
    clock = Clock()
    cache = MemoryCache(clock=clock)
    crl_url = "https://vendor.example/v1/crl"
    cache.put(crl_url, b"old crl")
    clock.now += 2 * 24 * 3600
    offline = CollateralSource(cache=cache)
    assert offline.get(crl_url, "CRL", max_age=86400) == b"old crl"  # stale beats none
    answers = _Answers(crl=Response(200, b"new crl"))
    online = CollateralSource(cache=cache, fetcher=answers)
    assert online.get(crl_url, "CRL", max_age=86400) == b"new crl"
    assert answers.asked == [crl_url]


# -- caches ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "directory"])
def test_cache_put_get_and_max_age(kind: str, tmp_path: Path) -> None:
    clock = Clock()
    cache = (MemoryCache(clock=clock) if kind == "memory"
             else DirectoryCache(tmp_path / "cache", clock=clock))
    assert cache.get("k") is None
    cache.put("k", b"v1")
    cache.put("k", b"v2")
    assert cache.get("k") == b"v2"
    assert cache.get("k", max_age=60) == b"v2"
    clock.now += 120
    assert cache.get("k", max_age=60) is None
    assert cache.get("k") == b"v2"
    assert cache.get("other key") is None


def test_directory_cache_survives_any_key_and_detects_damage(tmp_path: Path) -> None:
    cache = DirectoryCache(tmp_path)
    key = "https://vendor.example/v1/../../etc?x=/&y=\n"
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
    assert [(f.origin, f.named) for f in source.files] == [
        ("endorsement", True), ("directory", False), ("directory", False)]
    assert source.files[0].name == str(tmp_path / "e.der")
    assert source.offline and source.fetcher is None


def test_collateral_directory_skips_huge_files(tmp_path: Path) -> None:
    (tmp_path / "small").write_bytes(b"s")
    (tmp_path / "big").write_bytes(b"b" * 11)
    assert [f.data for f in read_collateral_path(tmp_path, max_file=10)] == [b"s"]


@pytest.mark.parametrize("which", ["endorsements", "collateral"])
def test_empty_named_files_are_misuse(tmp_path: Path, which: str) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"\n")
    with pytest.raises(MisuseError, match=r"empty\.pem is empty"):
        CollateralSource.from_paths(**{which: [empty]})


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


def test_http_fetcher_asks_a_mirror_instead_of_the_vendor() -> None:
    http, seen = fetcher([httpx.Response(200, content=b"from the mirror")])
    http.mirrors = (("https://vendor.example", "http://mirror.internal:8080/kds"),)
    assert http.get(URL).body == b"from the mirror"
    assert str(seen[0].url) == "http://mirror.internal:8080/kds/v1/chain"


def test_several_mirrors_of_one_vendor_are_tried_in_order() -> None:
    """A list of PCCS (or other mirrors): the next is asked when one answers 404, fails or
    cannot be reached; the answer of the last is returned whatever it is."""
    http, seen = fetcher([httpx.Response(404), httpx.ConnectError("refused"),
                          httpx.Response(200, content=b"from the third")], retries=0)
    http.mirrors = (("https://vendor.example", "http://one.internal"),
                    ("https://vendor.example", "http://two.internal"),
                    ("https://vendor.example", "http://three.internal"))
    assert http.get(URL).body == b"from the third"
    assert [r.url.host for r in seen] == ["one.internal", "two.internal", "three.internal"]
    http, seen = fetcher([httpx.Response(404)], retries=0)
    http.mirrors = (("https://vendor.example", "http://one.internal"),
                    ("https://vendor.example", "http://two.internal"))
    assert http.get(URL).status == 404 and len(seen) == 2
    http, _ = fetcher([httpx.ConnectError("refused")], retries=0)
    http.mirrors = (("https://vendor.example", "http://one.internal"),)
    with pytest.raises(CollateralUnavailableError, match=r"one\.internal.*for https://vendor"):
        http.get(URL)
