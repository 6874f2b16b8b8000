# veritee fallback attestation policy, for a TEE that has no default policy of its own.
#
# It fails closed: every trust claim is contraindicated, so nothing attested under it is
# released, until an operator sets an attestation policy for the TEE.

package policy

import rego.v1

trust_claims := {
	"instance-identity": 97,
	"configuration": 96,
	"executables": 96,
	"hardware": 97,
}

checks := [{
	"name": "policy.configured",
	"held": false,
	"detail": "veritee has no default attestation policy for this TEE; set one",
}]
