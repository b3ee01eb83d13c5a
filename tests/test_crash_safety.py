"""kill -9 of ``generate`` and ``score`` at several moments, then a rerun: nothing lost, nothing half-written.

Each kill is a SIGKILL to the process group of a real ``.venv/bin/mer-eval`` subprocess, at a moment chosen by
time (during start-up) or by progress (after the N-th output file of that attempt appears, when the score marker
appears, when the first per-sample scores file is written). After every kill every JSON / CSV / parquet file in
the run must parse; after the rerun the outputs must equal those of an uninterrupted run (timestamps, durations,
``cached`` flags and the run folder's own path aside), with no ``.tmp`` file left.

Also: two processes on one run (the second is refused with RunLockedError's one line, and ``score`` refuses
before computing anything) and a cache hit naming this run's files, never the run that filled the cache.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MER_EVAL = REPO / ".venv" / "bin" / "mer-eval"
EXAMPLES = REPO / "examples"
# weight-free families (cross_modal is not: it loads a MiniLM sentence embedder, ~30 s of imports per attempt)
SCORE_METRICS = "text_quality,abstention,au_faithfulness"
VOLATILE = {"time", "created", "started", "finished", "seconds", "model_seconds", "duration", "duration_s",
            "elapsed", "elapsed_s", "cached", "cache_hits", "git_sha", "pid", "wall_s",
            # how a value was produced on this attempt (recomputed, reused from a stage file, a cached answer)
            "reused", "attempts", "provider_attempts", "from_cache"}
KILLS: list[str] = []  # the moments survived, for the closing figures (printed with -s)

pytestmark = pytest.mark.skipif(not MER_EVAL.is_file(), reason=".venv/bin/mer-eval is not installed")


def _env(cache: Path) -> dict:
    env = dict(os.environ)
    env["MER_EVAL_CACHE_DIR"] = str(cache)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _files(root: Path) -> dict[str, int]:
    out = {}
    for p in root.rglob("*"):
        if p.is_file():
            try:
                out[str(p.relative_to(root))] = p.stat().st_mtime_ns
            except FileNotFoundError:  # renamed away while listing
                continue
    return out


def _start(args: list[str], cache: Path) -> subprocess.Popen:
    return subprocess.Popen([str(MER_EVAL), "-q", *args], env=_env(cache), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group this test started: kill -9, no cleanup runs
    proc.wait(timeout=30)


def _kill_when(proc: subprocess.Popen, root: Path, moment, limit_s: float = 120.0) -> bool:
    """Kill ``proc`` when ``moment(root, t, before)`` says so; False when it finished first."""
    before = _files(root) if root.exists() else {}
    t0 = time.monotonic()
    while proc.poll() is None:
        if moment(root, time.monotonic() - t0, before):
            _kill(proc)
            return True
        if time.monotonic() - t0 > limit_s:
            _kill(proc)
            pytest.fail(f"mer-eval ran past {limit_s} s")
        time.sleep(0.005)
    err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    assert proc.returncode == 0 and "Traceback" not in err, err[-3000:]
    return False


def after_seconds(s: float):
    return lambda root, t, before: t >= s


def after_new_files(n: int):
    """After the n-th file this attempt wrote or replaced (the lock file aside)."""
    def moment(root, t, before):
        now = _files(root) if root.exists() else {}
        changed = [k for k, v in now.items() if before.get(k) != v and not k.endswith(".lock")]
        return len(changed) >= n
    return moment


def when_exists(pattern: str):
    return lambda root, t, before: any(True for _ in root.glob(pattern)) if root.exists() else False


def _check_whole(root: Path) -> None:
    """Every output file parses: no half-written JSON / CSV / parquet."""
    import pandas as pd
    import pyarrow.parquet as pq

    for p in root.rglob("*"):
        if not p.is_file() or p.name.endswith(".tmp"):
            continue
        if p.suffix == ".json":
            json.loads(p.read_text(encoding="utf-8"))
        elif p.suffix == ".jsonl":
            for line in p.read_text(encoding="utf-8").splitlines():
                json.loads(line)
        elif p.suffix == ".parquet":
            pq.read_table(p)
        elif p.suffix == ".csv" and p.stat().st_size:
            pd.read_csv(p)


def _norm(obj, roots: tuple[str, ...]):
    if isinstance(obj, dict):
        return {k: _norm(v, roots) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_norm(v, roots) for v in obj]
    if isinstance(obj, str):
        for r in roots:
            obj = obj.replace(r, "<RUN>")
        return obj
    return obj


def _content(root: Path, *other_roots: Path, skip=("run.json",)) -> dict[str, object]:
    """The run folder's files, comparable across two runs: JSON normalised, parquet as rows, others as bytes."""
    import pyarrow.parquet as pq

    roots = tuple(str(r) for r in (root, root.resolve(), *other_roots))
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if not p.is_file() or p.name.endswith(".lock") or rel in skip:
            continue
        if p.suffix == ".json":
            out[rel] = _norm(json.loads(p.read_text(encoding="utf-8")), roots)
        elif p.suffix == ".parquet":
            out[rel] = _norm([{k: v for k, v in r.items()} for r in pq.read_table(p).to_pylist()], roots)
        elif p.suffix == ".csv" and p.name.startswith("mer_eval_"):
            out[rel] = p.read_text(encoding="utf-8").replace(str(root), "<RUN>")
        else:
            out[rel] = p.read_bytes()
    return out


def _diff(a, b, at="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{at}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{at}[{i}]")]
    return [] if a == b else [f"{at}: {str(a)[:80]} != {str(b)[:80]}"]


def _run_to_end(args: list[str], cache: Path, ok=(0,)) -> subprocess.CompletedProcess:
    r = subprocess.run([str(MER_EVAL), "-q", *args], env=_env(cache), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode in ok, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    return r


def _tmp_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.tmp"))


# ---- generate ----------------------------------------------------------------------------------------

@pytest.fixture
def media_in(tmp_path) -> Path:
    d = tmp_path / "media"
    d.mkdir()
    for name in ("0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "labels.csv"):
        shutil.copy(EXAMPLES / "media" / name, d / name)
    return d


def test_generate_survives_kill9_chain(tmp_path, media_in):
    ref, out = tmp_path / "ref", tmp_path / "out"
    # the uninterrupted run is made at the same path, then moved aside (stage hashes cover files naming paths)
    _run_to_end(["generate", str(media_in), str(out), "--no-progress", "-c", "2"], tmp_path / "cache-ref")
    out.rename(ref)
    moments = [("generate at 0.8 s (start-up)", after_seconds(0.8)),
               ("generate after its 1st output file", after_new_files(1)),
               ("generate after its 2nd output file", after_new_files(2)),
               ("generate after its 3rd output file", after_new_files(3)),
               ("generate after its 5th output file", after_new_files(5)),
               ("generate after its 8th output file", after_new_files(8))]
    cache = tmp_path / "cache-killed"
    killed = 0
    for label, moment in moments:
        p = _start(["generate", str(media_in), str(out), "--no-progress", "-c", "2"], cache)
        if _kill_when(p, out, moment):
            killed += 1
            KILLS.append(label)
            if out.exists():
                _check_whole(out)
    assert killed >= 5, f"only {killed} kills landed before generate finished"
    _run_to_end(["generate", str(media_in), str(out), "--no-progress", "-c", "2"], cache)
    assert _tmp_files(out) == [], "orphan .tmp files after the rerun"
    _check_whole(out)
    a, b = _content(ref, out), _content(out, ref)
    assert sorted(a) == sorted(b), f"files differ: only ref {sorted(set(a) - set(b))}, only killed {sorted(set(b) - set(a))}"
    for k in a:
        assert a[k] == b[k], f"{k} differs from the uninterrupted run: {_diff(a[k], b[k])}"
    # every sample once, none lost, none duplicated
    ids = sorted(p.parent.name for p in out.glob("*/mer_eval_meta.json"))
    assert ids == ["0-f15-hao-ph", "15-f13-anc-ph"]
    assert not (out / "error_logs").exists() or not any((out / "error_logs").iterdir())
    m = json.loads((out / "run.json").read_text())
    assert sum(m["counts_by_status"].values()) == 2 and m["counts_by_status"]["failed"] == 0
    print(f"\ngenerate kill points survived: {killed}")


# ---- score -------------------------------------------------------------------------------------------

def _mer_factory_run(dst: Path, copies: int = 20) -> Path:
    """The bundled MER-Factory outputs, each folder copied ``copies`` times under new ids (many samples, so a
    kill lands inside the per-sample write phase)."""
    dst.mkdir()
    for src in sorted((EXAMPLES / "mer-factory").iterdir()):
        for k in range(copies):
            sid = f"c{k:02d}-{src.name}"
            d = dst / sid
            d.mkdir()
            for f in src.iterdir():
                shutil.copy(f, d / f.name.replace(src.name, sid, 1))
    return dst


def test_score_survives_kill9_and_marks_write_phase(tmp_path):
    from mer_eval.store import SCORE_INCOMPLETE

    base = _mer_factory_run(tmp_path / "base")
    ref, out = tmp_path / "ref", tmp_path / "out"
    shutil.copytree(base, out)
    _run_to_end(["score", str(out), "--metrics", SCORE_METRICS], tmp_path / "cache-ref")
    assert not (out / SCORE_INCOMPLETE).exists()
    out.rename(ref)
    n = len([d for d in base.iterdir() if d.is_dir()])
    shutil.copytree(base, out)
    cache = tmp_path / "cache-killed"
    moments = [("score at 0.8 s (start-up)", after_seconds(0.8)),
               ("score when it took the lock (marker written)", when_exists(SCORE_INCOMPLETE)),
               ("score during its first per-sample scores files", when_exists("*/mer_eval_scores.json")),
               ("score after 20 per-sample scores files", after_new_files(20)),
               ("score after its scores.parquet temp file", when_exists(".scores.parquet.*.tmp")),
               ("score after 45 output files", after_new_files(45))]
    killed = 0
    write_phase_kills = 0
    for label, moment in moments:
        p = _start(["score", str(out), "--metrics", SCORE_METRICS], cache)
        if not _kill_when(p, out, moment):
            continue
        killed += 1
        KILLS.append(label)
        _check_whole(out)
        if any(out.glob("*/mer_eval_scores.json")):
            write_phase_kills += 1
            # new per-sample files without the run saying it is finished: the marker must say so ...
            assert (out / SCORE_INCOMPLETE).is_file(), f"{label}: half-updated run not marked incomplete"
            reason = json.loads((out / SCORE_INCOMPLETE).read_text())["reason"]
            assert "did not finish" in reason
            # ... and readers refuse it with that reason rather than mixing two attempts
            from mer_eval.scoring import load_scores

            with pytest.raises(FileNotFoundError, match="did not finish"):
                load_scores(out)
    assert killed >= 5, f"only {killed} kills landed before score finished"
    assert write_phase_kills >= 1, "no kill landed in score's write phase"
    _run_to_end(["score", str(out), "--metrics", SCORE_METRICS], cache)
    assert not (out / SCORE_INCOMPLETE).exists()
    assert _tmp_files(out) == [], "orphan .tmp files after the rerun"
    _check_whole(out)
    a, b = _content(ref, out), _content(out, ref)
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k] == b[k], f"{k} differs from the uninterrupted run: {_diff(a[k], b[k])}"
    import pandas as pd

    summary = pd.read_csv(out / "mer_eval_summary.csv")
    assert len(summary) == n and summary["sample_id"].is_unique  # 0 lost, 0 duplicated
    rj = json.loads((out / "run.json").read_text())
    assert rj["score"]["metrics"] == SCORE_METRICS.split(",")
    print(f"\nscore kill points survived: {killed} ({write_phase_kills} in the write phase)")


# ---- two processes on one run ------------------------------------------------------------------------

def _hold_lock(run: Path) -> subprocess.Popen:
    code = ("import sys, time\nfrom mer_eval.store import RunStore\n"
            "with RunStore(sys.argv[1]).locked():\n    print('held', flush=True)\n    time.sleep(120)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True,
                         start_new_session=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_second_process_refused_and_score_checks_lock_first(tmp_path, media_in):
    run = tmp_path / "run"
    shutil.copytree(EXAMPLES / "mer-factory", run)
    cache = tmp_path / "cache"
    holder = _hold_lock(run)
    try:
        r = subprocess.run([str(MER_EVAL), "score", str(run), "--metrics", SCORE_METRICS], env=_env(cache),
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 1
        assert "is being written by pid" in r.stderr and "wait for it or use another OUT" in r.stderr
        assert "Traceback" not in r.stderr and "During handling" not in r.stderr
        # refused before computing: no score file, no marker, nothing put in the cache
        assert not list(run.glob("*/mer_eval_scores.json")) and not (run / "scores.parquet").exists()
        from mer_eval.store import SCORE_INCOMPLETE

        assert not (run / SCORE_INCOMPLETE).exists()
        db = cache / "cache.sqlite"
        if db.exists():
            with sqlite3.connect(db) as c:
                assert c.execute("SELECT COUNT(*) FROM kv").fetchone()[0] == 0
        gen = tmp_path / "gen"
        gen.mkdir()
        h2 = _hold_lock(gen)
        try:
            g = subprocess.run([str(MER_EVAL), "generate", str(media_in), str(gen), "--no-progress"],
                               env=_env(cache), capture_output=True, text=True, timeout=300)
        finally:
            _kill(h2)
        assert g.returncode == 1 and "is being written by pid" in g.stderr and "Traceback" not in g.stderr
        assert not list(gen.glob("*/mer_eval_meta.json"))
    finally:
        _kill(holder)
    # the lock goes with the process that held it (even killed): the next run proceeds
    _run_to_end(["score", str(run), "--metrics", "text_quality"], cache)
    KILLS.append("lock holder killed -9, next score ran")


# ---- a cache hit names this run's files ----------------------------------------------------------------

def test_cache_hit_does_not_carry_another_runs_paths(tmp_path):
    a, b = tmp_path / "run-a", tmp_path / "run-b"
    shutil.copytree(EXAMPLES / "mer-factory", a)
    shutil.copytree(EXAMPLES / "mer-factory", b)
    cache = tmp_path / "cache"
    # au_f1 reads the OpenFace CSV bundled with the 'default' sample (no weights) and records its path
    _run_to_end(["score", str(a), "--metrics", "au_f1,text_quality"], cache)
    _run_to_end(["score", str(b), "--metrics", "au_f1,text_quality"], cache)
    ev = json.loads((b / "default" / "mer_eval_scores.json").read_text())
    au = [r for r in ev["results"] if r["metric"].startswith("au_")]
    assert au and all(r["cached"] for r in au), "the second run should be served from the cache"
    assert {r["details"]["source_file"] for r in au if r.get("details", {}).get("source_file")} == {
        str(b / "default" / "default.csv")}
    for p in b.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".csv", ".parquet"):
            assert str(a) not in p.read_bytes().decode("utf-8", "replace"), f"{p} names run-a's files"
