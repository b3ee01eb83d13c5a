"""Process pools that fail cleanly when a worker dies.

When one worker of a :class:`~concurrent.futures.ProcessPoolExecutor` dies (killed, out of memory), CPython marks
the pool broken, sends the other workers SIGTERM and waits for them to exit. A worker that does not exit then
(one the pool spawned for a task submitted while it was breaking, after it sent SIGTERM, or one ignoring SIGTERM)
and that is sending a result larger than a pipe holds waits for a reader that is gone, and the pool, so the
whole command, waits forever (seen in CI: ``score --engine process`` after a worker was killed).
:func:`spawn_pool` kills (SIGKILL) every worker still alive when the pool broke, before it shuts down, so the
caller's error (a worker died) comes back instead of a hang.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def kill_workers(ex: Any) -> None:
    """SIGKILL every worker process ``ex`` (a ProcessPoolExecutor) still has alive."""
    procs = getattr(ex, "_processes", None) or {}
    for p in list(procs.values()):
        if p.is_alive():
            p.kill()


@contextlib.contextmanager
def spawn_pool(workers: int, **kw: Any) -> Iterator[Any]:
    """A ProcessPoolExecutor of ``workers`` spawned processes (``kw``: its initializer and initargs); when the
    block ends with the pool broken (a worker died), the remaining workers are killed before it shuts down."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ex = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), **kw)
    try:
        yield ex
    except BaseException:
        if getattr(ex, "_broken", False):
            kill_workers(ex)
        raise
    finally:
        ex.shutdown(wait=True)
