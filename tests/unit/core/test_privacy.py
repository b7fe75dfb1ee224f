"""Pseudonymisation: stable keyed hashes."""

from __future__ import annotations

from streamseg.core.privacy import pseudonymise


def test_the_same_id_and_key_give_the_same_hash_and_another_key_another() -> None:
    assert pseudonymise("c1", b"k") == pseudonymise("c1", b"k")
    assert pseudonymise("c1", b"k") != pseudonymise("c1", b"other")
    assert len(pseudonymise("c1", b"k")) == 64
