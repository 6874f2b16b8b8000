"""Fixed binary layouts declared once, as data (STYLE.md §2): one table of rows
``(field, offset, size, struct code[, since])`` gives the ``struct`` format, the field names
and sizes, the round trip, and the ranges that must be zero.

Codes are ``struct``'s (``B``, ``H``, ``I``, ``Q``) for integers, ``s`` for byte strings and
``x`` for a reserved range that must be zero. ``since`` marks a field that exists only from
that structure version on; in earlier versions its bytes are reserved and must be zero.

Shared by every TEE's byte layouts: no crypto, no I/O, no trust decisions.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from veritee.errors import MalformedEvidenceError

Row = tuple[str, int, int, str] | tuple[str, int, int, str, int]


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    offset: int
    size: int
    code: str
    since: int | None = None

    @property
    def end(self) -> int:
        return self.offset + self.size


class FieldTable:
    """One structure's layout, checked when declared (no gaps, sizes match their codes)."""

    def __init__(self, what: str, rows: Sequence[Row], *, size: int, byte_order: str = "<"):
        self.what = what
        self.size = size
        self.fields = tuple(Field(*row) for row in rows)
        fmt = byte_order
        offset = 0
        for f in self.fields:
            if f.offset != offset:
                raise AssertionError(f"{what}: layout gap or overlap before {f.name} at "
                                     f"{f.offset:#x}")
            if f.code in ("x", "s"):
                fmt += f"{f.size}{f.code}"
            elif struct.calcsize(byte_order + f.code) != f.size:
                raise AssertionError(f"{what}: {f.name} is {f.size} bytes, code {f.code!r}")
            else:
                fmt += f.code
            offset = f.end
        if offset != size:
            raise AssertionError(f"{what}: the layout covers {offset:#x} of {size:#x} bytes")
        self.struct = struct.Struct(fmt)
        self.names = tuple(f.name for f in self.fields if f.code != "x")
        self.sizes = {f.name: f.size for f in self.fields if f.code != "x"}
        self.byte_fields = frozenset(f.name for f in self.fields if f.code == "s")
        self._reserved = tuple((f.offset, f.end) for f in self.fields if f.code == "x")
        self._zero: dict[int | None, tuple[tuple[int, int], ...]] = {}

    def unpack(self, data: bytes) -> dict[str, Any]:
        """The named fields of the first :attr:`size` bytes of ``data``.

        Raises:
            MalformedEvidenceError: ``data`` is shorter than the structure.
        """
        if len(data) < self.size:
            raise MalformedEvidenceError(
                f"{self.what} is {len(data)} bytes, shorter than {self.size} ({self.size:#x})")
        return dict(zip(self.names, self.struct.unpack_from(data), strict=True))

    def pack(self, values: Mapping[str, Any]) -> bytes:
        """Pack named field values; reserved ranges become zero.

        Raises:
            MalformedEvidenceError: a value is missing or does not fit its field.
        """
        for name in self.names:
            value = values.get(name)
            if value is None:
                raise MalformedEvidenceError(f"{self.what} field {name} is missing")
            if isinstance(value, bytes) and len(value) != self.sizes[name]:
                raise MalformedEvidenceError(
                    f"{self.what} field {name} is {len(value)} bytes, expected "
                    f"{self.sizes[name]}")
        try:
            return self.struct.pack(*(values[n] for n in self.names))
        except struct.error as exc:
            raise MalformedEvidenceError(
                f"{self.what} fields do not fit the layout: {exc}") from exc

    def must_be_zero(self, version: int | None = None) -> tuple[tuple[int, int], ...]:
        """The reserved ranges ``[start, end)``, plus the fields that do not exist yet in
        structure ``version``."""
        ranges = self._zero.get(version)
        if ranges is None:
            later = tuple((f.offset, f.end) for f in self.fields
                          if f.since is not None and version is not None and version < f.since)
            ranges = self._zero[version] = tuple(sorted(self._reserved + later))
        return ranges

    def check_zero(self, raw: bytes, version: int | None = None) -> None:
        """Raise MalformedEvidenceError naming the first must-be-zero range that is not."""
        for start, end in self.must_be_zero(version):
            if raw[start:end].count(0) != end - start:
                where = f" in a version {version} {self.what}" if version is not None else ""
                raise MalformedEvidenceError(
                    f"reserved bytes [{start:#x}, {end:#x}) must be zero{where}, found "
                    f"{raw[start:end].hex()}")


__all__ = ["Field", "FieldTable", "Row"]
