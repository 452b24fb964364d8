"""RFC 9162 §2.1 Merkle tree: hashes, proof generation and proof verification.

A deliberate second implementation (the ledger has its own): proofs are
generated here from the ledger's leaves with the recursive definitions and then
checked with the RFC's iterative algorithms, so the two halves test each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(data: bytes) -> bytes:
    return sha256(b"\x00" + data)


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """Leaf hashes plus a memo of subtree hashes, so PATH/PROOF for many sizes stay cheap."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self.leaves = list(leaf_hashes)
        self._memo: dict[tuple[int, int], bytes] = {}

    @classmethod
    def from_data(cls, items: Sequence[bytes]) -> MerkleTree:
        return cls([leaf_hash(d) for d in items])

    def mth(self, lo: int = 0, hi: int | None = None) -> bytes:
        """MTH(D[lo:hi]) by the recursive definition."""
        hi = len(self.leaves) if hi is None else hi
        if not 0 <= lo <= hi <= len(self.leaves):
            raise ValueError(f"range [{lo}, {hi}) outside a tree of {len(self.leaves)} leaves")
        n = hi - lo
        if n == 0:
            return sha256(b"")
        if n == 1:
            return self.leaves[lo]
        key = (lo, hi)
        if key not in self._memo:
            k = _split(n)
            self._memo[key] = node_hash(self.mth(lo, lo + k), self.mth(lo + k, hi))
        return self._memo[key]

    def inclusion_path(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1."""
        if not 0 <= index < size <= len(self.leaves):
            raise ValueError(f"no leaf {index} in a tree of size {size}")
        return self._path(index, 0, size)

    def _path(self, m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return [*self._path(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self._path(m - k, lo + k, hi), self.mth(lo, lo + k)]

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """PROOF(first, D[0:second]) of RFC 9162 §2.1.4.1 (empty when first is 0 or second)."""
        if not 0 <= first <= second <= len(self.leaves):
            raise ValueError(f"no consistency proof from size {first} to {second}")
        if first in (0, second):
            return []
        return self._subproof(first, 0, second, True)

    def _subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if b else [self.mth(lo, hi)]
        k = _split(n)
        if m <= k:
            return [*self._subproof(m, lo, lo + k, b), self.mth(lo + k, hi)]
        return [*self._subproof(m - k, lo + k, hi, False), self.mth(lo, lo + k)]


def prefix_roots(leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """MTH of every prefix D[0:1], D[0:2], …, in O(n log n) via the right frontier.

    The frontier holds one perfect subtree per set bit of the size, largest first;
    folding it from the right gives exactly the recursive MTH split.
    """
    frontier: list[tuple[int, bytes]] = []  # (subtree size, hash)
    roots: list[bytes] = []
    for h in leaf_hashes:
        size, node = 1, h
        while frontier and frontier[-1][0] == size:
            left_size, left = frontier.pop()
            size, node = left_size + size, node_hash(left, node)
        frontier.append((size, node))
        acc = frontier[-1][1]
        for _, left in reversed(frontier[:-1]):
            acc = node_hash(left, acc)
        roots.append(acc)
    return roots


def verify_inclusion(
    index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2, step by step."""
    if index >= size or index < 0:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2, with the trivial cases (equal sizes, empty first tree) made explicit."""
    if first < 0 or first > second:
        return False
    if first == second:
        return len(proof) == 0 and first_root == second_root
    if first == 0:
        return len(proof) == 0
    if len(proof) == 0:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # an exact power of two
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_root and sr == second_root and sn == 0
