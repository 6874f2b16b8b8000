# veritee default attestation policy for AMD SEV and SEV-ES launches (pre-attestation).
# veritee: tees sev, sev-es
#
# Input (veritee.appraisal.inputs.policy_input):
#   input.sev or input["sev-es"]  the verifier's claims (SevClaims.to_dict()): the launch
#                             digest whose LAUNCH_MEASURE verified under the session's TIK,
#                             the guest policy, the firmware API version, emulated or not
# Data:
#   data.reference            reference values, {name: [values]}
#   data.reference_lower      {name: {lowercased value: true}} for the ASCII string values
#
# What this evidence is worth. The host relays the launch measurement; it is authentic only
# to the extent that the TIK stayed secret and the platform's PDH is a real AMD key. Both
# SEV generations have architectural weaknesses that firmware updates do not remove (the
# seed's "undeSErVed trust": a host can replay or forge the platform's keys after extracting
# them from a vulnerable secure processor, and "Insecure until Proven Updated": the firmware
# version is reported by the firmware itself, so a downgraded part can claim to be current).
# So this policy never affirms the hardware, and never lets a secret go, unless the operator
# opts in for the launch digest in question (reference value sev_accept_host_relayed).
#
# Reference values read:
#   sev_launch_digest         the launch digests allowed (hex; `veritee measure sev` and
#                             `veritee measure sev-es --as-reference-values` print them).
#                             Required.
#   sev_accept_host_relayed   the launch digests for which the operator accepts a
#                             host-relayed measurement despite the weaknesses above (hex).
#                             Required for release: the opt-in is per reference value.
#   sev_min_api_major,        the lowest firmware API version accepted (numbers); checked
#   sev_min_api_minor         when sev_min_api_major is set (minor defaults to 0).
#   sev_allow_debug           [true] accepts a guest policy without NODBG (the host can
#                             then read and write guest memory). Without it NODBG must be set.
#   allow_emulated            [true] accepts launches on emulated (test) platforms.
#
# Trust claims:
#   executables        3   the launch digest is a reference value; 33 (warning) otherwise
#   hardware           2   genuine, opted in, API version at least the minimum
#                      32  (warning: known vulnerabilities) not opted in for this digest
#                      97  (contraindicated: not recognised) the API version is below the
#                          minimum
#                      96  (contraindicated) emulated platform
#   configuration      2   NODBG set (or debug allowed), and ES set for sev-es
#                      36  (warning) otherwise
#   instance-identity  2   genuine platform; 96 (contraindicated) emulated
# The status is affirming only when all four are.

package policy

import rego.v1

default refs := {}

refs := data.reference if is_object(data.reference)

default lowered := {}

lowered := data.reference_lower if is_object(data.reference_lower)

default sev := {}

sev := input.sev if is_object(input.sev)

sev := input["sev-es"] if is_object(input["sev-es"])

default digest := ""

digest := lower(sev.launch_digest) if is_string(sev.launch_digest)

# -- executables: the launch digest ----------------------------------------------------------------

default digest_known := false

digest_known if lowered.sev_launch_digest[digest] == true

default executables := 33

executables := 3 if digest_known

# -- hardware: the opt-in, the firmware version, genuine or emulated -------------------------------

default opted_in := false

opted_in if lowered.sev_accept_host_relayed[digest] == true

default genuine := false

genuine if sev.emulated == false

genuine if {
	sev.emulated == true
	refs.allow_emulated == [true]
}

default min_minor := 0

min_minor := refs.sev_min_api_minor[0] if is_number(refs.sev_min_api_minor[0])

default api_ok := false

api_ok if not refs.sev_min_api_major

api_ok if {
	is_number(refs.sev_min_api_major[0])
	is_number(sev.api_major)
	sev.api_major > refs.sev_min_api_major[0]
}

api_ok if {
	is_number(refs.sev_min_api_major[0])
	is_number(sev.api_major)
	is_number(sev.api_minor)
	sev.api_major == refs.sev_min_api_major[0]
	sev.api_minor >= min_minor
}

default hardware := 32

hardware := 2 if {
	genuine
	opted_in
	api_ok
}

hardware := 97 if {
	genuine
	not api_ok
}

hardware := 96 if not genuine

default instance_identity := 96

instance_identity := 2 if genuine

# -- configuration: the guest policy ---------------------------------------------------------------

default debug_allowed := false

debug_allowed if refs.sev_allow_debug == [true]

default debug_ok := false

debug_ok if sev.debug == false

debug_ok if {
	debug_allowed
	sev.debug == true
}

default es_ok := false

es_ok if sev.tee == "sev"

es_ok if {
	sev.tee == "sev-es"
	sev.es == true
}

default configuration := 36

configuration := 2 if {
	debug_ok
	es_ok
}

# -- outputs ---------------------------------------------------------------------------------------

trust_claims := {
	"instance-identity": instance_identity,
	"configuration": configuration,
	"executables": executables,
	"hardware": hardware,
}

debug_check := {
	"name": "sev.policy.nodbg", "held": debug_ok, "rule": "eq", "field": "debug",
	"expected": false,
	"hint": "the guest policy must set NODBG unless reference value sev_allow_debug = [true]",
} if not debug_allowed

debug_check := {
	"name": "sev.policy.nodbg", "held": debug_ok, "rule": "in", "field": "debug",
	"expected": [false, true], "reference": "sev_allow_debug",
} if debug_allowed

api_check := {
	"name": "sev.api_version", "held": api_ok, "rule": "min", "field": "api_major",
	"reference": "sev_min_api_major",
} if refs.sev_min_api_major

api_check := {
	"name": "sev.api_version", "held": true, "optional": true, "field": "api_major",
	"detail": "no minimum firmware API version is set (reference value sev_min_api_major)",
} if not refs.sev_min_api_major

checks := [
	{
		"name": "sev.launch_digest", "held": digest_known, "rule": "in",
		"field": "launch_digest", "reference": "sev_launch_digest",
	},
	{
		"name": "sev.host_relayed", "held": opted_in, "rule": "in", "field": "launch_digest",
		"reference": "sev_accept_host_relayed",
		"hint": concat(" ", [
			"a SEV or SEV-ES launch measurement is relayed by the host and the platform has",
			"architectural weaknesses firmware cannot fix (undeSErVed trust, Insecure until",
			"Proven Updated); list the digest in reference value sev_accept_host_relayed to",
			"accept it anyway",
		]),
	},
	{
		"name": "sev.emulated", "held": genuine, "rule": "eq", "field": "emulated",
		"expected": false,
		"hint": "launches on emulated platforms pass only with reference value allow_emulated = [true]",
	},
	api_check,
	debug_check,
	{
		"name": "sev.policy.es", "held": es_ok, "rule": "eq", "field": "es", "expected": true,
		"hint": "a sev-es launch must have the ES bit set in its guest policy",
	},
]
