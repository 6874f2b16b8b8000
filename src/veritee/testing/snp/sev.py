"""An emulated SEV / SEV-ES firmware with its own test PKI.

TEST KEYS ONLY. Every key here is public (committed primes, or derived from a fixed public
seed): nothing they sign is
trusted unless a caller passes :func:`emulated_sev_roots` as ``roots=`` explicitly, and
results then say ``emulated``.

The PKI has the real shape (research note amd-sev.md §3.4): per emulated product an ARK and
an ASK in AMD CA format (RSA-2048, RSA-PSS SHA-256, as on Naples), and per platform a CEK
signed by the ASK, a self-signed OCA, a PEK signed by both, and a PDH signed by the PEK
(ECDSA/ECDH P-384). The launch commands follow 55766 §6 (LAUNCH_START, LAUNCH_UPDATE_DATA,
LAUNCH_UPDATE_VMSA, LAUNCH_MEASURE, LAUNCH_SECRET).
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from veritee.errors import MisuseError
from veritee.tee.snp import session
from veritee.tee.snp.sevcert import (
    Algo,
    AmdCaCert,
    SevCert,
    SevChain,
    SevRoot,
    Usage,
    sign_bytes,
)

#: The emulated product lines (names as the real ones; every root says ``emulated``).
PRODUCTS: Final = ("rome", "milan")
CEK_API: Final = (0, 14)

# --- committed test keys --------------------------------------------------------------------

#: The primes of the test ARK and ASK keys (RSA-2048, e = 65537), generated once with
#: ``cryptography`` and committed so that certificates are the same in every process.
_RSA_PRIMES: Final[dict[str, tuple[str, str]]] = {
    "rome-ark": (
        "f9ec5d2f2b18e5a28c7505824351601f41e5dfe4f87d9629a709f63df7c0215387c3eed9872fb29b136133d9"
        "8e55ccb57b2a330693ae72eee0661f618acbecd3e8fb2d79da13fa4ef301d3941378afa55de4dd8a887e0a1a"
        "d32f591163f42dc2c4d086cf86a2f20487672b56d03d6fcb86b67752a1708f7a0dceeacd89b1148f",
        "d0a9dc1b2aeb2e7bdf9c498b6aebe5a17b876dc463754404791d2cc654a6af2c33929fcbee2d07dc8b5e0b72"
        "426c7feb036c7c23cf1ba9d75fcdbdc2bc068b0577cfea4a609d737a435578226f4bdc451f54b8c9bc3b586d"
        "6fa0c208b0fc44fec67654af7162242462d6779d66e6104a295adfe46202e42299a365ab809e31eb"),
    "rome-ask": (
        "c4de8eee01fe8e445ec06bc0db7a501728cf8507a34133ed07a8bfdb37cfa4bf9818c3a18545a700c0591ec7"
        "f30930c6f63e6891a9c9d474adfb23fc00f86571873d660a35cb10e6d8abf1d7a90f54daea77385083dde183"
        "2ecb842e25f2faa52256317bdc914e81df387ca86086248f73cc97643d925b3bac85449007e7949f",
        "c2dba1186c7f4ef7fbb7176189388c2be06da30094d6718d69c5bab9f1c1bbb56dc898be9339f37769c481e8"
        "0ef6c85dd80668280e46916be5409cf7c9529e904a610936288def62cfb992affb2d680fd683e3dcff6d4bff"
        "b7bc0416d41fbde4490c7ab21233c68cbcfb869a3e6a24ec9d5243014edd1fcd98deda4b49bdb6f1"),
    "milan-ark": (
        "bed0ed1ef7ca0add264be221e1baa5a94c00412717c9de89c20a195278c04598099af2e915d02b1e49543502"
        "3d040e2d2dcf82be49a345ea45ca88941cc9f2833c763fdc776f49e4a8f92d812c50dc5ba8b70787d998dc94"
        "115642192b1af25c774b5bad6db3e1ec0514e8f126e18ab85569faf12a0dd84e43e77c17c882b625",
        "bcc27b949cfe8512c13d2a979567e7c2eaded6dcced1d804a60634dd2e1cf46b622b63cc109fa6afbf82cefe"
        "15538793455d626a2f253ba3ebc324ab9b89c48b4e9fa8ed56a7f0a0ab01ffd2e100b99fec71d09489e01f5f"
        "48c43890576d6d95daf1295353b507b2089f1bc0acd39f324a805fea2cc935ce095d82f0c4b6fbe7"),
    "milan-ask": (
        "fc7fe1cc84e645485b1dfd0c0dee39b9c374987f45260d817429263249c2ebf39d294640b8d0f89f7a85de32"
        "77715e298def3a4cafeccdf4acf15f8e465ac6458206addaf19deeaf0785a1df9199f2206daae17123048ec7"
        "f64b26008cb65593e67579d0d5ff5f09f89c2fed1d6f7a11d20d490d2e8b29826318401b19b31c4f",
        "fbb567911b5277416d99388c214807f4614c549dd3e60ee77a6b9bc07e39cd4e3b41f20999616eff934c8188"
        "38423fce6afd5438a010df8ecc64a1b6ebe48bd4d47d14b8a02a460854e59a5a7e944eb2a0dd78ca2dc6f9ea"
        "bcf6e77bcba0f69251c2f7c56a09b6381dffb3abbb43123539df0a47184852759471233d783245c9"),
}


@cache
def test_rsa_key(name: str) -> rsa.RSAPrivateKey:
    """The committed RSA-2048 test key ``<product>-{ark,ask}``."""
    if name not in _RSA_PRIMES:
        raise MisuseError(f"no SEV test RSA key {name!r}")
    p, q = (int(h, 16) for h in _RSA_PRIMES[name])
    e = 65537
    d = pow(e, -1, (p - 1) * (q - 1))
    public = rsa.RSAPublicNumbers(e, p * q)
    return rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q),
                                 rsa.rsa_crt_iqmp(p, q), public).private_key()


@cache
def seeded_ec_key(seed: bytes) -> ec.EllipticCurvePrivateKey:
    """A P-384 key derived from ``seed``."""
    order = int("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
                "581a0db248b0a77aecec196accc52973", 16)  # the order of P-384 (FIPS 186-4 D.1.2.4)
    value = int.from_bytes(hashlib.sha512(b"veritee-test-ec:" + seed).digest(), "big")
    return ec.derive_private_key(1 + value % (order - 1), ec.SECP384R1())


# --- the test PKI --------------------------------------------------------------------------


def _key_id(name: str) -> bytes:
    return hashlib.sha256(b"veritee-test-key-id:" + name.encode()).digest()[:16]


@dataclass(frozen=True, slots=True)
class EmulatedProduct:
    """One emulated product's ARK and ASK with their private keys."""

    root: SevRoot
    ark_key: rsa.RSAPrivateKey
    ask_key: rsa.RSAPrivateKey


@cache
def emulated_product(product: str) -> EmulatedProduct:
    """The test ARK and ASK of ``product`` (one of :data:`PRODUCTS`)."""
    if product not in PRODUCTS:
        raise MisuseError(f"no emulated SEV product {product!r}; choose from {PRODUCTS}")
    ark_key = test_rsa_key(f"{product}-ark")
    ask_key = test_rsa_key(f"{product}-ask")
    ark_id, ask_id = _key_id(f"{product}-ark"), _key_id(f"{product}-ask")
    ark = AmdCaCert.build(key=ark_key.public_key(), key_id=ark_id, usage=Usage.ARK,
                          issuer_key=ark_key, certifying_id=ark_id)
    ask = AmdCaCert.build(key=ask_key.public_key(), key_id=ask_id, usage=Usage.ASK,
                          issuer_key=ark_key, certifying_id=ark_id)
    return EmulatedProduct(SevRoot(product, ark, ask, emulated=True), ark_key, ask_key)


def emulated_sev_roots() -> tuple[SevRoot, ...]:
    """The test roots, for ``verify_platform_chain(..., roots=emulated_sev_roots())``."""
    return tuple(emulated_product(p).root for p in PRODUCTS)


@dataclass(frozen=True, slots=True)
class PlatformKeys:
    """A platform's CEK, OCA, PEK and PDH private keys."""

    cek: ec.EllipticCurvePrivateKey
    oca: ec.EllipticCurvePrivateKey
    pek: ec.EllipticCurvePrivateKey
    pdh: ec.EllipticCurvePrivateKey


def platform_keys(seed: str) -> PlatformKeys:
    return PlatformKeys(*(seeded_ec_key(f"sev-{seed}-{role}".encode())
                          for role in ("cek", "oca", "pek", "pdh")))


def build_chain(keys: PlatformKeys, ask_key: rsa.RSAPrivateKey, *, api: tuple[int, int],
                ask: AmdCaCert | None = None, ark: AmdCaCert | None = None) -> SevChain:
    """A SEV chain for ``keys``: CEK ← ``ask_key``, OCA self, PEK ← OCA and CEK, PDH ← PEK."""
    ask_algo = Algo.RSA_SHA256 if ask_key.key_size == 2048 else Algo.RSA_SHA384
    major, minor = api
    cek = (SevCert.build(keys.cek.public_key(), usage=Usage.CEK, algo=Algo.ECDSA_SHA256,
                         api_major=CEK_API[0], api_minor=CEK_API[1])
           .signed(Usage.ASK, ask_algo, ask_key))
    oca = (SevCert.build(keys.oca.public_key(), usage=Usage.OCA, algo=Algo.ECDSA_SHA256,
                         api_major=major, api_minor=minor)
           .signed(Usage.OCA, Algo.ECDSA_SHA256, keys.oca))
    pek = (SevCert.build(keys.pek.public_key(), usage=Usage.PEK, algo=Algo.ECDSA_SHA256,
                         api_major=major, api_minor=minor)
           .signed(Usage.OCA, Algo.ECDSA_SHA256, keys.oca)
           .signed(Usage.CEK, Algo.ECDSA_SHA256, keys.cek, slot=2))
    pdh = (SevCert.build(keys.pdh.public_key(), usage=Usage.PDH, algo=Algo.ECDH_SHA256,
                         api_major=major, api_minor=minor)
           .signed(Usage.PEK, Algo.ECDSA_SHA256, keys.pek))
    return SevChain(pdh, pek, oca, cek, ask=ask, ark=ark)


@cache
def _platform_chain(product: str, seed: str, api: tuple[int, int]) -> SevChain:
    emulated = emulated_product(product)
    return build_chain(platform_keys(seed), emulated.ask_key, api=api,
                       ask=emulated.root.ask, ark=emulated.root.ark)


# --- the firmware --------------------------------------------------------------------------

PAGE_SIZE: Final = 4096


class SevFirmware:
    """One emulated SEV platform running one guest launch at a time.

    States (55766 §6): UNINIT → ``launch_start`` → LUPDATE → ``launch_measure`` → LSECRET.
    Commands out of order raise :class:`~veritee.errors.MisuseError`; bad inputs raise the
    errors of :func:`veritee.tee.snp.session.open_session` and
    :func:`~veritee.tee.snp.session.open_secret_packet`.
    """

    def __init__(self, product: str = "rome", *, seed: str = "platform-1", api_major: int = 0,
                 api_minor: int = 24, build_id: int = 15) -> None:
        self.product = product
        self.api_major, self.api_minor, self.build_id = api_major, api_minor, build_id
        self.keys = platform_keys(seed)
        self.chain = _platform_chain(product, seed, (api_major, api_minor))
        self._state = "uninit"
        self._policy = 0
        self._tek = self._tik = b""
        self._digest = hashlib.sha256()
        self._vmsa = False
        self._measure = b""
        self._secret: bytes | None = None

    # -- the platform's certificates --

    def export_full(self) -> bytes:
        """``sevctl export --full``: PDH ‖ PEK ‖ OCA ‖ CEK ‖ ASK ‖ ARK."""
        return self.chain.to_export()

    def query_sev_capabilities(self) -> dict[str, Any]:
        """QEMU's ``query-sev-capabilities`` answer."""
        cpu0 = hashlib.sha512(self.chain.cek.pubkey).digest()
        return {**self.chain.to_qemu(), "cpu0-id": base64.b64encode(cpu0).decode(),
                "cbitpos": 47, "reduced-phys-bits": 1}

    # -- launch commands --

    def launch_start(self, godh_cert: bytes, session_blob: bytes, policy: int) -> None:
        """LAUNCH_START: unwrap TEK and TIK (checks WRAP_MAC and POLICY_MAC)."""
        self._need("uninit", "LAUNCH_START")
        session.SevPolicy.from_int(policy)
        self._tek, self._tik = session.open_session(self.keys.pdh, godh_cert, session_blob,
                                                    policy)
        self._policy, self._state = policy, "lupdate"

    def launch_update_data(self, data: bytes) -> None:
        """LAUNCH_UPDATE_DATA: measure (and, on hardware, encrypt) guest memory."""
        self._need("lupdate", "LAUNCH_UPDATE_DATA")
        if self._vmsa:
            raise MisuseError("LAUNCH_UPDATE_DATA after LAUNCH_UPDATE_VMSA")
        self._digest.update(data)

    def launch_update_vmsa(self, pages: Sequence[bytes]) -> None:
        """LAUNCH_UPDATE_VMSA (SEV-ES only): measure each vCPU's 4 KiB VMSA page."""
        self._need("lupdate", "LAUNCH_UPDATE_VMSA")
        if not session.SevPolicy.from_int(self._policy).es:
            raise MisuseError(f"LAUNCH_UPDATE_VMSA needs an SEV-ES guest; policy "
                              f"{self._policy:#x} lacks the ES bit")
        for page in pages:
            if len(page) != PAGE_SIZE:
                raise MisuseError(f"a VMSA page is {PAGE_SIZE} bytes, not {len(page)}")
        for page in pages:
            self._digest.update(page)
        self._vmsa = True

    def launch_measure(self, *, mnonce: bytes | None = None) -> tuple[bytes, bytes]:
        """LAUNCH_MEASURE: ``(MEASURE, MNONCE)``; no more updates afterwards."""
        self._need("lupdate", "LAUNCH_MEASURE")
        nonce = os.urandom(16) if mnonce is None else mnonce
        self._measure = session.launch_measure(
            self._tik, self.api_major, self.api_minor, self.build_id, self._policy,
            self.launch_digest, nonce)
        self._state = "lsecret"
        return self._measure, nonce

    def launch_secret(self, header: bytes, ciphertext: bytes) -> None:
        """LAUNCH_SECRET: check the MAC with this launch's MEASURE, decrypt with the TEK.

        A packet whose MAC fails ends the launch: later packets are refused too.
        """
        self._need("lsecret", "LAUNCH_SECRET")
        try:
            self._secret = session.open_secret_packet(self._tek, self._tik, self._measure,
                                                      header, ciphertext)
        except Exception:
            self._state = "failed"
            raise

    def attestation_report(self, mnonce: bytes) -> bytes:
        """ATTESTATION (SEV API ≥ 0.23): the launch digest and ``mnonce`` signed by the PEK
        (:mod:`veritee.tee.snp.sev_report`); after LAUNCH_MEASURE."""
        if self._state not in ("lsecret", "running"):
            raise MisuseError(f"ATTESTATION in state {self._state.upper()}; it needs LSECRET")
        if len(mnonce) != 16:
            raise MisuseError(f"the report's MNONCE is 16 bytes, not {len(mnonce)}")
        head = mnonce + self.launch_digest + struct.pack("<III", self._policy, Usage.PEK,
                                                         Algo.ECDSA_SHA256)
        # Signed: MNONCE, LAUNCH_DIGEST and POLICY ([0x00, 0x34)).
        signature = sign_bytes(self.keys.pek, Algo.ECDSA_SHA256, head[:0x34])[:144]
        return head + bytes(4) + signature

    @property
    def launch_digest(self) -> bytes:
        """The SHA-256 launch digest of what was measured so far."""
        return self._digest.copy().digest()

    @property
    def secret_area(self) -> bytes:
        """The decrypted secret table the last LAUNCH_SECRET wrote."""
        if self._secret is None:
            raise MisuseError("no LAUNCH_SECRET has been injected")
        return self._secret

    def _need(self, state: str, command: str) -> None:
        if self._state != state:
            raise MisuseError(f"{command} in state {self._state.upper()}; it needs "
                              f"{state.upper()}")


__all__ = [
    "PRODUCTS",
    "EmulatedProduct",
    "PlatformKeys",
    "SevFirmware",
    "build_chain",
    "emulated_product",
    "emulated_sev_roots",
    "platform_keys",
    "seeded_ec_key",
    "test_rsa_key",
]
