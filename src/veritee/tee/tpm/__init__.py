"""TPM 2.0: quotes (TPMS_ATTEST signed by an attestation key) over PCRs, and the TCG event
log that replays to them. The AK is trusted by its public key or by a certificate chain to an
operator-pinned CA (Google Cloud's EK/AK CAs, a keylime-style registrar's list); the evidence's
own AK is never trusted by itself.

This file holds the descriptor; the code lives in this folder (``structures`` for TPM 2.0
marshalling, ``quote``, ``proto`` for go-tpm-tools' protobufs, ``evidence``, ``anchors``,
``replay``, ``verify``, ``claims``, ``policy``), in ``veritee/testing/tpm.py`` (a software TPM
emulator and the swtpm harness the tests use), in ``veritee/attester/tpm/`` (tpm2-tools) and
in ``veritee/appraisal/policies/tpm.rego``. The Azure and SVSM composites reuse this room.
"""

from veritee.binding import ReportDataRule
from veritee.tee.platform import InitDataRule, Platform

PLATFORM = Platform(
    tee="tpm",
    room="tpm",
    title="TPM 2.0",
    verifier="veritee.tee.tpm.verify:TpmVerifier",
    # extraData (TPM2B_DATA) holds the runtime-data digest itself; SHA-256 fits every TPM.
    report_data=ReportDataRule(64, "exact"),
    hash_algorithm="sha256",
    evidence_help=("keylime's quote string r<quote>:<signature>:<pcrs>, Trustee's TPM "
                   "attester JSON, go-tpm-tools' Attestation protobuf, or a raw TCG event "
                   "log (replayed only)"),
    # Init-data is extended once into PCR 8 (SHA-256 bank): PCR8 = SHA-256(0^32 || digest).
    init_data=InitDataRule(claim="pcrs.sha256.8", size=32, extended=True),
    summary=("extra_data", "pcr_select", "pcr_digest", "firmware_version", "reset_count",
             "restart_count", "signer", "ak_trust", "evidence_form", "emulated"),
    policy="tpm.rego",
    policy_input="veritee.tee.tpm.policy:policy_input",
    collector="veritee.attester.tpm:HardwareTpmCollector",
    emulated_collector="veritee.attester.tpm.emulated:EmulatedTpmCollector",
    emulated_roots="veritee.testing.tpm:emulated_anchors",
    emulator="veritee.testing.tpm:TPM_EMULATOR",
    demo="veritee.tee.tpm.demo:TPM_DEMO",
    benchmarks=(("tpm", "veritee.tee.tpm.bench:TPM_BENCHMARK"),),
)
