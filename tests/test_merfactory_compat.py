"""mer-eval's file names do not collide with MER-Factory's (tools/evaluate.py writes ``<id>/evaluation.json`` and
``evaluation_summary.csv``); errors go to ``error_logs/`` like MER-Factory's; old run folders still load."""

from __future__ import annotations

import json
import shutil

import pandas as pd
from click.testing import CliRunner

from mer_eval.cli import main
from mer_eval.reports.compare import composite_inputs
from mer_eval.store import EVAL_FILE, SUMMARY_FILE, RunStore, evaluation_path

# the shape MER-Factory's tools/evaluate.py writes (another schema than ours)
MF_EVAL = {"sample_id": "gemini", "distinct1": 0.8, "clip_image_score": None, "composite_score": 0.5}


def _scored(examples, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(examples / "mer-factory", run)
    # MER-Factory's evaluator has already run here: its files must survive a mer-eval score of the same folder
    (run / "gemini" / "evaluation.json").write_text(json.dumps(MF_EVAL), encoding="utf-8")
    (run / "evaluation_summary.csv").write_text("sample_id,distinct1\ngemini,0.8\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["score", str(run)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    return run


def test_score_never_writes_merfactory_evaluator_names(examples, tmp_path):
    run = _scored(examples, tmp_path)
    assert json.loads((run / "gemini" / "evaluation.json").read_text()) == MF_EVAL
    assert (run / "evaluation_summary.csv").read_text() == "sample_id,distinct1\ngemini,0.8\n"
    assert (run / "gemini" / EVAL_FILE).is_file() and (run / SUMMARY_FILE).is_file()
    assert sorted(pd.read_csv(run / SUMMARY_FILE)["sample_id"]) == ["default", "gemini", "llava-llama3_llama3.2"]
    for sid in ("default", "gemini", "llava-llama3_llama3.2"):
        assert not (run / sid / "evaluation.json").exists() or sid == "gemini"
    assert evaluation_path(run / "gemini") == run / "gemini" / EVAL_FILE


def test_old_runs_load_and_merfactory_evaluation_is_not_read_as_ours(examples, tmp_path):
    run = _scored(examples, tmp_path)
    df = pd.read_parquet(run / "scores.parquet")
    fresh = composite_inputs(run, df)
    # an old run: our schema under the old name -> still read; MER-Factory's file -> skipped, never parsed as ours
    for sid in ("default", "llava-llama3_llama3.2"):
        (run / sid / EVAL_FILE).rename(run / sid / "evaluation.json")
    (run / "gemini" / EVAL_FILE).unlink()
    assert evaluation_path(run / "default") == run / "default" / "evaluation.json"
    assert evaluation_path(run / "gemini") is None  # MER-Factory's evaluation.json is not ours
    old = composite_inputs(run, df)
    assert old and set(old) == set(fresh)
    assert any(old.values()), old


def test_errors_go_to_error_logs_and_old_errors_are_still_seen(tmp_path):
    store = RunStore(tmp_path)
    p = store.write_error("s1", "describe", "boom")
    assert p == tmp_path / "error_logs" / "s1.json" and json.loads(p.read_text())["reason"] == "boom"
    # an old run's errors/<id>.json is found (so a rerun retries it) and replaced by an error_logs/ one
    (tmp_path / "errors").mkdir()
    (tmp_path / "errors" / "s2.json").write_text('{"reason": "old"}', encoding="utf-8")
    assert store.error_file("s2") == tmp_path / "errors" / "s2.json"
    store.write_error("s2", "describe", "new")
    assert not (tmp_path / "errors" / "s2.json").exists()
    assert json.loads((tmp_path / "error_logs" / "s2.json").read_text())["reason"] == "new"
    store.clear_error("s2")
    assert not store.error_file("s2").exists()
