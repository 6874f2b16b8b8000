"""Hostile input to veritee.tee.tpm.replay and the policy-input hook: random bytes and mutated,
truncated valid logs raise only MalformedEvidenceError (or BindingError for a Secure Boot
variable its digests do not cover), each within a bounded time; check_replay on arbitrary
banks raises only BindingError; the hook never raises, whatever the claims (STYLE §8).
"""

from __future__ import annotations

import hashlib
import struct
import time
import uuid
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee.errors import BindingError, MalformedEvidenceError
from veritee.tee.tpm import policy as tpm_policy
from veritee.tee.tpm import replay

FUZZ = settings(deadline=None, max_examples=200, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TIME_LIMIT = 2.0
ALGS = ((0x0004, "sha1"), (0x000B, "sha256"))


def _event(index: int, kind: int, data: bytes, measured: bytes | None = None) -> bytes:
    covered = data if measured is None else measured
    out = struct.pack("<III", index, kind, len(ALGS))
    out += b"".join(struct.pack("<H", i) + hashlib.new(n, covered).digest() for i, n in ALGS)
    return out + struct.pack("<I", len(data)) + data


def _seed() -> bytes:
    body = b"Spec ID Event03\0" + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(ALGS))
    body += b"".join(struct.pack("<HH", i, hashlib.new(n).digest_size) for i, n in ALGS) + b"\0"
    secure = (uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c").bytes_le
              + struct.pack("<QQ", 10, 1) + "SecureBoot".encode("utf-16-le") + b"\x01")
    return (struct.pack("<II20sI", 0, 3, bytes(20), len(body)) + body
            + _event(0, 3, b"StartupLocality\0\x03") + _event(7, 0x80000001, secure)
            + _event(7, 4, bytes(4)) + _event(8, 13, b"kernel_cmdline: ro\0", b"ro")
            + _event(4, 0x80000003, struct.pack("<QQQQ", 0, 0, 0, 0), b"kernel"))


SEED = _seed()


def use(raw: bytes) -> None:
    """Everything a verifier and the hook do with a log."""
    replayed = replay.replay_pcrs(raw)
    replay.check_replay(replayed, replayed)
    events = replay.events_json(raw)
    replay.secure_boot(raw)
    claims = {"pcrs": _hex(replayed), "eventlog_pcrs": _hex(replayed),
              "event_log": {"events": events}}
    tpm_policy.policy_input(claims)


def _hex(pcrs: dict[str, dict[int, bytes]]) -> dict[str, dict[str, str]]:
    return {bank: {str(i): v.hex() for i, v in values.items()} for bank, values in pcrs.items()}


def outcome(run: Callable[[bytes], Any], raw: bytes) -> None:
    start = time.perf_counter()
    try:
        run(raw)
    except (MalformedEvidenceError, BindingError) as exc:
        assert exc.detail
    assert time.perf_counter() - start < TIME_LIMIT


def test_the_seed_is_used_whole() -> None:
    use(SEED)
    assert replay.secure_boot(SEED) is True


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(raw: bytes) -> None:
    outcome(use, raw)


@FUZZ
@given(st.data())
def test_mutated_logs(data: st.DataObject) -> None:
    raw = bytearray(SEED)
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    outcome(use, bytes(raw[:cut]) if data.draw(st.booleans()) else bytes(raw))


PCRS = st.dictionaries(st.sampled_from(["sha1", "sha256", "sha384", "sha512", "sm3_256"]),
                       st.dictionaries(st.integers(0, 30), st.binary(max_size=64), max_size=6),
                       max_size=5)


@FUZZ
@given(PCRS, PCRS)
def test_check_replay_raises_only_binding_errors(replayed: Any, quoted: Any) -> None:
    try:
        notes = replay.check_replay(replayed, quoted)
    except BindingError as exc:
        assert "replays to" in exc.detail
    else:
        assert all(isinstance(n, str) for n in notes)
    replay.bound_pcrs(replayed, quoted)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8)
                    | st.sampled_from(["sha256", "7", "01", "SecureBoot"]),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(
                        ["pcrs", "eventlog_pcrs", "event_log", "events", "sha256", "7", "8",
                         "index", "type", "details", "data_verified", "variable_guid",
                         "unicode_name", "variable_data", "string", "digests"]), inner,
                        max_size=5),
                    max_leaves=30)


@FUZZ
@given(st.dictionaries(st.sampled_from(["pcrs", "eventlog_pcrs", "event_log", "extra_data"]),
                       JSON, max_size=4))
def test_the_hook_never_raises(claims: dict[str, Any]) -> None:
    assert isinstance(tpm_policy.policy_input(claims), dict)
