"""Every docstring example of the Redis store's modules that need no server runs."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from streamseg.store.redis import (
    batch,
    codec,
    connection,
    keys,
    memo,
    migrate,
    numbers,
    partitions,
    scan,
)

MODULES = [batch, codec, connection, keys, memo, migrate, numbers, partitions, scan]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples_run(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
