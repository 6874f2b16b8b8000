# An operator's attestation policy for AMD SEV-SNP guests, stricter than the shipped default:
# besides a known launch measurement it requires VMPL 0, debugging off, and a HOST_DATA (the
# init-data digest) that is a reference value. Try it with
#   veritee policy test --tee snp evidence.bin --trust-emulated --offline \
#       --policy examples/policy.rego --reference-values examples/rv.json
# veritee: tees snp

package policy

import rego.v1

default executables := 33

executables := 3 if {
	is_string(input.snp.measurement)
	input.snp.measurement in data.reference.snp_launch_measurement
}

default configuration := 36

configuration := 2 if {
	input.snp.vmpl == 0
	input.snp.policy_flags.debug == false
	is_string(input.snp.host_data)
	input.snp.host_data in data.reference.snp_host_data
}

default hardware := 97

hardware := 2 if {
	input.snp.emulated == false
}

hardware := 2 if {
	input.snp.emulated == true
	data.reference.allow_emulated == [true]
}

default instance_identity := 96

instance_identity := 2 if {
	input.snp.emulated == false
}

instance_identity := 2 if {
	input.snp.emulated == true
	data.reference.allow_emulated == [true]
}
