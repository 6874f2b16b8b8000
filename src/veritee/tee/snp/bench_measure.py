"""``veritee bench measure-snp``: SNP launch digests per second in a 64-configuration sweep.

The workload is what an operator runs to fill a reference-value list: vCPUs 1–64 of an
EPYC-v4 guest with a fixed kernel, initrd and command line (kernel-hashes table), on a 4 MiB
firmware. Debian's OVMF (``/usr/share/ovmf/OVMF.fd``) is used when it is present and
supports measured direct boot; otherwise (Debian's OvmfPkgX64 build has no kernel-hashes
area) a synthetic AmdSev-like image from :mod:`veritee.testing.snp.ovmf`. One operation
measures the whole sweep from the bytes in memory (parse the firmware, hash the kernel
artefacts, 64 digests); figures are digests per second.

* ``peer``: sev-snp-measure (``sevsnpmeasure``, imported lazily; null when not installed),
  called in-process once per configuration on the same files, as its CLI and library are
  used; its results are checked against ours before anything is timed.
* ``floor``: one SHA-384 pass over the bytes the sweep must hash at minimum (the firmware's
  pages, one PAGE_INFO per measured page and per vCPU, the two distinct VMSA pages and the
  kernel-hashes page) and one SHA-256 pass over the kernel, initrd and command line.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veritee.bench.core import BenchResult, Figure, Operation, Settings, compare
from veritee.tee.snp.launch import PAGE_INFO, Configuration, KernelHashes, LaunchMeasurer
from veritee.tee.snp.ovmf import PAGE_SIZE, parse_ovmf
from veritee.tee.snp.vmsa import VCPU_TYPES

DEBIAN_OVMF = Path("/usr/share/ovmf/OVMF.fd")
SWEEP = tuple(range(1, 65))
VCPU_TYPE = "EPYC-v4"
APPEND = "console=ttyS0 root=/dev/vda1 ro"
PEER = "sev-snp-measure"
FLOOR = "sha384+sha256-minimum-bytes"


@dataclass(frozen=True)
class Inputs:
    firmware: bytes
    firmware_name: str
    kernel: bytes
    initrd: bytes
    folder: Path
    """Where the firmware, kernel and initrd are written for the peer."""


def _inputs(folder: Path) -> Inputs:
    from veritee.testing.snp.ovmf import build_ovmf  # noqa: PLC0415 - only without Debian's

    firmware, name = b"", ""
    if DEBIAN_OVMF.is_file():
        candidate = DEBIAN_OVMF.read_bytes()
        if parse_ovmf(candidate).hashes_table is not None:
            firmware, name = candidate, f"{DEBIAN_OVMF}"
    if not firmware:
        firmware = build_ovmf(4 << 20)
        name = "synthetic AmdSev-like 4 MiB (veritee.testing.snp.ovmf)"
    kernel = hashlib.shake_256(b"veritee bench kernel").digest(1 << 20)
    initrd = hashlib.shake_256(b"veritee bench initrd").digest(512 << 10)
    for file, data in (("OVMF.fd", firmware), ("vmlinuz", kernel), ("initrd", initrd)):
        (folder / file).write_bytes(data)
    return Inputs(firmware, name, kernel, initrd, folder)


def configurations() -> list[Configuration]:
    return [Configuration("snp", vcpus=n, vcpu_type=VCPU_TYPE, kernel=True) for n in SWEEP]


def sweep(inputs: Inputs) -> list[bytes]:
    """The operation: the 64 digests from the artefacts' bytes."""
    hashes = KernelHashes.of(inputs.kernel, inputs.initrd, APPEND)
    measurer = LaunchMeasurer(parse_ovmf(inputs.firmware), kernel_hashes=hashes)
    return [r.measurement for r in measurer.measure_many(configurations())]


def floor(inputs: Inputs) -> Operation:
    """SHA-384 over the sweep's minimum SHA-384 bytes and SHA-256 over the artefacts."""
    ovmf = parse_ovmf(inputs.firmware)
    measured_pages = ovmf.size // PAGE_SIZE + sum(s.size // PAGE_SIZE for s in ovmf.sections)
    records = (measured_pages + len(SWEEP)) * PAGE_INFO.size
    sha384_bytes = bytes(ovmf.size + records + 3 * PAGE_SIZE)
    sha256_bytes = inputs.kernel + inputs.initrd + APPEND.encode() + b"\0"

    def hash_minimum() -> None:
        hashlib.sha384(sha384_bytes).digest()
        hashlib.sha256(sha256_bytes).digest()

    return hash_minimum


class _Peer:
    """sev-snp-measure on one configuration per call (cycling through the sweep)."""

    def __init__(self, inputs: Inputs, calculate: Callable[..., bytes], mode: object) -> None:
        self.paths = [str(inputs.folder / name) for name in ("OVMF.fd", "vmlinuz", "initrd")]
        self.calculate = calculate
        self.mode = mode
        self.signature = VCPU_TYPES[VCPU_TYPE]
        self.calls = 0

    def one(self, vcpus: int) -> bytes:
        ovmf, kernel, initrd = self.paths
        return self.calculate(self.mode, vcpus, self.signature, ovmf, kernel, initrd, APPEND,
                              0x1)

    def __call__(self) -> bytes:
        vcpus = SWEEP[self.calls % len(SWEEP)]
        self.calls += 1
        return self.one(vcpus)


def _peer(inputs: Inputs) -> _Peer | None:
    try:
        from sevsnpmeasure import guest  # type: ignore[import-untyped]  # noqa: PLC0415 - peer
        from sevsnpmeasure.sev_mode import SevMode  # type: ignore[import-untyped]  # noqa: PLC0415
    except ImportError:
        return None
    return _Peer(inputs, guest.calc_launch_digest, SevMode.SEV_SNP)


def _check(inputs: Inputs, peer: _Peer | None) -> None:
    """Our sweep agrees with the peer on every configuration (before any timing)."""
    ours = sweep(inputs)
    if len(set(ours)) != len(SWEEP):
        raise RuntimeError("the sweep's digests are not all distinct")
    if peer is None:
        return
    for vcpus, digest in zip(SWEEP, ours, strict=True):
        theirs = peer.one(vcpus)
        if theirs != digest:
            raise RuntimeError(f"sev-snp-measure gives {theirs.hex()} for {vcpus} vCPUs, we "
                               f"give {digest.hex()}")


@dataclass(frozen=True)
class MeasureBenchmark:
    name: str = "measure-snp"
    description: str = ("SNP launch digests per second, 64-configuration sweep, vs. "
                        "sev-snp-measure per configuration and the SHA-384 floor")

    def planned_seconds(self, settings: Settings) -> float:
        return 3 * settings.seconds * len({1, settings.threads})

    def run(self, settings: Settings) -> BenchResult:
        with tempfile.TemporaryDirectory(prefix="veritee-bench-") as folder:
            inputs = _inputs(Path(folder))
            peer = _peer(inputs)
            _check(inputs, peer)
            ops: dict[str, Operation] = {"sweep": lambda: sweep(inputs),
                                         "floor": floor(inputs)}
            if peer is not None:
                ops["peer"] = peer
            figures = {n: compare(ops, settings, n) for n in sorted({1, settings.threads})}
        return _result(self.name, settings, inputs, figures)


def _result(name: str, settings: Settings, inputs: Inputs,
            figures: dict[int, dict[str, float]]) -> BenchResult:
    size = len(SWEEP)
    # Per-operation rates in digests per second: a sweep and a floor pass are 64 digests,
    # a peer call is one.
    one, many = ({k: v * (1 if k == "peer" else size) for k, v in f.items()}
                 for f in (figures[1], figures[settings.threads]))
    extra: dict[str, Any] = {
        "unit": "launch digests per second",
        "sweep_size": size,
        "sweeps_per_s": round(many["sweep"] / size, 2),
        "firmware": inputs.firmware_name,
        "firmware_bytes": len(inputs.firmware),
        "single_thread_ops_per_s": round(one["sweep"], 1),
        "single_thread_ratio_to_floor": round(one["sweep"] / one["floor"], 3),
        "scaling": round(many["sweep"] / one["sweep"], 3),
        "checked_against_peer": "peer" in many,
    }
    if "peer" in many:
        extra["ratio_to_sev_snp_measure"] = round(many["sweep"] / many["peer"], 1)
        extra["single_thread_ratio_to_peer"] = round(one["sweep"] / one["peer"], 1)
    return BenchResult(
        benchmark=name, ops_per_s=many["sweep"], floor=Figure(FLOOR, many["floor"]),
        peer=Figure(PEER, many["peer"]) if "peer" in many else None,
        threads=settings.threads, seconds=settings.seconds, extra=extra)


BENCHMARK = MeasureBenchmark()


__all__ = ["BENCHMARK", "MeasureBenchmark", "configurations", "floor", "sweep"]
