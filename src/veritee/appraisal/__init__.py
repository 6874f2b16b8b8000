"""Appraisal: reference values and Rego policies turn verified claims into an EAR.

* :class:`PolicyEngine` evaluates attestation policies (claims → AR4SI trust vector, with an
  explanation of every rule) and resource policies (EAR claims + path → release or not).
  Policies are Rego, run by regorus (:mod:`veritee.appraisal.rego`). Shipped policies may
  also have a native evaluator, equivalence-tested against their Rego source and used only
  when the policy text is exactly the shipped one (:mod:`veritee.appraisal.native`).
* :mod:`veritee.appraisal.ear` signs and verifies EAR tokens (ES256).
* :mod:`veritee.appraisal.reference` models and parses reference values.

Never imports HTTP or the store (DESIGN.md layers).
"""

from veritee.appraisal.defaults import (
    DEFAULT_RESOURCE_POLICY,
    GENERIC_ATTESTATION_POLICY,
    UNSAFE_ALLOW_ALL_RESOURCE_POLICY,
    shipped_policy,
)
from veritee.appraisal.ear import (
    CLAIM_NAMES,
    EAR_PROFILE,
    EarIssuer,
    EarVerifier,
    load_or_create_signing_key,
    tee_pubkey_from_ear,
    verify_ear,
)
from veritee.appraisal.engine import CLAIM_RULES, PolicyEngine
from veritee.appraisal.errors import (
    EarAlgorithmError,
    EarError,
    EarExpiredError,
    EarKeyError,
    EarMalformedError,
    EarNotYetValidError,
    EarSignatureError,
    PolicyError,
    ReferenceValueError,
)
from veritee.appraisal.inputs import policy_input
from veritee.appraisal.reference import (
    ReferenceValue,
    active,
    parse_reference_values,
    reference_mapping,
)
from veritee.appraisal.result import Appraisal, Check, Decision
from veritee.appraisal.vector import TRUST_CLAIMS, Status, ear_status, ear_tier

__all__ = [
    "CLAIM_NAMES",
    "CLAIM_RULES",
    "DEFAULT_RESOURCE_POLICY",
    "EAR_PROFILE",
    "GENERIC_ATTESTATION_POLICY",
    "TRUST_CLAIMS",
    "UNSAFE_ALLOW_ALL_RESOURCE_POLICY",
    "Appraisal",
    "Check",
    "Decision",
    "EarAlgorithmError",
    "EarError",
    "EarExpiredError",
    "EarIssuer",
    "EarKeyError",
    "EarMalformedError",
    "EarNotYetValidError",
    "EarSignatureError",
    "EarVerifier",
    "PolicyEngine",
    "PolicyError",
    "ReferenceValue",
    "ReferenceValueError",
    "Status",
    "active",
    "ear_status",
    "ear_tier",
    "load_or_create_signing_key",
    "parse_reference_values",
    "policy_input",
    "reference_mapping",
    "shipped_policy",
    "tee_pubkey_from_ear",
    "verify_ear",
]
