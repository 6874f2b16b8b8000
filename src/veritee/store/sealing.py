"""Encryption at rest under a key-encryption key (KEK).

Each value is sealed with AES-256-GCM (NIST SP 800-38D) under the KEK itself, a fresh random
96-bit nonce per write, and associated data that names the row it belongs to:

* a resource: the resource path (UTF-8) — so a ciphertext copied to another path fails;
* a setting: ``b"setting\\x00" + key`` — disjoint from every resource path, which never
  contains NUL.

Random 96-bit nonces keep the collision risk negligible below 2**32 writes per KEK (SP 800-38D
§8.3); a store of secrets and settings stays orders of magnitude below that.

Every row records the *key id* of the KEK that sealed it — the first 16 hex digits of
SHA-256 over a label and the KEK, which names the key without revealing it. A store opened
with ``kek=new, previous_keks=[old]`` reads rows of both and seals new rows under ``new``;
``Store.rewrap_all`` then reseals every row under ``new`` so ``old`` can be retired.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.store.errors import StoreConfigError, StoreIntegrityError

KEK_SIZE: Final = 32
NONCE_SIZE: Final = 12
_KEY_ID_LABEL: Final = b"veritee.store.kek-id\x00"


def key_id(kek: bytes) -> str:
    """The public name of a KEK (16 hex digits)."""
    return hashlib.sha256(_KEY_ID_LABEL + kek).hexdigest()[:16]


def _check_kek(kek: bytes) -> bytes:
    if not isinstance(kek, bytes | bytearray) or len(kek) != KEK_SIZE:
        size = len(kek) if isinstance(kek, bytes | bytearray) else type(kek).__name__
        raise StoreConfigError(f"KEK must be {KEK_SIZE} bytes, got {size}")
    return bytes(kek)


def resource_aad(path: str) -> bytes:
    return path.encode()


def setting_aad(key: str) -> bytes:
    return b"setting\x00" + key.encode()


class Sealer:
    """Seals under the current KEK; opens under the current or any previous KEK."""

    def __init__(self, kek: bytes, previous: Iterable[bytes] = ()) -> None:
        current = _check_kek(kek)
        self.current_id = key_id(current)
        self._aeads: dict[str, AESGCM] = {}
        for old in previous:
            checked = _check_kek(old)
            self._aeads[key_id(checked)] = AESGCM(checked)
        self._aeads[self.current_id] = AESGCM(current)

    def seal(self, plaintext: bytes, aad: bytes) -> tuple[str, bytes, bytes]:
        """``(key_id, nonce, ciphertext||tag)`` under the current KEK."""
        nonce = os.urandom(NONCE_SIZE)
        return self.current_id, nonce, self._aeads[self.current_id].encrypt(nonce, plaintext, aad)

    def open(self, kid: str, nonce: bytes, ciphertext: bytes, aad: bytes, *, what: str) -> bytes:
        """The plaintext, or :class:`StoreIntegrityError` naming ``what`` (never the data)."""
        aead = self._aeads.get(kid)
        if aead is None:
            raise StoreIntegrityError(
                f"{what} is sealed under KEK {kid}, which this store does not hold "
                f"(current KEK is {self.current_id})"
            )
        try:
            return aead.decrypt(bytes(nonce), bytes(ciphertext), aad)
        except (InvalidTag, ValueError) as exc:
            raise StoreIntegrityError(f"{what} does not authenticate under KEK {kid}") from exc

    def rotated(self, new_kek: bytes) -> Sealer:
        """A sealer whose current KEK is ``new_kek`` and which still opens every old row."""
        sealer = Sealer(new_kek)
        sealer._aeads = {**self._aeads, **sealer._aeads}
        return sealer
