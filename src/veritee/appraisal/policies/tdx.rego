# veritee default attestation policy for Intel TDX.
# veritee: tees tdx
#
# Input (veritee.appraisal.inputs.policy_input):
#   input.tdx                 the verifier's claims (TdxClaims.to_dict()) plus Trustee's TDX
#                             shape (input.tdx.quote.body.mr_td, tcb_status, ...)
#   input.report_data, input.runtime_data_claims, input.init_data, input.init_data_claims
# Data:
#   data.reference            reference values, {name: [values]}
#   data.reference_lower      {name: {lowercased value: true}}
#
# Output: trust_claims (AR4SI) and checks (one entry per named rule).
#
# Fails closed: what no reference value vouches for is not trusted, and every comparison is
# type-checked.
#
# Reference values read:
#   tdx_mr_td                 allowed MRTD values (hex, case ignored). Required.
#   tdx_rtmr0 .. tdx_rtmr3    allowed RTMR values; each checked only when set.
#   tdx_mr_seam               allowed MRSEAM values (the TDX module build); checked when set.
#   tdx_mr_config_id          allowed MRCONFIGID values; checked when set (the broker also
#                             binds init-data to MRCONFIGID whenever the guest sends init-data).
#   tdx_tcb_status            TCB statuses accepted besides UpToDate (for example
#                             "SWHardeningNeeded"). Revoked and TcbNotSupported never reach a
#                             policy: the verifier rejects them.
#   tdx_allow_debug           [true] accepts a debug TD (the host can read its memory).
#   tdx_allow_expired_collateral [true] accepts collateral used past its nextUpdate (only a
#                             broker configured with a grace period lets such evidence through).
#   allow_emulated            [true] accepts evidence from emulated (test) roots.
#
# Trust claims:
#   executables        3   MRTD is a reference value and every RTMR with reference values matches
#                      33  (warning) otherwise
#   hardware           2   genuine, the TCB status accepted, collateral current
#                      97  (contraindicated: not recognised) otherwise
#                      96  (contraindicated) emulated evidence
#   configuration      2   not a debug TD (or allowed); MRSEAM and MRCONFIGID allowed when set
#                      36  (warning) otherwise
#   instance-identity  2   genuine evidence; 96 emulated

package policy

import rego.v1

default refs := {}

refs := data.reference if is_object(data.reference)

default lowered := {}

lowered := data.reference_lower if is_object(data.reference_lower)

default tdx := {}

tdx := input.tdx if is_object(input.tdx)

known(field, name) if {
	is_string(tdx[field])
	lowered[name][lower(tdx[field])] == true
}

optional_known(field, name) if not refs[name]

optional_known(field, name) if known(field, name)

# -- executables ----------------------------------------------------------------------------------

default mr_td_known := false

mr_td_known if known("mr_td", "tdx_mr_td")

rtmrs := ["rtmr0", "rtmr1", "rtmr2", "rtmr3"]

rtmr_ok contains field if {
	some field in rtmrs
	optional_known(field, concat("", ["tdx_", field]))
}

default executables := 33

executables := 3 if {
	mr_td_known
	count(rtmr_ok) == count(rtmrs)
}

# -- hardware ---------------------------------------------------------------------------------------

default tcb_ok := false

tcb_ok if tdx.tcb_status == "UpToDate"

tcb_ok if {
	is_string(tdx.tcb_status)
	tdx.tcb_status in refs.tdx_tcb_status
}

default collateral_ok := false

collateral_ok if tdx.collateral_expired == false

collateral_ok if {
	tdx.collateral_expired == true
	refs.tdx_allow_expired_collateral == [true]
}

default genuine := false

genuine if tdx.emulated == false

genuine if {
	tdx.emulated == true
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
	refs.tdx_allow_debug == [true]
}

default mr_seam_ok := false

mr_seam_ok if optional_known("mr_seam", "tdx_mr_seam")

default mr_config_id_ok := false

mr_config_id_ok if optional_known("mr_config_id", "tdx_mr_config_id")

default configuration := 36

configuration := 2 if {
	debug_ok
	mr_seam_ok
	mr_config_id_ok
}

# -- outputs ----------------------------------------------------------------------------------------

trust_claims := {
	"instance-identity": instance_identity,
	"configuration": configuration,
	"executables": executables,
	"hardware": hardware,
}

rtmr_check(field) := {
	"name": concat("", ["tdx.", field]), "held": field in rtmr_ok, "rule": "in",
	"optional": true, "field": field, "reference": concat("", ["tdx_", field]),
}

checks := [
	{"name": "tdx.mr_td", "held": mr_td_known, "rule": "in", "field": "mr_td", "reference": "tdx_mr_td"},
	rtmr_check("rtmr0"),
	rtmr_check("rtmr1"),
	rtmr_check("rtmr2"),
	rtmr_check("rtmr3"),
	{
		"name": "tdx.tcb_status", "held": tcb_ok, "rule": "in", "field": "tcb_status",
		"reference": "tdx_tcb_status",
		"hint": "UpToDate passes; other statuses only when reference value tdx_tcb_status lists them",
	},
	{
		"name": "tdx.collateral", "held": collateral_ok, "rule": "eq",
		"field": "collateral_expired", "expected": false,
		"hint": "collateral past its nextUpdate passes only with tdx_allow_expired_collateral = [true]",
	},
	{
		"name": "tdx.emulated", "held": genuine, "rule": "eq", "field": "emulated", "expected": false,
		"hint": "evidence from emulated roots passes only with reference value allow_emulated = [true]",
	},
	{
		"name": "tdx.debug", "held": debug_ok, "rule": "eq", "field": "td_attributes_flags.debug",
		"expected": false, "hint": "a debug TD passes only with reference value tdx_allow_debug = [true]",
	},
	{
		"name": "tdx.mr_seam", "held": mr_seam_ok, "rule": "in",
		"optional": true, "field": "mr_seam", "reference": "tdx_mr_seam",
	},
	{
		"name": "tdx.mr_config_id", "held": mr_config_id_ok,
		"rule": "in", "optional": true, "field": "mr_config_id", "reference": "tdx_mr_config_id",
	},
]
