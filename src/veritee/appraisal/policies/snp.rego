# veritee default attestation policy for AMD SEV-SNP.
# veritee: tees snp
#
# Input (veritee.appraisal.inputs.policy_input):
#   input.snp                 the verifier's claims (SnpClaims.to_dict()) plus Trustee's flat
#                             aliases (reported_tcb_bootloader, policy_debug_allowed, ...)
#   input.report_data, input.runtime_data_claims, input.init_data, input.init_data_claims
#   input.veritee             the broker's settings: require_revocation (true: a CRL from
#                             AMD's ARK must have been checked; absent or anything else: not
#                             required)
# Data:
#   data.reference            reference values, {name: [values]}
#   data.reference_lower      {name: {lowercased value: true}} for the ASCII string values: one
#                             lookup, whatever the number of values
#
# Output:
#   trust_claims              an AR4SI trustworthiness vector (draft-ietf-rats-ar4si §2.3)
#   checks                    one entry per named rule: whether it held, the claim it read
#                             ("field", a path under input.snp) and the reference value it
#                             compared with ("reference"). veritee fills in both values and
#                             writes the explanation from them.
#
# The policy fails closed: what no reference value vouches for is not trusted. Every
# comparison is type-checked: Rego orders values across types, so "3" >= 3 is true and an
# unguarded check would let a string through.
#
# Reference values read:
#   snp_launch_measurement    allowed launch measurements (hex, case ignored). Required.
#   snp_bootloader, snp_tee,  minimum TCB component versions. A component passes when it is a
#   snp_snp, snp_microcode,   number >= one of the listed values, i.e. >= the smallest of them.
#   snp_fmc                   Required: a component without a reference value is not
#                             recognised (as in Trustee's default policy). snp_fmc is read only
#                             when the reported TCB has an fmc component (Turin).
#   snp_vmpl                  the VMPLs allowed (numbers). Without it only VMPL 0 passes: a
#                             report requested from a less privileged context carries
#                             REPORT_DATA that context chose (Trustee refuses VMPL != 0).
#   snp_allow_debug           [true] accepts a guest policy that allows debugging (the host
#                             can then read guest memory). Without it, DEBUG must be 0.
#   snp_allow_migrate_ma      [true] accepts a guest policy that allows a migration agent.
#                             Without it, MIGRATE_MA must be 0.
#   snp_host_data             allowed HOST_DATA values (hex); checked only when set.
#   allow_emulated            [true] accepts evidence from emulated (test) roots. Without it,
#                             emulated evidence is contraindicated.
#
# Trust claims, valued as Trustee's default CPU policy values them:
#   executables        3   the measurement is a reference value
#                      33  (warning) otherwise
#   hardware           2   genuine, every TCB component meets its minimum, and revocation
#                          was checked when the broker requires it
#                      97  (contraindicated: not recognised) a TCB component is below its
#                          minimum or has no reference value, or revocation is required and
#                          snp.revocation is not "checked"
#                      96  (contraindicated) emulated evidence
#   configuration      2   VMPL allowed, debug and migration agent off (or allowed), HOST_DATA
#                          allowed
#                      96  (contraindicated) the VMPL is not allowed
#                      36  (warning) otherwise: debug or migration agent on and not allowed,
#                          or HOST_DATA not allowed
#   instance-identity  2   genuine evidence
#                      96  (contraindicated) emulated evidence
# The status is affirming only when all four are.

package policy

import rego.v1

default refs := {}

refs := data.reference if is_object(data.reference)

# The ASCII string values of each name, lowercased: {value: true} (veritee.appraisal.prepared).
default lowered := {}

lowered := data.reference_lower if is_object(data.reference_lower)

default snp := {}

snp := input.snp if is_object(input.snp)

# -- executables: the launch measurement ---------------------------------------------------------

default measurement_known := false

measurement_known if {
	is_string(snp.measurement)
	lowered.snp_launch_measurement[lower(snp.measurement)] == true
}

default executables := 33

executables := 3 if measurement_known

# -- hardware: the reported TCB against minimums, revocation ---------------------------------------

tcb_refs := {
	"bootloader": "snp_bootloader",
	"tee": "snp_tee",
	"snp": "snp_snp",
	"microcode": "snp_microcode",
	"fmc": "snp_fmc",
}

default fmc_reported := false

fmc_reported if {
	is_object(snp.reported_tcb)
	"fmc" in object.keys(snp.reported_tcb)
}

# The fmc component exists on Turin only; elsewhere it does not apply.
tcb_not_applicable contains "fmc" if not fmc_reported

# A component without a reference value does not meet any minimum (fails closed).
tcb_meets contains component if {
	some component, name in tcb_refs
	value := snp.reported_tcb[component]
	is_number(value)
	some minimum in refs[name]
	is_number(minimum)
	value >= minimum
}

tcb_passing := tcb_not_applicable | tcb_meets

default tcb_current := false

tcb_current if count(tcb_passing) == count(tcb_refs)

default revocation_required := false

revocation_required if input.veritee.require_revocation == true

default revocation_ok := false

revocation_ok if not revocation_required

revocation_ok if snp.revocation == "checked"

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
	revocation_ok
}

hardware := 96 if not genuine

# -- configuration: VMPL, the guest policy and the host data ---------------------------------------

default vmpl_ok := false

vmpl_ok if {
	not refs.snp_vmpl
	is_number(snp.vmpl)
	snp.vmpl == 0
}

vmpl_ok if {
	refs.snp_vmpl
	is_number(snp.vmpl)
	some allowed in refs.snp_vmpl
	is_number(allowed)
	allowed == snp.vmpl
}

default debug_allowed := false

debug_allowed if refs.snp_allow_debug == [true]

default migrate_ma_allowed := false

migrate_ma_allowed if refs.snp_allow_migrate_ma == [true]

default debug_ok := false

debug_ok if snp.policy_flags.debug == false

debug_ok if {
	debug_allowed
	snp.policy_flags.debug == true
}

default migrate_ma_ok := false

migrate_ma_ok if snp.policy_flags.migrate_ma == false

migrate_ma_ok if {
	migrate_ma_allowed
	snp.policy_flags.migrate_ma == true
}

default host_data_known := false

host_data_known if not refs.snp_host_data

host_data_known if {
	is_string(snp.host_data)
	lowered.snp_host_data[lower(snp.host_data)] == true
}

default configuration := 36

configuration := 2 if {
	vmpl_ok
	debug_ok
	migrate_ma_ok
	host_data_known
}

configuration := 96 if not vmpl_ok

# -- outputs ---------------------------------------------------------------------------------------

trust_claims := {
	"instance-identity": instance_identity,
	"configuration": configuration,
	"executables": executables,
	"hardware": hardware,
}

tcb_check(component) := {
	"name": concat("", ["snp.reported_tcb.", component]), "held": component in tcb_passing,
	"rule": "min", "field": concat("", ["reported_tcb.", component]),
	"reference": tcb_refs[component],
}

vmpl_check := {
	"name": "snp.vmpl", "held": vmpl_ok, "rule": "eq", "field": "vmpl", "expected": 0,
	"hint": concat(" ", [
		"only VMPL 0 passes (a less privileged context chooses its own REPORT_DATA)",
		"unless reference value snp_vmpl lists the allowed VMPLs",
	]),
} if not refs.snp_vmpl

vmpl_check := {
	"name": "snp.vmpl", "held": vmpl_ok, "rule": "in", "field": "vmpl",
	"reference": "snp_vmpl",
} if refs.snp_vmpl

flag_check(flag, held, allowed, reference) := {
	"name": concat("", ["snp.policy.", flag]), "held": held, "rule": "eq",
	"field": concat("", ["policy_flags.", flag]), "expected": false,
	"hint": concat("", ["refused unless reference value ", reference, " = [true]"]),
} if not allowed

flag_check(flag, held, allowed, reference) := {
	"name": concat("", ["snp.policy.", flag]), "held": held, "rule": "in",
	"field": concat("", ["policy_flags.", flag]), "expected": [false, true],
	"reference": reference,
} if allowed

revocation_check := {
	"name": "snp.revocation", "held": revocation_ok, "rule": "eq", "field": "revocation",
	"expected": "checked",
	"hint": concat(" ", [
		"the broker requires a checked CRL from AMD's ARK (require_revocation) and none",
		"could be obtained (AMD KDS unreachable, or no current CRL)",
	]),
} if revocation_required

revocation_check := {
	"name": "snp.revocation", "held": true, "field": "revocation",
	"detail": concat(" ", [
		"revocation is not required by the broker (input.veritee.require_revocation is",
		"not true); the claim is not judged",
	]),
} if not revocation_required

checks := [
	{
		"name": "snp.measurement", "held": measurement_known, "rule": "in",
		"field": "measurement", "reference": "snp_launch_measurement",
	},
	tcb_check("bootloader"),
	tcb_check("tee"),
	tcb_check("snp"),
	tcb_check("microcode"),
	tcb_check("fmc"),
	revocation_check,
	{
		"name": "snp.emulated", "held": genuine, "rule": "eq", "field": "emulated",
		"expected": false,
		"hint": concat(" ", [
			"evidence from emulated roots passes only with reference value",
			"allow_emulated = [true]",
		]),
	},
	vmpl_check,
	flag_check("debug", debug_ok, debug_allowed, "snp_allow_debug"),
	flag_check("migrate_ma", migrate_ma_ok, migrate_ma_allowed, "snp_allow_migrate_ma"),
	{
		"name": "snp.host_data", "held": host_data_known, "rule": "in", "optional": true,
		"field": "host_data", "reference": "snp_host_data",
	},
]
