# veritee default resource policy (Trustee's affirming.rego, with explanations).
#
# Input: the claims of a verified EAR attestation token.
# Data:  {"plugin": "resource", "resource-path": [repository, type, tag]}
#
# A resource is released only when the token has at least one submodule and every
# submodule's ear.status is "affirming".

package policy

import rego.v1

default submods := {}

submods := input.submods if is_object(input.submods)

default allow := false

allow if {
	data.plugin == "resource"
	count(submods) > 0
	every _, submod in submods {
		submod["ear.status"] == "affirming"
	}
}

checks contains {
	"name": "plugin", "held": data.plugin == "resource", "rule": "eq",
	"actual": data.plugin, "expected": "resource",
}

checks contains {
	"name": "submods", "held": false,
	"detail": "the attestation token has no submodules",
} if count(submods) == 0

checks contains {
	"name": concat("", ["submods.", name, ".ear.status"]),
	"held": status == "affirming", "rule": "eq",
	"actual": status, "expected": "affirming",
} if {
	some name, submod in submods
	status := object.get(submod, "ear.status", null)
}
