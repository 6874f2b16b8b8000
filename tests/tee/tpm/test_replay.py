"""TPM event logs replayed into PCR banks and compared with quoted PCRs (veritee.tee.tpm.replay):
the real go-tpm-tools logs replay to the PCRs its tests expect and keylime's logs parse (corpus
``ibm-tpm-gpu``, skipped when absent); logs written here check every bank, StartupLocality,
the comparison's refusals and notes, event data that is or is not what its digest covers,
and the Secure Boot state.
"""

from __future__ import annotations

import hashlib
import json
import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from conftest import corpus_dir
from veritee import eventlog
from veritee.errors import BindingError, MalformedEvidenceError
from veritee.tee.tpm import replay

# --- a small writer of crypto-agile logs ----------------------------------------------------------

ALG_ID = {"sha1": 0x0004, "sha256": 0x000B, "sha384": 0x000C, "sha512": 0x000D}
NO_ACTION, SEPARATOR, IPL = 3, 4, 13
VAR_CONFIG, BOOT_APP = 0x80000001, 0x80000003
EFI_GLOBAL = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")


@dataclass(frozen=True)
class Ev:
    index: int
    type: int
    data: bytes
    #: What the digests cover (default: the data).
    measured: bytes | None = None

    def digest(self, alg: str) -> bytes:
        return hashlib.new(alg, self.data if self.measured is None else self.measured).digest()


def spec_id(algs: Sequence[str]) -> bytes:
    body = b"Spec ID Event03\0" + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(algs))
    body += b"".join(struct.pack("<HH", ALG_ID[a], hashlib.new(a).digest_size) for a in algs)
    body += b"\0"
    return struct.pack("<II20sI", 0, NO_ACTION, bytes(20), len(body)) + body


def event2(ev: Ev, algs: Sequence[str]) -> bytes:
    out = struct.pack("<III", ev.index, ev.type, len(algs))
    out += b"".join(struct.pack("<H", ALG_ID[a]) + ev.digest(a) for a in algs)
    return out + struct.pack("<I", len(ev.data)) + ev.data


def agile(events: Sequence[Ev], algs: Sequence[str] = ("sha1", "sha256")) -> bytes:
    return spec_id(algs) + b"".join(event2(e, algs) for e in events)


def variable(name: str, value: bytes, guid: uuid.UUID = EFI_GLOBAL) -> bytes:
    encoded = name.encode("utf-16-le")
    return guid.bytes_le + struct.pack("<QQ", len(name), len(value)) + encoded + value


def secure_boot_event(value: bytes) -> Ev:
    return Ev(7, VAR_CONFIG, variable("SecureBoot", value))


def extend(alg: str, *digests: bytes, start: bytes | None = None) -> bytes:
    value = start if start is not None else bytes(hashlib.new(alg).digest_size)
    for d in digests:
        value = hashlib.new(alg, value + d).digest()
    return value


BOOT = (Ev(0, 0x80000008, struct.pack("<QQ", 0xFFC00000, 0x400000), measured=b"firmware"),
        secure_boot_event(b"\x01"), Ev(7, SEPARATOR, bytes(4)),
        Ev(4, BOOT_APP, struct.pack("<QQQQ", 0, 0, 0, 0), measured=b"kernel image"),
        Ev(8, IPL, b"kernel_cmdline: /vmlinuz root=/dev/vda1 ro\0",
           measured=b"/vmlinuz root=/dev/vda1 ro"))


# --- the real logs --------------------------------------------------------------------------------


def _expected() -> list[tuple[str, str, dict[str, str]]]:
    folder = corpus_dir("ibm-tpm-gpu", "tpm", "go-tpm-tools")
    expected = json.loads((folder / "expected_pcrs.json").read_text())
    return [(name, eventlog.ALGORITHMS[int(alg_id, 16)].name, pcrs)
            for name, banks in expected.items() for alg_id, pcrs in banks.items()]


def test_the_go_tpm_tools_logs_replay_to_the_pcrs_its_tests_expect() -> None:
    folder = corpus_dir("ibm-tpm-gpu", "tpm", "go-tpm-tools", "eventlogs")
    cases = _expected()
    assert {name for name, _, _ in cases} == {p.name for p in folder.glob("*.bin")}
    assert len({name for name, _, _ in cases}) == 7
    for name, bank, pcrs in cases:
        replayed = replay.replay_pcrs((folder / name).read_bytes())
        assert {i: replayed[bank][int(i)].hex() for i in pcrs} == pcrs, (name, bank)
        quoted = {bank: {int(i): bytes.fromhex(v) for i, v in pcrs.items()}}
        replay.check_replay(replayed, quoted)
        assert replay.bound_pcrs(replayed, quoted)[bank] == sorted(int(i) for i in pcrs)


def test_the_go_tpm_tools_logs_give_events_and_secure_boot() -> None:
    folder = corpus_dir("ibm-tpm-gpu", "tpm", "go-tpm-tools", "eventlogs")
    states = {p.name: replay.secure_boot(p.read_bytes()) for p in folder.glob("*.bin")}
    assert states == {"rhel8-uefi.bin": True, "cos-85-amd-sev.bin": True, "debian-10.bin": True,
                      "ubuntu-1804-amd-sev.bin": False, "ubuntu-2104-no-dbx.bin": False,
                      "ubuntu-2404-amd-sevsnp.bin": False,
                      # EDK2 measured an empty SecureBoot variable (it does not exist).
                      "arch-linux-workstation.bin": False}
    events = replay.events_json((folder / "ubuntu-1804-amd-sev.bin").read_bytes())
    cmdline = [e for e in events if e["index"] == 8
               and e["details"].get("string", "").startswith("kernel_cmdline: ")]
    assert len(cmdline) == 1 and cmdline[0]["data_verified"] is True
    kernel = [e for e in events if e["index"] == 9
              and e["details"].get("string") == "/boot/vmlinuz-5.4.0-1046-gcp"]
    assert len(kernel) == 1 and kernel[0]["data_verified"] is False
    assert all(e["type_name"] != "EV_NO_ACTION" or e["number"] > 0 for e in events)
    apps = [e for e in events if e["type_name"] == "EV_EFI_BOOT_SERVICES_APPLICATION"]
    assert any(e["details"].get("device_paths") for e in apps)


@pytest.mark.parametrize(("name", "banks", "secure"), [
    ("binary_bios_measurements", ["sha1", "sha256"], False),
    ("binary_bios_measurements-secureboot", ["sha256"], True),
])
def test_keylimes_logs_parse_and_replay(name: str, banks: list[str], secure: bool) -> None:
    raw = (corpus_dir("ibm-tpm-gpu", "tpm", "keylime") / name).read_bytes()
    replayed = replay.replay_pcrs(raw)
    assert sorted(replayed) == banks
    assert {0, 4, 7}.issubset(replayed["sha256"])
    assert replay.secure_boot(raw) is secure
    assert replay.check_replay(replayed, replayed) == []
    assert any(e["data_verified"] for e in replay.events_json(raw))


# --- replay ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("algs", [("sha1",), ("sha256",), ("sha1", "sha256", "sha384", "sha512")])
def test_every_bank_of_the_log_is_replayed(algs: tuple[str, ...]) -> None:
    replayed = replay.replay_pcrs(agile(BOOT, algs))
    assert sorted(replayed) == sorted(algs)
    for alg in algs:
        assert set(replayed[alg]) == {0, 4, 7, 8}
        assert replayed[alg][7] == extend(alg, BOOT[1].digest(alg), BOOT[2].digest(alg))


def test_a_legacy_sha1_log_replays_its_one_bank() -> None:
    record = struct.pack("<II20sI", 4, SEPARATOR, hashlib.sha1(bytes(4)).digest(), 4) + bytes(4)
    assert replay.replay_pcrs(record) == {"sha1": {4: extend("sha1", hashlib.sha1(bytes(4))
                                                             .digest())}}


def test_startup_locality_sets_pcr0s_start() -> None:
    locality = Ev(0, NO_ACTION, b"StartupLocality\0\x03")
    first = BOOT[0]
    replayed = replay.replay_pcrs(agile([locality, first], ("sha256",)))
    assert replayed["sha256"][0] == extend("sha256", first.digest("sha256"),
                                           start=bytes(31) + b"\x03")


def test_an_event_beyond_pcr_23_is_malformed() -> None:
    with pytest.raises(MalformedEvidenceError, match="extends PCR 24; a TPM has PCRs 0-23"):
        replay.replay_pcrs(agile([Ev(24, SEPARATOR, bytes(4))]))


# --- comparison with the quote --------------------------------------------------------------------


def _quoted(log: bytes, banks: Sequence[str] = ("sha256",)) -> dict[str, dict[int, bytes]]:
    replayed = replay.replay_pcrs(log)
    return {bank: {i: replayed[bank].get(i, bytes(hashlib.new(bank).digest_size))
                   for i in range(24)} for bank in banks}


def test_a_tampered_event_contradicts_the_quote() -> None:
    quoted = _quoted(agile(BOOT), ("sha1", "sha256"))
    forged = list(BOOT)
    forged[3] = Ev(4, BOOT_APP, BOOT[3].data, measured=b"another kernel")
    replayed = replay.replay_pcrs(agile(forged))
    with pytest.raises(BindingError) as caught:
        replay.check_replay(replayed, quoted)
    detail = caught.value.detail
    for bank in ("sha1", "sha256"):
        assert (f"{bank} PCR 4 replays to {replayed[bank][4].hex()} from the event log, the "
                f"quote says {quoted[bank][4].hex()}") in detail
    assert "PCR 7" not in detail


def _pcrs(**banks: dict[int, bytes]) -> dict[str, dict[int, bytes]]:
    return dict(banks)


A, B = bytes(32), b"\x01" * 32
CHECKS: list[tuple[str, Callable[[], tuple[Any, Any]], list[str]]] = [
    ("all_checked", lambda: (_pcrs(sha256={0: A}), _pcrs(sha256={0: A, 1: B})), []),
    ("bank_not_quoted", lambda: (_pcrs(sha1={0: A[:20]}, sha256={0: A}), _pcrs(sha256={0: A})),
     ["the quote has no sha1 bank: sha1 PCRs 0 of the event log are not checked"]),
    ("pcr_not_quoted", lambda: (_pcrs(sha256={0: A, 9: B, 14: B}), _pcrs(sha256={0: A})),
     ["sha256 PCRs 9, 14 have events but are not quoted: not checked"]),
    ("bank_not_logged", lambda: (_pcrs(sha1={0: A[:20]}), _pcrs(sha1={0: A[:20]},
                                                                 sha384={0: bytes(48)})),
     ["the event log has no sha384 digests: the quoted sha384 PCRs are not checked against it"]),
    ("nothing_shared", lambda: (_pcrs(sha1={0: A[:20]}), _pcrs(sha256={0: B})),
     ["the quote has no sha1 bank: sha1 PCRs 0 of the event log are not checked",
      "the event log has no sha256 digests: the quoted sha256 PCRs are not checked against it"]),
]


@pytest.mark.parametrize(("name", "build", "notes"), CHECKS, ids=[c[0] for c in CHECKS])
def test_what_cannot_be_checked_is_noted_not_refused(
        name: str, build: Callable[[], tuple[Any, Any]], notes: list[str]) -> None:
    replayed, quoted = build()
    assert replay.check_replay(replayed, quoted) == notes


def test_bound_pcrs_are_those_that_replay_to_the_quote() -> None:
    replayed = _pcrs(sha1={0: A[:20]}, sha256={0: A, 4: B, 9: A})
    quoted = _pcrs(sha256={0: A, 4: A, 7: B})
    assert replay.bound_pcrs(replayed, quoted) == {"sha256": [0]}


def test_a_mismatch_in_one_pcr_refuses_the_whole_log() -> None:
    with pytest.raises(BindingError, match=f"sha256 PCR 4 replays to {B.hex()} from the event "
                                           f"log, the quote says {A.hex()}"):
        replay.check_replay(_pcrs(sha256={0: A, 4: B}), _pcrs(sha256={0: A, 4: A}))


# --- event data -----------------------------------------------------------------------------------


def _event(ev: Ev, algs: Sequence[str] = ("sha1", "sha256")) -> eventlog.Event:
    return eventlog.parse(agile([ev], algs)).events[1]


@pytest.mark.parametrize(("name", "ev", "verified"), [
    ("own_data", Ev(7, SEPARATOR, bytes(4)), True),
    ("image", BOOT[3], False),
    ("grub_command", Ev(8, IPL, b"grub_cmd: set timeout=0\0", measured=b"set timeout=0"), True),
    ("grub_command_with_nul", Ev(8, IPL, b"grub_cmd set pager=1\0", measured=b"set pager=1\0"),
     True),
    ("grub_kernel_cmdline", BOOT[4], True),
    ("forged_grub_text", Ev(8, IPL, b"kernel_cmdline: /vmlinuz init=/bin/sh\0",
                            measured=b"/vmlinuz ro"), False),
    ("systemd_boot_utf16", Ev(12, IPL, "quiet\0".encode("utf-16-le")[:-1],
                              measured="quiet\0".encode("utf-16-le")), True),
    ("prefix_only_for_ipl", Ev(8, 0x80000007, b"grub_cmd: x", measured=b"x"), False),
])
def test_data_verified_says_whether_the_digest_covers_the_data(
        name: str, ev: Ev, verified: bool) -> None:
    event = _event(ev)
    assert replay.data_verified(event) is verified
    assert replay.event_json(event)["data_verified"] is verified


def test_an_event_with_no_digest_this_python_can_hash_is_not_verified() -> None:
    event = eventlog.Event(1, 0, 7, SEPARATOR, (("0x1234", b"\0" * 20),), bytes(4))
    assert replay.data_verified(event) is False


# --- Secure Boot ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "events", "state"), [
    ("on", [secure_boot_event(b"\x01")], True),
    ("off", [secure_boot_event(b"\x00")], False),
    ("absent_variable", [secure_boot_event(b"")], False),
    ("no_event", [Ev(7, SEPARATOR, bytes(4))], None),
    ("other_guid", [Ev(7, VAR_CONFIG, variable("SecureBoot", b"\x01", uuid.UUID(int=1)))], None),
    ("not_pcr7", [Ev(1, VAR_CONFIG, variable("SecureBoot", b"\x01"))], None),
    ("one_of_two_off", [secure_boot_event(b"\x01"), secure_boot_event(b"\x00")], False),
])
def test_secure_boot_reads_the_measured_variable(
        name: str, events: list[Ev], state: bool | None) -> None:
    assert replay.secure_boot(agile(events)) is state


def test_a_forged_secure_boot_variable_is_refused() -> None:
    forged = Ev(7, VAR_CONFIG, variable("SecureBoot", b"\x01"),
                measured=variable("SecureBoot", b"\x00"))
    with pytest.raises(BindingError, match=r"SecureBoot variable.*not what the event's digests"):
        replay.secure_boot(agile([forged]))


def test_a_secure_boot_variable_of_two_bytes_is_malformed() -> None:
    with pytest.raises(MalformedEvidenceError, match="expected one byte"):
        replay.secure_boot(agile([secure_boot_event(b"\x01\x00")]))
