"""What TPM 2.0 contributes to ``veritee demo``: an emulated TPM and, when swtpm and
tpm2-tools are installed, a real software TPM (swtpm on loopback) quoting through the same
collector a guest runs (:class:`veritee.attester.tpm.HardwareTpmCollector`).

The swtpm guest "boots" the emulated guest's image: its PCRs are extended with the digests of
the emulated event log, which it sends beside its quote, so both guests meet the same
reference values. Its AK is created when the demo starts and is given to the demo's broker as
a collateral file (a trusted AK, as a registrar would enrol it). The corpus's TPM samples are
split over several files and are not replayed here; ``tests/tee/tpm`` verifies them.
"""

from __future__ import annotations

import atexit
import functools
import json
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veritee.attester.tpm import HardwareTpmCollector
from veritee.eventlog import EV_NO_ACTION
from veritee.tee.platform import CorpusCase, DemoGuest
from veritee.testing.tpm import Swtpm, SwtpmAk, TpmEmulator

_PROVENANCE = "veritee demo: the emulated guest's measured boot"
#: The PCRs the demo's reference values pin (firmware, boot loader and kernel, secure boot
#: configuration, command line, initrd).
PINNED: tuple[int, ...] = (0, 4, 7, 8, 9)


@dataclass
class _Swtpm:
    """A started swtpm with the emulated boot replayed into it, its AK and event log file."""

    tpm: Swtpm
    ak: SwtpmAk
    eventlog: Path


_LOCK = threading.Lock()


@functools.cache
def _swtpm() -> _Swtpm | None:
    """The demo's swtpm, started once (stopped when the process exits); None when swtpm or
    tpm2-tools is not installed."""
    if not Swtpm.available():
        return None
    with _LOCK:
        tpm = Swtpm(banks=("sha256",))
        tpm.__enter__()
        atexit.register(tpm.close)
        image = TpmEmulator(banks=("sha256",))
        for event in image.events:
            if event.type != EV_NO_ACTION:
                tpm.extend(event.pcr, {"sha256": event.digest("sha256")})
        folder = Path(tempfile.mkdtemp(prefix="veritee-demo-tpm-"))
        log = folder / "binary_bios_measurements"
        log.write_bytes(image.event_log())
        tpm.create_ek()
        return _Swtpm(tpm, tpm.create_ak("rsa"), log)


def _swtpm_collector(swtpm: _Swtpm) -> HardwareTpmCollector:
    return HardwareTpmCollector(ak=str(swtpm.ak.context), tcti=swtpm.tpm.tcti,
                                eventlog=swtpm.eventlog, require_eventlog=True)


@dataclass(frozen=True)
class TpmDemo:
    corpus_vendor: str = "ibm-tpm-gpu"
    corpus: tuple[CorpusCase, ...] = ()

    def reference_values(self) -> dict[str, Any]:
        sha256 = TpmEmulator().pcrs["sha256"]
        values: dict[str, Any] = {
            f"tpm_sha256_pcr{i}": {"values": [sha256[i].hex()], "provenance": _PROVENANCE}
            for i in PINNED}
        values["allow_emulated"] = {"values": [True], "provenance": "veritee demo only"}
        return values

    def collateral(self) -> tuple[tuple[str, bytes], ...]:
        """The swtpm guest's AK (public key PEM), trusted by the demo's broker."""
        swtpm = _swtpm()
        return () if swtpm is None else (("tpm-demo-ak.pem", swtpm.ak.pem),)

    def guests(self) -> Iterator[DemoGuest]:
        genuine = TpmEmulator()
        yield DemoGuest("genuine TPM (emulated; quote, PCRs and event log)",
                        lambda rd: _json(genuine.trustee(rd)), "released")
        swtpm = _swtpm()
        if swtpm is not None:
            yield DemoGuest("genuine swtpm (a real TPM process, quoted with tpm2-tools)",
                            _swtpm_collector(swtpm), "released")
        yield DemoGuest("kernel command line changed (PCR 8 differs)",
                        lambda rd: _json(TpmEmulator(cmdline=b"init=/bin/sh").trustee(rd)),
                        "refused", because="tpm.sha256.pcr8")
        yield DemoGuest("event log that does not replay to the quoted PCRs",
                        lambda rd: _json(TpmEmulator(knob="tampered_eventlog").trustee(rd)),
                        "refused", because="BindingError")
        yield DemoGuest("quote signed by an AK nobody enrolled",
                        lambda rd: _json(TpmEmulator(knob="foreign_ak").trustee(rd)),
                        "refused")


def _json(blob: bytes) -> Any:
    return json.loads(blob)


TPM_DEMO = TpmDemo()
