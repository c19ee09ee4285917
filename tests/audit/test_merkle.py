"""audit.merkle against the RFC 6962 vectors of transparency-dev/merkle (tests/data): every
root of the eight reference leaves, every inclusion and consistency case, the valid ones
accepted and every tampered one refused; and proofs made here verify, for every leaf and
every pair of sizes up to 33 (odd shapes included)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from sellervault.audit import merkle
from tests.conftest import TEST_DATA

VECTORS = json.loads((TEST_DATA / "rfc6962-vectors.json").read_text())
LEAVES = [merkle.leaf_hash(bytes.fromhex(h)) for h in VECTORS["leaf_inputs_hex"]]


def b64(text: str) -> bytes:
    return base64.b64decode(text)


def test_every_root_of_the_reference_leaves() -> None:
    for size, root in enumerate(VECTORS["root_hashes_hex"]):
        assert merkle.root_of(LEAVES[:size]).hex() == root, size


@pytest.mark.parametrize("case", VECTORS["inclusion"], ids=lambda c: c["file"])
def test_inclusion_vectors(case: dict[str, Any]) -> None:
    def check() -> None:
        merkle.verify_inclusion(case["leafIdx"], case["treeSize"], b64(case["leafHash"]),
                                [b64(p) for p in case["proof"] or []], b64(case["root"]))
    if case["wantErr"]:
        with pytest.raises(merkle.ProofError):
            check()
    else:
        check()


@pytest.mark.parametrize("case", VECTORS["consistency"], ids=lambda c: c["file"])
def test_consistency_vectors(case: dict[str, Any]) -> None:
    def check() -> None:
        merkle.verify_consistency(case["size1"], case["size2"], b64(case["root1"]),
                                  b64(case["root2"]), [b64(p) for p in case["proof"] or []])
    if case["wantErr"]:
        with pytest.raises(merkle.ProofError):
            check()
    else:
        check()


def test_proofs_made_here_verify_for_every_leaf_and_size() -> None:
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(33)]
    for size in range(1, len(leaves) + 1):
        tree = leaves[:size]
        root = merkle.root_of(tree)
        for index in range(size):
            merkle.verify_inclusion(index, size, tree[index],
                                    merkle.inclusion_proof(tree, index), root)
        for old in range(1, size + 1):
            merkle.verify_consistency(old, size, merkle.root_of(tree[:old]), root,
                                      merkle.consistency_proof(tree, old))


def test_a_proof_for_another_leaf_or_place_is_refused() -> None:
    """(The size is bound by the root: a checkpoint signs them together.)"""
    root = merkle.root_of(LEAVES)
    proof = merkle.inclusion_proof(LEAVES, 3)
    for index, size, leaf in ((2, 8, LEAVES[3]), (3, 4, LEAVES[3]), (3, 8, LEAVES[2])):
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(index, size, leaf, proof, root)


def test_the_frontier_extends_a_tree_as_a_recomputation_would() -> None:
    frontier = merkle.Frontier()
    for size, leaf in enumerate(LEAVES, start=1):
        frontier.append(leaf)
        assert frontier.root() == merkle.root_of(LEAVES[:size])
        assert len(frontier.hashes) == bin(size).count("1")


# -- proofs after a removed prefix (retention) -------------------------------------------------

@pytest.mark.parametrize("removed", [1, 2, 3, 5, 8, 13, 16, 21])
def test_a_path_over_a_removed_prefix_is_the_path_over_every_leaf(removed: int) -> None:
    """With the first ``removed`` leaves known only by their compact range, every later
    leaf's path is exactly the one computed from every leaf."""
    every = [merkle.leaf_hash(bytes([n])) for n in range(40)]
    for size in range(removed + 1, 40):
        prefix = merkle.Frontier()
        for leaf in every[:removed]:
            prefix.append(leaf)
        for index in range(removed, size):
            assert merkle.inclusion_proof_after(prefix, every[removed:size], index) == \
                merkle.inclusion_proof(every[:size], index), (removed, size, index)


def test_a_removed_leaf_has_no_path() -> None:
    every = [merkle.leaf_hash(bytes([n])) for n in range(10)]
    prefix = merkle.Frontier()
    for leaf in every[:5]:
        prefix.append(leaf)
    with pytest.raises(merkle.ProofError):
        merkle.inclusion_proof_after(prefix, every[5:], 4)
