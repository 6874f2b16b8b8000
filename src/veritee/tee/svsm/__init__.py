"""A vTPM inside the SVSM of an AMD SEV-SNP guest (coconut-svsm): TPM quotes that count only
once the SNP report, made at VMPL 0, binds the vTPM's endorsement key through the SVSM's
service manifest, and the attestation key is proven to live in that vTPM by credential
activation in the broker's challenge.

This file holds the descriptor; the code lives in this folder (``manifest``, ``credential``
with the activation protocol, ``keys``, ``evidence``, ``verify``, ``claims``), in
``veritee/testing/svsm.py`` (the emulated SVSM and vTPM) and in ``veritee/attester/svsm``
(the guest's collectors, which run the activation protocol with the KBS client). The SNP
report is verified by the ``snp`` room and the TPM structures and quotes by the ``tpm`` room.
"""

from veritee.binding import ReportDataRule
from veritee.tee.platform import Platform

PLATFORM = Platform(
    tee="snp-svsm-vtpm",
    room="svsm",
    title="SVSM vTPM on AMD SEV-SNP",
    verifier="veritee.tee.svsm.verify:SvsmVtpmVerifier",
    # The SVSM's attestation nonce (64 bytes) is the KBS runtime-data digest, zero-padded;
    # the SNP report binds SHA-512(nonce || manifest), the quote SHA-256(nonce).
    report_data=ReportDataRule(64, "pad"),
    hash_algorithm="sha384",
    evidence_help=("veritee's SVSM vTPM JSON {snp report and VCEK, service manifest, quote, "
                   "AK, activation}, or go-tpm-tools' SevSnpSvsmAttestation protobuf"),
    collector="veritee.attester.svsm:HardwareSvsmCollector",
    policy="snp-svsm-vtpm.rego",
    challenge="veritee.tee.svsm.credential:challenge_extra",
    # The activation names the KBS nonce its credential was made for: it must be this
    # session's (a whole activation replayed from another session is refused).
    challenge_claim="svsm.challenge_nonce",
    emulated_roots="veritee.testing.svsm:emulated_roots",
    emulator="veritee.testing.svsm:EMULATOR",
    demo="veritee.tee.svsm.demo:SVSM_DEMO",
    emulated_collector="veritee.attester.svsm.emulated:EmulatedSvsmCollector",
    reuses=("snp", "tpm"),
)
