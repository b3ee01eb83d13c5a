"""mer_eval.pool: a dead worker gives the caller its error, never a hang (issue #12's process engine; CI once hung
in test_engines' dead-worker test with a surviving worker blocked sending its result)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent('''
    import os, signal, sys, time
    from concurrent.futures.process import BrokenProcessPool

    from mer_eval.pool import spawn_pool

    FLAG = sys.argv[1]

    def survivor(_):
        # as a worker the pool spawned after it sent SIGTERM: the SIGTERM never ends it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while not os.path.exists(FLAG):  # until the other worker is dead
            time.sleep(0.01)
        time.sleep(1.0)  # the pool has seen the death and stopped reading results
        return b"x" * (16 << 20)  # more than a pipe holds: blocks until someone reads it

    def die(_):
        open(FLAG, "w").close()
        os._exit(1)

    if __name__ == "__main__":
        try:
            with spawn_pool(2) as ex:
                a = ex.submit(survivor, 0)
                b = ex.submit(die, 0)
                b.result()
        except BrokenProcessPool:
            print("worker died: reported")
''')


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM / SIGKILL semantics")
def test_a_dead_worker_is_reported_while_another_is_blocked_sending_its_result(tmp_path):
    """One worker dies while another, which SIGTERM does not end, is about to send a result larger than a pipe
    holds: the pool breaks, and ``spawn_pool`` kills the survivor so the error comes back. A plain
    ProcessPoolExecutor waits for the survivor forever here (the subprocess's timeout then fails the test)."""
    script = tmp_path / "pool_case.py"
    script.write_text(SCRIPT, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "dead")], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "worker died: reported" in proc.stdout


def test_the_pool_without_a_death_returns_every_result():
    from mer_eval.pool import spawn_pool

    with spawn_pool(2) as ex:
        assert list(ex.map(abs, [-1, -2, 3])) == [1, 2, 3]
