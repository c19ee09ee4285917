"""RFC 6962 (RFC 9162 section 2.1) Merkle tree hashing over the security log's events.

Leaf ``i`` is event ``i + 1``'s canonical body (``chain.event_body``); its hash is
``SHA-256(0x00 || body)``, an interior node's ``SHA-256(0x01 || left || right)``, and the
tree over ``n`` leaves splits at the largest power of two below ``n``. The same functions an
auditor re-implements from the RFC: nothing here is of SellerVault's invention.

A tree is extended leaf by leaf through its compact range (``Frontier``: the roots of the
perfect subtrees that make it up, largest first), so a checkpoint job hashes only the
events written since the last checkpoint, and verification hashes each event once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof that does not verify, or that cannot be a proof for these sizes."""


HASH_SIZE = 32


def _check_hashes(*hashes: bytes) -> None:
    if any(len(h) != HASH_SIZE for h in hashes):
        raise ProofError("a hash that is not 32 bytes")


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


@dataclass
class Frontier:
    """The compact range ``[0, size)``: one subtree root per set bit of ``size``."""

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def append(self, leaf: bytes) -> None:
        """Add the leaf hash ``leaf`` as leaf number ``size``."""
        merged, size = leaf, self.size
        while size & 1:
            merged = node_hash(self.hashes.pop(), merged)
            size >>= 1
        self.hashes.append(merged)
        self.size += 1

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        root = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            root = node_hash(left, root)
        return root

    def copy(self) -> Frontier:
        return Frontier(self.size, list(self.hashes))


def root_of(leaves: Iterable[bytes]) -> bytes:
    """The root over these leaf hashes."""
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.root()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 6962's PATH(index, leaves): the sibling hashes from the leaf up to the root."""
    if not 0 <= index < len(leaves):
        raise ProofError("leaf index outside the tree")
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_proof(leaves[:k], index), root_of(leaves[k:])]
    return [*inclusion_proof(leaves[k:], index - k), root_of(leaves[:k])]


def blocks_of(prefix: Frontier) -> dict[tuple[int, int], bytes]:
    """The compact range's subtrees as (first leaf, leaves) -> root: one per set bit of its
    size, the largest first, each aligned as RFC 6962's own subtrees are."""
    blocks, start = {}, 0
    widths = [1 << bit for bit in range(prefix.size.bit_length() - 1, -1, -1)
              if prefix.size >> bit & 1]
    for width, root in zip(widths, prefix.hashes, strict=True):
        blocks[(start, width)] = root
        start += width
    return blocks


def inclusion_proof_after(prefix: Frontier, rest: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index) in the tree of ``prefix.size + len(rest)`` leaves whose first
    ``prefix.size`` are known only by their compact range (removed by retention), the others
    being ``rest``: the same path ``inclusion_proof`` gives over every leaf, for a leaf after
    the prefix. (A sibling of such a leaf's path is never inside one of the prefix's
    subtrees: it is a whole subtree, or mixes subtrees and later leaves.)"""
    known, removed, size = blocks_of(prefix), prefix.size, prefix.size + len(rest)
    if not removed <= index < size:
        raise ProofError("leaf index outside the leaves kept")

    def subtree(first: int, end: int) -> bytes:
        if (first, end - first) in known:
            return known[(first, end - first)]
        if first >= removed:
            return root_of(rest[first - removed:end - removed])
        if end - first == 1:
            raise ProofError("the proof needs a removed leaf")
        k = _split(end - first)
        return node_hash(subtree(first, first + k), subtree(first + k, end))

    def path(first: int, end: int) -> list[bytes]:
        if end - first == 1:
            return []
        k = _split(end - first)
        if index < first + k:
            return [*path(first, first + k), subtree(first + k, end)]
        return [*path(first + k, end), subtree(first, first + k)]

    return path(0, size)


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from ``leaf`` at ``index`` in a tree of ``size``
    (RFC 9162 2.1.3.2); a proof of the wrong length is refused."""
    if not 0 <= index < size:
        raise ProofError("leaf index outside the tree")
    _check_hashes(leaf, *proof)
    fn, sn, node = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            raise ProofError("the proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            node = node_hash(node, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is shorter than the tree is deep")
    return node


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes],
                     root: bytes) -> None:
    """Raise ``ProofError`` unless ``proof`` puts ``leaf`` at ``index`` under ``root``."""
    _check_hashes(root)
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise ProofError("the proof does not lead to the root")


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """RFC 6962's PROOF(old_size, leaves): that the first ``old_size`` leaves' tree is a
    prefix of this one."""
    if not 0 < old_size <= len(leaves):
        raise ProofError("sizes out of order")
    return _subproof(leaves, old_size, True)


def _subproof(leaves: Sequence[bytes], m: int, complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root_of(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(leaves[:k], m, complete), root_of(leaves[k:])]
    return [*_subproof(leaves[k:], m - k, False), root_of(leaves[:k])]


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """Raise ``ProofError`` unless ``proof`` shows the tree of ``old_size`` with
    ``old_root`` is a prefix of the tree of ``new_size`` with ``new_root`` (RFC 9162
    2.1.4.2)."""
    if not 0 < old_size <= new_size:
        raise ProofError("sizes out of order")
    if old_size == new_size:  # (compared as given, as the reference implementation does)
        if proof or old_root != new_root:
            raise ProofError("equal sizes need equal roots and an empty proof")
        return
    _check_hashes(old_root, new_root, *proof)
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is a node of the new
        path.insert(0, old_root)
    if not path:
        raise ProofError("empty proof")
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for node in path[1:]:
        if sn == 0:
            raise ProofError("the proof is longer than the trees are deep")
        if fn & 1 or fn == sn:
            fr = node_hash(node, fr)
            sr = node_hash(node, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, node)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != old_root or sr != new_root:
        raise ProofError("the proof does not link the two roots")
