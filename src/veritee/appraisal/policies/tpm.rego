# veritee default attestation policy for TPM 2.0 quotes.
# veritee: tees tpm
#
# Input (veritee.appraisal.inputs.policy_input):
#   input.tpm                 the verifier's claims (CONTRACT.md §1.1: pcrs {bank: {"i": hex}},
#                             eventlog_pcrs, pcr_select, extra_data, ...) plus the aliases of
#                             veritee.tee.tpm.policy.policy_input: pcr00 .. pcr23 and init_data
#                             (Trustee's TPM names, SHA-256 bank), bound_pcrs {bank: [i]} (the
#                             PCRs the event log replays to), uefi_event_logs (the events of
#                             the bound PCRs), secure_boot, kernel_cmdline
#   input.init_data           the TEE's init-data field (SHA-256 PCR 8) when the platform names
#                             one; input.init_data_claims: the init-data the broker bound
#   input.report_data, input.runtime_data_claims, input.veritee
# Data:
#   data.reference            reference values, {name: [values]}
#   data.reference_lower      {name: {lowercased value: true}}
#
# Output: trust_claims (AR4SI) and checks (one entry per named rule).
#
# Fails closed: what no reference value vouches for is not trusted, and every comparison is
# type-checked. The event log says only what the quote vouches for: events are read only from
# PCRs in bound_pcrs, and event text only where the data is what the digest covers.
#
# Reference values read (names: tpm_<bank>_pcr<index>, bank sha1 | sha256 | sha384 | sha512,
# index 0-23 in decimal without leading zeros, e.g. tpm_sha256_pcr7, tpm_sha1_pcr0):
#   tpm_<bank>_pcr<i>         allowed values of PCR i of that bank (hex, case ignored). Each one
#                             set is checked, and a PCR the quote does not carry fails it; at
#                             least one must be set.
#   tpm_pcr<i>                Trustee's name for tpm_sha256_pcr<i> (e.g. tpm_pcr4), read alike.
#   tpm_kernel_digest         allowed kernel image digests (hex, in a bank the event's PCR is
#                             bound in, as uefi_event_logs keeps them): some event of PCR 4
#                             (EV_EFI_BOOT_SERVICES_APPLICATION: shim- or stub-loaded kernels,
#                             UKIs) or PCR 9 (GRUB's files, Linux's initrd) the quote vouches for
#                             must carry one. Checked when set.
#   tpm_initrd_digest         allowed initrd digests, read as tpm_kernel_digest. Checked when set.
#   tpm_kernel_cmdline        allowed kernel command lines (exact strings, as kernel_cmdline
#                             shows them, GRUB's starting with the kernel path). Checked when set.
#   tpm_allow_secure_boot_off [true] accepts Secure Boot off, or not shown by a bound PCR 7.
#                             Without it, secure_boot must be true and PCR 7 bound.
#   allow_emulated            [true] accepts evidence from emulated (test) TPMs.
#
# Init-data: the guest extends SHA-256 PCR 8 once with the init-data digest, so
# PCR8 = SHA-256(0^32 || digest). Rego cannot hash bytes: the broker checks it (the platform's
# init-data rule, veritee.tee.tpm.policy.INIT_DATA) and refuses a mismatch before this policy
# runs. Here, when init-data was bound, the field it was bound to must be the quoted SHA-256
# PCR 8. An operator who knows the init-data in advance can also pin tpm_sha256_pcr8.
#
# Trust claims:
#   executables        3   a PCR reference value is set, every one set matches, and the kernel,
#                          initrd and command line match where reference values are set
#                      33  (warning) otherwise
#   hardware           2   not emulated (or allowed); 96 (contraindicated) emulated
#   configuration      2   Secure Boot on (or allowed off), init-data bound to PCR 8
#                      36  (warning) otherwise
#   instance-identity  2   not emulated (or allowed); 96 emulated

package policy

import rego.v1

default refs := {}

refs := data.reference if is_object(data.reference)

default lowered := {}

lowered := data.reference_lower if is_object(data.reference_lower)

default tpm := {}

tpm := input.tpm if is_object(input.tpm)

banks := ["sha1", "sha256", "sha384", "sha512"]

indices := [
	"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11",
	"12", "13", "14", "15", "16", "17", "18", "19", "20", "21", "22", "23",
]

# -- executables: PCRs ----------------------------------------------------------------------------

# The PCR reference values set: {name: [bank, index]}.
pcr_refs[name] := [bank, index] if {
	some bank in banks
	some index in indices
	name := concat("", ["tpm_", bank, "_pcr", index])
	refs[name]
}

# Trustee's names (tpm_pcr4, ...) are SHA-256 PCRs.
pcr_refs[name] := ["sha256", index] if {
	some index in indices
	name := concat("", ["tpm_pcr", index])
	refs[name]
}

pcr_ok contains name if {
	some name, at in pcr_refs
	value := tpm.pcrs[at[0]][at[1]]
	is_string(value)
	lowered[name][lower(value)] == true
}

default pcrs_vouched := false

pcrs_vouched if {
	count(pcr_refs) > 0
	count(pcr_ok) == count(pcr_refs)
}

# -- executables: the event log ---------------------------------------------------------------------

boot_pcrs := {4, 9}

# Digests of the bound events of PCRs 4 and 9, lowercased.
boot_digests contains lower(entry.digest) if {
	some event in tpm.uefi_event_logs
	event.index in boot_pcrs
	event.type_name != "EV_NO_ACTION"
	some entry in event.digests
	is_string(entry.digest)
}

digest_known(name) if {
	some value in refs[name]
	is_string(value)
	lower(value) in boot_digests
}

default kernel_ok := false

kernel_ok if not refs.tpm_kernel_digest

kernel_ok if digest_known("tpm_kernel_digest")

default initrd_ok := false

initrd_ok if not refs.tpm_initrd_digest

initrd_ok if digest_known("tpm_initrd_digest")

default cmdline_ok := false

cmdline_ok if not refs.tpm_kernel_cmdline

cmdline_ok if {
	is_string(tpm.kernel_cmdline)
	tpm.kernel_cmdline in refs.tpm_kernel_cmdline
}

default executables := 33

executables := 3 if {
	pcrs_vouched
	kernel_ok
	initrd_ok
	cmdline_ok
}

# -- hardware and instance identity -----------------------------------------------------------------

default genuine := false

# A TPM is trusted through its AK, which the operator vouches for; only an emulator marks its
# evidence emulated.
genuine if not tpm.emulated

genuine if {
	tpm.emulated == true
	refs.allow_emulated == [true]
}

default hardware := 96

hardware := 2 if genuine

default instance_identity := 96

instance_identity := 2 if genuine

# -- configuration: Secure Boot, init-data ----------------------------------------------------------

default pcr7_bound := false

pcr7_bound if {
	some bank in banks
	7 in tpm.bound_pcrs[bank]
}

default secure_boot_ok := false

secure_boot_ok if {
	tpm.secure_boot == true
	pcr7_bound
}

secure_boot_ok if refs.tpm_allow_secure_boot_off == [true]

default init_data_field := ""

init_data_field := input.init_data if is_string(input.init_data)

default init_data_presented := false

init_data_presented if {
	is_object(input.init_data_claims)
	count(input.init_data_claims) > 0
}

default init_data_ok := false

init_data_ok if not init_data_presented

init_data_ok if {
	init_data_presented
	is_string(tpm.pcrs.sha256["8"])
	init_data_field != ""
	lower(init_data_field) == lower(tpm.pcrs.sha256["8"])
}

default configuration := 36

configuration := 2 if {
	secure_boot_ok
	init_data_ok
}

# -- outputs ----------------------------------------------------------------------------------------

trust_claims := {
	"instance-identity": instance_identity,
	"configuration": configuration,
	"executables": executables,
	"hardware": hardware,
}

pcr_checks := [check |
	some name, at in pcr_refs
	check := {
		"name": concat("", ["tpm.", at[0], ".pcr", at[1]]), "held": name in pcr_ok,
		"rule": "in", "field": ["pcrs", at[0], at[1]], "reference": name,
	}
]

digest_check(label, held, name) := {
	"name": concat("", ["tpm.", label]), "held": held, "rule": "in", "optional": true,
	"reference": name,
	"detail": concat("", [
		"no event of PCR 4 or 9 that the quote vouches for has a digest in reference value ",
		name,
	]),
} if not held

digest_check(label, held, name) := {
	"name": concat("", ["tpm.", label]), "held": held, "rule": "in", "optional": true,
	"reference": name,
	"detail": concat("", ["an event of PCR 4 or 9 has a digest in reference value ", name]),
} if {
	held
	refs[name]
}

digest_check(label, held, name) := {
	"name": concat("", ["tpm.", label]), "held": held, "rule": "in", "optional": true,
	"reference": name, "detail": concat("", ["no reference value ", name, ", not checked"]),
} if {
	held
	not refs[name]
}

default secure_boot_unbound := false

secure_boot_unbound if {
	tpm.secure_boot == true
	not pcr7_bound
}

secure_boot_check := {
	"name": "tpm.secure_boot", "held": secure_boot_ok, "rule": "eq", "field": "secure_boot",
	"expected": true,
	"hint": "Secure Boot must be on unless tpm_allow_secure_boot_off = [true]",
} if not secure_boot_unbound

secure_boot_check := {
	"name": "tpm.secure_boot", "held": secure_boot_ok, "rule": "eq", "field": "secure_boot",
	"expected": true, "detail": concat(" ", [
		"secure_boot is true, but PCR 7 is not in bound_pcrs: the quote does not vouch for the",
		"event that says so (quote PCR 7, or set tpm_allow_secure_boot_off = [true])",
	]),
} if secure_boot_unbound

fixed_checks := [
	{
		"name": "tpm.pcrs", "held": count(pcr_refs) > 0, "rule": "in",
		"detail": "at least one reference value tpm_<bank>_pcr<index> (e.g. tpm_sha256_pcr7) must vouch for the boot",
	},
	digest_check("kernel", kernel_ok, "tpm_kernel_digest"),
	digest_check("initrd", initrd_ok, "tpm_initrd_digest"),
	{
		"name": "tpm.kernel_cmdline", "held": cmdline_ok, "rule": "in", "optional": true,
		"field": "kernel_cmdline", "reference": "tpm_kernel_cmdline",
	},
	secure_boot_check,
	{
		"name": "tpm.init_data", "held": init_data_ok, "rule": "eq", "optional": true,
		"field": ["pcrs", "sha256", "8"], "expected": init_data_field,
		"hint": "init-data was bound to another field than the quoted SHA-256 PCR 8",
	},
	{
		"name": "tpm.emulated", "held": genuine, "rule": "eq", "field": "emulated", "expected": false,
		"hint": "evidence from an emulated TPM passes only with reference value allow_emulated = [true]",
	},
]

checks := array.concat(pcr_checks, fixed_checks)
