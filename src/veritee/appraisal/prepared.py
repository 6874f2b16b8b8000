"""Reference values prepared once, when they change, for every appraisal until the next change.

A flow's appraisal must not cost more when the operator stores more reference values. So the
values are checked, normalised and indexed here, once per change, into the ``data`` document
attestation policies read:

* ``data.reference[name]`` — the values as stored, a list (Trustee's shape; what
  ``query_reference_value(name)`` returns);
* ``data.reference_lower[name]`` — ``{lowercase(value): true}`` for each ASCII string value:
  a case-insensitive membership test is one lookup, ``data.reference_lower.n[lower(x)]``,
  where ``some m in data.reference[n]; lower(m) == lower(x)`` visits every value.

A :class:`PreparedReferences` carries a ``generation``: the policy engine keys its compiled
policies by it instead of hashing the whole document per appraisal. The broker builds a new one
only when the store reports a change (:meth:`veritee.store.Store.reference_changes`); callers
that pass a plain mapping get one prepared per call.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from veritee.appraisal.errors import ReferenceValueError


@dataclass(frozen=True, slots=True, eq=False)
class PreparedReferences:
    """Reference values ``{name: [values]}`` with their index and a generation token."""

    values: Mapping[str, list[Any]]
    """The values by name (read-only)."""
    generation: str
    """Names this content: equal generations mean equal documents."""
    document: Mapping[str, Any] = field(repr=False)
    """``{"reference": values, "reference_lower": index}``, the policies' ``data``."""

    @classmethod
    def build(cls, values: Mapping[str, Any] | PreparedReferences, *,
              generation: str | None = None) -> PreparedReferences:
        """Check and index ``values``. ``generation`` names the content (the broker's change
        counter); without it, a digest of the content is used.

        Raises:
            ReferenceValueError: ``values`` is not ``{name: [values]}``.
        """
        if isinstance(values, PreparedReferences):
            return values
        if not isinstance(values, Mapping):
            raise ReferenceValueError(
                f"reference values are a {type(values).__name__}, not {{name: [values]}}")
        lists: dict[str, list[Any]] = {}
        lower: dict[str, dict[str, bool]] = {}
        for name, items in values.items():
            if not isinstance(name, str) or not isinstance(items, list | tuple):
                raise ReferenceValueError(
                    f"reference value {name!r} is {type(items).__name__}, not a list of values")
            lists[name] = list(items)
            index = {item.lower(): True for item in items
                     if isinstance(item, str) and item.isascii()}
            if index:
                lower[name] = index
        if generation is None:
            generation = _digest(lists)
        document = {"reference": lists, "reference_lower": lower}
        return cls(values=MappingProxyType(lists), generation=generation, document=document)

    def __len__(self) -> int:
        return len(self.values)


def _digest(values: Mapping[str, list[Any]]) -> str:
    try:
        text = json.dumps(values, sort_keys=True, allow_nan=True, ensure_ascii=False,
                          separators=(",", ":"), default=repr)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ReferenceValueError(f"reference values are not JSON: {exc}") from exc
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


__all__ = ["PreparedReferences"]
