"""Signatures: keys, DSSE envelopes, unlearning certificates."""
