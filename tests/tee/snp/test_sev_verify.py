"""``veritee verify --tee sev`` / ``sev-es``: the relayed launch measurement checked under the
TIK (the sevctl vector of research note amd-sev.md §3.3 from the corpus, and the broker's
launch ids), every forged or malformed variant refused with its own error type."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import corpus_dir
from veritee.collateral import CollateralSource
from veritee.errors import (
    BindingError,
    CollateralMissingError,
    ExpiredError,
    MalformedEvidenceError,
    MisuseError,
    SignatureError,
    UnsupportedVersionError,
    UntrustedRootError,
    VeriteeError,
)
from veritee.evidence import Evidence, decode_evidence
from veritee.tee import get_verifier
from veritee.tee.snp import sev_launch
from veritee.tee.snp.session import launch_measure
from veritee.tee.snp.sev_verify import SevEsVerifier, SevVerifier
from veritee.testing.snp.sev_host import SevEmulator

NOW = datetime(2026, 12, 1, tzinfo=UTC)
# sevctl's measurement vector (research note §3.3, first row): API 1.40, build 40, policy 3.
LD = base64.b64decode("xkvRAfyaSizgonxAjZIAkR8TmolUabBKQKb6KJCDDSM=")
EXPECTED = "lswbxWxI9gckya16JQvdFtpYmNO4b+3inAPpqsgoBI7DE/q1EcIWsVBbGy6pkDxA"


def _verify(document: Any, verifier: SevVerifier | None = None) -> dict[str, Any]:
    verifier = verifier or SevVerifier()
    return verifier.verify(Evidence.from_json(document), report_data=None,
                           collateral=CollateralSource(), now=NOW).to_dict()


@pytest.fixture(scope="module")
def owner() -> dict[str, Any]:
    tik = (corpus_dir("amd", "sevctl", "measurement") / "tik1.bin").read_bytes()
    return {"measurement": EXPECTED, "api-major": 1, "api-minor": 40, "build-id": 40,
            "policy": 3, "launch-digest": LD.hex(), "tik": tik.hex()}


def test_the_sevctl_vector_verifies_with_the_owners_tik(owner: dict[str, Any]) -> None:
    claims = _verify(owner)
    assert claims["launch_digest"] == LD.hex()
    assert claims["key_source"] == "owner-tik" and claims["product"] == "unknown"
    assert claims["debug"] is False and claims["es"] is False
    assert (claims["api_major"], claims["api_minor"], claims["build_id"]) == (1, 40, 40)
    assert claims["attestation"] == "host-relayed" and claims["emulated"] is False


def test_the_vector_also_verifies_as_a_file(owner: dict[str, Any]) -> None:
    evidence = decode_evidence(json.dumps(owner).encode())
    claims = get_verifier("sev").verify(evidence, report_data=None,
                                        collateral=CollateralSource(), now=NOW)
    assert claims.to_dict()["launch_digest"] == LD.hex()


def _flip(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(("name", "change", "error"), [
    ("another launch digest", {"launch-digest": "00" * 32}, SignatureError),
    ("none of several digests", {"launch-digest": ["00" * 32, "11" * 32]}, SignatureError),
    ("a flipped MEASURE bit", {"measurement": "FLIP"}, SignatureError),
    ("another api minor", {"api-minor": 41}, SignatureError),
    ("another build", {"build-id": 41}, SignatureError),
    ("another tik", {"tik": "00" * 16}, SignatureError),
    ("an ES policy for sev", {"policy": 7}, BindingError),
    ("reserved policy bits", {"policy": 0x100}, MalformedEvidenceError),
    ("no candidate digests", {"launch-digest": []}, CollateralMissingError),
    ("a short measurement", {"measurement": base64.b64encode(bytes(47)).decode()},
     MalformedEvidenceError),
    ("a 16-byte digest", {"launch-digest": "00" * 16}, MalformedEvidenceError),
    ("both tik and launch id", {"launch-id": "x.y"}, MalformedEvidenceError),
    ("api major out of range", {"api-major": 256}, MalformedEvidenceError),
    ("a boolean build", {"build-id": True}, MalformedEvidenceError),
    ("a short tik", {"tik": "00" * 8}, MalformedEvidenceError),
])
def test_forged_and_malformed_variants_are_refused(owner: dict[str, Any], name: str,
                                                   change: dict[str, Any],
                                                   error: type[Exception]) -> None:
    document = {**owner, **change}
    if document["measurement"] == "FLIP":
        document["measurement"] = _flip(owner["measurement"])
    with pytest.raises(error):
        _verify(document)


def test_sev_es_needs_the_es_bit(owner: dict[str, Any]) -> None:
    with pytest.raises(BindingError, match="lacks the ES bit"):
        _verify(owner, SevEsVerifier())


def test_report_data_is_misuse(owner: dict[str, Any]) -> None:
    with pytest.raises(MisuseError, match="no report data"):
        SevVerifier().verify(Evidence.from_json(owner), report_data=bytes(32),
                             collateral=CollateralSource(), now=NOW)


# -- the broker's launch ids ----------------------------------------------------------------

KEY = b"k" * 32


def _launch(tee: str = "sev", policy: int = 3, **kw: Any) -> tuple[str, sev_launch.LaunchId]:
    launch = sev_launch.LaunchId.new(tee=tee, policy=policy, product="rome", emulated=True,
                                     expires_at=kw.pop("expires_at", NOW + timedelta(minutes=5)))
    return sev_launch.seal(launch, KEY), launch


def _relayed(launch_id: str, launch: sev_launch.LaunchId, **change: Any) -> dict[str, Any]:
    _, tik = sev_launch.transport_keys(launch, KEY)
    mnonce = bytes(range(16))
    measure = launch_measure(tik, 0, 24, 15, launch.policy, LD, mnonce)
    return {"measurement": base64.b64encode(measure + mnonce).decode(), "api-major": 0,
            "api-minor": 24, "build-id": 15, "policy": launch.policy,
            "launch-digest": [("22" * 32), LD.hex()], "launch-id": launch_id, **change}


def test_a_launch_id_gives_the_tik_and_the_sessions_facts() -> None:
    text, launch = _launch()
    claims = _verify(_relayed(text, launch), SevVerifier().with_challenge_key(KEY))
    assert claims["launch_digest"] == LD.hex()  # the second candidate matched
    assert claims["key_source"] == "broker-session"
    assert claims["launch_id"] == launch.session_id
    assert claims["product"] == "rome" and claims["emulated"] is True


@pytest.mark.parametrize(("name", "build", "error"), [
    ("no launch key", lambda t, launch: (_relayed(t, launch), SevVerifier()),
     CollateralMissingError),
    ("another broker's key", lambda t, launch: (_relayed(t, launch),
                                           SevVerifier().with_challenge_key(b"o" * 32)),
     SignatureError),
    ("another policy than the session's", lambda t, launch: (_relayed(t, launch, policy=1),
                                                        SevVerifier().with_challenge_key(KEY)),
     BindingError),
    ("a sev session relayed as sev-es", lambda t, launch: (_relayed(t, launch, policy=7),
                                                      SevEsVerifier().with_challenge_key(KEY)),
     BindingError),
    ("a launch id that is not one", lambda t, launch: (_relayed("garbage", launch),
                                                  SevVerifier().with_challenge_key(KEY)),
     MalformedEvidenceError),
])
def test_launch_ids_that_do_not_hold(name: str, build: Any, error: type[Exception]) -> None:
    text, launch = _launch()
    document, verifier = build(text, launch)
    with pytest.raises(error):
        _verify(document, verifier)


def test_an_expired_launch_id_is_refused() -> None:
    text, launch = _launch(expires_at=NOW - timedelta(seconds=1))
    with pytest.raises(ExpiredError):
        _verify(_relayed(text, launch), SevVerifier().with_challenge_key(KEY))


def test_the_launch_keys_differ_per_launch() -> None:
    (_, a), (_, b) = _launch(), _launch()
    assert sev_launch.transport_keys(a, KEY) != sev_launch.transport_keys(b, KEY)
    assert sev_launch.transport_keys(a, KEY) != sev_launch.transport_keys(a, b"o" * 32)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=40),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(
                        ["measurement", "api-major", "api-minor", "build-id", "policy",
                         "launch-digest", "launch-id", "tik"]) | st.text(max_size=8),
                        inner, max_size=8), max_leaves=20))
def test_arbitrary_json_gives_only_typed_errors(document: Any) -> None:
    with contextlib.suppress(VeriteeError):
        _verify(document, SevVerifier().with_challenge_key(KEY))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_launch_ids_are_refused(text: str) -> None:
    with pytest.raises(VeriteeError):
        sev_launch.open_launch_id(text, KEY, now=NOW)


# -- the PEK-signed attestation report (query-sev-attestation-report) -----------------------

MNONCE = bytes(range(16))


def _report(tee: str = "sev", knobs: tuple[str, ...] = ()) -> dict[str, Any]:
    emulator = SevEmulator(tee)  # type: ignore[arg-type]
    emulated = emulator.emulate(report_data=MNONCE, host_data=None, knobs=knobs)
    document: dict[str, Any] = json.loads(emulated.evidence)
    return document


def _trusting(tee: str = "sev") -> SevVerifier:
    return get_verifier(tee, trust_emulated=True)  # type: ignore[return-value]


@pytest.mark.parametrize("tee", ["sev", "sev-es"])
def test_an_emulated_report_verifies_to_the_emulated_root(tee: str) -> None:
    claims = _trusting(tee).verify(Evidence.from_json(_report(tee)), report_data=MNONCE,
                                   collateral=CollateralSource(), now=NOW).to_dict()
    assert claims["key_source"] == "pek-report" and claims["emulated"] is True
    assert claims["mnonce"] == MNONCE.hex() and claims["product"] == "rome"
    assert claims["measure"] is None and claims["build_id"] is None
    assert claims["es"] is (tee == "sev-es")


@pytest.mark.parametrize(("name", "build", "error"), [
    ("pinned roots only", lambda: (_report(), get_verifier("sev"), MNONCE),
     UntrustedRootError),
    ("a flipped signature", lambda: (_report(knobs=("bad_signature",)), _trusting(), MNONCE),
     SignatureError),
    ("an ARK nobody pinned", lambda: (_report(knobs=("other_root",)), _trusting(), MNONCE),
     UntrustedRootError),
    ("another MNONCE", lambda: (_report(), _trusting(), bytes(16)), BindingError),
    ("a 15-byte MNONCE", lambda: (_report(), _trusting(), bytes(15)), MisuseError),
    ("an sev report to sev-es", lambda: (_report(), _trusting("sev-es"), MNONCE),
     BindingError),
    ("a truncated report", lambda: ({**_report(), "report": base64.b64encode(
        base64.b64decode(_report()["report"])[:-1]).decode()}, _trusting(), MNONCE),
     MalformedEvidenceError),
    ("reserved bytes set", lambda: ({**_report(), "report": _poke(_report()["report"], 0x3C)},
                                    _trusting(), MNONCE), MalformedEvidenceError),
    ("another signer usage", lambda: ({**_report(), "report": _poke(_report()["report"],
                                                                    0x34)},
                                      _trusting(), MNONCE), UnsupportedVersionError),
    ("a flipped launch digest", lambda: ({**_report(), "report": _poke(_report()["report"],
                                                                       0x10)},
                                         _trusting(), MNONCE), SignatureError),
    ("no chain", lambda: ({"report": _report()["report"]}, _trusting(), MNONCE),
     MalformedEvidenceError),
])
def test_reports_that_do_not_hold(name: str, build: Any, error: type[Exception]) -> None:
    document, verifier, nonce = build()
    with pytest.raises(error):
        verifier.verify(Evidence.from_json(document), report_data=nonce,
                        collateral=CollateralSource(), now=NOW)


def _poke(text: str, offset: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[offset] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_report_bytes_give_only_typed_errors(data: bytes) -> None:
    document = {**_REPORT, "report": base64.b64encode(data).decode()}
    with pytest.raises(VeriteeError):
        _trusting().verify(Evidence.from_json(document), report_data=None,
                           collateral=CollateralSource(), now=NOW)


_REPORT = _report()
