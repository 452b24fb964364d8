"""Task vectors and the merged state: fixed point, digests, tensor files."""
