"""The platforms: one room per TEE under ``veritee/tee/``, one descriptor per TEE name, and
the one registry that collects them.

A room is a package ``veritee/tee/<room>/`` whose ``__init__.py`` exports ``PLATFORM`` (a
:class:`~veritee.tee.platform.Platform`) or ``PLATFORMS`` (a tuple of them). The registry
finds rooms by listing this package's folders (``_private`` ones excepted), so adding a TEE
adds a folder and edits no list; a test checks the registry against the folders.

Every verifier has the :class:`Verifier` shape. :func:`get_verifier` is the only way the
broker and the CLI obtain one.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, Self

from veritee.errors import MisuseError, UnknownTeeError
from veritee.tee.platform import Platform, load

if TYPE_CHECKING:
    from veritee.claims import Claims
    from veritee.collateral import CollateralSource
    from veritee.evidence import Evidence


class TrustAnchor(Protocol):
    """A root a verifier trusts (pinned vendor root or an emulated one)."""

    @property
    def emulated(self) -> bool:
        """True for the test PKIs of :mod:`veritee.testing`; results then say so."""
        ...


class Verifier(Protocol):
    """Verify one piece of evidence; return typed claims or raise a VeriteeError leaf.

    The error contract is the same for every TEE: malformed, forged, stale or unbound
    evidence raises an :class:`~veritee.errors.EvidenceError` leaf (verdict ``rejected``);
    missing collateral or an unreachable vendor service an
    :class:`~veritee.errors.UndecidedError` leaf (``undecided``); a wrong call (a naive
    ``now``, a report-data value of the wrong size) a :class:`~veritee.errors.MisuseError`.
    Errors carry the claims parsed before the failure (``exc.claims``).
    """

    tee: str

    @property
    def roots(self) -> tuple[Any, ...]:
        """The trust anchors this verifier uses."""
        ...

    def with_roots(self, roots: Sequence[Any]) -> Self:
        """A new verifier trusting ``roots`` as well as this one's."""
        ...

    def verify(self, evidence: Evidence, *, report_data: bytes | None,
               collateral: CollateralSource, now: datetime) -> Claims: ...


@functools.cache
def platforms() -> tuple[Platform, ...]:
    """Every registered platform, sorted by TEE name.

    Raises:
        MisuseError: a room exports no descriptor, or two descriptors claim one TEE name.
    """
    found: dict[str, Platform] = {}
    for room in rooms():
        for platform in _descriptors(room):
            if platform.tee in found:
                raise MisuseError(f"TEE {platform.tee!r} is declared by rooms "
                                  f"{found[platform.tee].room!r} and {room!r}")
            found[platform.tee] = platform
    return tuple(found[name] for name in sorted(found))


def rooms() -> list[str]:
    """The room folders: packages below ``veritee/tee/`` not starting with ``_``."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__)
                  if info.ispkg and not info.name.startswith("_"))


def _descriptors(room: str) -> tuple[Platform, ...]:
    module = importlib.import_module(f"{__name__}.{room}")
    many = getattr(module, "PLATFORMS", None)
    one = getattr(module, "PLATFORM", None)
    declared = tuple(many) if many is not None else (one,) if one is not None else ()
    if not declared or not all(isinstance(p, Platform) for p in declared):
        raise MisuseError(f"veritee/tee/{room}/__init__.py exports no PLATFORM or PLATFORMS")
    wrong = [p.tee for p in declared if p.room != room]
    if wrong:
        raise MisuseError(f"descriptors {wrong} in veritee/tee/{room}/ name another room")
    return declared


def tee_names() -> list[str]:
    return [p.tee for p in platforms()]


def get_platform(tee: str) -> Platform:
    """The descriptor of ``tee``.

    Raises:
        UnknownTeeError: no platform is registered under ``tee``.
    """
    for platform in platforms():
        if platform.tee == tee:
            return platform
    raise UnknownTeeError(f"no verifier for TEE {tee!r}; known: {', '.join(tee_names())}")


def get_verifier(tee: str, *, trust_emulated: bool = False,
                 collateral_grace: timedelta = timedelta(0)) -> Verifier:
    """A new verifier for ``tee`` trusting the pinned vendor roots (and, if asked, the
    emulated roots of :mod:`veritee.testing`, whose results are marked ``emulated``).
    ``collateral_grace``: how long collateral past its nextUpdate is accepted, for verifiers
    that read dated collateral (``with_collateral_grace``; others ignore it).

    Raises:
        UnknownTeeError: no verifier is registered under ``tee``.
        MisuseError: emulated roots were asked for and the platform has none.
    """
    platform = get_platform(tee)
    verifier: Verifier = platform.load("verifier")()
    graced = getattr(verifier, "with_collateral_grace", None)
    if collateral_grace and graced is not None:
        verifier = graced(collateral_grace)
    if not trust_emulated:
        return verifier
    emulated = platform.load("emulated_roots")
    if emulated is None:
        raise MisuseError(f"TEE {tee!r} has no emulated roots to trust")
    return verifier.with_roots(tuple(emulated()))


__all__ = ["Platform", "TrustAnchor", "Verifier", "get_platform", "get_verifier", "load",
           "platforms", "rooms", "tee_names"]
