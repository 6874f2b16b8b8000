# veritee default attestation policy for Intel SGX enclaves.
# veritee: tees sgx
#
# Input: input.sgx, the verifier's claims (SgxClaims.to_dict()); data.reference and
# data.reference_lower as for the other platforms. Output: trust_claims (AR4SI) and checks.
#
# Fails closed: what no reference value vouches for is not trusted, and every comparison is
# type-checked.
#
# Reference values read:
#   sgx_mr_enclave            allowed MRENCLAVE values (hex). Either this matches, or
#   sgx_mr_signer             MRSIGNER is allowed and then
#   sgx_isv_prod_id           ISVPRODID must be listed (numbers; required with sgx_mr_signer)
#   sgx_isv_svn               and ISVSVN at least the smallest listed (required with it too).
#   sgx_config_id             allowed CONFIGID values; checked when set.
#   sgx_tcb_status            TCB statuses accepted besides UpToDate.
#   sgx_allow_debug           [true] accepts a debug enclave.
#   sgx_allow_expired_collateral [true] accepts collateral used past its nextUpdate.
#   allow_emulated            [true] accepts evidence from emulated (test) roots.
#
# Trust claims: executables 3 (the enclave is vouched for by MRENCLAVE, or by MRSIGNER with its
# product ID and minimum SVN) or 33; hardware 2 (genuine, TCB status accepted, collateral
# current), 97 or 96 (emulated); configuration 2 (not a debug enclave, or allowed; CONFIGID
# allowed when set) or 36; instance-identity 2 or 96 (emulated).

package policy

import rego.v1

default refs := {}

refs := data.reference if is_object(data.reference)

default lowered := {}

lowered := data.reference_lower if is_object(data.reference_lower)

default sgx := {}

sgx := input.sgx if is_object(input.sgx)

known(field, name) if {
	is_string(sgx[field])
	lowered[name][lower(sgx[field])] == true
}

# -- executables ----------------------------------------------------------------------------------

default mr_enclave_known := false

mr_enclave_known if known("mr_enclave", "sgx_mr_enclave")

default signer_vouches := false

signer_vouches if {
	known("mr_signer", "sgx_mr_signer")
	is_number(sgx.isv_prod_id)
	some product in refs.sgx_isv_prod_id
	is_number(product)
	product == sgx.isv_prod_id
	is_number(sgx.isv_svn)
	some minimum in refs.sgx_isv_svn
	is_number(minimum)
	sgx.isv_svn >= minimum
}

default executables := 33

executables := 3 if mr_enclave_known

executables := 3 if signer_vouches

# -- hardware ---------------------------------------------------------------------------------------

default tcb_ok := false

tcb_ok if sgx.tcb_status == "UpToDate"

tcb_ok if {
	is_string(sgx.tcb_status)
	sgx.tcb_status in refs.sgx_tcb_status
}

default collateral_ok := false

collateral_ok if sgx.collateral_expired == false

collateral_ok if {
	sgx.collateral_expired == true
	refs.sgx_allow_expired_collateral == [true]
}

default genuine := false

genuine if sgx.emulated == false

genuine if {
	sgx.emulated == true
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

debug_ok if sgx.attributes_flags.debug == false

debug_ok if {
	sgx.attributes_flags.debug == true
	refs.sgx_allow_debug == [true]
}

default config_id_ok := false

config_id_ok if not refs.sgx_config_id

config_id_ok if known("config_id", "sgx_config_id")

default configuration := 36

configuration := 2 if {
	debug_ok
	config_id_ok
}

# -- outputs ----------------------------------------------------------------------------------------

trust_claims := {
	"instance-identity": instance_identity,
	"configuration": configuration,
	"executables": executables,
	"hardware": hardware,
}

checks := [
	{
		"name": "sgx.mr_enclave", "held": mr_enclave_known, "rule": "in", "field": "mr_enclave",
		"reference": "sgx_mr_enclave", "optional": signer_vouches,
	},
	{
		"name": "sgx.mr_signer", "held": signer_vouches, "rule": "in", "field": "mr_signer",
		"reference": "sgx_mr_signer", "optional": mr_enclave_known,
		"hint": "MRSIGNER vouches only with sgx_isv_prod_id listing ISVPRODID and ISVSVN at least sgx_isv_svn",
	},
	{
		"name": "sgx.tcb_status", "held": tcb_ok, "rule": "in", "field": "tcb_status",
		"reference": "sgx_tcb_status",
		"hint": "UpToDate passes; other statuses only when reference value sgx_tcb_status lists them",
	},
	{
		"name": "sgx.collateral", "held": collateral_ok, "rule": "eq",
		"field": "collateral_expired", "expected": false,
		"hint": "collateral past its nextUpdate passes only with sgx_allow_expired_collateral = [true]",
	},
	{
		"name": "sgx.emulated", "held": genuine, "rule": "eq", "field": "emulated", "expected": false,
		"hint": "evidence from emulated roots passes only with reference value allow_emulated = [true]",
	},
	{
		"name": "sgx.debug", "held": debug_ok, "rule": "eq", "field": "attributes_flags.debug",
		"expected": false, "hint": "a debug enclave passes only with reference value sgx_allow_debug = [true]",
	},
	{
		"name": "sgx.config_id", "held": config_id_ok, "rule": "in", "optional": true,
		"field": "config_id", "reference": "sgx_config_id",
	},
]
