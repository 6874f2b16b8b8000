"""AMD SEV-SNP: attestation reports signed by the VCEK or VLEK, chained to AMD's pinned roots;
and the two earlier generations, AMD SEV and SEV-ES, whose host relays a launch measurement
before the guest runs (``sev_*`` modules, ``session``, ``sevcert``, ``qmp``, ``host_cli``).

This file is the platform's descriptor; the code it names lives in this folder
(``layout``, ``certtable``, ``evidence``, ``certs``, ``roots``, ``kds``, ``verify``,
``claims``, ``policy``, ``bench``, ``demo``), in ``veritee/testing/snp/`` (the emulated
platform), in ``veritee/attester/snp/`` (the guest's collectors) and in
``veritee/appraisal/policies/snp.rego`` (the default policy).
"""

from veritee.binding import ReportDataRule
from veritee.tee.platform import InitDataRule, Platform

SNP = Platform(
    tee="snp",
    room="snp",
    title="AMD SEV-SNP",
    verifier="veritee.tee.snp.verify:SnpVerifier",
    # REPORT_DATA (SEV-SNP ABI Table 23): the 48-byte SHA-384 digest, zero-padded to 64.
    report_data=ReportDataRule(64, "pad"),
    hash_algorithm="sha384",
    evidence_help=(
        "a bare 1184-byte report, an extended report followed by its certificate table, an "
        "Azure HCL report, Linux configfs-tsm JSON (outblob/auxblob), the Confidential "
        "Containers attester JSON, go-sev-guest's Attestation JSON, or Project Oak's "
        "protobuf text"),
    # HOST_DATA (32 bytes; a longer init-data digest keeps its first 32 bytes).
    init_data=InitDataRule(claim="host_data", size=32),
    policy="snp.rego",
    policy_native="veritee.tee.snp.policy:default_policy",
    policy_input="veritee.tee.snp.policy:trustee_claims",
    summary=("product", "signer", "version", "measurement", "report_data", "host_data",
             "chip_id", "reported_tcb", "vmpl", "policy", "revocation", "emulated"),
    summary_formats="veritee.tee.snp.claims:SUMMARY_FORMATS",
    collateral="veritee.tee.snp.kds:collateral_requests",
    collector="veritee.attester.snp:HardwareSnpCollector",
    emulated_roots="veritee.testing.snp:emulated_roots",
    emulator="veritee.testing.snp:EMULATOR",
    emulated_collector="veritee.attester.snp:EmulatedSnpCollector",
    fake_service="veritee.testing.snp:FakeKds",
    demo="veritee.tee.snp.demo:DEMO",
    measure="veritee.tee.snp.measure_cli:SNP_APP",
    benchmarks=(("snp", "veritee.tee.snp.bench:BENCHMARK"),
                ("measure-snp", "veritee.tee.snp.bench_measure:BENCHMARK")),
    broker_guest="veritee.tee.snp.bench:broker_guest",
)


def _sev(tee: str, title: str, verifier: str, symbol: str) -> Platform:
    """SEV and SEV-ES: the same pieces, told apart by the guest policy's ES bit
    (``symbol``: ``SEV`` or ``SEV_ES``, the suffix of their apps, demo and emulator)."""
    return Platform(
        tee=tee, room="snp", title=title, verifier=f"veritee.tee.snp.sev_verify:{verifier}",
        measure=f"veritee.tee.snp.measure_cli:{symbol}_APP",
        demo=f"veritee.tee.snp.sev_demo:{symbol}_DEMO",
        emulator=f"veritee.testing.snp.sev_host:{symbol}_EMULATOR",
        # No report data: the measurement is checked under the session's TIK (the rule is
        # never used, as /kbs/v0 refuses these TEEs).
        report_data=ReportDataRule(32, "exact"),
        hash_algorithm="sha256",
        guest_attests=False,
        evidence_help=(
            "the launch measurement a host relays: JSON with measurement (query-sev-launch-"
            "measure's 48 bytes), api-major, api-minor, build-id, policy, launch-digest, and "
            "the broker's launch-id or the guest owner's tik; or the PEK-signed attestation "
            "report (query-sev-attestation-report) with the platform chain: {report, chain}"),
        policy="sev.rego",
        summary=("launch_digest", "policy", "debug", "es", "api_major", "api_minor",
                 "build_id", "product", "key_source", "emulated"),
        injected_secret="veritee.attester.snp.injected:read_resource",
        routes="veritee.tee.snp.sev_routes:add_routes",
        host="veritee.tee.snp.host_cli:APP",
        emulated_roots="veritee.testing.snp.sev:emulated_sev_roots",
    )


SEV = _sev("sev", "AMD SEV", "SevVerifier", "SEV")
SEV_ES = _sev("sev-es", "AMD SEV-ES", "SevEsVerifier", "SEV_ES")

PLATFORMS = (SNP, SEV, SEV_ES)
