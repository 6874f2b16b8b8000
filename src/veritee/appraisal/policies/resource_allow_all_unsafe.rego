# veritee: unsafe
#
# UNSAFE resource policy for tests and demos: it releases every resource to anyone holding
# a valid attestation token, whatever the token says about the TEE. veritee logs a warning
# each time it is evaluated.

package policy

import rego.v1

default allow := true
