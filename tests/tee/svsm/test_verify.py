"""The ``snp-svsm-vtpm`` verifier on emulated evidence: the genuine guest verifies; every
knob is refused with its own error; a foreign AK that signs a valid quote is refused; and
without the credential key (or a nonce) the verdict is undecided, with the claims parsed."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any

import pytest

from veritee.collateral import CollateralSource
from veritee.errors import (
    BindingError,
    CollateralMissingError,
    MalformedEvidenceError,
    MisuseError,
    UnrecognizedEvidenceError,
    UnsupportedVersionError,
)
from veritee.evidence import Evidence, decode_evidence
from veritee.tee.svsm.verify import CredentialKey, SvsmVtpmVerifier
from veritee.testing import pki
from veritee.testing.svsm import (
    EMULATED_CREDENTIAL_KEY,
    EMULATOR,
    KNOB_ERRORS,
    SvsmEmulator,
    emulated_roots,
)

NONCE = bytes(range(64))
NOW = pki.now_utc()


@pytest.fixture(scope="module")
def verifier() -> SvsmVtpmVerifier:
    return SvsmVtpmVerifier().with_roots(emulated_roots())


@pytest.fixture(scope="module")
def genuine() -> dict[str, Any]:
    return SvsmEmulator(now=NOW).evidence(NONCE)


def _verify(verifier: SvsmVtpmVerifier, document: Any, report_data: bytes | None = NONCE,
            now: datetime = NOW) -> Any:
    return verifier.verify(Evidence.from_json(document), report_data=report_data,
                           collateral=CollateralSource(), now=now)


def test_genuine_verifies(verifier: SvsmVtpmVerifier, genuine: dict[str, Any]) -> None:
    claims = _verify(verifier, genuine).to_dict()
    svsm = claims["svsm"]
    assert svsm["activation"] == "checked"
    assert svsm["manifest_version"] == 0
    assert svsm["nonce"] == NONCE.hex() and svsm["nonce_source"] == "report_data"
    assert svsm["ek_public"] == genuine["vtpm_service_manifest"] or svsm["ek_public"]
    assert len(bytes.fromhex(svsm["ek_name"])) == 34
    assert svsm["ak_name"].startswith("000b")
    assert claims["snp"]["vmpl"] == 0
    assert claims["emulated"] is True
    assert claims["report_data"] == NONCE.hex()
    assert claims["tpm"]["pcr_select"] == {"sha256": list(range(8))}
    json.dumps(claims)


def test_genuine_without_report_data_uses_the_evidence_nonce(
        verifier: SvsmVtpmVerifier, genuine: dict[str, Any]) -> None:
    claims = _verify(verifier, genuine, report_data=None).to_dict()
    assert claims["svsm"]["nonce_source"] == "evidence"


def test_from_text_file_form(verifier: SvsmVtpmVerifier) -> None:
    """What ``veritee emulate`` writes is what ``veritee verify`` reads."""
    emulated = EMULATOR.emulate(report_data=NONCE, host_data=None, knobs=[])
    claims = verifier.verify(decode_evidence(emulated.evidence), report_data=NONCE,
                             collateral=CollateralSource(), now=pki.now_utc())
    assert claims.svsm["activation"] == "checked"


def test_wrapped_in_primary_evidence(verifier: SvsmVtpmVerifier,
                                     genuine: dict[str, Any]) -> None:
    assert _verify(verifier, {"primary_evidence": json.dumps(genuine)})


@pytest.mark.parametrize("knob", sorted(KNOB_ERRORS))
def test_knob_refused(verifier: SvsmVtpmVerifier, knob: str) -> None:
    document = SvsmEmulator(knob=knob, now=NOW).evidence(NONCE)  # type: ignore[arg-type]
    with pytest.raises(KNOB_ERRORS[knob]) as caught:
        _verify(verifier, document)
    assert type(caught.value) is KNOB_ERRORS[knob]
    assert caught.value.claims is not None and "svsm" in caught.value.claims


def test_foreign_ak_quote_is_valid_but_refused(verifier: SvsmVtpmVerifier) -> None:
    """The foreign AK's quote itself verifies (the same evidence without activation is
    only undecided, not a signature failure); the activation is what refuses it."""
    document = SvsmEmulator(knob="foreign_ak", now=NOW).evidence(NONCE)
    with pytest.raises(BindingError, match="not proven to live in the vTPM"):
        _verify(verifier, document)
    del document["activation"]
    with pytest.raises(CollateralMissingError) as caught:
        _verify(verifier, document)
    assert caught.value.claims is not None
    assert caught.value.claims["tpm"]["extra_data"]


def test_no_credential_key_is_undecided(genuine: dict[str, Any]) -> None:
    bare = SvsmVtpmVerifier().with_roots([r for r in emulated_roots()
                                          if not isinstance(r, CredentialKey)])
    with pytest.raises(CollateralMissingError, match="not proven to live in the vTPM") as caught:
        _verify(bare, genuine)
    claims = caught.value.claims
    assert claims is not None and claims["svsm"]["activation"] == "not_checked"
    assert claims["svsm"]["challenge_nonce"] == genuine["activation"]["nonce"]
    keyed = bare.with_credential_key(EMULATED_CREDENTIAL_KEY)
    assert _verify(keyed, genuine).svsm["activation"] == "checked"
    assert _verify(keyed, genuine).svsm["activation_key"] == "configured"


def test_emulated_credential_key_marks_the_result_emulated(genuine: dict[str, Any]) -> None:
    claims = _verify(SvsmVtpmVerifier().with_roots(emulated_roots()), genuine)
    assert claims.svsm["activation_key"] == "emulated"
    assert claims.to_dict()["emulated"] is True


def test_other_broker_key_refused(genuine: dict[str, Any]) -> None:
    other = SvsmVtpmVerifier(credential_key=b"x" * 32).with_roots(
        [r for r in emulated_roots() if not isinstance(r, CredentialKey)])
    with pytest.raises(BindingError):
        _verify(other, genuine)


def test_no_nonce_anywhere_is_undecided(verifier: SvsmVtpmVerifier) -> None:
    document = SvsmEmulator(now=NOW).evidence(NONCE, with_nonce=False)
    with pytest.raises(CollateralMissingError, match="no nonce"):
        _verify(verifier, document, report_data=None)
    assert _verify(verifier, document)


def test_other_report_data_refused(verifier: SvsmVtpmVerifier,
                                   genuine: dict[str, Any]) -> None:
    with pytest.raises(BindingError):
        _verify(verifier, genuine, report_data=bytes(64))
    document = dict(genuine)
    del document["nonce"]
    with pytest.raises(BindingError):
        _verify(verifier, document, report_data=bytes(64))


def test_pinned_roots_only_refuse_emulated_snp(genuine: dict[str, Any]) -> None:
    from veritee.errors import ChainError

    pinned = SvsmVtpmVerifier(credential_key=EMULATED_CREDENTIAL_KEY)
    with pytest.raises(ChainError):
        _verify(pinned, genuine)


def _edit(document: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(document)
    node = out
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


_DELETE = object()
FIELD_DEFECTS: list[tuple[str, tuple[str, ...], Any, type[Exception]]] = [
    ("no_manifest", ("vtpm_service_manifest",), _DELETE, UnrecognizedEvidenceError),
    ("manifest_version_1", ("vtpm_service_manifest_version",), 1, UnsupportedVersionError),
    ("manifest_version_bad", ("vtpm_service_manifest_version",), "x", MalformedEvidenceError),
    ("no_snp", ("sev_snp_attestation",), _DELETE, MalformedEvidenceError),
    ("snp_short", ("sev_snp_attestation",), "00" * 100, MalformedEvidenceError),
    ("no_ak", ("ak_public",), _DELETE, MalformedEvidenceError),
    ("ak_garbage", ("ak_public",), "00ff", MalformedEvidenceError),
    ("no_quote", ("tpm_quote",), _DELETE, MalformedEvidenceError),
    ("quote_not_object", ("tpm_quote",), "x", MalformedEvidenceError),
    ("pcrs_missing_one", ("tpm_quote", "pcrs"), ["00" * 32] * 7, BindingError),
    ("pcr_changed", ("tpm_quote", "pcrs"), ["00" * 32] * 8, BindingError),
    ("pcr_wrong_size", ("tpm_quote", "pcrs"), ["00" * 20] * 8, MalformedEvidenceError),
    ("nonce_short", ("nonce",), "00" * 32, MalformedEvidenceError),
    ("activation_not_object", ("activation",), [1], MalformedEvidenceError),
    ("activation_nonce_other", ("activation", "nonce"), "other", BindingError),
    ("activation_nonce_empty", ("activation", "nonce"), "", MalformedEvidenceError),
    ("activation_credential_long", ("activation", "credential"), "00" * 100,
     MalformedEvidenceError),
]


@pytest.mark.parametrize("case", FIELD_DEFECTS, ids=[d[0] for d in FIELD_DEFECTS])
def test_field_defects(verifier: SvsmVtpmVerifier, genuine: dict[str, Any],
                       case: tuple[str, tuple[str, ...], Any, type[Exception]]) -> None:
    _, path, value, error = case
    with pytest.raises(error):
        _verify(verifier, _edit(genuine, path, value))


def test_binary_evidence_unrecognized(verifier: SvsmVtpmVerifier) -> None:
    with pytest.raises(UnrecognizedEvidenceError):
        verifier.verify(Evidence(b"\x00" * 2000, "raw"), report_data=NONCE,
                        collateral=CollateralSource(), now=NOW)


@pytest.mark.parametrize("report_data", [bytes(32), bytes(48), bytes(65)])
def test_report_data_must_be_64_bytes(verifier: SvsmVtpmVerifier, genuine: dict[str, Any],
                                      report_data: bytes) -> None:
    with pytest.raises(MisuseError):
        _verify(verifier, genuine, report_data=report_data)


def test_naive_now_is_misuse(verifier: SvsmVtpmVerifier, genuine: dict[str, Any]) -> None:
    with pytest.raises(MisuseError):
        _verify(verifier, genuine, now=datetime(2026, 1, 1))


def test_short_credential_key_is_misuse() -> None:
    with pytest.raises(MisuseError):
        SvsmVtpmVerifier(credential_key=b"short")


def test_emulator_cli_knobs() -> None:
    assert set(EMULATOR.knobs) == set(KNOB_ERRORS)
    for bad in (["nope"], ["vmpl3", "foreign_ak"]):
        with pytest.raises(ValueError, match="knob"):
            EMULATOR.emulate(report_data=None, host_data=None, knobs=bad)
    with pytest.raises(ValueError, match="64"):
        EMULATOR.emulate(report_data=bytes(32), host_data=None, knobs=[])


def test_guest_activation_refuses_credential_for_other_ak() -> None:
    guest = SvsmEmulator(now=NOW)
    challenge = guest.challenge()
    challenge["credential"] = SvsmEmulator(knob="duplicable_ak", now=NOW).challenge()[
        "credential"]
    with pytest.raises(BindingError):
        guest.activate(challenge)


def test_key_rotation_accepts_any_configured_key(genuine: dict[str, Any]) -> None:
    amd = [r for r in emulated_roots() if not isinstance(r, CredentialKey)]
    rotating = SvsmVtpmVerifier(credential_key=[b"n" * 32, EMULATED_CREDENTIAL_KEY]).with_roots(amd)
    assert _verify(rotating, genuine).svsm["activation"] == "checked"
    both = SvsmVtpmVerifier(credential_key=b"n" * 32).with_roots(emulated_roots())
    assert _verify(both, genuine).svsm["activation"] == "checked"


# -- go-tpm-tools' SevSnpSvsmAttestation protobuf ------------------------------------------


@pytest.fixture(scope="module")
def gotpm() -> bytes:
    return SvsmEmulator(now=NOW).go_tpm_tools(NONCE)


@pytest.mark.parametrize("encode", [bytes, bytes.hex], ids=["raw", "hex"])
def test_go_tpm_tools_is_checked_then_undecided(verifier: SvsmVtpmVerifier, gotpm: bytes,
                                                encode: Any) -> None:
    """Everything holds (SNP chain, binding, quote), but the form has no activation."""
    blob = encode(gotpm)
    blob = blob.encode() if isinstance(blob, str) else blob
    with pytest.raises(CollateralMissingError, match="not proven") as caught:
        verifier.verify(decode_evidence(blob), report_data=NONCE,
                        collateral=CollateralSource(), now=NOW)
    claims = caught.value.claims
    assert claims is not None
    assert claims["evidence_form"] == "go-tpm-tools"
    assert claims["svsm"]["activation"] == "absent"
    assert claims["svsm"]["quote_nonce"] == "not_bound"
    assert claims["tpm"]["extra_data"] == b"gotpm nonce".hex()
    assert claims["snp"]["vmpl"] == 0


def test_go_tpm_tools_other_nonce_refused(verifier: SvsmVtpmVerifier, gotpm: bytes) -> None:
    with pytest.raises(BindingError):
        verifier.verify(Evidence(gotpm, "raw"), report_data=bytes(64),
                        collateral=CollateralSource(), now=NOW)


def test_go_tpm_tools_other_manifest_refused(verifier: SvsmVtpmVerifier, gotpm: bytes) -> None:
    from veritee.testing.tpm import pb_bytes

    at = gotpm.index(pb_bytes(3, SvsmEmulator(now=NOW).manifest))
    other = SvsmEmulator(now=NOW).manifest[:-1] + b"\x00"
    blob = gotpm[:at] + pb_bytes(3, other) + gotpm[at + len(pb_bytes(3, other)):]
    with pytest.raises(BindingError):
        verifier.verify(Evidence(blob, "raw"), report_data=NONCE,
                        collateral=CollateralSource(), now=NOW)


@pytest.mark.parametrize("blob", [b"\x0a\x03abc", b"\xff" * 40, b"\x1a\x02ek"])
def test_other_binary_unrecognized(verifier: SvsmVtpmVerifier, blob: bytes) -> None:
    with pytest.raises(MalformedEvidenceError):
        verifier.verify(Evidence(blob, "raw"), report_data=NONCE,
                        collateral=CollateralSource(), now=NOW)
