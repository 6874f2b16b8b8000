# veritee default attestation policy for Azure TDX confidential VMs (HCL report + vTPM).
# veritee: tees az-tdx-vtpm
#
# Input (veritee.appraisal.inputs.policy_input):
#   input["az-tdx-vtpm"]      the verifier's claims (AzTdxVtpmClaims.to_dict()):
#       .tdx                  the TD quote's claims, as `--tee tdx` gives them (MRTD is the
#                             paravisor's TD, not the guest's)
#       .tpm                  the vTPM quote's claims (pcrs.sha256."0" .. "23", extra_data, ...)
#       .hcl                  the HCL report's (vm_configuration, ak_public, user_data, ...)
#       .emulated             the TD quote chains to an emulated (test) root
#   input.report_data, input.runtime_data_claims, input.init_data, input.init_data_claims
# Data:
#   data.reference            reference values, {name: [values]}
#   data.reference_lower      {name: {lowercased value: true}}
#
# Output: trust_claims (AR4SI) and checks (one entry per named rule; "field" is a path under
# input["az-tdx-vtpm"]).
#
# Fails closed: what no reference value vouches for is not trusted; every comparison is
# type-checked.
#
# Reference values read:
#   azure_pcr0 .. azure_pcr23 allowed values of the vTPM's SHA-256 PCRs (hex, case ignored);
#                             each checked only when set, and at least one must be set for the
#                             boot chain to count as known. azure_pcr8 = [SHA-256(0^32 ||
#                             init-data digest)] pins the init-data (the policy language has
#                             no byte-level hash to derive it here).
#   azure_tdx_mr_td           allowed MRTD values (the paravisor's TD); checked when set.
#   azure_tdx_tcb_status      TCB statuses accepted besides UpToDate.
#   azure_allow_debug         [true] accepts a debug TD.
#   azure_allow_expired_collateral [true] accepts Intel collateral past its nextUpdate.
#   azure_allow_insecure_boot [true] accepts secure boot off (or not stated).
#   allow_emulated            [true] accepts evidence from emulated (test) roots.
#
# Trust claims:
#   executables        3   some PCR reference value is set, every PCR with reference values
#                          matches, and MRTD is allowed when set
#                      33  (warning) otherwise
#   hardware           2   genuine, the TCB status accepted, collateral current
#                      97  (contraindicated: not recognised) otherwise; 96 emulated
#   configuration      2   not a debug TD (or allowed), secure boot on (or allowed off)
#                      36  (warning) otherwise
#   instance-identity  2   genuine evidence; 96 emulated

package policy

import rego.v1

default refs := {}

refs := data.reference if is_object(data.reference)

default lowered := {}

lowered := data.reference_lower if is_object(data.reference_lower)

default az := {}

az := input["az-tdx-vtpm"] if is_object(input["az-tdx-vtpm"])

default tdx := {}

tdx := az.tdx if is_object(az.tdx)

default vm := {}

vm := az.hcl.vm_configuration if is_object(az.hcl.vm_configuration)

# -- executables: the vTPM's PCRs and MRTD ---------------------------------------------------------

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

default mr_td_ok := false

mr_td_ok if not refs.azure_tdx_mr_td

mr_td_ok if {
	is_string(tdx.mr_td)
	lowered.azure_tdx_mr_td[lower(tdx.mr_td)] == true
}

default executables := 33

executables := 3 if {
	pcrs_known
	mr_td_ok
}

# -- hardware ---------------------------------------------------------------------------------------

default tcb_ok := false

tcb_ok if tdx.tcb_status == "UpToDate"

tcb_ok if {
	is_string(tdx.tcb_status)
	tdx.tcb_status in refs.azure_tdx_tcb_status
}

default collateral_ok := false

collateral_ok if tdx.collateral_expired == false

collateral_ok if {
	tdx.collateral_expired == true
	refs.azure_allow_expired_collateral == [true]
}

default genuine := false

genuine if {
	az.emulated == false
	tdx.emulated == false
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
	tcb_ok
	collateral_ok
}

hardware := 96 if not genuine

# -- configuration ----------------------------------------------------------------------------------

default debug_ok := false

debug_ok if tdx.td_attributes_flags.debug == false

debug_ok if {
	tdx.td_attributes_flags.debug == true
	refs.azure_allow_debug == [true]
}

default secure_boot_ok := false

secure_boot_ok if vm["secure-boot"] == true

secure_boot_ok if refs.azure_allow_insecure_boot == [true]

default configuration := 36

configuration := 2 if {
	debug_ok
	secure_boot_ok
}

# -- outputs ----------------------------------------------------------------------------------------

trust_claims := {
	"instance-identity": instance_identity,
	"configuration": configuration,
	"executables": executables,
	"hardware": hardware,
}

pcr_checks := [check |
	some i in pcr_indices
	i in pcr_given
	check := {
		"name": concat("", ["az-tdx-vtpm.tpm.pcr", format_int(i, 10)]), "held": i in pcr_ok,
		"rule": "in", "field": concat("", ["tpm.pcrs.sha256.", format_int(i, 10)]),
		"reference": pcr_name(i),
	}
]

pcrs_check := {
	"name": "az-tdx-vtpm.tpm.pcrs", "held": false, "field": "tpm.pcrs.sha256",
	"detail": "no reference value azure_pcr0 .. azure_pcr23 is set: the boot chain is unknown",
} if count(pcr_given) == 0

pcrs_check := {
	"name": "az-tdx-vtpm.tpm.pcrs", "held": true, "field": "tpm.pcrs.sha256",
	"detail": concat("", [format_int(count(pcr_given), 10), " PCRs have reference values"]),
} if count(pcr_given) > 0

checks := array.concat([
	pcrs_check,
	{
		"name": "az-tdx-vtpm.tdx.mr_td", "held": mr_td_ok, "rule": "in", "optional": true,
		"field": "tdx.mr_td", "reference": "azure_tdx_mr_td",
	},
	{
		"name": "az-tdx-vtpm.tdx.tcb_status", "held": tcb_ok, "rule": "in",
		"field": "tdx.tcb_status", "reference": "azure_tdx_tcb_status",
		"hint": "UpToDate passes; other statuses only when reference value azure_tdx_tcb_status lists them",
	},
	{
		"name": "az-tdx-vtpm.tdx.collateral", "held": collateral_ok, "rule": "eq",
		"field": "tdx.collateral_expired", "expected": false,
		"hint": "collateral past its nextUpdate passes only with azure_allow_expired_collateral = [true]",
	},
	{
		"name": "az-tdx-vtpm.emulated", "held": genuine, "rule": "eq", "field": "emulated",
		"expected": false,
		"hint": "evidence from emulated roots passes only with reference value allow_emulated = [true]",
	},
	{
		"name": "az-tdx-vtpm.tdx.debug", "held": debug_ok, "rule": "eq",
		"field": "tdx.td_attributes_flags.debug", "expected": false,
		"hint": "a debug TD passes only with reference value azure_allow_debug = [true]",
	},
	{
		"name": "az-tdx-vtpm.hcl.secure_boot", "held": secure_boot_ok, "rule": "eq",
		"field": "hcl.vm_configuration.secure-boot", "expected": true,
		"hint": "refused unless reference value azure_allow_insecure_boot = [true]",
	},
], pcr_checks)
