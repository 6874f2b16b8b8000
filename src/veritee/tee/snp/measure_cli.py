"""``veritee measure snp``, ``veritee measure sev-es`` and ``veritee measure sev``: the launch
digests of AMD guests, from their firmware, kernel, initrd and command line (CONTRACT.md §2).

The options are those users know from sev-snp-measure. ``--vcpus``, ``--vcpu-type``,
``--vmm-type`` and ``--guest-features`` take several values (``--vcpus 1-64``, ``--vcpus
1,2,4``, a repeated option): the command measures every combination, sharing the firmware's
part, and prints one line (or JSON object) per configuration.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from veritee.cli.output import ExitCode, error_object, print_json, prose, stderr, stdout
from veritee.errors import MisuseError, VeriteeError

if TYPE_CHECKING:
    from veritee.tee.snp.launch import Configuration, LaunchDigest, LaunchMeasurer, Mode

#: Most configurations one command measures (each costs at least one hash).
MAX_CONFIGURATIONS = 1 << 16
#: Largest kernel or initrd read (QEMU loads them into guest memory).
MAX_ARTEFACT_SIZE = 2 << 30
#: Show a progress bar once a sweep has run this long.
PROGRESS_AFTER_SECONDS = 1.0
_DEFAULT_VCPU_TYPE = "EPYC-v4"

COMMON_HELP = """\
--kernel, --initrd and --append together add the kernel-hashes table of QEMU's measured
direct boot (kernel-hashes=on); give all three (an empty file and an empty string are valid:
QEMU hashes no initrd as empty and no command line as ""). Without --kernel none is added.
--json prints CONTRACT.md's object ({"platform", "measurement", ...} with the configuration
measured), or a list for a sweep; --as-reference-values prints {"REFERENCE_NAME": [...]} for
`veritee admin add-reference-values`. Exit status 2 for a usage error, 1 for firmware that
cannot be measured this way.
"""

SNP_HELP = """\
SEV-SNP launch measurement (MEASUREMENT of the attestation report): the SHA-384 chain of
SNP_LAUNCH_UPDATE over the OVMF pages, its SEV metadata sections (as the VMM adds them:
--vmm-type qemu, ec2 or gce), the kernel-hashes page, and one VMSA per vCPU (the vCPU model's
signature, --vcpu-type or --vcpu-sig, and the guest features). Defaults: 1 vCPU, EPYC-v4,
qemu, guest features 0x1 (host kernels 6.8 and newer; 0x21 for 6.6-6.7). --ovmf-hash starts
from a precomputed OVMF hash (--ovmf is still read for its table); --print-ovmf-hash prints
it. --svsm measures a Coconut SVSM launch (SVSM below OVMF and its variable store:
--vars-size or --vars-file).

""" + COMMON_HELP.replace("REFERENCE_NAME", "snp_launch_measurement")

SEV_ES_HELP = """\
SEV-ES launch digest: SHA-256 over the OVMF image, the kernel-hashes table and one VMSA page
per vCPU (SEV_FEATURES 0), the value LAUNCH_MEASURE's HMAC covers. Defaults: 1 vCPU, EPYC-v4,
qemu.

""" + COMMON_HELP.replace("REFERENCE_NAME", "sev_launch_digest")

SEV_HELP = """\
SEV launch digest: SHA-256 over the OVMF image and the kernel-hashes table, the value
LAUNCH_MEASURE's HMAC covers.

""" + COMMON_HELP.replace("REFERENCE_NAME", "sev_launch_digest")

REFERENCE_NAMES = {"snp": "snp_launch_measurement", "sev-es": "sev_launch_digest",
                   "sev": "sev_launch_digest"}

SNP_APP = typer.Typer(help=prose(SNP_HELP), no_args_is_help=True)
SEV_ES_APP = typer.Typer(help=prose(SEV_ES_HELP), no_args_is_help=True)
SEV_APP = typer.Typer(help=prose(SEV_HELP), no_args_is_help=True)

# -- options -----------------------------------------------------------------------------------

Ovmf = Annotated[Path, typer.Option("--ovmf", help="The OVMF image (OVMF.fd).",
                                    dir_okay=False)]
Kernel = Annotated[Path | None, typer.Option(help="The kernel QEMU boots (-kernel).",
                                             dir_okay=False)]
Initrd = Annotated[Path | None, typer.Option(help="Its initrd (-initrd); with --kernel.",
                                             dir_okay=False)]
Append = Annotated[str | None, typer.Option(metavar="CMDLINE",
                                            help="Its command line (-append); with --kernel.")]
Vcpus = Annotated[list[str] | None, typer.Option(
    "--vcpus", metavar="N", help="vCPU count, or a sweep: 1-64, 1,2,4 (repeatable). "
    "Default 1.")]
VcpuType = Annotated[list[str] | None, typer.Option(
    "--vcpu-type", metavar="MODEL", help="QEMU -cpu model (EPYC, EPYC-v4, EPYC-Rome, "
    "EPYC-Milan, EPYC-Genoa, EPYC-Turin, ...; repeatable). Default EPYC-v4 for qemu.")]
VcpuSig = Annotated[list[str] | None, typer.Option(
    "--vcpu-sig", metavar="HEX", help="vCPU signature, CPUID(1).EAX, instead of a model "
    "(repeatable).")]
VmmType = Annotated[list[str] | None, typer.Option(
    "--vmm-type", metavar="VMM", help="qemu, ec2 or gce (repeatable). Default qemu.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]
AsReference = Annotated[bool, typer.Option(
    "--as-reference-values", help="Print the reference values for admin "
    "add-reference-values.")]


@dataclass
class _Request:
    """What the options ask for, checked, before any file is read."""

    mode: Mode
    ovmf: Path
    json_output: bool
    as_reference_values: bool
    vcpus: list[int] = field(default_factory=lambda: [1])
    vcpus_given: bool = False
    vcpu_models: list[tuple[str | None, int | None]] = field(default_factory=list)
    vmms: list[str] = field(default_factory=lambda: ["qemu"])
    guest_features: list[int] = field(default_factory=lambda: [0x1])
    kernel: Path | None = None
    initrd: Path | None = None
    append: str | None = None
    ovmf_hash: bytes | None = None
    svsm: Path | None = None
    vars_size: int = 0


@SNP_APP.callback(invoke_without_command=True)
def snp(  # noqa: PLR0917 - Typer passes options by keyword
    ovmf: Ovmf,
    ovmf_hash: Annotated[str | None, typer.Option(
        "--ovmf-hash", metavar="HEX", help="The OVMF hash (launch digest after the firmware "
        "pages; 48 bytes hex), instead of hashing the firmware.")] = None,
    print_ovmf_hash: Annotated[bool, typer.Option(
        "--print-ovmf-hash", help="Print the OVMF hash of --ovmf and stop.")] = False,
    vcpus: Vcpus = None,
    vcpu_type: VcpuType = None,
    vcpu_sig: VcpuSig = None,
    vmm_type: VmmType = None,
    guest_features: Annotated[list[str] | None, typer.Option(
        "--guest-features", metavar="HEX", help="VMSA SEV_FEATURES (repeatable). Default "
        "0x1.")] = None,
    kernel: Kernel = None,
    initrd: Initrd = None,
    append: Append = None,
    svsm: Annotated[Path | None, typer.Option(
        help="A Coconut SVSM image: measure an SNP launch of it below OVMF.",
        dir_okay=False)] = None,
    vars_size: Annotated[str | None, typer.Option(
        "--vars-size", metavar="BYTES", help="SVSM mode: the OVMF_VARS size.")] = None,
    vars_file: Annotated[Path | None, typer.Option(
        "--vars-file", help="SVSM mode: the OVMF_VARS file (its size is used).",
        dir_okay=False)] = None,
    json_output: Json = False,
    as_reference_values: AsReference = False,
) -> None:
    request = _Request("snp", ovmf, json_output, as_reference_values)
    _vcpu_options(request, vcpus, vcpu_type, vcpu_sig, vmm_type)
    if guest_features:
        request.guest_features = [_hex(value, "--guest-features", 64, request)
                                  for value in guest_features]
    if ovmf_hash is not None:
        request.ovmf_hash = _ovmf_hash(ovmf_hash, request)
    _kernel_options(request, kernel, initrd, append)
    _svsm_options(request, svsm, vars_size, vars_file, guest_features)
    if print_ovmf_hash:
        _print_ovmf_hash(request)
        return
    _run(request)


@SEV_ES_APP.callback(invoke_without_command=True)
def sev_es(  # noqa: PLR0917 - Typer passes options by keyword
    ovmf: Ovmf,
    vcpus: Vcpus = None,
    vcpu_type: VcpuType = None,
    vcpu_sig: VcpuSig = None,
    vmm_type: VmmType = None,
    kernel: Kernel = None,
    initrd: Initrd = None,
    append: Append = None,
    json_output: Json = False,
    as_reference_values: AsReference = False,
) -> None:
    request = _Request("sev-es", ovmf, json_output, as_reference_values)
    _vcpu_options(request, vcpus, vcpu_type, vcpu_sig, vmm_type)
    _kernel_options(request, kernel, initrd, append)
    _run(request)


@SEV_APP.callback(invoke_without_command=True)
def sev(  # noqa: PLR0917 - Typer passes options by keyword
    ovmf: Ovmf,
    kernel: Kernel = None,
    initrd: Initrd = None,
    append: Append = None,
    json_output: Json = False,
    as_reference_values: AsReference = False,
) -> None:
    request = _Request("sev", ovmf, json_output, as_reference_values)
    _kernel_options(request, kernel, initrd, append)
    _run(request)


# -- checking the options ----------------------------------------------------------------------


def _vcpu_options(request: _Request, vcpus: list[str] | None, types: list[str] | None,
                  sigs: list[str] | None, vmms: list[str] | None) -> None:
    from veritee.tee.snp.vmsa import VCPU_TYPES, VMMS  # noqa: PLC0415 - on use only

    if vcpus:
        request.vcpus = _vcpu_counts(vcpus, request)
        request.vcpus_given = True
    for name in types or ():
        if name not in VCPU_TYPES:
            _usage(f"--vcpu-type {name!r} is unknown; known: {', '.join(VCPU_TYPES)} (or give "
                   "--vcpu-sig HEX)", request)
        request.vcpu_models.append((name, None))
    request.vcpu_models += [(None, _hex(value, "--vcpu-sig", 32, request)) for value in sigs or ()]
    if vmms:
        for vmm in vmms:
            if vmm not in VMMS:
                _usage(f"--vmm-type {vmm!r} is unknown; known: {', '.join(VMMS)}", request)
        request.vmms = list(dict.fromkeys(vmms))


def _vcpu_counts(values: Sequence[str], request: _Request) -> list[int]:
    """``N``, ``A-B`` and comma-separated lists of them, in order, without repeats."""
    from veritee.tee.snp.launch import MAX_VCPUS  # noqa: PLC0415 - on use only

    counts: dict[int, None] = {}
    for part in ",".join(values).split(","):
        low, dash, high = part.strip().partition("-")
        try:
            first = int(low)
            last = int(high) if dash else first
        except ValueError:
            _usage(f"--vcpus {part.strip()!r} is not a count or a range like 1-64", request)
        if not 1 <= first <= last <= MAX_VCPUS:
            _usage(f"--vcpus {part.strip()!r}: counts go from 1 to {MAX_VCPUS}, low to high",
                   request)
        counts.update(dict.fromkeys(range(first, last + 1)))
    return list(counts)


def _hex(value: str, option: str, bits: int, request: _Request | None = None) -> int:
    text = value.strip().lower().removeprefix("0x")
    try:
        number = int(text, 16)
    except ValueError:
        _usage(f"{option} {value!r} is not a hexadecimal number", request)
    if number >= 1 << bits:
        _usage(f"{option} {value} does not fit {bits} bits", request)
    return number


def _ovmf_hash(value: str, request: _Request) -> bytes:
    try:
        digest = bytes.fromhex(value.strip().lower().removeprefix("0x"))
    except ValueError:
        _usage(f"--ovmf-hash {value!r} is not hexadecimal", request)
    if len(digest) != 48:
        _usage(f"--ovmf-hash is {len(digest)} bytes; an OVMF hash is 48 (96 hex digits)",
               request)
    return digest


def _kernel_options(request: _Request, kernel: Path | None, initrd: Path | None,
                    append: str | None) -> None:
    given = [name for name, value in (("--kernel", kernel), ("--initrd", initrd),
                                      ("--append", append)) if value is not None]
    if given and len(given) < 3:
        missing = [n for n in ("--kernel", "--initrd", "--append") if n not in given]
        _usage(f"{' and '.join(given)} without {' and '.join(missing)}: the kernel-hashes table "
               "covers all three; give each (an empty file such as /dev/null for no initrd, "
               "--append '' for no command line)", request)
    request.kernel, request.initrd, request.append = kernel, initrd, append


def _svsm_options(request: _Request, svsm: Path | None, vars_size: str | None,
                  vars_file: Path | None, guest_features: list[str] | None) -> None:
    if svsm is None:
        if vars_size is not None or vars_file is not None:
            _usage("--vars-size and --vars-file place an SVSM image: give --svsm too", request)
        return
    conflicts = [name for name, present in (
        ("--kernel", request.kernel is not None), ("--guest-features", bool(guest_features)),
        ("--vmm-type other than qemu", request.vmms != ["qemu"])) if present]
    if conflicts:
        _usage(f"--svsm does not take {', '.join(conflicts)} (its VMSAs run with SEV_FEATURES "
               "0x1 under QEMU, and OVMF boots the kernel later)", request)
    if (vars_size is None) == (vars_file is None):
        _usage("--svsm needs exactly one of --vars-size and --vars-file (the OVMF_VARS "
               "store between OVMF and the SVSM)", request)
    if vars_file is not None:
        try:
            request.vars_size = vars_file.stat().st_size
        except OSError as exc:
            _usage(f"cannot read the OVMF_VARS file {vars_file}: {exc.strerror or exc}", request)
    else:
        try:
            request.vars_size = int(str(vars_size), 0)
        except ValueError:
            _usage(f"--vars-size {vars_size!r} is not a number of bytes", request)
    request.svsm = svsm


# -- measuring ---------------------------------------------------------------------------------


def _read(path: Path, what: str, request: _Request, limit: int) -> bytes:
    """The file's bytes, read up to ``limit`` (so /dev/zero cannot hang the command)."""
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except OSError as exc:
        _usage(f"cannot read the {what} {path}: {exc.strerror or exc}", request)
    if len(data) > limit:
        _usage(f"the {what} {path} is over {limit >> 20} MiB", request)
    return data


def _measurer(request: _Request) -> LaunchMeasurer:
    from veritee.tee.snp.launch import KernelHashes, LaunchMeasurer, parse_svsm  # noqa: PLC0415
    from veritee.tee.snp.ovmf import MAX_IMAGE_SIZE, parse_ovmf  # noqa: PLC0415 - on use only

    image = _read(request.ovmf, "OVMF image", request, MAX_IMAGE_SIZE)
    hashes = None
    if request.kernel is not None and request.initrd is not None:
        kernel = _read(request.kernel, "kernel", request, MAX_ARTEFACT_SIZE)
        initrd = _read(request.initrd, "initrd", request, MAX_ARTEFACT_SIZE)
        hashes = KernelHashes.of(kernel, initrd, request.append or "")
    svsm_image = (_read(request.svsm, "SVSM image", request, MAX_IMAGE_SIZE) if request.svsm
                  else None)
    with _rejecting(request, request.ovmf):
        ovmf = parse_ovmf(image)
        svsm = parse_svsm(svsm_image, ovmf, request.vars_size) if svsm_image else None
    return LaunchMeasurer(ovmf, kernel_hashes=hashes, svsm=svsm, ovmf_hash=request.ovmf_hash)


def _configurations(request: _Request) -> list[Configuration]:
    from veritee.tee.snp.launch import Configuration  # noqa: PLC0415 - on use only

    kernel = request.kernel is not None
    svsm = request.svsm is not None
    if request.mode == "sev":
        return [Configuration("sev", kernel=kernel)]
    configurations = []
    for vmm in request.vmms:
        models = request.vcpu_models or [(_DEFAULT_VCPU_TYPE if vmm == "qemu" else None, None)]
        for (name, sig), features, vcpus in itertools.product(
                models, request.guest_features, request.vcpus):
            configurations.append(Configuration(
                request.mode, vcpus=vcpus, vcpu_type=name, vcpu_sig=sig,
                vmm=vmm, guest_features=features, kernel=kernel, svsm=svsm))  # type: ignore[arg-type]
    return configurations


def _run(request: _Request) -> None:
    count = (len(request.vmms) * max(1, len(request.vcpu_models)) * len(request.guest_features)
             * len(request.vcpus))
    if count > MAX_CONFIGURATIONS:
        _usage(f"the sweep has {count} configurations, over {MAX_CONFIGURATIONS}", request)
    measurer = _measurer(request)
    try:
        configurations = _configurations(request)
    except MisuseError as exc:
        _usage(exc.detail, request)
    with _rejecting(request, request.ovmf), _progress(len(configurations)) as advance:
        results = list(measurer.measure_many(configurations, progress=advance))
    _print(request, results, sweep=len(results) > 1)


def _print_ovmf_hash(request: _Request) -> None:
    measurer = _measurer(request)
    with _rejecting(request, request.ovmf):
        digest = measurer.snp_ovmf_hash().hex()
    if request.json_output or request.as_reference_values:
        print_json({"platform": "snp", "ovmf_hash": digest})
    else:
        stdout.print(f"OVMF hash: {digest}", markup=False, soft_wrap=True)


def _print(request: _Request, results: list[LaunchDigest], *, sweep: bool) -> None:
    if request.as_reference_values:
        values = list(dict.fromkeys(r.measurement.hex() for r in results))
        print_json({REFERENCE_NAMES[request.mode]: values})
    elif request.json_output:
        documents = [r.to_json() for r in results]
        print_json(documents if sweep else documents[0])
    else:
        for result in results:
            stdout.print(f"{_describe(result)}: {result.measurement.hex()}", markup=False,
                         soft_wrap=True)


def _describe(result: LaunchDigest) -> str:
    config = result.configuration
    title = {"snp": "SNP launch measurement", "sev-es": "SEV-ES launch digest",
             "sev": "SEV launch digest"}[config.mode]
    parts = [] if config.mode == "sev" else [
        f"{config.vcpus} vCPU{'s' if config.vcpus > 1 else ''}",
        config.vcpu_type or f"sig {config.signature:#x}", config.vmm]
    if config.mode == "snp":
        parts.append(f"features {config.guest_features:#x}")
    parts += ["kernel hashes" if config.kernel else "no kernel hashes"]
    if config.svsm:
        parts.append("SVSM")
    return f"{title} ({', '.join(parts)})"


# -- errors and progress -----------------------------------------------------------------------


@contextmanager
def _rejecting(request: _Request, path: Path) -> Iterator[None]:
    """Firmware that cannot be measured: its message on stderr (and as JSON), exit 1."""
    try:
        yield
    except MisuseError as exc:
        _usage(exc.detail, request)
    except VeriteeError as exc:
        stderr.print(f"{path}: {exc.detail}", markup=False, soft_wrap=True)
        if request.json_output or request.as_reference_values:
            print_json({"status": "error", "error": {"type": type(exc).__name__,
                                                     "detail": exc.detail}})
        raise typer.Exit(ExitCode.REJECTED) from exc


@contextmanager
def _progress(total: int) -> Iterator[Callable[[int, int], None]]:
    """A progress callback that shows a bar on stderr (a terminal) once the sweep has run
    for :data:`PROGRESS_AFTER_SECONDS`; never on stdout."""
    start = time.monotonic()
    state: dict[str, Any] = {}

    def advance(done: int, _total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            if time.monotonic() - start < PROGRESS_AFTER_SECONDS or not sys.stderr.isatty():
                return
            from rich.progress import Progress  # noqa: PLC0415 - only for long sweeps

            bar = state["bar"] = Progress(console=stderr, transient=True)
            bar.start()
            state["task"] = bar.add_task("measuring", total=total)
        bar.update(state["task"], completed=done)

    try:
        yield advance
    finally:
        if "bar" in state:
            state["bar"].stop()


def _usage(line: str, request: _Request | None = None) -> NoReturn:
    stderr.print(line, markup=False, soft_wrap=True)
    if request is not None and (request.json_output or request.as_reference_values):
        print_json(error_object("usage", line))
    raise typer.Exit(ExitCode.USAGE)


__all__ = ["REFERENCE_NAMES", "SEV_APP", "SEV_ES_APP", "SNP_APP"]
