"""veritee: a confidential-computing attestation verifier and key broker."""

__version__ = "0.1.0"
