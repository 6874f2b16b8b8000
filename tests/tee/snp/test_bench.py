"""SEV-SNP's benchmark guests: the fast signer of ``veritee bench broker`` makes the
emulator's reports, and they verify."""

from __future__ import annotations

from veritee.collateral import CollateralSource
from veritee.evidence import decode_evidence
from veritee.tee import get_verifier
from veritee.tee.snp.bench import BrokerGuest


def test_guest_reports_are_the_emulator_reports() -> None:
    guest = BrokerGuest()
    report_data = bytes(range(64))
    fast, slow = guest.report(report_data), guest.emulator.report(report_data)
    signature = slice(0x2A0, 0x2A0 + 144)
    assert len(fast) == len(slow) == 0x4A0
    assert fast[:signature.start] == slow[:signature.start]
    assert fast[signature.stop:] == slow[signature.stop:]
    verifier = get_verifier("snp", trust_emulated=True)
    evidence = decode_evidence(fast + guest.emulator.cert_table())
    claims = verifier.verify(evidence, report_data=report_data, collateral=CollateralSource(),
                             now=guest.emulator.now).to_dict()
    assert claims["report_data"] == report_data.hex()
