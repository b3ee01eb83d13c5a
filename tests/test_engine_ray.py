"""Score engine ray (issue #12): chunks computed by a pool of Ray Data actors on a local Ray (num_cpus=2) give the
same files as the local engine, byte for byte for the weight-free metrics, on real MER-Factory outputs; an actor
killed midway is restarted and the run finishes with the same files; past its restarts it is one EngineError line
and the next run resumes from the cache; Ray missing or unreachable is one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mer_eval.config import load_config
from mer_eval.discovery import discover
from mer_eval.scoring import EngineError, score_dataset
from engine_compare import REPO, kill_actor_during, WEIGHT_FREE, WEIGHT_FREE_SETS, assert_same_outputs, build_real_run, \
    cli_score_with_engine, score_both_ways

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'mer-eval[ray]'")
engine_ray = pytest.importorskip("mer_eval.engine_ray")


def _local_cfg():
    return load_config(sets=["cache.enabled=false"] + WEIGHT_FREE_SETS)


def test_ray_engine_writes_the_same_files_as_local(local_ray, shared_data, tmp_path):
    local, via_ray = score_both_ways(shared_data, tmp_path, "ray", _local_cfg())
    assert local.results == via_ray.results  # every MetricResult, details included, as the local engine made it
    assert local.aggregates == via_ray.aggregates
    assert sum(via_ray.section.counts_by_status["composite_score"].values()) == 23
    assert not (tmp_path / "ray" / ".mer-eval-score.incomplete").exists()
    assert local_ray.is_initialized()  # a Ray the caller started is left as it was


def test_ray_engine_on_a_compact_run_sends_packed_samples(local_ray, shared_data, tmp_path, monkeypatch):
    """A run kept compact (SampleStore) travels packed; the actors unpack it: same files as local."""
    from mer_eval import sample_store

    root = build_real_run(shared_data, tmp_path / "run", n=14)
    score_dataset(discover(root), tmp_path / "local", _local_cfg(), metrics=WEIGHT_FREE, chunk_size=6)
    monkeypatch.setattr(sample_store, "COMPACT_ABOVE", 4)
    ds = discover(root)
    assert isinstance(ds.samples, sample_store.SampleStore)
    out = score_dataset(ds, tmp_path / "ray", _local_cfg(), metrics=WEIGHT_FREE, chunk_size=6, engine="ray",
                        workers=2, keep_results=False)
    assert assert_same_outputs(tmp_path / "local", tmp_path / "ray", ds.samples.ids) == 14
    assert len(out.results) == 14  # read back from the parquet


def test_ray_map_yields_every_chunk_in_order_and_keep_false_leaves_the_results_in_the_actors(local_ray, shared_data, tmp_path):
    root = build_real_run(shared_data, tmp_path / "run", n=11)
    samples = discover(root).samples
    parts = [samples[i:i + 4] for i in range(0, 11, 4)]  # 4, 4, 3: each split over 2 actors
    got = list(engine_ray.ray_map(iter(parts), WEIGHT_FREE, _local_cfg(), False, tmp_path / "o", 2, keep=False))
    assert [[s.id for s in part] for part, _ in got] == [[s.id for s in part] for part in parts]
    for part, cr in got:
        assert cr.results == {}  # left in the actors
        assert list(dict.fromkeys(r["sample_id"] for r in cr.rows)) == [s.id for s in part]  # in the chunk's order
        assert sum(sum(c.values()) for m, c in cr.stats.counts.items() if m == "composite_score") == len(part)


def _kill_during(out_dir: Path, run):
    return kill_actor_during(b"ScorerActor", out_dir, "*/mer_eval_scores.json", run)


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to find the actor")


@needs_proc
def test_a_killed_actor_is_restarted_and_the_files_are_the_local_ones(local_ray, shared_data, tmp_path):
    root = build_real_run(shared_data, tmp_path / "run", n=40)
    cfg = load_config(sets=[f"cache.dir={tmp_path / 'cache'}"] + WEIGHT_FREE_SETS)
    out, killed = _kill_during(tmp_path / "out", lambda: score_dataset(
        discover(root), tmp_path / "out", cfg, metrics=WEIGHT_FREE, chunk_size=10, engine="ray", workers=2))
    assert killed, "no actor was found to kill"
    assert sum(out.section.counts_by_status["composite_score"].values()) == 40
    assert not (tmp_path / "out" / ".mer-eval-score.incomplete").exists()
    ref = score_dataset(discover(root), tmp_path / "ref", _local_cfg(), metrics=WEIGHT_FREE, chunk_size=10)
    assert ref.section.counts_by_status == out.section.counts_by_status
    assert ref.section.means == out.section.means
    assert assert_same_outputs(tmp_path / "ref", tmp_path / "out", [s.id for s in discover(root).samples],
                               ignore_cached=True) == 40


@needs_proc
def test_past_its_restarts_a_dead_actor_is_one_error_and_the_next_run_resumes(local_ray, shared_data, tmp_path,
                                                                              monkeypatch):
    root = build_real_run(shared_data, tmp_path / "run", n=40)
    cfg = load_config(sets=[f"cache.dir={tmp_path / 'cache'}"] + WEIGHT_FREE_SETS)
    monkeypatch.setattr(engine_ray, "MAX_RESTARTS", 0)

    def run():
        with pytest.raises(EngineError, match="a Ray worker died") as err:
            score_dataset(discover(root), tmp_path / "out", cfg, metrics=WEIGHT_FREE, chunk_size=10,
                          engine="ray", workers=2)
        return err

    err, killed = _kill_during(tmp_path / "out", run)
    assert killed
    assert "\n" not in str(err.value) and "mer-eval score" in str(err.value)
    assert (tmp_path / "out" / ".mer-eval-score.incomplete").is_file()  # the run says it did not finish
    monkeypatch.setattr(engine_ray, "MAX_RESTARTS", 3)
    again = score_dataset(discover(root), tmp_path / "out", cfg, metrics=WEIGHT_FREE, chunk_size=10,
                          engine="ray", workers=2)
    assert again.section.cache_hits > 0  # what the first run computed is reused
    assert not (tmp_path / "out" / ".mer-eval-score.incomplete").exists()
    ref = score_dataset(discover(root), tmp_path / "ref", _local_cfg(), metrics=WEIGHT_FREE, chunk_size=10)
    assert ref.section.counts_by_status == again.section.counts_by_status
    assert assert_same_outputs(tmp_path / "ref", tmp_path / "out", [s.id for s in discover(root).samples],
                               ignore_cached=True) == 40


def test_cli_engine_ray(local_ray, shared_data, tmp_path):
    root = build_real_run(shared_data, tmp_path / "run", n=6)
    cli_score_with_engine(root, tmp_path / "o", "ray", 6)
    local = score_dataset(discover(root), tmp_path / "local", _local_cfg(), metrics=WEIGHT_FREE)
    assert sum(local.section.counts_by_status["composite_score"].values()) == 6
    assert assert_same_outputs(tmp_path / "local", tmp_path / "o", [s.id for s in discover(root).samples]) == 6


def test_ray_not_installed_is_one_line(shared_data, tmp_path, monkeypatch):
    root = build_real_run(shared_data, tmp_path / "run", n=2)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(EngineError, match=r"pip install 'mer-eval\[ray\]'"):
        score_dataset(discover(root), tmp_path / "o", _local_cfg(), metrics=WEIGHT_FREE, engine="ray")


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_an_unreachable_cluster_is_one_line_exit_1(shared_data, tmp_path):
    root = build_real_run(shared_data, tmp_path / "run", n=2)
    env = dict(os.environ, RAY_ADDRESS=f"127.0.0.1:{_closed_port()}")
    p = subprocess.run([sys.executable, "-m", "mer_eval.cli", "-q", "score", str(root), "--out", str(tmp_path / "o"),
                        "--no-cache", "--metrics", "text_quality", "--engine", "ray"],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert p.returncode == 1, p.stderr
    assert "cannot connect to the Ray cluster at RAY_ADDRESS=127.0.0.1:" in p.stderr
    assert "Traceback" not in p.stderr
