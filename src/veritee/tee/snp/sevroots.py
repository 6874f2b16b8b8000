"""Trust anchors for SEV and SEV-ES: AMD's ARK and ASK per product, in AMD CA format,
pinned by SHA-256.

The files under ``sev_roots/`` are AMD's public roots as virtee/sev ships them
(``src/certs/sev/builtin/<product>/{ark,ask}.cert``; research note amd-sev.md §3.4, §7).
A file is used only when its SHA-256 is the one written here; they are read when asked for,
not at import.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Final

from veritee.errors import MisuseError
from veritee.tee.snp.sevcert import AmdCaCert, SevRoot

PRODUCTS: Final = ("naples", "rome", "milan", "genoa", "turin")

#: SHA-256 of ``sev_roots/<product>_{ark,ask}.cert`` (the pins).
PINS: Final[dict[str, tuple[str, str]]] = {
    "naples": ("dedabca561e1dece8cc00b7bda864cf5f20b95017864408cfe18eaee0dce24b9",
               "c6f30cf923f526c3bcd5c8c221db51e0db65911782f046de17a6603131cdfd7f"),
    "rome": ("865977b268c16d5b27772b00aaefb4e737ba9499e818ed8e9f65b0cecefbc529",
             "7754a69407d25540fe3a695be6b02c58a53bffd12594f5c30793d6cb62875706"),
    "milan": ("1246469862b78a7a8625579b0378d1f8e975eb8b82a1623b579d7968a5969888",
              "c7c73765561c58003a3d09adb2c76993027dd3a1ec4e9be876024c035e015cec"),
    "genoa": ("8f4e3fd36589c23f1fe0c8338465bac7e2e066d97fc92f228bbee4fd356fb674",
              "c30307e4f594fb6c51fd753ab758eb78ad4bb70d9e4d96690e51c0621901031d"),
    "turin": ("f6405e5096a6eee1eb7d5df75c49f9b9f7c8357a31c7fff150149d68588a7bf7",
              "2ee285477f0d5eb94a69029197f4cf58ca82d8e1b9a276da1ac45b0db3f4be56"),
}


def root_file(product: str, role: str) -> bytes:
    """The bytes of ``sev_roots/<product>_<role>.cert`` (``role`` is ``ark`` or ``ask``),
    checked against its pin.

    Raises:
        MisuseError: an unknown product or role, or a file that does not match its pin
            (a damaged installation).
    """
    if product not in PINS or role not in ("ark", "ask"):
        raise MisuseError(f"no pinned SEV {role!r} for product {product!r}")
    data = (resources.files("veritee.tee.snp").joinpath("sev_roots", f"{product}_{role}.cert")
            .read_bytes())
    want = PINS[product][0 if role == "ark" else 1]
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise MisuseError(f"sev_roots/{product}_{role}.cert has sha256 {got}, pinned {want}: "
                          "the installed package is damaged")
    return data


def pinned_roots() -> tuple[SevRoot, ...]:
    """AMD's SEV roots for the five products (the default trust anchors)."""
    return tuple(SevRoot(product, AmdCaCert.parse(root_file(product, "ark")),
                         AmdCaCert.parse(root_file(product, "ask"))) for product in PRODUCTS)


def pinned() -> dict[str, tuple[AmdCaCert, AmdCaCert]]:
    """``{product: (ARK, ASK)}`` of :func:`pinned_roots`."""
    return {root.product: (root.ark, root.ask) for root in pinned_roots()}


__all__ = ["PINS", "PRODUCTS", "pinned", "pinned_roots", "root_file"]
