"""RFC 9162 §2.1 Merkle tree: hashes, every prefix's root, and proof checking.

A deliberate second implementation (the ledger has its own). The verifier holds
every leaf of the folder it audits, so it never needs a proof for that folder:
a head (n, r) is in the log iff MTH(D[0:n]) = r, and two heads are consistent
iff both roots are prefix roots of the same leaves, which is what a consistency
proof would show, with nothing left to trust. The RFC's checking algorithms are
here for the proofs `ledger proof` hands to someone who holds no folder.
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
