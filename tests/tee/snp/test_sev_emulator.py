"""A full emulated SEV / SEV-ES launch: the owner verifies the platform chain, makes a session
for its PDH, the firmware starts the launch, measures, the owner checks the measurement and
releases a secret packet that the firmware decrypts. Then every way of getting it wrong."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass

import pytest

from veritee.errors import BindingError, MalformedEvidenceError, MisuseError, SignatureError
from veritee.tee.snp import session, sevcert
from veritee.testing.snp.sev import SevFirmware, emulated_sev_roots

SEV_POLICY = 0x1  # NODBG
ES_POLICY = 0x5  # NODBG | ES
SECRET = [(uuid.UUID("736869e5-84f0-4973-92ec-06879ce3da0b"), b"disk passphrase")]
OVMF = bytes(range(256)) * 16


@dataclass
class Launch:
    firmware: SevFirmware
    owner: session.OwnerSession
    measure: bytes
    mnonce: bytes


def launch(policy: int = SEV_POLICY, *, vmsas: int = 0) -> Launch:
    firmware = SevFirmware()
    caps = firmware.query_sev_capabilities()
    platform = sevcert.verify_platform_chain(sevcert.chain_from_fields(caps),
                                             roots=emulated_sev_roots())
    owner = session.create_session(platform.pdh_public_key, policy)
    firmware.launch_start(owner.godh_cert, owner.blob, policy)
    firmware.launch_update_data(OVMF)
    if vmsas:
        firmware.launch_update_vmsa([bytes([i]) * 4096 for i in range(vmsas)])
    measure, mnonce = firmware.launch_measure()
    return Launch(firmware, owner, measure, mnonce)


def expected_digest(vmsas: int = 0) -> bytes:
    import hashlib

    return hashlib.sha256(OVMF + b"".join(bytes([i]) * 4096 for i in range(vmsas))).digest()


def check(run: Launch, policy: int, digest: bytes) -> None:
    session.check_launch_measure(
        run.measure, tik=run.owner.tik, api_major=run.firmware.api_major,
        api_minor=run.firmware.api_minor, build_id=run.firmware.build_id, policy=policy,
        launch_digest=digest, mnonce=run.mnonce)


@pytest.mark.parametrize(("policy", "vmsas"), [(SEV_POLICY, 0), (ES_POLICY, 2)])
def test_full_launch_delivers_the_secret(policy: int, vmsas: int) -> None:
    run = launch(policy, vmsas=vmsas)
    assert run.firmware.launch_digest == expected_digest(vmsas)
    check(run, policy, expected_digest(vmsas))
    packet = session.secret_packet(run.owner.tek, run.owner.tik, run.measure,
                                   session.build_secret_table(SECRET))
    run.firmware.launch_secret(packet.header, packet.ciphertext)
    assert session.parse_secret_table(run.firmware.secret_area) == SECRET


def test_export_full_form_verifies_and_round_trips() -> None:
    firmware = SevFirmware("milan", api_minor=23)
    chain = sevcert.parse_chain(firmware.export_full())
    verified = sevcert.verify_platform_chain(chain, roots=emulated_sev_roots())
    assert (verified.product, verified.pdh_api, verified.emulated) == ("milan", (0, 23), True)
    assert chain.to_export() == firmware.export_full()
    caps = firmware.query_sev_capabilities()
    assert len(base64.b64decode(caps["cert-chain"])) == 3 * sevcert.SEV_CERT_SIZE


def test_deterministic_session_reproduces() -> None:
    firmware = SevFirmware()
    pdh = firmware.keys.pdh.public_key()
    from veritee.testing.snp.sev import seeded_ec_key

    keys = {"tek": b"T" * 16, "tik": b"I" * 16, "nonce": b"N" * 16, "wrap_iv": b"V" * 16,
            "godh_key": seeded_ec_key(b"owner")}
    first = session.create_session(pdh, 1, **keys)  # type: ignore[arg-type]
    assert session.create_session(pdh, 1, **keys) == first  # type: ignore[arg-type]
    assert session.new_session(pdh, 1, **keys) == (first.godh_cert, first.blob)  # type: ignore[arg-type]
    assert session.open_session(firmware.keys.pdh, first.godh_cert, first.blob, 1) == \
        (b"T" * 16, b"I" * 16)


def test_wrong_launch_digest_is_refused_by_the_owner() -> None:
    run = launch()
    with pytest.raises(SignatureError, match="launch digest"):
        check(run, SEV_POLICY, bytes(32))


def test_measure_under_another_tik_is_refused() -> None:
    run = launch()
    with pytest.raises(SignatureError):
        session.check_launch_measure(
            run.measure, tik=bytes(16), api_major=0, api_minor=24, build_id=15,
            policy=SEV_POLICY, launch_digest=expected_digest(), mnonce=run.mnonce)


def test_secret_for_a_wrong_measure_is_refused_and_ends_the_launch() -> None:
    run = launch()
    bad = session.secret_packet(run.owner.tek, run.owner.tik, bytes(32),
                                session.build_secret_table(SECRET))
    with pytest.raises(SignatureError, match="MAC"):
        run.firmware.launch_secret(bad.header, bad.ciphertext)
    good = session.secret_packet(run.owner.tek, run.owner.tik, run.measure,
                                 session.build_secret_table(SECRET))
    with pytest.raises(MisuseError, match="FAILED"):
        run.firmware.launch_secret(good.header, good.ciphertext)
    with pytest.raises(MisuseError):
        _ = run.firmware.secret_area


def test_secret_under_a_wrong_tik_is_refused() -> None:
    run = launch()
    bad = session.secret_packet(run.owner.tek, bytes(16), run.measure,
                                session.build_secret_table(SECRET))
    with pytest.raises(SignatureError):
        run.firmware.launch_secret(bad.header, bad.ciphertext)


def test_session_for_another_policy_is_refused() -> None:
    firmware = SevFirmware()
    owner = session.create_session(firmware.keys.pdh.public_key(), SEV_POLICY)
    with pytest.raises(BindingError, match="POLICY_MAC"):
        firmware.launch_start(owner.godh_cert, owner.blob, 0x0)


def test_session_for_another_platform_is_refused() -> None:
    other = SevFirmware(seed="platform-2")
    owner = session.create_session(other.keys.pdh.public_key(), SEV_POLICY)
    with pytest.raises(SignatureError, match="WRAP_MAC"):
        SevFirmware().launch_start(owner.godh_cert, owner.blob, SEV_POLICY)


def test_tampered_session_blob_is_refused() -> None:
    firmware = SevFirmware()
    owner = session.create_session(firmware.keys.pdh.public_key(), SEV_POLICY)
    blob = owner.blob[:20] + bytes((owner.blob[20] ^ 1,)) + owner.blob[21:]
    with pytest.raises(SignatureError):
        firmware.launch_start(owner.godh_cert, blob, SEV_POLICY)
    with pytest.raises(MalformedEvidenceError):
        firmware.launch_start(owner.godh_cert[:-1], owner.blob, SEV_POLICY)


def test_vmsa_refused_for_plain_sev_and_commands_out_of_order() -> None:
    firmware = SevFirmware()
    with pytest.raises(MisuseError, match="UNINIT"):
        firmware.launch_update_data(b"x")
    owner = session.create_session(firmware.keys.pdh.public_key(), SEV_POLICY)
    firmware.launch_start(owner.godh_cert, owner.blob, SEV_POLICY)
    with pytest.raises(MisuseError, match="ES bit"):
        firmware.launch_update_vmsa([bytes(4096)])
    with pytest.raises(MisuseError, match="LSECRET"):
        firmware.launch_secret(bytes(52), b"")
    firmware.launch_measure(mnonce=bytes(16))
    with pytest.raises(MisuseError, match="LSECRET"):
        firmware.launch_update_data(b"late")


def test_data_after_vmsa_is_refused() -> None:
    firmware = SevFirmware()
    owner = session.create_session(firmware.keys.pdh.public_key(), ES_POLICY)
    firmware.launch_start(owner.godh_cert, owner.blob, ES_POLICY)
    with pytest.raises(MisuseError, match="4096"):
        firmware.launch_update_vmsa([bytes(100)])
    firmware.launch_update_vmsa([bytes(4096)])
    with pytest.raises(MisuseError, match="after LAUNCH_UPDATE_VMSA"):
        firmware.launch_update_data(b"x")
