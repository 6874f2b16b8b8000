"""What SEV and SEV-ES contribute to ``veritee demo``: emulated launches that the demo's host
runs against its broker (session, LAUNCH_START, LAUNCH_MEASURE relayed, LAUNCH_SECRET
injected and read back in the guest), released and refused. No real sample: a SEV launch
measurement is checked under a TIK that only the session's guest owner holds."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from veritee.tee.platform import CorpusCase, DemoGuest

_PROVENANCE = "veritee demo: `veritee measure` of the emulated guest's firmware and kernel"


@cache
def _guests() -> dict[str, Any]:
    from veritee.testing.snp.sev_host import NOKS, EmulatedSevGuest  # noqa: PLC0415

    return {
        "sev": EmulatedSevGuest("sev"),
        "sev-es": EmulatedSevGuest("sev-es", vcpus=4),
        "other kernel": EmulatedSevGuest("sev", kernel=b"a kernel nobody measured"),
        "not opted in": EmulatedSevGuest("sev-es", append="console=ttyS0 quiet"),
        "debug": EmulatedSevGuest("sev", policy=NOKS),
    }


def _launch(guest: Any) -> Any:
    def run(url: str, path: str) -> bytes:
        from veritee.tee.snp.sev_launch import secret_guid  # noqa: PLC0415

        return bytes(guest.launch(url, [path])[secret_guid(path)])

    return run


@dataclass(frozen=True)
class SevDemo:
    tee: str
    corpus_vendor: str = "amd"
    corpus: tuple[CorpusCase, ...] = ()

    def reference_values(self) -> dict[str, Any]:
        """The same for both TEEs (the demo merges every platform's): the digests of the
        genuine guests, the opt-in for them, and the emulated platform allowed."""
        guests = _guests()
        allowed = [guests[name].launch_digest().hex() for name in ("sev", "sev-es")]
        known = allowed + [guests[name].launch_digest().hex()
                           for name in ("not opted in", "debug")]
        return {
            "sev_launch_digest": {"values": known, "provenance": _PROVENANCE},
            "sev_accept_host_relayed": {
                "values": allowed,
                "provenance": "veritee demo: the operator accepts host-relayed measurements "
                              "of the genuine guests"},
            "allow_emulated": {"values": [True], "provenance": "veritee demo only"},
        }

    def guests(self) -> Iterator[DemoGuest]:
        guests = _guests()
        if self.tee == "sev":
            yield DemoGuest("genuine guest, digest opted in", None, "released",
                            launch=_launch(guests["sev"]))
            yield DemoGuest("another kernel (no reference digest)", None, "refused",
                            because="SignatureError", launch=_launch(guests["other kernel"]))
            yield DemoGuest("guest policy allows debugging", None, "refused",
                            because="sev.policy.nodbg", launch=_launch(guests["debug"]))
        else:
            yield DemoGuest("genuine 4-vCPU guest, digest opted in", None, "released",
                            launch=_launch(guests["sev-es"]))
            yield DemoGuest("known digest, host-relayed launch not opted in", None, "refused",
                            because="sev.host_relayed",
                            launch=_launch(guests["not opted in"]))


SEV_DEMO = SevDemo("sev")
SEV_ES_DEMO = SevDemo("sev-es")
