"""The documented SEV flow, word for word, with real parts where there is no hardware: a real
broker on loopback, ``veritee host sev-session`` and ``sev-launch`` as an operator runs them,
a fake QEMU (its QMP socket) in front of the emulated SEV firmware, and ``veritee attest
--tee sev`` reading the injected secret from the guest's efi_secret tree (here a folder)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from support.broker import RunningBroker, running_broker
from support.sev import provision_sev
from veritee.cli.main import app
from veritee.tee.snp import session
from veritee.testing.snp.qmp import FakeQmpServer
from veritee.testing.snp.sev import SevFirmware
from veritee.testing.snp.sev_host import EmulatedSevGuest

SECRET = b"a disk key injected at launch"
GUEST = EmulatedSevGuest("sev-es", vcpus=2)


@dataclass
class Qemu:
    """The emulated firmware as the fake QEMU drives it (QEMU's view of one launch)."""

    firmware: SevFirmware
    policy: int
    measured: tuple[bytes, bytes] | None = field(default=None)

    @property
    def api_major(self) -> int:
        return self.firmware.api_major

    @property
    def api_minor(self) -> int:
        return self.firmware.api_minor

    @property
    def build_id(self) -> int:
        return self.firmware.build_id

    def capabilities(self) -> tuple[bytes, bytes, bytes]:
        caps = self.firmware.query_sev_capabilities()
        return tuple(base64.b64decode(caps[k])  # type: ignore[return-value]
                     for k in ("pdh", "cert-chain", "cpu0-id"))

    def launch_measure(self) -> tuple[bytes, bytes]:
        if self.measured is None:
            self.measured = self.firmware.launch_measure()
        return self.measured

    def launch_secret(self, header: bytes, ciphertext: bytes) -> None:
        self.firmware.launch_secret(header, ciphertext)


@pytest.fixture(scope="module")
def kbs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    with running_broker(tmp_path_factory.mktemp("sev-host")) as broker:
        yield broker


@pytest.fixture(scope="module")
def path(kbs: RunningBroker) -> str:
    digest = GUEST.launch_digest().hex()
    return provision_sev(kbs, SECRET, known=[digest], opted_in=[digest])


def _host(*args: str) -> dict:
    result = CliRunner().invoke(app, ["host", *args, "--json"])
    document: dict = json.loads(result.stdout)
    assert result.exit_code == (0 if document.get("error") is None else result.exit_code)
    return {"exit": result.exit_code, **document}


def _start_qemu(out: Path) -> Qemu:
    """QEMU started paused with the session files: LAUNCH_START, then the loads."""
    firmware = SevFirmware()
    godh = base64.b64decode((out / "godh.b64").read_text())
    blob = base64.b64decode((out / "session.b64").read_text())
    firmware.launch_start(godh, blob, GUEST.guest_policy)
    GUEST.load(firmware)
    return Qemu(firmware, GUEST.guest_policy)


def test_the_documented_flow_injects_the_secret_the_guest_reads(
        kbs: RunningBroker, path: str, tmp_path: Path) -> None:
    chain = tmp_path / "chain.cert"
    chain.write_bytes(SevFirmware().export_full())
    out = tmp_path / "launch"
    made = _host("sev-session", "--url", kbs.url, "--tee", "sev-es", "--policy",
                 hex(GUEST.guest_policy), "--chain", str(chain), "--out", str(out))
    assert made["exit"] == 0, made
    assert any("dh-cert-file=" in arg for arg in made["qemu-args"])
    qemu = _start_qemu(out)
    with FakeQmpServer(qemu) as server:  # type: ignore[arg-type]
        launched = _host("sev-launch", "--url", kbs.url, "--qmp", server.path, "--launch",
                         str(out / "launch.json"), "--resource", path)
        assert launched["exit"] == 0, launched
        assert server.run_state == "running"  # resumed after the injection
    table = dict(session.parse_secret_table(qemu.firmware.secret_area))
    secrets_dir = tmp_path / "coco"
    secrets_dir.mkdir()
    for guid, data in table.items():
        (secrets_dir / str(guid)).write_bytes(data)
    result = CliRunner().invoke(app, ["attest", "--tee", "sev-es", "--resource", path,
                                      "--secrets-dir", str(secrets_dir)])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == SECRET


def test_another_kernel_is_refused_and_nothing_is_injected(
        kbs: RunningBroker, path: str, tmp_path: Path) -> None:
    chain = tmp_path / "chain.cert"
    chain.write_bytes(SevFirmware().export_full())
    out = tmp_path / "launch"
    assert _host("sev-session", "--url", kbs.url, "--tee", "sev-es", "--policy",
                 hex(GUEST.guest_policy), "--chain", str(chain), "--out",
                 str(out))["exit"] == 0
    firmware = SevFirmware()
    firmware.launch_start(base64.b64decode((out / "godh.b64").read_text()),
                          base64.b64decode((out / "session.b64").read_text()),
                          GUEST.guest_policy)
    EmulatedSevGuest("sev-es", vcpus=2, kernel=b"someone else's kernel").load(firmware)
    qemu = Qemu(firmware, GUEST.guest_policy)
    with FakeQmpServer(qemu) as server:  # type: ignore[arg-type]
        refused = _host("sev-launch", "--url", kbs.url, "--qmp", server.path, "--launch",
                        str(out / "launch.json"), "--resource", path)
        assert refused["exit"] == 1
        detail = refused["error"]["detail"]
        assert "SignatureError" in detail and "kernel" in detail
        assert server.injected == [] and server.run_state == "prelaunch"
