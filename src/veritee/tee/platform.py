"""The platform descriptor: everything the rest of veritee needs to know about one TEE.

Each room ``veritee/tee/<room>/__init__.py`` exports ``PLATFORM`` (one :class:`Platform`) or
``PLATFORMS`` (several, when one room serves several TEE names, as Intel's DCAP room
serves its two). The CLI, the broker, the demo and the benchmarks loop over descriptors or look one
up by TEE name (:mod:`veritee.tee`); no code outside a TEE's rooms switches on its name.

Code is named by import strings (``"module:attribute"``), resolved only when used, so that
reading the registry loads nothing heavy: ``veritee verify`` never imports an emulator, and
``veritee serve`` never imports a benchmark.

Standard library and :mod:`veritee.binding` only (the descriptor is data).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from veritee.binding import HashAlgorithm, ReportDataRule

Role = Literal["cpu", "device"]


@dataclass(frozen=True, slots=True)
class InitDataRule:
    """Which field of the hardware evidence carries the init-data digest, and how the digest
    is fitted to it (service-anchors.md §1.3: a longer digest keeps its first ``size`` bytes,
    a shorter one is zero-padded at the end)."""

    claim: str
    """The claim holding the field, as lowercase hex: a key of the verifier's claims, or a
    dotted path into nested claims (``vtpm.pcrs.sha256.8``)."""
    size: int
    """The field's size in bytes."""
    extended: bool = False
    """The field is a SHA-256 measurement register (``size`` 32) that the fitted digest was
    extended into once from zero, so it holds ``SHA-256(0^32 || digest)`` (a vTPM's PCR 8,
    Trustee's rule); False: the field holds the fitted digest itself."""

    def fit(self, digest: bytes) -> bytes:
        """What the field must hold for ``digest``."""
        fitted = digest[: self.size] + bytes(max(0, self.size - len(digest)))
        return hashlib.sha256(bytes(self.size) + fitted).digest() if self.extended else fitted


@dataclass(frozen=True, slots=True)
class CorpusCase:
    """A real sample of the shared corpus that the demo verifies offline."""

    evidence: str
    """Path below the platform's corpus folder (``corpus/<vendor>/``)."""
    endorsements: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Platform:
    """One TEE, as the rest of veritee sees it. Strings named ``module:attribute`` are
    import strings; :meth:`load` resolves one."""

    tee: str
    """The TEE name: the KBS protocol's ``tee`` value and ``veritee verify --tee``."""
    room: str
    """The folder under ``veritee/tee/`` that holds this platform's code."""
    title: str
    """A human name (``AMD SEV-SNP``)."""
    verifier: str
    """``module:class`` of the :class:`~veritee.tee.Verifier`; constructed without arguments
    it trusts the pinned vendor roots."""
    report_data: ReportDataRule
    """How the KBS runtime-data digest sits in the evidence's report-data field."""
    hash_algorithm: HashAlgorithm = "sha384"
    """The hash the broker selects for the runtime-data digest unless the client asks
    otherwise."""
    role: Role = "cpu"
    """``cpu`` (primary evidence; Trustee's ``default_cpu`` policy applies) or ``device``
    (additional evidence beside a CPU, such as a GPU)."""
    evidence_help: str = ""
    """One sentence naming the wire forms ``veritee verify`` reads for this TEE (help text)."""
    init_data: InitDataRule | None = None
    """Where the init-data digest is bound; None: the TEE has no such field."""

    # -- appraisal --
    policy: str | None = None
    """File name of the default attestation policy under ``veritee/appraisal/policies``;
    None: the fail-closed generic policy."""
    policy_native: str | None = None
    """``module:function`` evaluating the default policy natively (same outputs as its Rego,
    on the inputs :func:`veritee.appraisal.native.acceptable` admits)."""
    policy_input: str | None = None
    """``module:function`` adding Trustee's claim names to the policy input (claims → extra
    claims; an alias never replaces a claim)."""
    reference_importers: tuple[str, ...] = ()
    """``module:function`` of parsers turning vendor artefacts into reference values."""

    # -- the command line --
    summary: tuple[str, ...] = ()
    """The claims worth a line in ``veritee verify``'s table, in display order (empty: every
    scalar claim)."""
    summary_formats: str | None = None
    """``module:attribute``: a mapping claim name → ``(value, claims) -> str`` for the table."""
    collateral: str | None = None
    """``module:function`` (evidence) → the vendor requests verifying it needs, for
    ``veritee collateral fetch``."""
    measure: str | None = None
    """``module:attribute`` of a Typer app: ``veritee measure <tee>``."""

    # -- the guest side --
    collector: str | None = None
    """``module:class`` collecting evidence from this machine's hardware (``veritee attest``)."""
    injected_secret: str | None = None
    """``module:function`` ``(resource path, folder or None) -> bytes``: a secret the host
    injected before the guest ran, read inside the guest (``veritee attest`` asks no
    broker); the folder overrides where the guest's kernel exposes such secrets."""

    # -- the broker --
    challenge: str | None = None
    """``module:function`` ``(auth extra-params, nonce bytes, key) -> dict`` adding to the
    challenge's ``extra-params`` (e.g. the SVSM vTPM's credential to activate, IBM SE's
    attestation request); ``key`` is the platform's own key derived from the KEK (the same on
    every replica), and the verifier gets it through ``with_challenge_key(key)``. None: the
    challenge is a random nonce."""
    challenge_claim: str | None = None
    """With ``challenge``: the claim (a dotted path) where the verified evidence names the
    challenge nonce whose hook data it answers; the broker requires this session's nonce
    there (an answer to another session's challenge is refused). None: no such claim."""
    routes: str | None = None
    """``module:function`` ``(app, broker, run)`` adding routes of the TEE's own to the
    broker app (e.g. a host-side pre-attestation flow); ``run`` calls a blocking function
    off the event loop."""
    guest_attests: bool = True
    """False: the guest cannot produce evidence itself (its host relays a launch
    measurement through the TEE's own ``routes`` before it runs); ``/kbs/v0/auth`` refuses
    the TEE, naming that flow."""
    host: str | None = None
    """``module:attribute`` of a Typer app whose commands join ``veritee host`` (the
    host-side helpers of a pre-attestation flow)."""

    # -- testing without hardware --
    emulated_roots: str | None = None
    """``module:function`` returning the emulated trust anchors (loaded only when an operator
    trusts emulated evidence)."""
    emulator: str | None = None
    """``module:attribute`` of an :class:`veritee.testing.Emulator` (``veritee emulate``)."""
    emulated_collector: str | None = None
    """``module:class`` of a collector backed by the emulator (``veritee attest --emulate``)."""
    fake_service: str | None = None
    """``module:class`` of a fake vendor service (a :class:`~veritee.collateral.Fetcher`)."""
    demo: str | None = None
    """``module:attribute`` of the demo's guests and samples (:class:`DemoSpec` shape)."""
    benchmarks: tuple[tuple[str, str], ...] = ()
    """``(name, "module:attribute")`` of the platform's benchmarks (``veritee bench NAME``)."""
    broker_guest: str | None = None
    """``module:function`` returning ``(guest, workload)`` for ``veritee bench broker``."""
    reuses: tuple[str, ...] = ()
    """Rooms a composite platform is built from (a vTPM beside a CPU TEE names the CPU's room
    and the vTPM room)."""

    def load(self, slot: str) -> Any:
        """Resolve the import string in ``slot`` (None when the slot is empty)."""
        target = getattr(self, slot)
        return None if target is None else load(target)

    def import_strings(self) -> Iterator[tuple[str, str]]:
        """``(slot, "module:attribute")`` for every filled import-string slot."""
        for slot in IMPORT_SLOTS:
            value = getattr(self, slot)
            if isinstance(value, str):
                yield slot, value
        for slot in ("reference_importers",):
            for value in getattr(self, slot):
                yield slot, value
        for name, value in self.benchmarks:
            yield f"benchmarks[{name}]", value


#: The slots that hold one import string.
IMPORT_SLOTS: Final = ("verifier", "policy_native", "policy_input", "summary_formats",
                       "collateral", "measure", "collector", "injected_secret",
                       "challenge", "routes", "host",
                       "emulated_roots", "emulator", "emulated_collector", "fake_service",
                       "demo", "broker_guest")


@functools.cache
def load(target: str) -> Any:
    """The attribute named by ``"module:attribute"`` (importing the module once; the broker
    resolves descriptor slots on every appraisal)."""
    module, sep, name = target.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"{target!r} is not a 'module:attribute' import string")
    value: Any = importlib.import_module(module)
    for part in name.split("."):
        value = getattr(value, part)
    return value


#: A function from the report-data bytes to the primary evidence (JSON-ready), as the KBS
#: client sends it.
Collector = Callable[[bytes], Any]


@dataclass(frozen=True, slots=True)
class DemoGuest:
    """One guest the demo attests through its broker, and the outcome it must get."""

    name: str
    collector: Collector | None
    """None: the guest cannot attest itself (``launch`` does)."""
    expect: Literal["released", "refused"]
    replay: bool = False
    """Bind the evidence to an earlier challenge (a replay the broker must refuse)."""
    because: str = ""
    """Text a refusal's reason must contain (the error class, the failed check); empty: any
    refusal is as expected."""
    launch: Callable[[str, str], bytes] | None = None
    """For a guest its host launches (``guest_attests=False``): ``(broker URL, resource
    path) -> the secret the guest read back``, raising a VeriteeError when refused."""


class DemoSpec(Protocol):
    """What a platform contributes to ``veritee demo``."""

    corpus_vendor: str
    """The folder of the shared corpus holding this platform's real samples."""
    corpus: tuple[CorpusCase, ...]

    def reference_values(self) -> dict[str, Any]:
        """Reference values (as the admin API takes them) that make the genuine guests pass."""
        ...

    def guests(self) -> Iterator[DemoGuest]:
        """Genuine guests that get the secret and refused ones."""
        ...

    # Optional: ``collateral() -> tuple[(file name, bytes), ...]``, files the demo's broker
    # reads as its collateral (the demo runs offline), for platforms whose evidence does not
    # carry all it needs.


__all__ = ["IMPORT_SLOTS", "Collector", "CorpusCase", "DemoGuest", "DemoSpec", "InitDataRule",
           "Platform", "Role", "load"]
