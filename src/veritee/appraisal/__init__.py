"""Appraisal: reference values and Rego policies turn verified claims into an EAR.

* :mod:`veritee.appraisal.reference` models and parses reference values.

Never imports HTTP or the store (DESIGN.md layers).
"""

from veritee.appraisal.errors import PolicyError, ReferenceValueError
from veritee.appraisal.reference import (
    ReferenceValue,
    active,
    parse_reference_values,
    reference_mapping,
)
from veritee.appraisal.vector import TRUST_CLAIMS, Status, ear_status, ear_tier

__all__ = [
    "TRUST_CLAIMS",
    "PolicyError",
    "ReferenceValue",
    "ReferenceValueError",
    "Status",
    "active",
    "ear_status",
    "ear_tier",
    "parse_reference_values",
    "reference_mapping",
]
