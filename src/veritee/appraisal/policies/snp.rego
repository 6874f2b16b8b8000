# veritee default attestation policy for AMD SEV-SNP.
# veritee: tees snp
#
# Input (veritee.appraisal.inputs.policy_input):
#   input.snp                 the verifier's claims (SnpClaims.to_dict()) plus Trustee's flat
#                             aliases (reported_tcb_bootloader, policy_debug_allowed, ...)
#   input.report_data, input.runtime_data_claims, input.init_data, input.init_data_claims
# Data:
#   data.reference            reference values, {name: [values]}
#
# Output:
#   trust_claims              an AR4SI trustworthiness vector (draft-ietf-rats-ar4si §2.3)
#   checks                    one entry per named rule: whether it held, the claim it read
#                             ("field", a path under input.snp) and the reference value it
#                             compared with ("reference"). veritee fills in both values and
#                             writes the explanation from them.
#
# Reference values read. Every comparison is type-checked: Rego orders values across types,
# so "3" >= 3 is true and an unguarded check would let a string through.
#   snp_launch_measurement    allowed launch measurements (hex, case ignored). Required.
#   snp_bootloader, snp_tee,  minimum TCB component versions. A component passes when it is a
#   snp_snp, snp_microcode    number >= one of the listed values, i.e. >= the smallest of them.
#                             A component without a reference value is not checked (the VCEK
#                             already certifies the reported TCB).
#   snp_host_data             allowed HOST_DATA values (hex); checked only when set.
#   allow_emulated            [true] accepts evidence from emulated (test) roots. Without it,
#                             emulated evidence is contraindicated.
#
# Trust claims, valued as Trustee's default CPU policy values them:
#   executables        3 when the measurement is a reference value, else 33 (warning)
#   hardware           2 when every checked TCB component meets its minimum, else 97
#                      (contraindicated); 96 for emulated evidence
#   configuration      2 when debug and migration agents are off and HOST_DATA is allowed,
#                      else 36 (warning)
#   instance-identity  2 for genuine evidence, 96 (contraindicated) for emulated evidence
# The status is affirming only when all four are.

package policy

import rego.v1

default refs := {}

refs := data.reference if is_object(data.reference)

default snp := {}

snp := input.snp if is_object(input.snp)

# -- executables: the launch measurement ---------------------------------------------------------

default measurement_known := false

measurement_known if {
	is_string(snp.measurement)
	some m in refs.snp_launch_measurement
	is_string(m)
	lower(m) == lower(snp.measurement)
}

default executables := 33

executables := 3 if measurement_known

# -- hardware: the reported TCB against minimums ---------------------------------------------------

tcb_refs := {
	"bootloader": "snp_bootloader",
	"tee": "snp_tee",
	"snp": "snp_snp",
	"microcode": "snp_microcode",
}

# Components without a reference value are not checked.
tcb_unchecked contains component if {
	some component, name in tcb_refs
	not refs[name]
}

tcb_meets contains component if {
	some component, name in tcb_refs
	value := snp.reported_tcb[component]
	is_number(value)
	some minimum in refs[name]
	is_number(minimum)
	value >= minimum
}

tcb_passing := tcb_unchecked | tcb_meets

default tcb_current := false

tcb_current if count(tcb_passing) == count(tcb_refs)

# -- instance identity: genuine or emulated roots --------------------------------------------------

default genuine := false

genuine if snp.emulated == false

genuine if {
	snp.emulated == true
	refs.allow_emulated == [true]
}

default instance_identity := 96

instance_identity := 2 if genuine

default hardware := 97

hardware := 2 if {
	genuine
	tcb_current
}

hardware := 96 if not genuine

# -- configuration: the guest policy and the host data ---------------------------------------------

default debug_off := false

debug_off if snp.policy_flags.debug == false

default migrate_ma_off := false

migrate_ma_off if snp.policy_flags.migrate_ma == false

default host_data_known := false

host_data_known if not refs.snp_host_data

host_data_known if {
	is_string(snp.host_data)
	some h in refs.snp_host_data
	is_string(h)
	lower(h) == lower(snp.host_data)
}

default configuration := 36

configuration := 2 if {
	debug_off
	migrate_ma_off
	host_data_known
}

# -- outputs ---------------------------------------------------------------------------------------

trust_claims := {
	"instance-identity": instance_identity,
	"configuration": configuration,
	"executables": executables,
	"hardware": hardware,
}

checks := [
	{
		"name": "snp.measurement", "held": measurement_known, "rule": "in",
		"field": "measurement", "reference": "snp_launch_measurement",
	},
	{
		"name": "snp.reported_tcb.bootloader", "held": "bootloader" in tcb_passing, "rule": "min",
		"field": "reported_tcb.bootloader", "reference": "snp_bootloader",
	},
	{
		"name": "snp.reported_tcb.tee", "held": "tee" in tcb_passing, "rule": "min",
		"field": "reported_tcb.tee", "reference": "snp_tee",
	},
	{
		"name": "snp.reported_tcb.snp", "held": "snp" in tcb_passing, "rule": "min",
		"field": "reported_tcb.snp", "reference": "snp_snp",
	},
	{
		"name": "snp.reported_tcb.microcode", "held": "microcode" in tcb_passing, "rule": "min",
		"field": "reported_tcb.microcode", "reference": "snp_microcode",
	},
	{
		"name": "snp.emulated", "held": genuine, "rule": "eq", "field": "emulated",
		"expected": false,
		"hint": "evidence from emulated roots passes only with reference value allow_emulated = [true]",
	},
	{
		"name": "snp.policy.debug", "held": debug_off, "rule": "eq",
		"field": "policy_flags.debug", "expected": false,
	},
	{
		"name": "snp.policy.migrate_ma", "held": migrate_ma_off, "rule": "eq",
		"field": "policy_flags.migrate_ma", "expected": false,
	},
	{
		"name": "snp.host_data", "held": host_data_known, "rule": "in", "optional": true,
		"field": "host_data", "reference": "snp_host_data",
	},
]
