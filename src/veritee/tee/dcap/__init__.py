"""Intel DCAP: TDX trust domains and SGX enclaves, quoted by Intel's quoting enclave and
certified by PCK certificates chained to Intel's pinned SGX Root CA.

This file holds the two platforms' descriptors; the code they name lives in this folder
(``quote``, ``evidence``, ``pck``, ``collateral``, ``tcb``, ``roots``, ``ccel``, ``measure``,
``verify``, ``claims``), in ``veritee/testing/dcap.py`` (the emulated platform and a fake PCS), in
``veritee/attester/dcap/`` (the guests' collectors) and in
``veritee/appraisal/policies/{tdx,sgx}.rego`` (the default policies). The TCG event log
parser the CCEL replay uses is shared (``veritee/eventlog.py``).
"""

from veritee.binding import ReportDataRule
from veritee.tee.platform import InitDataRule, Platform

_FORMS = ("a quote (raw, hex or base64, padding or trailing bytes allowed), the Confidential "
          "Containers attester JSON")

PLATFORMS = (
    Platform(
        tee="tdx",
        room="dcap",
        title="Intel TDX",
        verifier="veritee.tee.dcap.verify:TdxVerifier",
        # REPORTDATA (TD report, 64 bytes): the 48-byte SHA-384 digest, zero-padded.
        report_data=ReportDataRule(64, "pad"),
        hash_algorithm="sha384",
        evidence_help=f"{_FORMS} {{cc_eventlog, quote}}, or Linux configfs-tsm JSON",
        # MRCONFIGID (48 bytes): Trustee binds the init-data digest there.
        init_data=InitDataRule(claim="mr_config_id", size=48),
        policy="tdx.rego",
        policy_input="veritee.tee.dcap.policy:trustee_claims",
        summary=("quote_version", "body_type", "mr_td", "rtmr0", "rtmr1", "rtmr2", "rtmr3",
                 "mr_seam", "mr_config_id", "report_data", "debug", "fmspc", "tcb_status",
                 "collateral_expiration", "revocation", "emulated"),
        summary_formats="veritee.tee.dcap.claims:SUMMARY_FORMATS",
        collateral="veritee.tee.dcap.pcs:collateral_requests",
        measure="veritee.tee.dcap.measure_cli:app",
        collector="veritee.attester.dcap:HardwareTdxCollector",
        emulated_collector="veritee.attester.dcap.emulated:EmulatedTdxCollector",
        emulated_roots="veritee.testing.dcap:emulated_anchors",
        emulator="veritee.testing.dcap:TDX_EMULATOR",
        fake_service="veritee.testing.dcap:FakePcs",
        demo="veritee.tee.dcap.demo:TDX_DEMO",
        benchmarks=(("tdx", "veritee.tee.dcap.bench:TDX_BENCHMARK"),),
    ),
    Platform(
        tee="sgx",
        room="dcap",
        title="Intel SGX",
        verifier="veritee.tee.dcap.verify:SgxVerifier",
        report_data=ReportDataRule(64, "pad"),
        hash_algorithm="sha384",
        evidence_help=f"{_FORMS} {{quote}}",
        policy="sgx.rego",
        summary=("quote_version", "mr_enclave", "mr_signer", "isv_prod_id", "isv_svn",
                 "report_data", "debug", "fmspc", "tcb_status", "collateral_expiration",
                 "revocation", "emulated"),
        summary_formats="veritee.tee.dcap.claims:SUMMARY_FORMATS",
        collateral="veritee.tee.dcap.pcs:collateral_requests",
        collector="veritee.attester.dcap:HardwareSgxCollector",
        emulated_collector="veritee.attester.dcap.emulated:EmulatedSgxCollector",
        emulated_roots="veritee.testing.dcap:emulated_anchors",
        emulator="veritee.testing.dcap:SGX_EMULATOR",
        fake_service="veritee.testing.dcap:FakePcs",
        demo="veritee.tee.dcap.demo:SGX_DEMO",
        benchmarks=(("sgx", "veritee.tee.dcap.bench:SGX_BENCHMARK"),),
    ),
)
