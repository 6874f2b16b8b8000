"""TPM 2.0 credential protection: round trips, refusals, and interop with tpm2-tools and a
real software TPM (swtpm), and the broker's activation challenge."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from veritee.errors import BindingError, MalformedEvidenceError, MisuseError
from veritee.tee.svsm import credential, keys
from veritee.tee.tpm.structures import (
    AK_ATTRIBUTES,
    EK_ATTRIBUTES,
    FIXED_TPM,
    TPM_ALG_AES,
    TPM_ALG_CFB,
    build_public,
    parse_public,
    parse_public_2b,
)
from veritee.testing import pki

NAME = bytes.fromhex("000b") + bytes(range(32))
KEY = b"k" * 32


@pytest.fixture(scope="module")
def ek_key() -> rsa.RSAPrivateKey:
    key = pki.load_key("svsm-vtpm-ek")
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _make(ek_key: rsa.RSAPrivateKey, secret: bytes = b"s" * 32, name: bytes = NAME,
          hash_name: str = "sha256", sym_bits: int = 128) -> tuple[bytes, bytes]:
    return credential.make_credential_rsa(ek_key.public_key(), hash_name=hash_name,
                                          sym_bits=sym_bits, object_name=name,
                                          credential=secret)


@pytest.mark.parametrize(("hash_name", "sym_bits"), [("sha256", 128), ("sha384", 256),
                                                     ("sha1", 128)])
def test_round_trip(ek_key: rsa.RSAPrivateKey, hash_name: str, sym_bits: int) -> None:
    secret = b"\x01" * 20
    id_object, encrypted = _make(ek_key, secret, hash_name=hash_name, sym_bits=sym_bits)
    assert int.from_bytes(encrypted[:2], "big") == len(encrypted) - 2 == 256
    assert int.from_bytes(id_object[:2], "big") == len(id_object) - 2
    out = credential.activate_credential(ek_key, NAME, id_object, encrypted,
                                         hash_name=hash_name, sym_bits=sym_bits)
    assert out == secret


def test_layout_is_tpm2b_digest_then_enc_identity(ek_key: rsa.RSAPrivateKey) -> None:
    """TPM2B_ID_OBJECT = size ‖ TPM2B_DIGEST(integrityHMAC) ‖ encIdentity, and encIdentity
    is the encrypted TPM2B_DIGEST(credential): 2 + 32 + (2 + 32) + 2 for SHA-256."""
    id_object, _ = _make(ek_key, b"x" * 32)
    assert len(id_object) == 2 + (2 + 32) + (2 + 32)
    assert id_object[2:4] == b"\x00\x20"


def test_kdfa_known_answer() -> None:
    """KDFa is HMAC(key, u32be(1) ‖ label ‖ 00 ‖ u ‖ v ‖ u32be(bits)) block by block."""
    import hashlib
    import hmac

    key, u, v = b"seed", b"ctx-u", b"ctx-v"
    block1 = hmac.new(key, b"\0\0\0\1STORAGE\0" + u + v + b"\0\0\1\0", hashlib.sha256).digest()
    assert credential.kdfa("sha256", key, b"STORAGE", u, v, bits=256) == block1
    assert credential.kdfa("sha256", key, b"STORAGE\0", u, v, bits=256) == block1
    long = credential.kdfa("sha256", key, b"X", b"", b"", bits=512)
    assert len(long) == 64 and long[:32] != long[32:]


@pytest.mark.parametrize("defect", ["hmac", "enc_identity", "name", "seed", "other_ek"])
def test_tampered_credential_refused(ek_key: rsa.RSAPrivateKey, defect: str) -> None:
    id_object, encrypted = _make(ek_key)
    name = NAME
    if defect == "hmac":
        id_object = id_object[:5] + bytes([id_object[5] ^ 1]) + id_object[6:]
    elif defect == "enc_identity":
        id_object = id_object[:-1] + bytes([id_object[-1] ^ 1])
    elif defect == "name":
        name = NAME[:-1] + b"\xff"
    elif defect == "other_ek":
        id_object, encrypted = credential.make_credential_rsa(
            pki.load_key("svsm-foreign-ak").public_key(), hash_name="sha256", sym_bits=128,
            object_name=NAME, credential=b"s" * 32)
    else:
        encrypted = encrypted[:10] + bytes([encrypted[10] ^ 1]) + encrypted[11:]
    expected = MalformedEvidenceError if defect in ("seed", "other_ek") else BindingError
    with pytest.raises(expected):
        credential.activate_credential(ek_key, name, id_object, encrypted)


@pytest.mark.parametrize("blob", [b"", b"\x00", b"\x00\x05abc", b"\x00\x01ab"])
def test_malformed_blobs(ek_key: rsa.RSAPrivateKey, blob: bytes) -> None:
    id_object, encrypted = _make(ek_key)
    with pytest.raises(MalformedEvidenceError):
        credential.activate_credential(ek_key, NAME, blob, encrypted)
    with pytest.raises(MalformedEvidenceError):
        credential.activate_credential(ek_key, NAME, id_object, blob)


def test_credential_size_limits(ek_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(MisuseError):
        _make(ek_key, b"x" * 33)
    with pytest.raises(MisuseError):
        _make(ek_key, b"")


def test_tpm2_tools_blob_round_trip(ek_key: rsa.RSAPrivateKey) -> None:
    id_object, encrypted = _make(ek_key)
    blob = credential.tpm2_tools_blob(id_object, encrypted)
    assert blob[:8] == bytes.fromhex("badcc0de00000001")
    assert credential.parse_tpm2_tools_blob(blob) == (id_object, encrypted)
    for bad in (blob[:7], b"\xba\xdc\xc0\xdf" + blob[4:], blob + b"x", blob[:-1]):
        with pytest.raises(MalformedEvidenceError):
            credential.parse_tpm2_tools_blob(bad)


# -- the activation secret ------------------------------------------------------------------


def test_activation_secret_binds_every_input() -> None:
    base = {"nonce": b"n", "ek_name": b"e", "ak_name": b"a", "key": KEY}
    secret = credential.activation_secret(**base)
    credential.check_activation(secret, **base)
    for field, value in [("nonce", b"m"), ("ek_name", b"f"), ("ak_name", b"b"),
                         ("key", b"j" * 32)]:
        with pytest.raises(BindingError):
            credential.check_activation(secret, **{**base, field: value})
    # the fields are length-prefixed: moving a byte from one to the next changes the MAC
    moved = credential.activation_secret(nonce=b"ne", ek_name=b"e"[:0] + b"x", ak_name=b"a",
                                         key=KEY)
    assert moved != credential.activation_secret(nonce=b"n", ek_name=b"ex", ak_name=b"a",
                                                 key=KEY)
    with pytest.raises(BindingError):
        credential.check_activation(b"", **base)


@pytest.mark.parametrize("kwargs", [{"key": b"short"}, {"nonce": b""}, {"ak_name": b"x" * 2000}])
def test_activation_secret_misuse(kwargs: dict[str, bytes]) -> None:
    base = {"nonce": b"n", "ek_name": b"e", "ak_name": b"a", "key": KEY}
    with pytest.raises(MisuseError):
        credential.activation_secret(**{**base, **kwargs})


# -- interop: tpm2-tools' MakeCredential (no TPM needed) -------------------------------------


@pytest.mark.skipif(shutil.which("tpm2_makecredential") is None,
                    reason="tpm2-tools is not installed")
def test_tpm2_makecredential_activates_in_python(ek_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    """tpm2-tools makes a credential (offline, ``-T none``) to our EK; Python activates it."""
    pem = ek_key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "ek.pem").write_bytes(pem)
    secret = os.urandom(32)
    (tmp_path / "secret").write_bytes(secret)
    subprocess.run(["tpm2_makecredential", "-T", "none", "-u", "ek.pem", "-G", "rsa",
                    "-s", "secret", "-n", NAME.hex(), "-o", "cred"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=20)
    id_object, encrypted = credential.parse_tpm2_tools_blob((tmp_path / "cred").read_bytes())
    assert credential.activate_credential(ek_key, NAME, id_object, encrypted) == secret


# -- interop: a real software TPM --------------------------------------------------------------

_SWTPM_TOOLS = ("swtpm", "swtpm_setup", "tpm2_createek", "tpm2_createak", "tpm2_quote",
                "tpm2_activatecredential", "tpm2_startauthsession", "tpm2_policysecret",
                "tpm2_flushcontext")


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            with socket.socket() as second, contextlib.suppress(OSError):
                second.bind(("127.0.0.1", port + 1))
                return port
    raise RuntimeError("no free pair of loopback ports")


class _Swtpm:
    """A throwaway swtpm on loopback ports (research note §3.7): fresh state, killed by PID."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.port = _free_port_pair()
        self.env = {**os.environ, "TPM2TOOLS_TCTI": f"swtpm:host=127.0.0.1,port={self.port}"}
        self.pid: int | None = None

    def start(self) -> None:
        subprocess.run(["swtpm_setup", "--tpm2", "--tpmstate", str(self.state),
                        "--create-ek-cert", "--overwrite"],
                       check=True, capture_output=True, timeout=60)
        pidfile = self.state / "pid"
        subprocess.run(["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={self.state}",
                        "--server", f"type=tcp,port={self.port},bindaddr=127.0.0.1",
                        "--ctrl", f"type=tcp,port={self.port + 1},bindaddr=127.0.0.1",
                        "--flags", "startup-clear", "--daemon", "--pid", f"file={pidfile}"],
                       check=True, capture_output=True, timeout=30)
        deadline = time.monotonic() + 10
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.pid = int(pidfile.read_text().strip())

    def run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(list(args), cwd=self.state, env=self.env, check=True,
                              capture_output=True, timeout=60)

    def flush(self) -> None:
        for kind in ("-t", "-s"):
            self.run("tpm2_flushcontext", kind)

    def stop(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            self.pid = None


@pytest.fixture(scope="module")
def swtpm() -> Iterator[_Swtpm]:
    missing = [tool for tool in _SWTPM_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"swtpm / tpm2-tools absent: {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="veritee-swtpm-") as state:
        tpm = _Swtpm(Path(state))
        try:
            tpm.start()
        except (subprocess.SubprocessError, OSError, ValueError) as exc:
            tpm.stop()
            pytest.skip(f"swtpm did not start: {exc}")
        try:
            tpm.run("tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub")
            tpm.flush()
            tpm.run("tpm2_createak", "-C", "ek.ctx", "-c", "ak.ctx", "-G", "rsa", "-g",
                    "sha256", "-s", "rsassa", "-n", "ak.name", "-u", "ak.pub")
            tpm.flush()
            yield tpm
        finally:
            tpm.stop()


def _activate_with_swtpm(tpm: _Swtpm, id_object: bytes, encrypted: bytes) -> bytes:
    (tpm.state / "cred.blob").write_bytes(credential.tpm2_tools_blob(id_object, encrypted))
    out = tpm.state / "activated"
    out.unlink(missing_ok=True)
    tpm.run("tpm2_startauthsession", "--policy-session", "-S", "session.ctx")
    try:
        tpm.run("tpm2_policysecret", "-S", "session.ctx", "-c", "e")
        tpm.run("tpm2_activatecredential", "-c", "ak.ctx", "-C", "ek.ctx", "-i", "cred.blob",
                "-o", "activated", "-P", "session:session.ctx")
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            tpm.run("tpm2_flushcontext", "session.ctx")
        tpm.flush()
    return out.read_bytes()


def _swtpm_ek_rsa(tpm: _Swtpm) -> rsa.RSAPublicKey:
    """The swtpm EK's RSA public key from its TPM2B_PUBLIC (modulus at the end)."""
    public = (tpm.state / "ek.pub").read_bytes()[2:]
    size = int.from_bytes(public[-258:-256], "big")
    assert size == 256
    return rsa.RSAPublicNumbers(65537, int.from_bytes(public[-256:], "big")).public_key()


def test_swtpm_activates_python_credential(swtpm: _Swtpm) -> None:
    """A credential made in Python for a real EK and AK comes back from the TPM."""
    ak_name = (swtpm.state / "ak.name").read_bytes()
    secret = credential.activation_secret(nonce=b"nonce", ek_name=b"ek", ak_name=ak_name,
                                          key=KEY)
    id_object, encrypted = credential.make_credential_rsa(
        _swtpm_ek_rsa(swtpm), hash_name="sha256", sym_bits=128, object_name=ak_name,
        credential=secret)
    assert _activate_with_swtpm(swtpm, id_object, encrypted) == secret


def test_swtpm_refuses_credential_for_another_name(swtpm: _Swtpm) -> None:
    """Made for a name that is not the loaded AK's: the TPM's integrity check fails."""
    id_object, encrypted = credential.make_credential_rsa(
        _swtpm_ek_rsa(swtpm), hash_name="sha256", sym_bits=128, object_name=NAME,
        credential=b"s" * 32)
    with pytest.raises(subprocess.CalledProcessError):
        _activate_with_swtpm(swtpm, id_object, encrypted)


def test_swtpm_full_challenge(swtpm: _Swtpm) -> None:
    """The broker's challenge for a real EK and AK (TPM2B_PUBLIC files of tpm2-tools), the
    TPM's activation, and the verifier's check; and a foreign AK's name is refused."""
    ek = parse_public_2b((swtpm.state / "ek.pub").read_bytes())
    ak = parse_public_2b((swtpm.state / "ak.pub").read_bytes())
    assert keys.parse_ek(ek.raw) == ek and keys.parse_ak(ak.raw) == ak
    assert ak.name == (swtpm.state / "ak.name").read_bytes()
    request = {"ek-public": ek.raw.hex(), "ak-public": base64.b64encode(ak.raw).decode()}
    challenge = credential.challenge_extra(request, b"kbs-nonce", KEY)
    assert challenge["ak-name"] == ak.name.hex()
    activated = _activate_with_swtpm(swtpm, base64.b64decode(challenge["credential"]),
                                     base64.b64decode(challenge["secret"]))
    credential.check_activation(activated, nonce=b"kbs-nonce", ek_name=ek.name,
                                ak_name=ak.name, key=KEY)
    with pytest.raises(BindingError):
        credential.check_activation(activated, nonce=b"kbs-nonce", ek_name=ek.name,
                                    ak_name=NAME, key=KEY)


# -- keys and the broker's challenge (no TPM) -------------------------------------------------


def _ek_public(**changes: Any) -> bytes:
    options: dict[str, Any] = {"attributes": EK_ATTRIBUTES, "scheme": "null",
                               "symmetric": (TPM_ALG_AES, 128, TPM_ALG_CFB), **changes}
    return build_public(pki.load_key("svsm-vtpm-ek").public_key(), **options)


def _ak_public(**changes: Any) -> bytes:
    return build_public(pki.load_key("svsm-vtpm-ak").public_key(), **changes)


def test_challenge_extra_activates_with_ek_key(ek_key: rsa.RSAPrivateKey) -> None:
    ek, ak = parse_public(_ek_public()), parse_public(_ak_public())
    challenge = credential.challenge_extra({"ek-public": ek.raw.hex(),
                                            "ak-public": ak.raw.hex()}, b"nonce", KEY)
    assert set(challenge) == {"credential", "secret", "ak-name"}
    activated = credential.activate_credential(ek_key, ak.name,
                                               base64.b64decode(challenge["credential"]),
                                               base64.b64decode(challenge["secret"]))
    credential.check_activation(activated, nonce=b"nonce", ek_name=ek.name, ak_name=ak.name,
                                key=KEY)


def test_make_credential_uses_the_ek_symmetric_and_name_alg(ek_key: rsa.RSAPrivateKey) -> None:
    ek = parse_public(_ek_public(name_alg="sha384", symmetric=(TPM_ALG_AES, 256, TPM_ALG_CFB)))
    id_object, encrypted = credential.make_credential(ek, NAME, b"s" * 48)
    assert credential.activate_credential(ek_key, NAME, id_object, encrypted,
                                          hash_name="sha384", sym_bits=256) == b"s" * 48


REQUEST_DEFECTS = [
    ("no_ek", {"ak-public": "AK"}, MalformedEvidenceError),
    ("ek_not_text", {"ek-public": 5, "ak-public": "AK"}, MalformedEvidenceError),
    ("ek_garbage", {"ek-public": "zz!", "ak-public": "AK"}, MalformedEvidenceError),
    ("ek_is_signing_key", {"ek-public": "AKHEX", "ak-public": "AK"}, MalformedEvidenceError),
    ("ek_no_symmetric", {"ek-public": "EK_NOSYM", "ak-public": "AK"}, MalformedEvidenceError),
    ("ak_decrypt_key", {"ek-public": "EK", "ak-public": "EKHEX"}, BindingError),
    ("ak_not_fixed", {"ek-public": "EK", "ak-public": "AK_DUP"}, BindingError),
    ("ek_too_long", {"ek-public": "00" * 3000, "ak-public": "AK"}, MalformedEvidenceError),
]


@pytest.mark.parametrize(("name", "request_extra", "error"), REQUEST_DEFECTS,
                         ids=[d[0] for d in REQUEST_DEFECTS])
def test_challenge_extra_refuses(name: str, request_extra: dict[str, object],
                                 error: type[Exception]) -> None:
    values = {"EK": _ek_public().hex(), "AK": _ak_public().hex(), "AKHEX": _ak_public().hex(),
              "EKHEX": _ek_public().hex(), "EK_NOSYM": _ek_public(symmetric=None).hex(),
              "AK_DUP": _ak_public(attributes=AK_ATTRIBUTES & ~FIXED_TPM).hex()}
    resolved = {k: values.get(v, v) if isinstance(v, str) else v
                for k, v in request_extra.items()}
    with pytest.raises(error):
        credential.challenge_extra(resolved, b"nonce", KEY)


def test_swtpm_as_the_svsm_vtpm_verifies(swtpm: _Swtpm) -> None:
    """End to end with a real TPM as the vTPM: its EK is the manifest (bound by an emulated
    VMPL 0 SNP report), its AK activates the broker's credential and quotes the nonce; the
    verifier accepts it, and refuses the same evidence with the activation of another AK."""
    from veritee.collateral import CollateralSource
    from veritee.evidence import Evidence
    from veritee.tee.svsm import manifest
    from veritee.tee.svsm.verify import SvsmVtpmVerifier, quote_nonce
    from veritee.testing.snp import SnpEmulator
    from veritee.testing.snp import emulated_roots as snp_roots
    from veritee.testing.tpm import read_pcr_blob

    ek = parse_public_2b((swtpm.state / "ek.pub").read_bytes())
    ak = parse_public_2b((swtpm.state / "ak.pub").read_bytes())
    kbs_nonce, nonce = "a2JzLW5vbmNl", bytes(range(64))
    challenge = credential.challenge_extra({"ek-public": ek.raw.hex(),
                                            "ak-public": ak.raw.hex()}, kbs_nonce.encode(), KEY)
    activated = _activate_with_swtpm(swtpm, base64.b64decode(challenge["credential"]),
                                     base64.b64decode(challenge["secret"]))
    try:
        swtpm.run("tpm2_quote", "-c", "ak.ctx", "-l", "sha256:0,1,2,3,7", "-q",
                  quote_nonce(nonce).hex(), "-m", "quote.msg", "-s", "quote.sig", "-o",
                  "quote.pcrs", "-g", "sha256")
    finally:
        swtpm.flush()
    pcrs = [value for _, _, value in read_pcr_blob((swtpm.state / "quote.pcrs").read_bytes())]
    now = pki.now_utc()
    report_data = manifest.expected_report_data(nonce, ek.raw)
    document = {
        "sev_snp_attestation": SnpEmulator(now=now).extended_report(report_data).hex(),
        "vtpm_service_manifest": base64.b64encode(ek.raw).decode(),
        "ak_public": base64.b64encode(ak.raw).decode(),
        "tpm_quote": {"message": base64.b64encode((swtpm.state / "quote.msg").read_bytes())
                      .decode(),
                      "signature": base64.b64encode((swtpm.state / "quote.sig").read_bytes())
                      .decode(),
                      "pcrs": [p.hex() for p in pcrs]},
        "activation": {"nonce": kbs_nonce, "credential": base64.b64encode(activated).decode()},
    }
    verifier = SvsmVtpmVerifier(credential_key=KEY).with_roots(snp_roots())
    claims = verifier.verify(Evidence.from_json(document), report_data=nonce,
                             collateral=CollateralSource(), now=now)
    assert claims.svsm["activation"] == "checked"
    assert claims.tpm["pcr_select"] == {"sha256": [0, 1, 2, 3, 7]}
    forged = {**document, "activation": {"nonce": kbs_nonce, "credential": base64.b64encode(
        credential.activation_secret(nonce=kbs_nonce.encode(), ek_name=ek.name,
                                     ak_name=NAME, key=KEY)).decode()}}
    with pytest.raises(BindingError):
        verifier.verify(Evidence.from_json(forged), report_data=nonce,
                        collateral=CollateralSource(), now=now)
