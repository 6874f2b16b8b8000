"""Property: whatever bytes or text ``veritee verify --json`` is given as evidence, it prints
exactly one JSON object, exits 1, 2 or 3, and never shows a traceback."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from veritee.cli.main import app
from veritee.testing.snp import SnpEmulator

GOOD = SnpEmulator().extended_report()


REPORT_SIZE = 0x4A0


def _mutate(data: tuple[int, bytes]) -> bytes:
    """Flip bits in the report part of good evidence (the certificate table stays)."""
    offset, flips = data
    blob = bytearray(GOOD)
    for index, flip in enumerate(flips):
        blob[(offset + index) % REPORT_SIZE] ^= flip
    return bytes(blob)


_KEYS = st.sampled_from(["outblob", "auxblob", "report", "attestation_report", "cert_chain",
                         "primary_evidence", "quote", "signature", "version"]) | st.text(max_size=8)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=12,
)

EVIDENCE = st.one_of(
    st.binary(max_size=4096),
    st.text(max_size=2000).map(str.encode),
    st.binary(min_size=1, max_size=1500).map(lambda b: b.hex().encode()),
    st.binary(min_size=1, max_size=1500).map(base64.b64encode),
    _JSON.map(lambda d: json.dumps(d).encode()),
    st.tuples(st.integers(0, REPORT_SIZE - 1),
              st.lists(st.integers(1, 255), min_size=1, max_size=8).map(bytes)).map(_mutate),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blob=EVIDENCE, trust_emulated=st.booleans())
def test_any_evidence_gives_one_json_object(tmp_path_factory: pytest.TempPathFactory,
                                            blob: bytes, trust_emulated: bool) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "evidence"
    path.write_bytes(blob)
    result = CliRunner().invoke(
        app, ["verify", "--tee", "snp", "--json", str(path),
              *(["--trust-emulated"] if trust_emulated else [])],
        env={"VERITEE_OFFLINE": "1", "VERITEE_CACHE_DIR": str(folder / "cache")},
    )
    assert result.exit_code in (1, 2, 3), result.output
    assert "Traceback" not in result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    document = json.loads(lines[0])
    assert set(document) == {"tee", "status", "error", "claims"}
    assert document["error"]["type"] and document["error"]["detail"]
    # Evidence is never a usage error: a status "error" here would be a crash in a verifier.
    assert document["status"] in ("rejected", "undecided"), document["error"]


def test_a_mutated_report_never_verifies(tmp_path: Path) -> None:
    path = tmp_path / "evidence"
    path.write_bytes(_mutate((0x50, b"\xff")))
    result = CliRunner().invoke(app, ["verify", "--tee", "snp", "--json", "--trust-emulated",
                                      str(path)],
                           env={"VERITEE_OFFLINE": "1", "VERITEE_CACHE_DIR": str(tmp_path)})
    assert result.exit_code == 1
