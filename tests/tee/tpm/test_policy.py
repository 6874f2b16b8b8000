"""The default TPM policy (appraisal/policies/tpm.rego) through the policy engine, on claims
shaped as CONTRACT.md §1.1 gives them and the room's policy-input hook
(veritee.tee.tpm.policy): it affirms a boot its reference values vouch for, fails closed
without them, explains each refusal (a changed PCR, a wrong kernel or command line, Secure
Boot off, events the quote does not vouch for), and init-data is bound through PCR 8.

The policy file and the hook are loaded directly (not through the platform registry), so these
tests run before the room's descriptor exists.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from veritee import binding
from veritee.appraisal import PolicyEngine, shipped_policy
from veritee.binding import ReportDataRule
from veritee.broker.service import _bind_init_data
from veritee.errors import InitDataMismatchError
from veritee.tee.platform import Platform
from veritee.tee.tpm import policy as tpm_policy
from veritee.tee.tpm import replay

AFFIRMING = {"instance-identity": 2, "configuration": 2, "executables": 3, "hardware": 2}
POLICY = shipped_policy("tpm.rego")

# --- a boot, its log and its claims ---------------------------------------------------------------

ALG_ID = {"sha1": 0x0004, "sha256": 0x000B}
EFI_GLOBAL = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
KERNEL, INITRD = b"kernel image", b"initrd image"
CMDLINE = "/vmlinuz root=/dev/vda1 ro"


@dataclass(frozen=True)
class Ev:
    index: int
    type: int
    data: bytes
    measured: bytes | None = None
    #: What the SHA-1 digest covers, when the log lies in that bank.
    sha1: bytes | None = None

    def digest(self, alg: str) -> bytes:
        if alg == "sha1" and self.sha1 is not None:
            return hashlib.sha1(self.sha1).digest()
        return hashlib.new(alg, self.data if self.measured is None else self.measured).digest()


def _log(events: Sequence[Ev], algs: Sequence[str] = ("sha1", "sha256")) -> bytes:
    body = b"Spec ID Event03\0" + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(algs))
    body += b"".join(struct.pack("<HH", ALG_ID[a], hashlib.new(a).digest_size) for a in algs)
    out = struct.pack("<II20sI", 0, 3, bytes(20), len(body) + 1) + body + b"\0"
    for ev in events:
        out += struct.pack("<III", ev.index, ev.type, len(algs))
        out += b"".join(struct.pack("<H", ALG_ID[a]) + ev.digest(a) for a in algs)
        out += struct.pack("<I", len(ev.data)) + ev.data
    return out


def _secure_boot(value: bytes) -> Ev:
    name = "SecureBoot".encode("utf-16-le")
    return Ev(7, 0x80000001, EFI_GLOBAL.bytes_le + struct.pack("<QQ", 10, len(value)) + name
              + value)


def boot(*, secure: bytes = b"\x01", cmdline_text: str = CMDLINE, grub: bool = True) -> list[Ev]:
    events = [Ev(0, 0x80000008, struct.pack("<QQ", 0xFFC00000, 0x400000), measured=b"firmware"),
              _secure_boot(secure), Ev(7, 4, bytes(4)),
              Ev(4, 0x80000003, struct.pack("<QQQQ", 0, 0, 0, 0), measured=b"shim")]
    if grub:
        events += [Ev(9, 13, b"/vmlinuz\0", measured=KERNEL),
                   Ev(8, 13, f"kernel_cmdline: {cmdline_text}\0".encode(),
                      measured=CMDLINE.encode()),
                   Ev(9, 13, b"/initrd.img\0", measured=INITRD)]
    return events


def claims_of(events: Sequence[Ev], *, quote: Sequence[int] = range(24),
              pcr8: bytes | None = None, **extra: Any) -> dict[str, Any]:
    """Claims as the verifier gives them: the SHA-256 bank quoted (the PCRs in ``quote``; PCR 8
    replaced by ``pcr8`` when given), the log replayed, its events."""
    log = _log(events)
    replayed = replay.replay_pcrs(log)
    sha256 = {i: replayed["sha256"].get(i, bytes(32)) for i in quote}
    if pcr8 is not None:
        sha256[8] = pcr8
    claims: dict[str, Any] = {
        "extra_data": "6e6f6e6365", "pcr_select": {"sha256": sorted(sha256)},
        "pcrs": {"sha256": {str(i): v.hex() for i, v in sorted(sha256.items())}},
        "eventlog_pcrs": {bank: {str(i): v.hex() for i, v in sorted(values.items())}
                          for bank, values in replayed.items()},
        "event_log": {"events": replay.events_json(log)},
    }
    secure = replay.secure_boot(log)
    if secure is not None:
        claims["secure_boot"] = secure
    return {**claims, **extra}


def pcr(claims: dict[str, Any], index: int) -> str:
    """The quoted SHA-256 PCR (all zeros when not quoted)."""
    value: str = claims["pcrs"]["sha256"].get(str(index), "00" * 32)
    return value


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def refs_for(claims: dict[str, Any]) -> dict[str, list[Any]]:
    return {"tpm_sha256_pcr0": [pcr(claims, 0)], "tpm_sha256_pcr4": [pcr(claims, 4).upper()],
            "tpm_sha256_pcr7": [pcr(claims, 7)], "tpm_kernel_digest": [sha256(KERNEL)],
            "tpm_initrd_digest": [sha256(INITRD)], "tpm_kernel_cmdline": [CMDLINE]}


def appraise(claims: dict[str, Any], refs: dict[str, list[Any]], *, native: bool = True,
             init_data: dict[str, Any] | None = None) -> Any:
    engine = PolicyEngine(native=native, natives={})
    return engine.appraise(tee="tpm", claims=claims, policy_id="default_cpu", policy=POLICY,
                           reference_values=refs, init_data=init_data,
                           aliases=tpm_policy.policy_input, init_data_claim="init_data")


def vector(result: Any) -> dict[str, int]:
    return {name: result.trust_vector[name] for name in AFFIRMING}


def failed(result: Any) -> dict[str, str]:
    return {check.name: check.detail for check in result.failed()}


# --- affirming ------------------------------------------------------------------------------------


@pytest.mark.parametrize("native", [True, False], ids=["planned", "regorus"])
def test_a_boot_its_reference_values_vouch_for_is_affirmed(native: bool) -> None:
    claims = claims_of(boot())
    result = appraise(claims, refs_for(claims), native=native)
    assert vector(result) == AFFIRMING and result.status == "affirming"
    assert not result.failed()
    names = {check.name for check in result.checks}
    assert {"tpm.sha256.pcr0", "tpm.sha256.pcr4", "tpm.sha256.pcr7", "tpm.kernel",
            "tpm.initrd", "tpm.kernel_cmdline", "tpm.secure_boot"} <= names


def test_the_hook_gives_trustees_names_and_the_bound_events() -> None:
    claims = claims_of(boot(), quote=[0, 4, 7, 8])
    aliases = tpm_policy.policy_input(claims)
    assert aliases["pcr07"] == pcr(claims, 7) and "pcr09" not in aliases
    assert aliases["init_data"] == pcr(claims, 8)
    assert aliases["report_data"] == "6e6f6e6365"
    assert aliases["bound_pcrs"] == {"sha256": [0, 4, 7, 8]}
    assert {e["index"] for e in aliases["uefi_event_logs"]} == {0, 4, 7, 8}
    assert aliases["secure_boot"] is True and aliases["kernel_cmdline"] == CMDLINE


def test_trustees_reference_names_are_sha256_pcrs() -> None:
    claims = claims_of(boot())
    refs = {**refs_for(claims), "tpm_pcr4": [pcr(claims, 4)], "tpm_pcr14": ["00" * 32]}
    assert vector(appraise(claims, refs)) == AFFIRMING
    refused = appraise(claims, {**refs, "tpm_pcr9": ["11" * 32]})
    assert "tpm.sha256.pcr9" in failed(refused)


TRUSTEE_STYLE = """package policy

import rego.v1

default executables := 33

default hardware := 97

executables := 3 if {
	lower(input.tpm.pcr04) in query_reference_value("tpm_pcr4")
	input.tpm.pcr07 in query_reference_value("tpm_pcr7")
}

hardware := 2 if input.tpm

trust_claims := {"executables": executables, "hardware": hardware}
"""


def test_a_trustee_style_policy_reads_trustees_tpm_names() -> None:
    claims = claims_of(boot())
    engine = PolicyEngine(natives={})
    refs = {"tpm_pcr4": [pcr(claims, 4)], "tpm_pcr7": [pcr(claims, 7)]}
    result = engine.appraise(tee="tpm", claims=claims, policy_id="trustee", policy=TRUSTEE_STYLE,
                             reference_values=refs, aliases=tpm_policy.policy_input)
    assert result.trust_vector["executables"] == 3 and result.trust_vector["hardware"] == 2


def test_a_digest_in_a_bank_the_quote_does_not_vouch_for_is_not_read() -> None:
    events = boot()
    events[4] = Ev(9, 13, b"/vmlinuz\0", measured=b"another kernel", sha1=KERNEL)
    claims = claims_of(events)
    assert "sha1" not in tpm_policy.policy_input(claims)["bound_pcrs"]
    refs = {**refs_for(claims), "tpm_kernel_digest": [hashlib.sha1(KERNEL).hexdigest()]}
    assert "tpm.kernel" in failed(appraise(claims, refs))
    refs["tpm_kernel_digest"] = [sha256(b"another kernel")]
    assert vector(appraise(claims, refs)) == AFFIRMING


def test_an_event_that_extends_nothing_is_not_read() -> None:
    events = [*boot(), Ev(9, 3, b"/vmlinuz\0", measured=b"good kernel")]
    claims = claims_of(events)
    refs = {**refs_for(claims), "tpm_kernel_digest": [sha256(b"good kernel")]}
    assert "tpm.kernel" in failed(appraise(claims, refs))


def test_secure_boot_off_passes_when_allowed() -> None:
    claims = claims_of(boot(secure=b"\x00"))
    refs = {**refs_for(claims), "tpm_allow_secure_boot_off": [True]}
    assert vector(appraise(claims, refs)) == AFFIRMING


# --- refusals, each explained ---------------------------------------------------------------------

@dataclass(frozen=True)
class Refusal:
    """A refused boot: its claims, the reference values, the check that fails and what its
    explanation says, and the trust claims that show it."""

    name: str
    claims: Callable[[], dict[str, Any]]
    refs: Callable[[dict[str, Any]], dict[str, Any]]
    check: str
    says: str
    vector: dict[str, int]


REFUSALS = [Refusal(*case) for case in [
    ("changed_pcr", lambda: claims_of(boot()),
     lambda c: {**refs_for(c), "tpm_sha256_pcr7": ["ab" * 32]},
     "tpm.sha256.pcr7", "is not a reference value (tpm_sha256_pcr7", {"executables": 33}),
    ("pcr_not_quoted", lambda: claims_of(boot()),
     lambda c: {**refs_for(c), "tpm_sha1_pcr0": ["00" * 20]},
     "tpm.sha1.pcr0", "pcrs.sha1.0 is absent", {"executables": 33}),
    ("wrong_kernel", lambda: claims_of(boot()),
     lambda c: {**refs_for(c), "tpm_kernel_digest": [sha256(b"another kernel")]},
     "tpm.kernel", "no event of PCR 4 or 9 that the quote vouches for", {"executables": 33}),
    ("wrong_initrd", lambda: claims_of(boot()),
     lambda c: {**refs_for(c), "tpm_initrd_digest": [sha256(b"another initrd")]},
     "tpm.initrd", "tpm_initrd_digest", {"executables": 33}),
    ("wrong_cmdline", lambda: claims_of(boot()),
     lambda c: {**refs_for(c), "tpm_kernel_cmdline": ["/vmlinuz init=/bin/sh"]},
     "tpm.kernel_cmdline", "is not a reference value", {"executables": 33}),
    ("forged_cmdline_text", lambda: claims_of(boot(cmdline_text="/vmlinuz init=/bin/sh")),
     refs_for, "tpm.kernel_cmdline", "kernel_cmdline is absent", {"executables": 33}),
    ("kernel_pcr_not_quoted", lambda: claims_of(boot(), quote=[0, 4, 7, 8]),
     refs_for, "tpm.kernel", "no event of PCR 4 or 9", {"executables": 33}),
    ("secure_boot_off", lambda: claims_of(boot(secure=b"\x00")), refs_for,
     "tpm.secure_boot", "secure_boot is false, expected true", {"configuration": 36}),
    ("secure_boot_pcr_not_quoted", lambda: claims_of(boot(), quote=[0, 4, 8, 9]),
     lambda c: {k: v for k, v in refs_for(c).items() if k != "tpm_sha256_pcr7"},
     "tpm.secure_boot", "PCR 7 is not in bound_pcrs", {"configuration": 36}),
    ("no_reference_values", lambda: claims_of(boot()), lambda c: {},
     "tpm.pcrs", "at least one reference value tpm_<bank>_pcr<index>", {"executables": 33}),
    ("only_event_references", lambda: claims_of(boot()),
     lambda c: {"tpm_kernel_digest": [sha256(KERNEL)]},
     "tpm.pcrs", "must vouch for the boot", {"executables": 33}),
    ("emulated", lambda: claims_of(boot(), emulated=True), refs_for,
     "tpm.emulated", "allow_emulated", {"hardware": 96, "instance-identity": 96}),
]]


@pytest.mark.parametrize("case", REFUSALS, ids=[case.name for case in REFUSALS])
def test_the_default_policy_fails_closed_and_says_why(case: Refusal) -> None:
    built = case.claims()
    result = appraise(built, case.refs(built))
    assert result.status != "affirming"
    explained = failed(result)
    assert case.check in explained, explained
    assert case.says in explained[case.check]
    assert {k: result.trust_vector[k] for k in case.vector} == case.vector


def test_emulated_evidence_passes_when_allowed() -> None:
    claims = claims_of(boot(), emulated=True)
    assert vector(appraise(claims, {**refs_for(claims), "allow_emulated": [True]})) == AFFIRMING


# --- init-data through PCR 8 ---------------------------------------------------------------------

INIT_DATA = 'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n"policy.rego" = "package x"\n'
TPM = Platform(tee="tpm", room="tpm", title="TPM 2.0", verifier="veritee.tee.tpm:Verifier",
               report_data=ReportDataRule(64, "pad"), init_data=tpm_policy.INIT_DATA)


def _init_data(body: str = INIT_DATA) -> binding.InitData:
    return binding.parse_init_data("toml", body)


def test_pcr8_is_the_init_data_digest_extended_once_from_zero() -> None:
    digest = _init_data().digest
    expected = hashlib.sha256(bytes(32) + digest).digest()
    assert tpm_policy.init_data_pcr8(digest) == expected == tpm_policy.INIT_DATA.fit(digest)
    assert tpm_policy.init_data_pcr8(digest + b"\xff" * 16) == expected


def test_the_broker_binds_init_data_through_pcr8() -> None:
    init_data = _init_data()
    pcr8 = tpm_policy.init_data_pcr8(init_data.digest)
    claims = claims_of(boot(grub=False), pcr8=pcr8, init_data=pcr8.hex())
    assert _bind_init_data(TPM, claims, init_data) is init_data
    other = _init_data(INIT_DATA.replace("package x", "package y"))
    with pytest.raises(InitDataMismatchError,
                       match=r"tpm pcrs.sha256.8 is .* the init-data presented"):
        _bind_init_data(TPM, claims, other)


def test_init_data_bound_to_pcr8_is_affirmed() -> None:
    init_data = _init_data()
    pcr8 = tpm_policy.init_data_pcr8(init_data.digest)
    claims = claims_of(boot(grub=False), pcr8=pcr8, init_data=pcr8.hex())
    refs = {k: v for k, v in refs_for(claims).items() if not k.startswith(("tpm_kernel",
                                                                            "tpm_initrd"))}
    bound = {"format": "toml", "algorithm": "sha256", "body": INIT_DATA, "claims": {}}
    result = appraise(claims, {**refs, "tpm_sha256_pcr8": [pcr8.hex()]}, init_data=bound)
    assert vector(result) == AFFIRMING


def test_init_data_bound_to_another_field_than_pcr8_is_refused() -> None:
    init_data = _init_data()
    pcr8 = tpm_policy.init_data_pcr8(init_data.digest)
    claims = claims_of(boot(grub=False), init_data=pcr8.hex())
    refs = {k: v for k, v in refs_for(claims).items() if not k.startswith(("tpm_kernel",
                                                                            "tpm_initrd"))}
    bound = {"format": "toml", "algorithm": "sha256", "body": INIT_DATA, "claims": {}}
    result = appraise(claims, refs, init_data=bound)
    assert result.trust_vector["configuration"] == 36
    assert "init-data was bound to another field" in failed(result)["tpm.init_data"]
    with pytest.raises(InitDataMismatchError):
        _bind_init_data(TPM, {**claims, "init_data": pcr(claims, 8)}, init_data)


def test_a_pinned_pcr8_refuses_other_init_data() -> None:
    pcr8 = tpm_policy.init_data_pcr8(_init_data().digest)
    other = tpm_policy.init_data_pcr8(_init_data(INIT_DATA + "# other\n").digest)
    claims = claims_of(boot(grub=False), pcr8=other)
    refs = {"tpm_sha256_pcr0": [pcr(claims, 0)], "tpm_sha256_pcr8": [pcr8.hex()]}
    result = appraise(claims, refs)
    assert "tpm.sha256.pcr8" in failed(result)
