# veritee default attestation policy for Azure SEV-SNP confidential VMs (HCL report + vTPM).
# veritee: tees az-snp-vtpm
#
# Input (veritee.appraisal.inputs.policy_input):
#   input["az-snp-vtpm"]      the verifier's claims (AzSnpVtpmClaims.to_dict()):
#       .snp                  the SNP report's claims, as `--tee snp` gives them (measurement is
#                             the HCL/paravisor's launch digest, not the guest's)
#       .tpm                  the vTPM quote's claims (pcrs.sha256."0" .. "23", extra_data, ...)
#       .hcl                  the HCL report's (vm_configuration, ak_public, user_data, ...)
#       .emulated             the hardware report chains to emulated (test) roots
#   input.report_data, input.runtime_data_claims, input.init_data, input.init_data_claims
#   input.veritee             the broker's settings (require_revocation)
# Data:
#   data.reference            reference values, {name: [values]}
#   data.reference_lower      {name: {lowercased value: true}}
#
# Output: trust_claims (AR4SI) and checks (one entry per named rule; "field" is a path under
# input["az-snp-vtpm"]).
#
# Fails closed: what no reference value vouches for is not trusted; every comparison is
# type-checked.
#
# Reference values read:
#   azure_pcr0 .. azure_pcr23 allowed values of the vTPM's SHA-256 PCRs (hex, case ignored);
#                             each checked only when set, and at least one must be set for the
#                             boot chain to count as known. PCR 8 carries the init-data: the
#                             attester extends it once with the init-data digest, so
#                             azure_pcr8 = [SHA-256(0^32 || digest)] pins the init-data (the
#                             policy language has no byte-level hash to derive it here).
#   azure_snp_launch_measurement  allowed HCL launch measurements; checked when set.
#   azure_snp_bootloader, azure_snp_tee, azure_snp_snp, azure_snp_microcode, azure_snp_fmc
#                             minimum TCB component versions, as snp.rego reads snp_*:
#                             required (a component without a value is not recognised);
#                             azure_snp_fmc only when the reported TCB has fmc (Turin).
#   azure_allow_debug         [true] accepts a guest policy allowing debugging.
#   azure_allow_migrate_ma    [true] accepts a guest policy allowing a migration agent.
#   azure_allow_insecure_boot [true] accepts a VM whose vm-configuration says secure-boot is
#                             off (or does not say).
#   allow_emulated            [true] accepts evidence from emulated (test) roots.
#
# Trust claims:
#   executables        3   some PCR reference value is set, every PCR with reference values
#                          matches, and the launch measurement is allowed when set
#                      33  (warning) otherwise
#   hardware           2   genuine, every TCB component meets its minimum, revocation checked
#                          when the broker requires it
#                      97  (contraindicated: not recognised) otherwise; 96 emulated
#   configuration      2   VMPL 0, debug and migration agent off (or allowed), secure boot on
#                          (or allowed off)
#                      96  (contraindicated) the report is not from VMPL 0
#                      36  (warning) otherwise
#   instance-identity  2   genuine evidence; 96 emulated

package policy

import rego.v1

default refs := {}

refs := data.reference if is_object(data.reference)

default lowered := {}

lowered := data.reference_lower if is_object(data.reference_lower)

default az := {}

az := input["az-snp-vtpm"] if is_object(input["az-snp-vtpm"])

default snp := {}

snp := az.snp if is_object(az.snp)

default vm := {}

vm := az.hcl.vm_configuration if is_object(az.hcl.vm_configuration)

# -- executables: the vTPM's PCRs and the HCL's launch measurement ---------------------------------

pcr_indices := numbers.range(0, 23)

pcr_name(i) := concat("", ["azure_pcr", format_int(i, 10)])

pcr_given contains i if {
	some i in pcr_indices
	refs[pcr_name(i)]
}

pcr_ok contains i if {
	some i in pcr_given
	value := az.tpm.pcrs.sha256[format_int(i, 10)]
	is_string(value)
	lowered[pcr_name(i)][lower(value)] == true
}

default pcrs_known := false

pcrs_known if {
	count(pcr_given) > 0
	count(pcr_ok) == count(pcr_given)
}

default measurement_ok := false

measurement_ok if not refs.azure_snp_launch_measurement

measurement_ok if {
	is_string(snp.measurement)
	lowered.azure_snp_launch_measurement[lower(snp.measurement)] == true
}

default executables := 33

executables := 3 if {
	pcrs_known
	measurement_ok
}

# -- hardware: the reported TCB against minimums, revocation ---------------------------------------

tcb_refs := {
	"bootloader": "azure_snp_bootloader",
	"tee": "azure_snp_tee",
	"snp": "azure_snp_snp",
	"microcode": "azure_snp_microcode",
	"fmc": "azure_snp_fmc",
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
	az.emulated == false
	snp.emulated == false
}

genuine if {
	az.emulated == true
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

# -- configuration: VMPL, the guest policy, secure boot -------------------------------------------

default vmpl_ok := false

vmpl_ok if {
	is_number(snp.vmpl)
	snp.vmpl == 0
}

default debug_ok := false

debug_ok if snp.policy_flags.debug == false

debug_ok if {
	refs.azure_allow_debug == [true]
	snp.policy_flags.debug == true
}

default migrate_ma_ok := false

migrate_ma_ok if snp.policy_flags.migrate_ma == false

migrate_ma_ok if {
	refs.azure_allow_migrate_ma == [true]
	snp.policy_flags.migrate_ma == true
}

default secure_boot_ok := false

secure_boot_ok if vm["secure-boot"] == true

secure_boot_ok if refs.azure_allow_insecure_boot == [true]

default configuration := 36

configuration := 2 if {
	vmpl_ok
	debug_ok
	migrate_ma_ok
	secure_boot_ok
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
	"name": concat("", ["az-snp-vtpm.snp.reported_tcb.", component]),
	"held": component in tcb_passing, "rule": "min",
	"field": concat("", ["snp.reported_tcb.", component]), "reference": tcb_refs[component],
}

pcr_checks := [check |
	some i in pcr_indices
	i in pcr_given
	check := {
		"name": concat("", ["az-snp-vtpm.tpm.pcr", format_int(i, 10)]), "held": i in pcr_ok,
		"rule": "in", "field": concat("", ["tpm.pcrs.sha256.", format_int(i, 10)]),
		"reference": pcr_name(i),
	}
]

pcrs_check := {
	"name": "az-snp-vtpm.tpm.pcrs", "held": false, "field": "tpm.pcrs.sha256",
	"detail": "no reference value azure_pcr0 .. azure_pcr23 is set: the boot chain is unknown",
} if count(pcr_given) == 0

pcrs_check := {
	"name": "az-snp-vtpm.tpm.pcrs", "held": true, "field": "tpm.pcrs.sha256",
	"detail": concat("", [format_int(count(pcr_given), 10), " PCRs have reference values"]),
} if count(pcr_given) > 0

revocation_check := {
	"name": "az-snp-vtpm.snp.revocation", "held": revocation_ok, "rule": "eq",
	"field": "snp.revocation", "expected": "checked",
	"hint": "the broker requires a checked CRL from AMD's ARK (require_revocation) and none could be obtained",
} if revocation_required

revocation_check := {
	"name": "az-snp-vtpm.snp.revocation", "held": true, "field": "snp.revocation",
	"detail": "revocation is not required by the broker; the claim is not judged",
} if not revocation_required

flag_check(flag, held, reference) := {
	"name": concat("", ["az-snp-vtpm.snp.policy.", flag]), "held": held, "rule": "eq",
	"field": concat("", ["snp.policy_flags.", flag]), "expected": false,
	"hint": concat("", ["refused unless reference value ", reference, " = [true]"]),
}

checks := array.concat([
	pcrs_check,
	{
		"name": "az-snp-vtpm.snp.measurement", "held": measurement_ok, "rule": "in",
		"optional": true, "field": "snp.measurement",
		"reference": "azure_snp_launch_measurement",
	},
	tcb_check("bootloader"),
	tcb_check("tee"),
	tcb_check("snp"),
	tcb_check("microcode"),
	tcb_check("fmc"),
	revocation_check,
	{
		"name": "az-snp-vtpm.emulated", "held": genuine, "rule": "eq", "field": "emulated",
		"expected": false,
		"hint": "evidence from emulated roots passes only with reference value allow_emulated = [true]",
	},
	{
		"name": "az-snp-vtpm.snp.vmpl", "held": vmpl_ok, "rule": "eq", "field": "snp.vmpl",
		"expected": 0, "hint": "the HCL requests its report at VMPL 0",
	},
	flag_check("debug", debug_ok, "azure_allow_debug"),
	flag_check("migrate_ma", migrate_ma_ok, "azure_allow_migrate_ma"),
	{
		"name": "az-snp-vtpm.hcl.secure_boot", "held": secure_boot_ok, "rule": "eq",
		"field": "hcl.vm_configuration.secure-boot", "expected": true,
		"hint": "refused unless reference value azure_allow_insecure_boot = [true]",
	},
], pcr_checks)
