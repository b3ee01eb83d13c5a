"""mer-eval gate on runs scored by mer-eval's scorer from real MER-Factory outputs and LibriVox speech."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mer_eval.gates import GateError, evaluate, gate_run, load_gate, load_rules, parse_rule, read_scores
from mer_eval.reports.commands import COMMANDS, gate_cmd
from score_fixtures import copy_run, scored_run, shared_or_skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    shared = shared_or_skip()
    root = tmp_path_factory.mktemp("gate-runs")
    return {
        "good": scored_run(shared, root / "good"),
        "bad": scored_run(shared, root / "bad", degraded=True),
        "mer_v1": scored_run(shared, root / "mer_v1", composite=None),
    }


def ok_values(run: Path, metric: str) -> dict[str, float]:
    df = read_scores(run)
    g = df[(df.metric == metric) & (df.status == "ok")]
    return dict(zip(g.sample_id, g.value.astype(float)))


def all_ids(run: Path) -> list[str]:
    return sorted(set(read_scores(run).sample_id))


def read_csv(p: Path) -> list[dict[str, str]]:
    with p.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# ---- parsing --------------------------------------------------------------------------------------

def test_parse_rule_forms():
    r = parse_rule("composite_score >= 60")
    assert (r.kind, r.mode, r.op, r.threshold, r.name) == ("absolute", "require", "ge", 60.0, "composite_score_ge_60")
    r = parse_rule("nli_contra_rate > 3 x median")
    assert (r.kind, r.mode, r.op, r.number) == ("relative", "flag", "gt", 3.0)
    r = parse_rule("distinct2 < 0.5 x median")
    assert (r.kind, r.mode, r.op, r.number) == ("relative", "flag", "lt", 0.5)
    r = parse_rule("composite_score bottom 10%")
    assert (r.kind, r.side, r.number) == ("percentile", "bottom", 10.0)
    r = parse_rule("asr_wer is ok")
    assert r.kind == "status" and r.required == frozenset({"unavailable", "not_applicable", "error", "missing",
                                                           "abstained"})
    r = parse_rule("flag: asr_wer > 0.5", name="wer_high", required=["error"])
    assert (r.mode, r.name, r.required) == ("flag", "wer_high", frozenset({"error"}))
    for bad in ("composite_score >=", "composite_score ~ 3", "x bottom 120%", "a > 3 x mean", ""):
        with pytest.raises(GateError):
            parse_rule(bad)
    with pytest.raises(GateError, match="required statuses"):
        parse_rule("asr_wer <= 0.3", required=["broken"])


def test_bundled_default_gate_and_yaml_file(tmp_path):
    rules, origin = load_rules("default")
    assert origin == "configs/gates/default.yaml"
    by_name = {r.name: r for r in rules}
    assert by_name["composite_min"].threshold == 60.0
    assert by_name["contradiction_outlier"].kind == "relative"
    assert by_name["scoring_errors"].required == frozenset({"error"})
    y = tmp_path / "g.yaml"
    y.write_text("rules:\n  - asr_wer <= 0.3\n  - {rule: 'composite_score worst 20%', name: tail}\n")
    rules, origin = load_rules(y, ["distinct2 >= 0.5"])
    assert [r.name for r in rules] == ["asr_wer_le_0_3", "tail", "distinct2_ge_0_5"]
    assert origin == f"{y}, --rule"
    with pytest.raises(GateError, match="no bundled gate"):
        load_rules("nonexistent")
    y.write_text("rules:\n  - {rule: 'asr_wer <= 1', colour: red}\n")
    with pytest.raises(GateError, match="colour"):
        load_rules(y)


# ---- decisions on real scored runs ---------------------------------------------------------------------

def test_absolute_threshold_include_list(runs, tmp_path):
    run = copy_run(runs["good"], tmp_path / "run")
    comp = ok_values(run, "composite_score")
    expected = sorted(s for s, v in comp.items() if v >= 80)
    assert 0 < len(expected) < len(comp)  # the threshold splits this real run
    res = gate_run(run, None, ["composite_score >= 80"])
    assert sorted(res.included) == expected
    assert sorted((run / "include.txt").read_text().split()) == expected
    rows = {r["sample_id"]: r for r in read_csv(run / "gate.csv")}
    for sid, v in comp.items():
        row = rows[sid]
        assert row["decision"] == ("include" if v >= 80 else "exclude")
        assert row["is_composite_score_ge_80_issue"] == str(v < 80)
        assert float(row["composite_score_ge_80_score"]) == pytest.approx(v)
        if v < 80:
            assert f"composite_score = {v:.4g}, needs >= 80" in row["failed"]
    assert load_gate(run) == {sid: sid in expected for sid in comp}
    meta = json.loads((run / "gate.json").read_text())
    assert meta["counts"]["included"] == len(expected)
    assert meta["counts"]["per_rule"]["composite_score_ge_80"] == {
        "failed": len(comp) - len(expected), "passed": len(expected), "skipped": 0}


def test_not_ok_metric_is_skipped_with_reason_unless_required(runs, tmp_path):
    run = copy_run(runs["good"], tmp_path / "run")
    wer = ok_values(run, "asr_wer")
    df = read_scores(run)
    not_ok = df[(df.metric == "asr_wer") & (df.status != "ok")]
    assert len(wer) == 5 and len(not_ok) == 5  # LibriVox samples scored; MER-Factory ones not applicable
    res = gate_run(run, None, ["asr_wer <= 0.3"])
    assert sorted(res.included) == sorted(s for s, v in wer.items() if v <= 0.3)
    rows = {r["sample_id"]: r for r in read_csv(run / "gate.csv")}
    for sid, st, reason in zip(not_ok.sample_id, not_ok.status, not_ok.reason):
        assert rows[sid]["skipped"] == f"asr_wer_le_0_3: skipped: {st}: {reason}"  # not silently failed ...
        assert rows[sid]["is_asr_wer_le_0_3_issue"] == "" and rows[sid]["asr_wer_le_0_3_score"] == ""
        # ... nor silently passed: nothing judged these samples, so the gate fails closed
        assert rows[sid]["decision"] == "exclude" and "no rule could judge" in rows[sid]["unknown"]
        assert "excluded (fail closed)" in rows[sid]["why"]
    # including samples nothing judged takes the explicit option, and says so
    res = gate_run(run, None, ["asr_wer <= 0.3"], include_unknown=True)
    assert sorted(res.included) == all_ids(run)
    assert json.loads((run / "gate.json").read_text())["on_unknown"] == "include"
    # required: not_applicable now excludes those samples, with the reason
    rules = [parse_rule("asr_wer <= 0.3", required=["not_applicable"])]
    res = evaluate(read_scores(run), rules)
    assert sorted(res.included) == sorted(wer)
    d = {x.sample_id: x for x in res.decisions}
    for sid, reason in zip(not_ok.sample_id, not_ok.reason):
        assert d[sid].failed == [f"asr_wer_le_0_3: asr_wer is not_applicable: {reason} (required)"]
    # status rule
    res = evaluate(read_scores(run), [parse_rule("asr_wer is ok")])
    assert sorted(res.included) == sorted(wer)


def test_composite_below_coverage_is_skipped_or_required(runs, tmp_path):
    """Under mer-v1 the text metrics alone are below min coverage: the composite is not_applicable."""
    run = copy_run(runs["mer_v1"], tmp_path / "run")
    df = read_scores(run)
    comp = df[df.metric == "composite_score"]
    assert set(comp.status) == {"not_applicable"}
    res = gate_run(run, "default")
    assert res.included == []  # no composite: the bundled gate excludes, never guesses ...
    for d in res.decisions:
        assert d.decision == "exclude" and d.unknown  # ... and says why
        assert any(f.startswith("composite_min: composite_score is not_applicable: below_min_coverage")
                   and f.endswith("(required)") for f in d.failed)
    res = gate_run(run, None, ["composite_score is ok"])
    assert res.included == []
    # a rule set may send unknowns to review instead
    y = tmp_path / "review.yaml"
    y.write_text("on_unknown: review\nrules:\n  - {rule: 'composite_score >= 60', required: true}\n")
    res = gate_run(run, y)
    assert {d.decision for d in res.decisions} == {"review"} and res.included == []


def test_error_status_required_by_default_gate(runs, tmp_path):
    """A metric that failed with status error (written as the scorer writes it) excludes via the default gate."""
    import pandas as pd

    run = copy_run(runs["good"], tmp_path / "run")
    df = pd.read_parquet(run / "scores.parquet")
    victim = "gemini_merr"
    m = (df.sample_id == victim) & (df.metric == "composite_score")
    df.loc[m, ["value", "status", "reason"]] = [None, "error", "RuntimeError: composite failed at composite.py:1"]
    df.to_parquet(run / "scores.parquet", index=False)
    res = gate_run(run, "default")
    d = {x.sample_id: x for x in res.decisions}
    assert not d[victim].include and d[victim].decision == "exclude"
    assert any("scoring_errors: composite_score is error: RuntimeError: composite failed" in f for f in d[victim].failed)
    assert any(f.startswith("composite_min: composite_score is error: RuntimeError") for f in d[victim].failed)


def test_relative_median_rule(runs, tmp_path):
    run = copy_run(runs["good"], tmp_path / "run")
    rr = ok_values(run, "repetition_rate")
    med = float(np.median(list(rr.values())))
    flagged = sorted(s for s, v in rr.items() if v > 2 * med)
    assert flagged  # llava's summary repeats itself most in this real set
    res = gate_run(run, None, ["repetition_rate > 2 x median"])
    rule = res.rules[0]
    assert rule.threshold == pytest.approx(2 * med)
    unjudged = sorted(set(all_ids(run)) - set(rr))  # LibriVox speech: no summary, nothing to judge
    assert sorted(set(all_ids(run)) - set(res.included)) == sorted(flagged + unjudged)
    meta = json.loads((run / "gate.json").read_text())
    assert meta["rules"][0]["threshold"] == pytest.approx(2 * med)
    assert f"median {med:.4g} over {len(rr)} ok samples" in meta["rules"][0]["basis"]
    res = gate_run(run, None, ["distinct2 < 0.5 x median"])  # nothing is that far below the median
    assert sorted(res.included) == sorted(set(all_ids(run)) - set(unjudged))


def test_percentile_rules_follow_direction(runs, tmp_path):
    run = copy_run(runs["bad"], tmp_path / "run")
    comp = ok_values(run, "composite_score")
    q20 = float(np.percentile(list(comp.values()), 20))
    worst = sorted(s for s, v in comp.items() if v <= q20)
    res = gate_run(run, None, ["composite_score worst 20%"])
    assert sorted(set(comp) - set(res.included)) == worst
    res2 = gate_run(run, None, ["composite_score bottom 20%"])  # same tail for a higher-is-better metric
    assert res2.included == res.included
    wer = ok_values(run, "asr_wer")  # lower is better: worst = the highest WERs
    q80 = float(np.percentile(list(wer.values()), 80))
    res = gate_run(run, None, ["asr_wer worst 20%"])
    assert sorted(set(wer) - set(res.included)) == sorted(s for s, v in wer.items() if v >= q80)
    assert max(wer, key=wer.get) not in res.included


def test_cli_gate_copy_to_never_follows_links_out(runs, tmp_path, shared_data):
    run = copy_run(runs["good"], tmp_path / "run")
    outside = shared_data / "faces" / "astronaut.png"
    (run / "lv0880" / "outside_link.png").symlink_to(outside)
    (run / "lv0880" / "inside_link.wav").symlink_to(run / "lv0880" / "lv0880.wav")
    dest = tmp_path / "kept"
    r = CliRunner().invoke(gate_cmd, [str(run), "--rule", "composite_score >= 99", "--copy-to", str(dest)])
    assert r.exit_code == 0, r.output
    comp = ok_values(run, "composite_score")
    expected = sorted(s for s, v in comp.items() if v >= 99)
    assert sorted(p.name for p in dest.iterdir() if p.is_dir()) == expected
    assert "lv0880" in expected
    assert (dest / "run.json").read_bytes() == (run / "run.json").read_bytes()
    assert not (dest / "lv0880" / "outside_link.png").exists()
    assert "outside_link.png: symlink leads outside the run; not copied" in r.output
    inside = dest / "lv0880" / "inside_link.wav"
    assert inside.is_file() and not inside.is_symlink()
    assert inside.read_bytes() == (run / "lv0880" / "lv0880.wav").read_bytes()
    assert f"{len(expected)} of {len(comp)} samples included" in r.output
    # --copy-to inside the run is refused
    r = CliRunner().invoke(gate_cmd, [str(run), "--rule", "composite_score >= 99", "--copy-to", str(run / "x")])
    assert r.exit_code == 2 and "inside the run" in r.output


def test_cli_gate_uses_config_gates(runs, tmp_path):
    run = copy_run(runs["good"], tmp_path / "run")
    y = tmp_path / "mine.yaml"
    y.write_text("rules:\n  - composite_score >= 101\n")
    r = CliRunner().invoke(gate_cmd, [str(run), "--set", f"gates={y}"])
    assert r.exit_code == 0, r.output
    assert load_gate(run) == {s: False for s in all_ids(run)}
    r = CliRunner().invoke(gate_cmd, [str(run), "--rule", "composite_score >= "])
    assert r.exit_code == 2 and "not understood" in r.output
    r = CliRunner().invoke(gate_cmd, [str(tmp_path)])
    assert r.exit_code == 2 and "scores.parquet" in r.output


def test_load_gate_absent(tmp_path):
    assert load_gate(tmp_path) is None


def test_commands_list_and_lazy_imports():
    import subprocess
    import sys

    assert [c.name for c in COMMANDS] == ["compare", "gate", "bless", "regress", "report"]
    code = ("import sys, mer_eval.reports.commands as c; "
            "heavy = [m for m in ('pandas', 'numpy', 'scipy', 'PIL', 'jinja2', 'torch') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert out.returncode == 0, out.stdout + out.stderr


def test_export_only_included_uses_the_gate(runs, tmp_path):
    from mer_eval.generators.export import select_samples

    run = copy_run(runs["good"], tmp_path / "run")
    res = gate_run(run, None, ["composite_score >= 80"])
    kept, skipped = select_samples(run, only_included=True)
    assert sorted(s.id for s in kept) == sorted(res.included)
    assert set(skipped) == set(all_ids(run)) - set(res.included)
    assert set(skipped.values()) == {"excluded by the gate"}


def test_self_check_values_decide_nothing():
    """AU-F1 against the AUs the text was generated from is skipped with the reason, not passed."""
    import pandas as pd

    from mer_eval.gates import evaluate, parse_rule

    df = pd.DataFrame([
        {"sample_id": "a", "metric": "au_f1", "value": 0.9, "status": "ok", "reason": None,
         "higher_is_better": True, "dependence": "au_source is self: AUs the text was generated from"},
        {"sample_id": "b", "metric": "au_f1", "value": 0.2, "status": "ok", "reason": None,
         "higher_is_better": True, "dependence": None},
    ])
    res = evaluate(df, [parse_rule("au_f1 >= 0.5", name="au_min")])
    by = {d.sample_id: d for d in res.decisions}
    assert by["a"].issues["au_min"] is None  # the self-check neither passes nor fails the rule ...
    assert any("not_independent" in s and "self" in s for s in by["a"].skipped)
    assert by["a"].decision == "exclude" and by["a"].unknown  # ... so nothing judged "a": fail closed
    assert not by["b"].include and by["b"].decision == "exclude" and not by["b"].unknown
    assert evaluate(df, [parse_rule("au_f1 >= 0.5", name="au_min")], on_unknown="include").decisions[0].include


def test_scored_run_marks_self_checks(shared_data, tmp_path):
    import shutil

    from mer_eval.config import load_config
    from mer_eval.scoring import load_scores, score_run

    d = tmp_path / "run" / "default"
    d.mkdir(parents=True)
    shutil.copy(shared_data / "annotations-mer-factory" / "default_merr_data_MER.json", d / "default_merr_data.json")
    shutil.copy(shared_data / "openface" / "openface_default_wmv_aus.csv", d / "default.csv")
    score_run(tmp_path / "run", load_config(), metrics=["au_f1"])
    df = load_scores(tmp_path / "run")
    au = df[df.metric == "au_f1"].iloc[0]
    assert au.status == "ok" and not au.independent and "self" in au.dependence


def test_a_misspelt_metric_is_refused_not_skipped(runs, tmp_path):
    """Before, ``composit_score >= 60`` was skipped on every sample and the other rule decided alone: the real
    run's samples were included as if they had passed the misspelt rule."""
    run = copy_run(runs["good"], tmp_path / "run")
    with pytest.raises(GateError, match=r"rule composit_score_ge_60: no metric 'composit_score' in this run or in "
                                        r"any installed metric family \(did you mean composite_score"):
        gate_run(run, None, ["composit_score >= 60", "abstained_score >= 1"])
    assert not (run / "gate.csv").exists()  # nothing decided
    r = CliRunner().invoke(gate_cmd, [str(run), "--rule", "distinct_2 >= 0.5"])
    assert r.exit_code == 2 and "did you mean distinct2" in r.output
    # a known metric this run did not compute (no CLIP weights, no NLI family here) is skipped, with that reason
    res = gate_run(run, None, ["nli_contra_rate > 3 x median", "composite_score >= 60"])
    assert all(d.skipped == ["nli_contra_rate_gt_3x_median: skipped: missing: no nli_contra_rate row in scores "
                             "(not computed in this run)"] for d in res.decisions)


def test_a_gate_decision_on_scores_the_run_no_longer_has_selects_nothing(runs, tmp_path):
    """Gate, then re-annotate one included sample badly and re-score: before, export --only-included still took
    it, on the strength of a decision made on its old scores."""
    from mer_eval.generators.export import ExportError, select_samples
    from mer_eval.gates import gate_staleness
    from mer_eval.reports.html import write_report
    from score_fixtures import SHARED_DATA, degrade_text, score

    run = copy_run(runs["good"], tmp_path / "run")
    res = gate_run(run, None, ["repetition_rate <= 0.2"])
    victim = next(s for s in ("gemini_merr", "llava_merr", "default_merr_data_MER") if s in res.included)
    assert gate_staleness(run) is None and json.loads((run / "gate.json").read_text())["scores"]["sha256"]
    p = next((run / victim).glob("*_merr_data.json"))
    data = json.loads(p.read_text(encoding="utf-8"))
    data["final_summary"] = degrade_text(data["final_summary"])  # its first 12 words three times
    p.write_text(json.dumps(data), encoding="utf-8")
    score(run, SHARED_DATA)
    assert ok_values(run, "repetition_rate")[victim] > 0.2  # the new scores fail the rule the gate applied
    why = gate_staleness(run)
    assert why and why.startswith("scores.parquet changed after the gate decided")
    with pytest.raises(ExportError, match="--only-included: .*gate.csv: scores.parquet changed after the gate"):
        select_samples(run, only_included=True)
    html = write_report([run], tmp_path / "r.html").read_text(encoding="utf-8")
    assert "stale gate decision: scores.parquet changed after the gate decided" in html
    res = gate_run(run, None, ["repetition_rate <= 0.2"])  # decided again, on these scores
    assert victim not in res.included and gate_staleness(run) is None
    kept, _ = select_samples(run, only_included=True)
    assert sorted(s.id for s in kept) == sorted(res.included)
