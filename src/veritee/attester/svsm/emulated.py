"""A collector over :mod:`veritee.testing.svsm`'s emulated SVSM vTPM, for ``veritee attest
--tee snp-svsm-vtpm --emulate``: the same protocol as :class:`HardwareSvsmCollector` (the EK
and AK in the ``auth`` request, the broker's credential activated), the activation done in
Python with the emulated EK's private key. Its evidence verifies only where the operator
trusts emulated roots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from veritee.errors import MisuseError
from veritee.tee.svsm.manifest import NONCE_SIZE

if TYPE_CHECKING:
    from veritee.attester.kbs_client import Challenge
    from veritee.testing.svsm import SvsmEmulator


def _emulator() -> SvsmEmulator:
    from veritee.testing.svsm import SvsmEmulator  # noqa: PLC0415 - loaded only when asked for

    return SvsmEmulator()


@dataclass
class EmulatedSvsmCollector:
    """``snp-svsm-vtpm`` JSON evidence from an emulated guest, answering the broker's
    challenge (a challenge without ``credential``: evidence without ``activation``)."""

    takes_challenge: ClassVar[bool] = True

    emulator: SvsmEmulator = field(default_factory=_emulator)

    def auth_params(self) -> dict[str, str]:
        """``{"ek-public", "ak-public"}`` of the emulated vTPM."""
        return self.emulator.auth_extra()

    def __call__(self, report_data: bytes, challenge: Challenge | None = None) -> dict[str, Any]:
        """The evidence over the 64-byte SVSM nonce ``report_data``.

        Raises:
            MisuseError: ``report_data`` is not 64 bytes.
            BindingError: the challenge's credential was not made for this EK and AK (the
                emulated TPM's TPM_RC_INTEGRITY).
        """
        if len(report_data) != NONCE_SIZE:
            raise MisuseError(f"report data is {len(report_data)} bytes; the SVSM nonce is "
                              f"exactly {NONCE_SIZE}")
        extra = challenge.extra_params if challenge is not None else None
        if challenge is None or not isinstance(extra, Mapping) or "credential" not in extra:
            document = self.emulator.evidence(report_data)
            document.pop("activation", None)
            return document
        return self.emulator.evidence(report_data, challenge=extra,
                                      challenge_nonce=challenge.nonce)


__all__ = ["EmulatedSvsmCollector"]
