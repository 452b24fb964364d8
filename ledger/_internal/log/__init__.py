"""The signed log: events, canonical JSON, the Merkle tree, heads, checkpoints, keys' chain."""
