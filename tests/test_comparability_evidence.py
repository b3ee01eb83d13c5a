"""regress on real MER-Factory outputs: self-check values stay out of its means (and are listed), and a
sample that was ok in the baseline and is not ok in the run (abstained included) is a regression."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from mer_eval.gates import read_scores
from mer_eval.reports.commands import bless_cmd, regress_cmd
from mer_eval.reports.compare import AllowError, AllowList, bootstrap_mean_ci, counted_mask
from mer_eval.reports.regress import bless, regress
from score_fixtures import MF_FILES, TEXT_METRICS, build_run, copy_run, shared_or_skip, text_composite, \
    write_references

WRONG_AUS = "Nose wrinkler (intensity: 3.00), Chin raiser (intensity: 2.10)"  # AU09, AU17


def _score(run: Path, shared: Path, metrics: list[str], sets: tuple[str, ...] = ()) -> Path:
    from mer_eval.config import load_config
    from mer_eval.scoring import score_run

    refs = write_references(shared, run.parent / f"{run.name}.references.txt")
    comp = text_composite(run.parent / f"{run.name}.composite.yaml")
    score_run(run, load_config(None, ["cache.enabled=false", f"score.composite={comp}", *sets]), metrics=metrics,
              transcripts=refs)
    return run


def _edit(run: Path, sid: str, fn) -> None:
    p = run / sid / f"{sid}_merr_data.json"
    data = json.loads(p.read_text(encoding="utf-8"))
    fn(data)
    p.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _wrong_aus(data: dict) -> None:
    for k in ("coarse_descriptions_at_peak", "coarse_descriptions"):
        if isinstance(data.get(k), dict) and "visual_expression" in data[k]:
            data[k]["visual_expression"] = WRONG_AUS


@pytest.fixture(scope="module")
def au_runs(tmp_path_factory):
    """AU-F1 against ``top_aus_intensities`` (au_f1.source=self: the numbers MER-Factory wrote the AU text
    from, a self-check), on the baseline texts and on copies whose AU texts name other AUs."""
    shared = shared_or_skip()
    root = tmp_path_factory.mktemp("selfcheck-runs")
    metrics, sets = TEXT_METRICS + ["au_f1"], ("metrics.au_f1.source=self",)
    base = _score(build_run(shared, root / "base"), shared, metrics, sets)
    run = build_run(shared, root / "wrong_aus")
    for sid in MF_FILES:
        _edit(run, sid, _wrong_aus)
    _score(run, shared, metrics, sets)
    return {"base": base, "run": run, "baseline": bless(base)}


def test_bless_leaves_self_checks_out(au_runs):
    df = read_scores(au_runs["base"])
    au = df[(df.metric == "au_f1") & (df.status == "ok")]
    assert len(au) >= 4 and au["dependence"].notna().all() and not au["independent"].astype(bool).any()
    b = au_runs["baseline"]["metrics"]["au_f1"]
    assert b["n"] == 0 and b["mean"] is None and au_runs["baseline"]["samples"]["au_f1"] == {}
    assert b["left_out"]["n"] == len(au)
    assert list(b["left_out"]["reasons"]) == [au["dependence"].iloc[0]]
    assert b["left_out"]["reasons"][au["dependence"].iloc[0]] == len(au)
    assert "self-check" in au["dependence"].iloc[0]


def test_regress_leaves_self_checks_out_and_lists_them(au_runs, tmp_path):
    run = au_runs["run"]
    a = read_scores(au_runs["base"]).query("metric == 'au_f1' and status == 'ok'").set_index("sample_id").value
    b = read_scores(run).query("metric == 'au_f1' and status == 'ok'").set_index("sample_id").value
    common = sorted(set(a.index) & set(b.index))
    # the self-check values did drop (bakllava_merr's was 0 already): paired with them, au_f1 would have
    # regressed, beyond bootstrap noise ...
    d = [b[k] - a[k] for k in common]
    assert len(common) >= 4 and all(x <= 0 for x in d) and sum(x < 0 for x in d) >= 3
    assert bootstrap_mean_ci(d)[1] < 0
    res = regress(run, au_runs["baseline"])
    c = next(c for c in res.checks if c.metric == "au_f1")
    # ... but they are no evidence: not paired, not in any mean, not a regression; and listed with the reason
    assert c.n_paired == 0 and c.run_mean is None and c.diff is None and not c.regressed
    assert c.left_out["n"] == len(b) and sorted(c.left_out["samples"]) == sorted(b.index)
    assert c.baseline_left_out["n"] == len(a)
    assert res.left_out["au_f1"]["n"] == len(b)
    assert res.exit_code == 0  # the summaries are the baseline's: nothing else moved
    bl = tmp_path / "b.json"
    assert CliRunner().invoke(bless_cmd, [str(au_runs["base"]), "-o", str(bl)]).exit_code == 0
    md, junit, js = tmp_path / "r.md", tmp_path / "j.xml", tmp_path / "r.json"
    r = CliRunner().invoke(regress_cmd, [str(run), "--baseline", str(bl), "--markdown", str(md), "--junit",
                                         str(junit), "--json", str(js)])
    assert r.exit_code == 0, r.output
    why = read_scores(run).query("metric == 'au_f1' and status == 'ok'")["dependence"].iloc[0]
    assert f"left out of the means: au_f1: {len(b)} ok value(s) in the run left out, not evidence ({len(b)} x {why})" \
        in r.output
    assert "Left out of the means (self-checks, not evidence)" in md.read_text() and "au_f1" in md.read_text()
    assert f'name="left_out.au_f1" value="{len(b)}"' in junit.read_text()
    assert json.loads(js.read_text())["left_out"]["au_f1"]["n"] == len(b)


def test_scores_without_evidence_columns_count_everything(au_runs, tmp_path):
    """A scores.parquet written before the independent / dependence columns: every ok value counts."""
    old = copy_run(au_runs["run"], tmp_path / "old_columns")
    p = old / "scores.parquet"
    df = pd.read_parquet(p).drop(columns=["independent", "dependence"])
    df.to_parquet(p, index=False)
    assert counted_mask(read_scores(old)).all()
    b = bless(old)
    assert b["metrics"]["au_f1"]["n"] == len(df[(df.metric == "au_f1") & (df.status == "ok")]) >= 4
    assert b["metrics"]["au_f1"]["left_out"]["n"] == 0


@pytest.fixture(scope="module")
def grounding_runs(tmp_path_factory):
    shared = shared_or_skip()
    root = tmp_path_factory.mktemp("abstain-runs")
    metrics = TEXT_METRICS + ["grounding"]
    base = _score(build_run(shared, root / "base"), shared, metrics)
    run = build_run(shared, root / "empty_summary")
    _edit(run, "gemini_merr", lambda d: d.update(final_summary=""))
    _score(run, shared, metrics)
    return {"base": base, "run": run}


def test_ok_to_abstained_is_a_regression(grounding_runs, tmp_path):
    """gemini_merr's summary emptied: grounding and text_quality abstain there (a mer output promises a summary).
    Both were ok in the baseline: a regression of those metrics, even though the remaining paired values did not
    move."""
    base, run = grounding_runs["base"], grounding_runs["run"]
    df = read_scores(run)
    g = df[(df.sample_id == "gemini_merr") & (df.metric == "grounding")].iloc[0]
    assert g.status == "abstained"
    res = regress(run, bless(base))
    c = next(c for c in res.checks if c.metric == "grounding")
    assert c.regressed and c.diff == 0  # the other samples are unchanged: only the abstention regressed
    assert c.lost_samples == {"gemini_merr": f"abstained: {g.reason}"}
    assert "are abstained in the run" in c.message
    d2 = next(c for c in res.checks if c.metric == "distinct2")
    assert d2.regressed and d2.lost_samples["gemini_merr"].startswith("abstained: ")
    assert res.exit_code == 1
    # samples that were not ok in the baseline are no loss: the audio samples have no grounding either way
    assert not any(s.startswith("lv") for s in c.lost_samples)
    bl = tmp_path / "b.json"
    assert CliRunner().invoke(bless_cmd, [str(base), "-o", str(bl)]).exit_code == 0
    r = CliRunner().invoke(regress_cmd, [str(run), "--baseline", str(bl)])
    assert r.exit_code == 1 and "REGRESSION" in r.output


def test_allow_list_keys():
    a = AllowList.parse(["mattr", "distinct2.code_hash", "text_quality.params_hash"])
    assert a.match("mattr", "text_quality", "params_hash") == "mattr"
    assert a.match("distinct2", "text_quality", "code_hash") == "distinct2.code_hash"
    assert a.match("distinct1", "text_quality", "params_hash") == "text_quality.params_hash"
    assert a.match("distinct1", "text_quality", "code_hash") is None
    assert a.match("asr_wer", "asr_wer", "model_sha256") is None
    assert AllowList.parse(["all"]).match("anything", None, "model_id") == "all"
    for bad in ("mattr.window", "", ".params_hash"):
        with pytest.raises(AllowError):
            AllowList.parse([bad])
