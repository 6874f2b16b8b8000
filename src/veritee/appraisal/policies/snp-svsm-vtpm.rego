# veritee default attestation policy for a vTPM in the SVSM of an AMD SEV-SNP guest.
# veritee: tees snp-svsm-vtpm
#
# Input (veritee.appraisal.inputs.policy_input):
#   input["snp-svsm-vtpm"]    the verifier's claims (SvsmVtpmClaims.to_dict()):
#       .snp                  the claims of the SVSM's SNP report, as `--tee snp` gives them
#                             (measurement is the launch digest of OVMF and the SVSM)
#       .tpm                  the vTPM quote's claims (pcrs.sha256."0" .. "23", extra_data, ...)
#       .svsm                 the binding's: activation (checked | not_checked | absent: whether
#                             credential activation proved the AK lives in the vTPM the report
#                             binds), quote_nonce (bound | not_bound: whether every quote's
#                             extraData is SHA-256 of the SVSM nonce), activation_key, ek_name,
#                             ak_name, nonce, ...
#       .emulated             the SNP report chains to emulated (test) roots, or the activation
#                             was checked with the emulated (public) credential key
#   input.report_data, input.runtime_data_claims, input.init_data, input.init_data_claims
#   input.veritee             the broker's settings (require_revocation)
# Data:
#   data.reference            reference values, {name: [values]}
#   data.reference_lower      {name: {lowercased value: true}}
#
# Output: trust_claims (AR4SI) and checks (one entry per named rule; "field" is a path under
# input["snp-svsm-vtpm"]).
#
# Fails closed: what no reference value vouches for is not trusted; every comparison is
# type-checked (Rego orders values across types, so "3" >= 3 holds unguarded).
#
# Reference values read:
#   svsm_launch_measurement   allowed SNP launch measurements (hex, case ignored): the digest
#                             of OVMF and the SVSM. Required: without it executables is not 3.
#   svsm_pcr0 .. svsm_pcr23   allowed values of the vTPM's SHA-256 PCRs (hex, case ignored);
#                             each checked only when set (a PCR the quote does not carry then
#                             fails). None set: the launch measurement alone vouches.
#   svsm_snp_bootloader, svsm_snp_tee, svsm_snp_snp, svsm_snp_microcode, svsm_snp_fmc
#                             minimum TCB component versions, as snp.rego reads snp_*:
#                             required (a component without a value is not recognised);
#                             svsm_snp_fmc only when the reported TCB has fmc (Turin).
#   svsm_allow_debug          [true] accepts a guest policy allowing debugging.
#   svsm_allow_migrate_ma     [true] accepts a guest policy allowing a migration agent.
#   allow_emulated            [true] accepts evidence from emulated (test) roots or checked
#                             with the emulated credential key.
#
# Trust claims:
#   executables        3   the launch measurement is a reference value and every PCR with
#                          reference values matches
#                      33  (warning) otherwise
#   hardware           2   genuine, every TCB component meets its minimum, revocation checked
#                          when the broker requires it
#                      97  (contraindicated: not recognised) otherwise; 96 emulated
#   configuration      2   VMPL 0, the AK's activation checked, the quotes bound to the SVSM
#                          nonce, debug and migration agent off (or allowed)
#                      96  (contraindicated) the report is not from VMPL 0 (another context
#                          chose its REPORT_DATA), or the activation was not checked (the AK,
#                          hence every quote, is not proven to be the vTPM's)
#                      36  (warning) otherwise: a quote not bound to the SVSM nonce (its
#                          freshness is not shown), debug or migration agent on, not allowed
#   instance-identity  2   genuine evidence; 96 emulated
# The status is affirming only when all four are.

package policy

import rego.v1

default refs := {}

refs := data.reference if is_object(data.reference)

default lowered := {}

lowered := data.reference_lower if is_object(data.reference_lower)

default vt := {}

vt := input["snp-svsm-vtpm"] if is_object(input["snp-svsm-vtpm"])

default snp := {}

snp := vt.snp if is_object(vt.snp)

default svsm := {}

svsm := vt.svsm if is_object(vt.svsm)

# -- executables: the launch measurement of OVMF and the SVSM, the vTPM's PCRs ---------------------

default measurement_ok := false

measurement_ok if {
	is_string(snp.measurement)
	lowered.svsm_launch_measurement[lower(snp.measurement)] == true
}

pcr_indices := numbers.range(0, 23)

pcr_name(i) := concat("", ["svsm_pcr", format_int(i, 10)])

pcr_given contains i if {
	some i in pcr_indices
	refs[pcr_name(i)]
}

pcr_ok contains i if {
	some i in pcr_given
	value := vt.tpm.pcrs.sha256[format_int(i, 10)]
	is_string(value)
	lowered[pcr_name(i)][lower(value)] == true
}

default pcrs_ok := false

pcrs_ok if count(pcr_ok) == count(pcr_given)

default executables := 33

executables := 3 if {
	measurement_ok
	pcrs_ok
}

# -- hardware: the reported TCB against minimums, revocation ---------------------------------------

tcb_refs := {
	"bootloader": "svsm_snp_bootloader",
	"tee": "svsm_snp_tee",
	"snp": "svsm_snp_snp",
	"microcode": "svsm_snp_microcode",
	"fmc": "svsm_snp_fmc",
}

default fmc_reported := false

fmc_reported if {
	is_object(snp.reported_tcb)
	"fmc" in object.keys(snp.reported_tcb)
}

tcb_not_applicable contains "fmc" if not fmc_reported

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

default genuine := false

genuine if {
	vt.emulated == false
	snp.emulated == false
}

genuine if {
	vt.emulated == true
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

# -- configuration: VMPL, the AK's activation, the quotes' nonce, the guest policy ----------------

default vmpl_ok := false

vmpl_ok if {
	is_number(snp.vmpl)
	snp.vmpl == 0
}

default activation_ok := false

activation_ok if svsm.activation == "checked"

default quote_nonce_ok := false

quote_nonce_ok if svsm.quote_nonce == "bound"

default debug_ok := false

debug_ok if snp.policy_flags.debug == false

debug_ok if {
	refs.svsm_allow_debug == [true]
	snp.policy_flags.debug == true
}

default migrate_ma_ok := false

migrate_ma_ok if snp.policy_flags.migrate_ma == false

migrate_ma_ok if {
	refs.svsm_allow_migrate_ma == [true]
	snp.policy_flags.migrate_ma == true
}

default configuration := 36

configuration := 2 if {
	vmpl_ok
	activation_ok
	quote_nonce_ok
	debug_ok
	migrate_ma_ok
}

configuration := 96 if not vmpl_ok

configuration := 96 if not activation_ok

# -- outputs ---------------------------------------------------------------------------------------

trust_claims := {
	"instance-identity": instance_identity,
	"configuration": configuration,
	"executables": executables,
	"hardware": hardware,
}

tcb_check(component) := {
	"name": concat("", ["snp-svsm-vtpm.snp.reported_tcb.", component]),
	"held": component in tcb_passing, "rule": "min",
	"field": concat("", ["snp.reported_tcb.", component]), "reference": tcb_refs[component],
}

pcr_checks := [check |
	some i in pcr_indices
	i in pcr_given
	check := {
		"name": concat("", ["snp-svsm-vtpm.tpm.pcr", format_int(i, 10)]), "held": i in pcr_ok,
		"rule": "in", "field": concat("", ["tpm.pcrs.sha256.", format_int(i, 10)]),
		"reference": pcr_name(i),
	}
]

pcrs_check := {
	"name": "snp-svsm-vtpm.tpm.pcrs", "held": true, "field": "tpm.pcrs.sha256",
	"detail": "no reference value svsm_pcr0 .. svsm_pcr23 is set: the vTPM's PCRs are not checked",
} if count(pcr_given) == 0

pcrs_check := {
	"name": "snp-svsm-vtpm.tpm.pcrs", "held": true, "field": "tpm.pcrs.sha256",
	"detail": concat("", [format_int(count(pcr_given), 10), " PCRs have reference values"]),
} if count(pcr_given) > 0

revocation_check := {
	"name": "snp-svsm-vtpm.snp.revocation", "held": revocation_ok, "rule": "eq",
	"field": "snp.revocation", "expected": "checked",
	"hint": "the broker requires a checked CRL from AMD's ARK (require_revocation) and none could be obtained",
} if revocation_required

revocation_check := {
	"name": "snp-svsm-vtpm.snp.revocation", "held": true, "field": "snp.revocation",
	"detail": "revocation is not required by the broker; the claim is not judged",
} if not revocation_required

flag_check(flag, held, reference) := {
	"name": concat("", ["snp-svsm-vtpm.snp.policy.", flag]), "held": held, "rule": "eq",
	"field": concat("", ["snp.policy_flags.", flag]), "expected": false,
	"hint": concat("", ["refused unless reference value ", reference, " = [true]"]),
}

checks := array.concat([
	{
		"name": "snp-svsm-vtpm.snp.measurement", "held": measurement_ok, "rule": "in",
		"field": "snp.measurement", "reference": "svsm_launch_measurement",
		"hint": "the launch digest of OVMF and the SVSM must be a reference value",
	},
	pcrs_check,
	tcb_check("bootloader"),
	tcb_check("tee"),
	tcb_check("snp"),
	tcb_check("microcode"),
	tcb_check("fmc"),
	revocation_check,
	{
		"name": "snp-svsm-vtpm.emulated", "held": genuine, "rule": "eq", "field": "emulated",
		"expected": false,
		"hint": "evidence from emulated roots or an emulated credential key passes only with reference value allow_emulated = [true]",
	},
	{
		"name": "snp-svsm-vtpm.snp.vmpl", "held": vmpl_ok, "rule": "eq", "field": "snp.vmpl",
		"expected": 0,
		"hint": "only a report the SVSM requests at VMPL 0 vouches for its service manifest; a less privileged context chose this REPORT_DATA",
	},
	{
		"name": "snp-svsm-vtpm.svsm.activation", "held": activation_ok, "rule": "eq",
		"field": "svsm.activation", "expected": "checked",
		"hint": "without a checked credential activation the AK is not proven to live in the vTPM the report binds, so no quote is shown to be the vTPM's",
	},
	{
		"name": "snp-svsm-vtpm.svsm.quote_nonce", "held": quote_nonce_ok, "rule": "eq",
		"field": "svsm.quote_nonce", "expected": "bound",
		"hint": "a quote whose extraData is not SHA-256 of the SVSM nonce is not shown to be fresh",
	},
	flag_check("debug", debug_ok, "svsm_allow_debug"),
	flag_check("migrate_ma", migrate_ma_ok, "svsm_allow_migrate_ma"),
], pcr_checks)
