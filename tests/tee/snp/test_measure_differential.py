"""Our launch digests against sev-snp-measure (the peer, installed as ``sevsnpmeasure``) on the
same inputs: Debian's OVMF (``/usr/share/ovmf/OVMF.fd``, package ``ovmf``; skipped when
absent) and the synthetic AmdSev-like and SVSM images of :mod:`veritee.testing.snp.ovmf`,
across vCPU counts, vCPU types, VMMs, guest features, kernel tables and the modes snp, seves,
sev and snp:svsm. Ours are measured as one sweep per measurer; the peer once per
configuration.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from veritee.errors import MalformedEvidenceError
from veritee.tee.snp.launch import (
    Configuration,
    KernelHashes,
    LaunchMeasurer,
    parse_svsm,
    snp_ovmf_hash,
)
from veritee.tee.snp.ovmf import parse_ovmf
from veritee.tee.snp.vmsa import VCPU_TYPES
from veritee.testing.snp.ovmf import build_ovmf, build_svsm

guest = pytest.importorskip("sevsnpmeasure.guest")
peer_types = pytest.importorskip("sevsnpmeasure.vmm_types")
peer_modes = pytest.importorskip("sevsnpmeasure.sev_mode")

DEBIAN_OVMF = Path("/usr/share/ovmf/OVMF.fd")
PEER_MODES = {"snp": "SEV_SNP", "sev-es": "SEV_ES", "sev": "SEV"}
PEER_VMMS = {"qemu": "QEMU", "ec2": "ec2", "gce": "gce"}
KERNEL = b"\x7fELF synthetic kernel " * 300
INITRD = b"synthetic initrd " * 200
APPEND = "console=ttyS0 root=/dev/vda"


def _peer(path: Path, config: Configuration, artefacts: dict[str, str]) -> bytes:
    mode = getattr(peer_modes.SevMode, PEER_MODES[config.mode])
    vmm = getattr(peer_types.VMMType, PEER_VMMS[config.vmm])
    kernel = artefacts if config.kernel else {"kernel": "", "initrd": "", "append": ""}
    digest: bytes = guest.calc_launch_digest(
        mode, config.vcpus, config.signature, str(path), kernel["kernel"], kernel["initrd"],
        kernel["append"], config.guest_features, vmm_type=vmm)
    return digest


def _artefacts(tmp_path: Path) -> tuple[dict[str, str], KernelHashes]:
    (tmp_path / "vmlinuz").write_bytes(KERNEL)
    (tmp_path / "initrd").write_bytes(INITRD)
    files = {"kernel": str(tmp_path / "vmlinuz"), "initrd": str(tmp_path / "initrd"),
             "append": APPEND}
    return files, KernelHashes.of(KERNEL, INITRD, APPEND)


def _configurations(kernel: bool) -> list[Configuration]:
    """A spread over modes, vCPU counts and types, VMMs and guest features."""
    rows: list[Configuration] = []
    for vcpus, vcpu_type, features in ((1, "EPYC-v4", 0x1), (2, "EPYC-Milan", 0x21),
                                       (5, "EPYC-Genoa", 0x1), (3, "EPYC-Rome", 0x3),
                                       (2, "EPYC-Turin", 0x1)):
        rows.append(Configuration("snp", vcpus=vcpus, vcpu_type=vcpu_type,
                                  guest_features=features, kernel=kernel))
    for vmm in ("ec2", "gce"):
        rows += [Configuration("snp", vcpus=n, vcpu_type=None, vmm=vmm, kernel=kernel)  # type: ignore[arg-type]
                 for n in (1, 4)]
    rows += [Configuration("sev-es", vcpus=n, vcpu_type=t, kernel=kernel)
             for n, t in ((1, "EPYC-v4"), (3, "EPYC-Milan"))]
    rows.append(Configuration("sev-es", vcpus=2, vcpu_type=None, vmm="ec2", kernel=kernel))
    rows.append(Configuration("sev", kernel=kernel))
    return rows


def _compare(path: Path, configurations: list[Configuration], hashes: KernelHashes | None,
             artefacts: dict[str, str]) -> None:
    measurer = LaunchMeasurer(parse_ovmf(path.read_bytes()), kernel_hashes=hashes)
    ours = list(measurer.measure_many(configurations))
    for result in ours:
        expected = _peer(path, result.configuration, artefacts)
        assert result.measurement.hex() == expected.hex(), result.configuration


@pytest.fixture
def debian_ovmf() -> Path:
    if not DEBIAN_OVMF.is_file():
        pytest.skip(f"{DEBIAN_OVMF} is absent (Debian package ovmf)")
    return DEBIAN_OVMF


def test_debian_ovmf_without_kernel(debian_ovmf: Path) -> None:
    _compare(debian_ovmf, _configurations(kernel=False), None, {})


def test_debian_ovmf_ovmf_hash(debian_ovmf: Path) -> None:
    ovmf = parse_ovmf(debian_ovmf.read_bytes())
    assert snp_ovmf_hash(ovmf) == guest.calc_snp_ovmf_hash(str(debian_ovmf))


def test_debian_ovmf_refuses_a_kernel(debian_ovmf: Path, tmp_path: Path) -> None:
    """Debian's OvmfPkgX64 build has no kernel-hashes area: a typed error, as the peer
    (a RuntimeError) refuses it too."""
    _, hashes = _artefacts(tmp_path)
    measurer = LaunchMeasurer(parse_ovmf(debian_ovmf.read_bytes()), kernel_hashes=hashes)
    for mode in ("snp", "sev-es", "sev"):
        with pytest.raises(MalformedEvidenceError, match="kernel"):
            measurer.measure(Configuration(mode, kernel=True))  # type: ignore[arg-type]


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "no-kernel"])
def test_synthetic_amdsev(tmp_path: Path, kernel: bool) -> None:
    path = tmp_path / "OVMF.fd"
    path.write_bytes(build_ovmf(256 << 10, kernel_hashes=True))
    artefacts, hashes = _artefacts(tmp_path)
    _compare(path, _configurations(kernel), hashes if kernel else None, artefacts)


def test_synthetic_vcpu_sweep_matches_peer_at_the_ends(tmp_path: Path) -> None:
    """A 1–64 sweep, incremental, agrees with the peer wherever it is asked."""
    path = tmp_path / "OVMF.fd"
    path.write_bytes(build_ovmf(64 << 10))
    artefacts, hashes = _artefacts(tmp_path)
    sweep = [Configuration("snp", vcpus=n, kernel=True) for n in range(64, 0, -1)]
    results = list(LaunchMeasurer(parse_ovmf(path.read_bytes()),
                                  kernel_hashes=hashes).measure_many(sweep))
    assert len({r.measurement for r in results}) == 64
    for result in (results[0], results[31], results[-1]):
        assert result.measurement == _peer(path, result.configuration, artefacts)


@pytest.mark.parametrize(("vcpus", "vcpu_type", "vars_size"),
                         [(1, "EPYC-v4", 0x20000), (3, "EPYC-Milan", 0x84000)])
def test_synthetic_svsm(tmp_path: Path, vcpus: int, vcpu_type: str, vars_size: int) -> None:
    """snp:svsm (the note's layout: OVMF on top, the SVSM below OVMF and OVMF_VARS, the
    SVSM's metadata, VMSAs at the SVSM entry point) against the peer's svsm mode."""
    ovmf_path, svsm_path = tmp_path / "OVMF.fd", tmp_path / "svsm.bin"
    ovmf_path.write_bytes(build_ovmf(128 << 10, kernel_hashes=False))
    svsm_path.write_bytes(build_svsm(64 << 10, entry_offset=0x2340))
    ovmf = parse_ovmf(ovmf_path.read_bytes())
    svsm = parse_svsm(svsm_path.read_bytes(), ovmf, vars_size)
    assert svsm.gpa == (1 << 32) - (128 << 10) - vars_size - (64 << 10)
    config = Configuration("snp", vcpus=vcpus, vcpu_type=vcpu_type, svsm=True)
    ours = LaunchMeasurer(ovmf, svsm=svsm).measure(config).measurement
    expected = guest.svsm_calc_launch_digest(vcpus, VCPU_TYPES[vcpu_type], str(ovmf_path),
                                             vars_size, str(svsm_path), False)
    assert ours == expected


def test_benchmark_agrees_with_the_peer_and_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """``veritee bench measure-snp`` checks its sweep against sev-snp-measure before timing
    (here on a 4-configuration sweep, to stay fast) and reports CONTRACT.md §4's shape."""
    from veritee.bench.core import Settings
    from veritee.tee.snp import bench_measure

    monkeypatch.setattr(bench_measure, "SWEEP", (1, 2, 3, 4))
    result = bench_measure.BENCHMARK.run(Settings(seconds=0.05)).to_dict()
    assert result["benchmark"] == "measure-snp"
    assert result["peer"]["name"] == "sev-snp-measure"
    assert result["floor"]["ops_per_s"] > 0 and result["ops_per_s"] > 0
    assert result["sweep_size"] == 4 and result["checked_against_peer"] is True
    assert result["ratio_to_sev_snp_measure"] > 1
