"""Fail points: places where a test makes the process die on purpose.

``STREAMSEG_FAILPOINT=<name>[:<n>]`` in a worker's environment kills the worker
(``SIGKILL``: no cleanup, as a crash) the ``n``-th time (default: the first) it reaches
:func:`fail_point` with that name. Unset, a fail point costs one dictionary lookup.
The crash tests use them to stop a worker at an exact step that a signal sent from
outside would only hit by chance (see ``tests/integration/test_shared_model.py``).

Points: ``refiner.before_publish`` -- the refiner computed a refinement and has not
written any of it.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

__all__ = ["fail_point"]

_hits: dict[str, int] = {}


def fail_point(name: str) -> None:
    """Die here if ``STREAMSEG_FAILPOINT`` names this point (see the module docstring)."""
    spec = os.environ.get("STREAMSEG_FAILPOINT")
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(count or 1):
        log.error("fail point %s reached: killing this process", name)
        logging.shutdown()  # the log line must reach the file before the kill
        os.kill(os.getpid(), signal.SIGKILL)
