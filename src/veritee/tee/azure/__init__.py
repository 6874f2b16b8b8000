"""Azure confidential VMs: the HCL (Azure's paravisor) report beside a vTPM quote. The SNP
report or TD quote, made at VMPL 0 / by the TD, binds the HCL's variable data (SHA-256 in
its report data), the variable data carries the vTPM's attestation key, and that key signs a
TPM quote over the guest's PCRs with the broker's nonce.

This file holds the two platforms' descriptors; the code lives in this folder (``hcl``,
``evidence`` for Trustee's JSON v0-v2, ``verify``, ``claims``), in
``veritee/testing/azure.py`` (the emulated CVMs) and in
``veritee/appraisal/policies/az-{snp,tdx}-vtpm.rego``. The hardware report is verified by the
``snp`` or ``dcap`` room, the quote by the ``tpm`` room.
"""

from veritee.binding import ReportDataRule
from veritee.tee.platform import InitDataRule, Platform

_FORMS = "Trustee's Azure evidence JSON (v0, v1 or v2: tpm_quote, hcl_report and {})"
_SUMMARY = ("report_data", "evidence_form", "tpm", "hcl", "emulated")

#: Init-data is measured into the vTPM's PCR 8 (SHA-256 bank): PCR8 = SHA-256(0^32 || digest).
_INIT_DATA = InitDataRule(claim="tpm.pcrs.sha256.8", size=32, extended=True)

PLATFORMS = (
    Platform(
        tee="az-snp-vtpm",
        room="azure",
        title="Azure SEV-SNP confidential VM (HCL report + vTPM)",
        verifier="veritee.tee.azure.verify:AzSnpVtpmVerifier",
        # The TPM quote's extraData carries the runtime-data digest as it is.
        report_data=ReportDataRule(64, "exact"),
        hash_algorithm="sha384",
        evidence_help=_FORMS.format("the VCEK"),
        init_data=_INIT_DATA,
        policy="az-snp-vtpm.rego",
        summary=("snp", *_SUMMARY),
        summary_formats="veritee.tee.azure.claims:SUMMARY_FORMATS",
        emulated_roots="veritee.testing.azure:emulated_snp_roots",
        emulator="veritee.testing.azure:AZ_SNP_EMULATOR",
        demo="veritee.tee.azure.demo:AZ_SNP_DEMO",
        benchmarks=(("az-snp-vtpm", "veritee.tee.azure.bench:AZ_SNP_BENCHMARK"),),
        reuses=("snp", "tpm"),
    ),
    Platform(
        tee="az-tdx-vtpm",
        room="azure",
        title="Azure TDX confidential VM (HCL report + vTPM)",
        verifier="veritee.tee.azure.verify:AzTdxVtpmVerifier",
        report_data=ReportDataRule(64, "exact"),
        hash_algorithm="sha384",
        evidence_help=_FORMS.format("td_quote"),
        init_data=_INIT_DATA,
        policy="az-tdx-vtpm.rego",
        summary=("tdx", *_SUMMARY),
        summary_formats="veritee.tee.azure.claims:SUMMARY_FORMATS",
        emulated_roots="veritee.testing.azure:emulated_tdx_roots",
        emulator="veritee.testing.azure:AZ_TDX_EMULATOR",
        demo="veritee.tee.azure.demo:AZ_TDX_DEMO",
        reuses=("dcap", "tpm"),
    ),
)
