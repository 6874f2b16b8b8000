"""Claims of verified SVSM vTPM evidence (``snp-svsm-vtpm``):

* ``snp``: the claims ``--tee snp`` gives for the SVSM's VMPL 0 report;
* ``tpm``: the ``tpm`` claims of the vTPM quote (``signer`` = SHA-256 of the AK's DER SPKI);
* ``svsm``: ``manifest_version`` (int), ``ek_public`` (hex TPMT_PUBLIC, the manifest),
  ``ek_name``, ``ak_public``, ``ak_name`` (hex TPM2B_NAME contents), ``nonce`` (hex, the 64-byte
  SVSM nonce), ``nonce_source`` (``report_data`` | ``evidence``), ``activation``
  (``checked`` | ``not_checked`` | ``absent``), ``challenge_nonce`` (the KBS nonce the
  credential was made for, as text, when the evidence carries an activation),
  ``quote_nonce`` (``bound``: every quote's extraData is SHA-256 of the SVSM nonce;
  ``not_bound``: go-tpm-tools' own quote nonce, reported in ``tpm.extra_data``),
  ``activation_key`` (``configured`` | ``emulated``: which kind of key checked it);
* ``report_data``: the 64-byte SVSM nonce (hex), what the broker's binding reads;
  ``evidence_form``; ``emulated``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from veritee.tee.snp.claims import SnpClaims


@dataclass(frozen=True, slots=True)
class SvsmVtpmClaims:
    tee: ClassVar[str] = "snp-svsm-vtpm"

    snp: SnpClaims
    tpm: Mapping[str, Any]
    svsm: Mapping[str, Any]
    evidence_form: str

    def to_dict(self) -> dict[str, Any]:
        return {"snp": self.snp.to_dict(), "tpm": dict(self.tpm), "svsm": dict(self.svsm),
                "report_data": self.svsm.get("nonce", ""), "evidence_form": self.evidence_form,
                "emulated": self.emulated}

    @property
    def emulated(self) -> bool:
        """The SNP chain ends in an emulated root, or the activation was checked with the
        emulated (public) credential key."""
        return self.snp.emulated or self.svsm.get("activation_key") == "emulated"


__all__ = ["SvsmVtpmClaims"]
