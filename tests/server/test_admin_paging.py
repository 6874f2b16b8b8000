"""Admin listings a page at a time (issue 8): the body stays the JSON list it was, the next
page's cursor comes in X-Next-Cursor and a Link rel="next"; filters of the audit log; bad
limits, cursors and times are 400 problems, never 500; the CLI follows the cursors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.broker import RunningBroker, running_broker
from support.store import event as audit_event
from veritee.broker import problems
from veritee.cli.main import main
from veritee.server.app import decode_cursor, encode_cursor

#: A window of time no other test writes audit events in.
BASE = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)
KINDS = ("attest", "release", "refuse", "admin")
LISTINGS = ("audit", "reference-value", "attestation-policy")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def kbs(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    tmp = tmp_path_factory.mktemp(f"paging-{request.param}")
    with running_broker(tmp, request.param) as running:
        store = running.broker.store
        store.append_audit_rows([store.audit_row(audit_event(
            KINDS[i % 4], BASE + (i % 97) * timedelta(minutes=1), subject=f"c{i}"))
            for i in range(230)])
        yield running


def follow(admin: httpx.Client, path: str, **params: Any) -> tuple[list[Any], int]:
    """Every item of a listing, following Link rel="next"; and how many pages it took."""
    items: list[Any] = []
    url: str | None = path
    pages = 0
    while url is not None:
        response = admin.get(url, params=params if pages == 0 else None)
        assert response.status_code == 200, response.text
        page = response.json()
        assert isinstance(page, list)
        items += page
        pages += 1
        url = next_link(response)
        assert (url is None) == ("x-next-cursor" not in response.headers)
    return items, pages


def next_link(response: httpx.Response) -> str | None:
    link = response.headers.get("link")
    if link is None:
        return None
    match = re.fullmatch(r'<([^>]+)>; rel="next"', link)
    assert match, link
    cursor = response.headers["x-next-cursor"]
    assert f"cursor={cursor}" in match.group(1)
    return match.group(1)


def expected(kbs: RunningBroker, *, kind: str | None = None, since: datetime = BASE,
             until: datetime | None = None) -> list[int]:
    events = kbs.broker.store.list_audit(limit=10_000, since=since)
    kept = [e for e in events if (kind is None or e.kind == kind)
            and (until is None or e.at < until)]
    return [e.id for e in sorted(kept, key=lambda e: (e.at, e.id), reverse=True)
            if e.id is not None]


# --- the audit log --------------------------------------------------------------------------


AUDIT_QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("since", {"since": BASE}),
    ("one kind", {"since": BASE, "kind": "refuse"}),
    ("window", {"since": BASE + timedelta(minutes=10), "until": BASE + timedelta(minutes=50)}),
    ("kind in a window", {"since": BASE + timedelta(minutes=3), "kind": "admin",
                          "until": BASE + timedelta(minutes=90)}),
]


@pytest.mark.parametrize(("name", "query"), AUDIT_QUERIES, ids=[q[0] for q in AUDIT_QUERIES])
def test_audit_pages_follow_the_cursor(kbs: RunningBroker, name: str,
                                       query: dict[str, Any]) -> None:
    params = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in query.items()}
    want = expected(kbs, **query)
    with kbs.admin() as admin:
        items, pages = follow(admin, "/kbs/v0/audit", limit=17, **params)
    assert [e["id"] for e in items] == want
    assert pages == max(1, -(-len(want) // 17))  # a full last page says there is no more


def test_audit_times_in_any_offset(kbs: RunningBroker) -> None:
    plus_two = (BASE + timedelta(minutes=5)).astimezone(
        datetime.fromisoformat("2000-01-01T00:00:00+02:00").tzinfo)
    with kbs.admin() as admin:
        r = admin.get("/kbs/v0/audit", params={
            "since": plus_two.isoformat(), "until": "2031-03-04T05:12:07Z", "limit": 1000})
    assert r.status_code == 200, r.text
    assert [e["id"] for e in r.json()] == expected(
        kbs, since=BASE + timedelta(minutes=5), until=BASE + timedelta(minutes=6))
    assert "x-next-cursor" not in r.headers


def test_audit_default_is_one_page_of_100_newest(kbs: RunningBroker) -> None:
    with kbs.admin() as admin:
        r = admin.get("/kbs/v0/audit")
    assert r.status_code == 200
    assert len(r.json()) == 100
    assert decode_cursor(r.headers["x-next-cursor"], "audit") == str(r.json()[-1]["id"])


def _raw(kbs: RunningBroker, path_and_query: str) -> httpx.Response:
    """A request whose URL is sent as written (percent-escapes included)."""
    with kbs.admin() as admin:
        return admin.send(httpx.Request("GET", kbs.url + path_and_query,
                                        headers={"Authorization": admin.headers["authorization"]}))


BAD: list[tuple[str, str]] = [
    ("limit 0", "/kbs/v0/audit?limit=0"),
    ("limit negative", "/kbs/v0/audit?limit=-1"),
    ("limit above 1000", "/kbs/v0/audit?limit=1001"),
    ("limit huge", "/kbs/v0/audit?limit=" + "9" * 40),
    ("limit 5000 digits", "/kbs/v0/audit?limit=" + "1" * 5000),
    ("limit text", "/kbs/v0/audit?limit=ten"),
    ("kind", "/kbs/v0/audit?kind=bogus"),
    ("naive since", "/kbs/v0/audit?since=2026-01-01T00:00:00"),
    ("date only", "/kbs/v0/audit?until=2026-01-01"),
    ("garbage time", "/kbs/v0/audit?since=yesterday"),
    ("time overflows UTC", "/kbs/v0/audit?until=9999-12-31T23:59:59-23:59"),
    ("time underflows UTC", "/kbs/v0/audit?since=0001-01-01T00:00:00%2B23:59"),
    ("time with NUL", "/kbs/v0/audit?since=2026-01-01T00:00:00Z%00"),
    ("time with NUL inside", "/kbs/v0/audit?since=2026-01-01T00:00:00%00Z"),
    ("time + not escaped", "/kbs/v0/audit?since=2026-01-01T00:00:00+02:00"),
    ("month 13", "/kbs/v0/audit?since=2026-13-01T00:00:00Z"),
    ("lone surrogate in time", "/kbs/v0/audit?since=%ED%A0%80"),
    ("cursor garbage", "/kbs/v0/audit?cursor=!!!"),
    ("cursor empty", "/kbs/v0/audit?cursor="),
    ("cursor not UTF-8", "/kbs/v0/audit?cursor=" + "_w"),
    ("cursor lone surrogate", "/kbs/v0/audit?cursor=%ED%A0%80"),
    ("cursor of another listing",
     "/kbs/v0/audit?cursor=" + encode_cursor("reference-value", "12")),
    ("cursor id not a number", "/kbs/v0/audit?cursor=" + encode_cursor("audit", "x")),
    ("cursor id zero", "/kbs/v0/audit?cursor=" + encode_cursor("audit", "0")),
    ("cursor id too big", "/kbs/v0/audit?cursor=" + encode_cursor("audit", "9" * 30)),
    ("cursor of no event", "/kbs/v0/audit?cursor=" + encode_cursor("audit", "987654321")),
    ("cursor too long", "/kbs/v0/audit?cursor=" + "A" * 3000),
    ("reference-value limit", "/kbs/v0/reference-value?limit=0"),
    ("reference-value limit text", "/kbs/v0/reference-value?limit=%ED%A0%80"),
    ("reference-value cursor too long", "/kbs/v0/reference-value?cursor=" + "A" * 3000),
    ("reference-value cursor", "/kbs/v0/reference-value?cursor=" + encode_cursor("audit", "1")),
    ("reference-value surrogate", "/kbs/v0/reference-value?cursor=%ED%B2%80"),
    ("policy limit", "/kbs/v0/attestation-policy?limit=100000"),
    ("policy cursor", "/kbs/v0/attestation-policy?cursor=AAAA"),
]


@pytest.mark.parametrize(("name", "path"), BAD, ids=[b[0] for b in BAD])
def test_bad_paging_parameters_are_400_problems(kbs: RunningBroker, name: str,
                                                path: str) -> None:
    r = _raw(kbs, path)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == 400


# --- reference values and policies ----------------------------------------------------------


def test_reference_values_page_by_name(kbs: RunningBroker) -> None:
    names = [f"page-{i:03d}" for i in range(23)]
    with kbs.admin() as admin:
        r = admin.post("/kbs/v0/reference-value", json={n: [i] for i, n in enumerate(names)})
        assert r.status_code == 200, r.text
        items, _ = follow(admin, "/kbs/v0/reference-value", limit=5)
        listed = [item["name"] for item in items]
        assert listed == sorted(set(listed))  # by name, each once
        assert [n for n in listed if n.startswith("page-")] == names
        one = admin.get("/kbs/v0/reference-value/page-007")
        assert one.status_code == 200 and one.json()["values"] == [7]
        assert admin.get("/kbs/v0/reference-value/absent").status_code == 404
        assert admin.delete("/kbs/v0/reference-value/page-007").status_code == 200
        assert admin.get("/kbs/v0/reference-value/page-007").status_code == 404


def test_registering_reference_values_is_one_transaction(kbs: RunningBroker) -> None:
    store = kbs.broker.store
    before, _ = store.reference_changes(0)
    with kbs.admin() as admin:
        r = admin.post("/kbs/v0/reference-value", json={"bulk-a": [1], "bulk-b": [2],
                                                        "bulk-c": {"values": [3],
                                                                   "provenance": "vendor"}})
        assert r.status_code == 200, r.text
    latest, names = store.reference_changes(before)
    assert (latest, names) == (before + 3, ["bulk-a", "bulk-b", "bulk-c"])
    record = store.get_reference_value("bulk-c")
    assert record is not None and record.provenance == "vendor"


def test_attestation_policies_page_by_id(kbs: RunningBroker) -> None:
    ids = [f"paged-{i:02d}" for i in range(9)]
    for pid in ids:
        kbs.broker.store.put_policy("attestation", pid, "package policy", now=BASE)
    with kbs.admin() as admin:
        items, pages = follow(admin, "/kbs/v0/attestation-policy", limit=2)
    listed = [item["policy_id"] for item in items]
    assert listed == sorted(set(listed))
    assert [p for p in listed if p.startswith("paged-")] == ids
    assert pages >= 5


# --- the cursor ----------------------------------------------------------------------------

_KEY = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=255)


@given(st.sampled_from(LISTINGS[1:]), _KEY)
def test_a_name_cursor_round_trips(listing: str, key: str) -> None:
    cursor = encode_cursor(listing, key)
    assert decode_cursor(cursor, listing) == key
    assert len(cursor) <= 2048  # what the route accepts
    for other in LISTINGS:
        if other != listing:
            with pytest.raises(problems.InvalidRequest):
                decode_cursor(cursor, other)


@given(st.integers(min_value=1, max_value=10**18 - 1))
def test_an_audit_cursor_round_trips(event_id: int) -> None:
    assert decode_cursor(encode_cursor("audit", str(event_id)), "audit") == str(event_id)


@given(st.sampled_from(LISTINGS), st.one_of(st.text(max_size=80),
                                            st.binary(max_size=60).map(lambda b: b.hex()),
                                            st.text("ABCDEFabcdef0123456789-_=", max_size=80)))
def test_any_text_is_a_cursor_or_invalid_request(listing: str, text: str) -> None:
    try:
        key = decode_cursor(text, listing)
    except problems.InvalidRequest:
        return
    assert encode_cursor(listing, key)  # a key the listing could have issued
    if listing == "audit":
        assert key.isdigit() and int(key) >= 1


# --- the CLI --------------------------------------------------------------------------------


def _admin(kbs: RunningBroker, *args: str) -> int:
    return main(["admin", *args, "--url", kbs.url, "--token", kbs.admin_token()])


def test_cli_audit_pages(kbs: RunningBroker, capsys: pytest.CaptureFixture[str]) -> None:
    since = BASE.isoformat()
    assert _admin(kbs, "audit", "--since", since, "--limit", "40", "--json") == 0
    captured = capsys.readouterr()
    first = json.loads(captured.out)
    assert len(first) == 40
    cursor = re.search(r"--cursor (\S+)", captured.err)
    assert cursor is not None
    assert _admin(kbs, "audit", "--since", since, "--limit", "40", "--json",
                  "--cursor", cursor.group(1)) == 0
    second = json.loads(capsys.readouterr().out)
    assert _admin(kbs, "audit", "--since", since, "--limit", "40", "--all", "--json") == 0
    captured = capsys.readouterr()
    every = json.loads(captured.out)
    assert "--cursor" not in captured.err
    assert [e["id"] for e in every] == expected(kbs)
    assert [e["id"] for e in first + second] == expected(kbs)[:80]
    assert _admin(kbs, "audit", "--since", "2026-01-01", "--json") == 1  # no timezone
    assert "timezone" in capsys.readouterr().err


def test_cli_reference_values_all(kbs: RunningBroker, capsys: pytest.CaptureFixture[str],
                                  tmp_path: Path) -> None:
    document = tmp_path / "rv.json"
    document.write_text(json.dumps({f"cli-{i:02d}": [i] for i in range(12)}))
    assert _admin(kbs, "add-reference-values", str(document)) == 0
    capsys.readouterr()
    assert _admin(kbs, "reference-values", "--limit", "5", "--all", "--json") == 0
    names = [r["name"] for r in json.loads(capsys.readouterr().out)]
    assert [n for n in names if n.startswith("cli-")] == [f"cli-{i:02d}" for i in range(12)]
    assert _admin(kbs, "reference-values", "--limit", "5") == 0
    assert "--cursor" in capsys.readouterr().err
