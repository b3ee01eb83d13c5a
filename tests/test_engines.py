"""Score engines (issue #12): the chunks computed in a pool of worker processes give the same files as the local
engine, byte for byte for the weight-free metrics, on real MER-Factory outputs; the engine never enters the
config hash; a worker that dies is one line, and the next run resumes."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from mer_eval.config import load_config
from mer_eval.discovery import discover
from mer_eval.scoring import EngineError, score_dataset, split_even
from engine_compare import kill_first_descendant, WEIGHT_FREE, WEIGHT_FREE_SETS, assert_same_outputs, build_real_run, cli_score_with_engine, \
    score_both_ways


def test_split_even_keeps_order_and_sizes():
    part = list(range(11))
    pieces = split_even(part, 3)
    assert [len(p) for p in pieces] == [4, 4, 3]
    assert sum(pieces, []) == part
    assert split_even([1, 2], 5) == [[1], [2]]  # never an empty piece


def test_engine_is_not_in_the_config_hash():
    a = load_config(sets=[])
    b = load_config(sets=["score.engine=process", "score.workers=7"])
    assert b.score.engine == "process" and b.score.workers == 7
    assert a.hash() == b.hash()
    assert a.hash() == load_config(sets=["generate.engine=ray", "generate.workers=3"]).hash()
    assert a.hash() != load_config(sets=["score.batch_size=3"]).hash()  # what decides outputs still counts
    # the hash of a default config is the one it had before the engine keys existed (old runs stay comparable)
    d = a.model_dump(mode="json")
    for section in ("score", "generate"):
        for k in ("engine", "workers"):
            d[section].pop(k)
    import hashlib
    import json

    assert a.hash() == hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def test_process_engine_writes_the_same_files_as_local(shared_data, tmp_path):
    score_both_ways(shared_data, tmp_path, "process", load_config(sets=["cache.enabled=false"] + WEIGHT_FREE_SETS))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to find the worker")
def test_a_dead_worker_is_one_error_and_the_next_run_resumes(shared_data, tmp_path):
    root = build_real_run(shared_data, tmp_path / "run", n=40)
    cfg = load_config(sets=[f"cache.dir={tmp_path / 'cache'}"] + WEIGHT_FREE_SETS)
    killed: list[int] = []

    def kill_first_worker():  # a spawned worker (not multiprocessing's resource tracker)
        kill_first_descendant(lambda cmd: b"multiprocessing" in cmd and b"resource_tracker" not in cmd, killed)

    th = threading.Thread(target=kill_first_worker)
    th.start()
    with pytest.raises(EngineError, match="worker process died"):
        score_dataset(discover(root), tmp_path / "out", cfg, metrics=WEIGHT_FREE, chunk_size=10,
                      engine="process", workers=2)
    th.join()
    assert killed
    assert (tmp_path / "out" / ".mer-eval-score.incomplete").is_file()  # the run says it did not finish
    again = score_dataset(discover(root), tmp_path / "out", cfg, metrics=WEIGHT_FREE, chunk_size=10,
                          engine="process", workers=2)
    assert not (tmp_path / "out" / ".mer-eval-score.incomplete").exists()
    assert sum(again.section.counts_by_status["composite_score"].values()) == 40
    ref = score_dataset(discover(root), tmp_path / "ref", load_config(sets=["cache.enabled=false"]
                                                                       + WEIGHT_FREE_SETS),
                        metrics=WEIGHT_FREE, chunk_size=10)
    assert ref.section.counts_by_status == again.section.counts_by_status
    assert_same_outputs(tmp_path / "ref", tmp_path / "out", [s.id for s in discover(root).samples],
                        ignore_cached=True)


def test_cli_engine_process(shared_data, tmp_path):
    from click.testing import CliRunner

    from mer_eval.cli import main

    root = build_real_run(shared_data, tmp_path / "run", n=6)
    cli_score_with_engine(root, tmp_path / "o", "process", 6)
    r = CliRunner().invoke(main, ["score", str(root), "--engine", "spark"])
    assert r.exit_code == 2 and "spark" in r.output


def test_unknown_engine_is_an_engine_error(shared_data, tmp_path):
    root = build_real_run(shared_data, tmp_path / "run", n=2)
    cfg = load_config(sets=["cache.enabled=false"] + WEIGHT_FREE_SETS)
    with pytest.raises(EngineError, match="unknown score engine"):
        score_dataset(discover(root), tmp_path / "o", cfg, metrics=WEIGHT_FREE, engine="spark")


def test_process_engine_on_a_compact_run_sends_packed_samples(shared_data, tmp_path, monkeypatch):
    """A run kept compact (SampleStore) sends its samples packed; the workers unpack them: same files."""
    from mer_eval import sample_store

    root = build_real_run(shared_data, tmp_path / "run", n=14)
    cfg = load_config(sets=["cache.enabled=false"] + WEIGHT_FREE_SETS)
    plain = discover(root)
    score_dataset(plain, tmp_path / "local", cfg, metrics=WEIGHT_FREE, chunk_size=6)
    monkeypatch.setattr(sample_store, "COMPACT_ABOVE", 4)
    ds = discover(root)
    assert isinstance(ds.samples, sample_store.SampleStore)
    out = score_dataset(ds, tmp_path / "proc", cfg, metrics=WEIGHT_FREE, chunk_size=6, engine="process",
                        workers=2, keep_results=False)
    assert assert_same_outputs(tmp_path / "local", tmp_path / "proc", ds.samples.ids) == 14
    assert len(out.results) == 14  # read back from the parquet


def test_a_chunk_is_scored_with_the_cycle_collector_paused_and_it_is_restored(shared_data, tmp_path):
    """No cycle collection starts while a chunk of real samples is scored (gc_paused), many do without the pause;
    gc is on again afterwards, and a caller that had it off keeps it off."""
    import gc

    root = build_real_run(shared_data, tmp_path / "run", n=40)
    cfg = load_config(sets=["cache.enabled=false"] + WEIGHT_FREE_SETS)
    from mer_eval.scoring import ChunkScorer

    seen: list[str] = []
    inside = ChunkScorer._score.__code__

    def count(phase, info):  # a collection that starts while a chunk is being scored
        f = sys._getframe(1)
        while f is not None and f.f_code is not inside:
            f = f.f_back
        if phase == "start" and f is not None:
            seen.append(phase)

    gc.callbacks.append(count)
    try:
        out = score_dataset(discover(root), tmp_path / "out", cfg, metrics=WEIGHT_FREE, chunk_size=40)
        assert sum(out.section.counts_by_status["composite_score"].values()) == 40
        assert gc.isenabled()
        # the same chunk with the pause taken out collects (so paused == 0 below is not true by default)
        import mer_eval.scoring as scoring
        import contextlib

        real, scoring.gc_paused = scoring.gc_paused, contextlib.nullcontext
        try:
            seen.clear()
            scorer = ChunkScorer(WEIGHT_FREE, cfg, False, tmp_path / "out2")
            scorer(list(discover(root).samples))
            unpaused = len(seen)
        finally:
            scoring.gc_paused = real
        scorer = ChunkScorer(WEIGHT_FREE, cfg, False, tmp_path / "out3")
        samples = list(discover(root).samples)
        seen.clear()
        scorer(samples)
        paused = len(seen)
        assert gc.isenabled()
        gc.disable()
        try:
            scorer(samples)
            assert not gc.isenabled()
        finally:
            gc.enable()
    finally:
        gc.callbacks.remove(count)
    assert paused == 0 and unpaused > 0, (paused, unpaused)
