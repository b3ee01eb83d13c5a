"""mer-eval bless / regress on runs scored from real MER-Factory outputs and LibriVox speech."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mer_eval.gates import GateError, read_scores
from mer_eval.reports.commands import bless_cmd, regress_cmd
from mer_eval.reports.regress import bless, load_baseline, regress
from score_fixtures import build_run, copy_run, degrade_text, score, scored_run, shared_or_skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    shared = shared_or_skip()
    root = tmp_path_factory.mktemp("regress-runs")
    good = scored_run(shared, root / "good")
    # one MER-Factory sample degraded out of ten: a real drop on one sample, which bootstrap calls noise
    one = build_run(shared, root / "one_bad")
    p = one / "llava_merr" / "llava_merr_merr_data.json"
    data = json.loads(p.read_text(encoding="utf-8"))
    data["final_summary"] = degrade_text(data["final_summary"])
    p.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return {
        "good": good,
        "bad": scored_run(shared, root / "bad", degraded=True),
        "one_bad": score(one, shared),
        "baseline": root / "baseline.json",
        "shared": shared,
    }


@pytest.fixture(scope="module")
def baseline(runs):
    r = CliRunner().invoke(bless_cmd, [str(runs["good"]), "-o", str(runs["baseline"])])
    assert r.exit_code == 0, r.output
    return runs["baseline"]


def test_bless_contents(runs, baseline):
    b = load_baseline(baseline)
    df = read_scores(runs["good"])
    man = json.loads((runs["good"] / "run.json").read_text())
    assert b["composite_version"] == man["score"]["composite_version"] == "mer-v1-text"
    assert b["metric_versions"] == man["score"]["metric_versions"]
    assert b["tool_version"] and b["n_samples"] == 10
    for m in ("composite_score", "distinct2", "asr_wer"):
        g = df[(df.metric == m) & (df.status == "ok")]
        assert b["metrics"][m]["n"] == len(g)
        assert b["metrics"][m]["mean"] == pytest.approx(g.value.mean())
        assert b["metrics"][m]["std"] == pytest.approx(g.value.std(ddof=1))
        assert b["samples"][m] == pytest.approx(dict(zip(g.sample_id, g.value)))
    assert b["metrics"]["asr_wer"]["higher_is_better"] is False
    assert b["metrics"]["label_match"]["n"] == 0 and b["metrics"]["label_match"]["mean"] is None


def test_regress_against_own_baseline_passes(runs, baseline, tmp_path):
    junit = tmp_path / "j.xml"
    r = CliRunner().invoke(regress_cmd, [str(runs["good"]), "--baseline", str(baseline), "--junit", str(junit)])
    assert r.exit_code == 0, r.output
    assert "PASS" in r.output
    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuite"
    cases = suite.findall("testcase")
    assert len(cases) == int(suite.get("tests")) == len(load_baseline(baseline)["metrics"])
    assert suite.get("failures") == "0" and suite.findall(".//failure") == []
    skipped = suite.findall(".//skipped")  # label_match: no ok values on either side
    assert len(skipped) == int(suite.get("skipped")) == 1
    assert [c.get("name") for c in cases if c.find("skipped") is not None] == ["label_match"]


def test_regress_degraded_copy_fails(runs, baseline, tmp_path):
    junit, md = tmp_path / "j.xml", tmp_path / "r.md"
    r = CliRunner().invoke(regress_cmd, [str(runs["bad"]), "--baseline", str(baseline), "--junit", str(junit),
                                         "--markdown", str(md)])
    assert r.exit_code == 1, r.output
    res = regress(runs["bad"], load_baseline(baseline), {"composite_score": 2.0, "asr_wer": 0.02})
    failed = sorted(c.metric for c in res.regressed)
    for m in ("composite_score", "distinct2", "repetition_rate", "asr_wer"):
        assert m in failed
    suite = ET.parse(junit).getroot()
    failures = suite.findall("testcase/failure")
    assert len(failures) == int(suite.get("failures")) == len(failed)
    failing_cases = sorted(c.get("name") for c in suite.findall("testcase") if c.find("failure") is not None)
    assert failing_cases == failed
    comp = next(c for c in res.checks if c.metric == "composite_score")
    a = read_scores(runs["good"]).query("metric == 'composite_score' and status == 'ok'").set_index("sample_id").value
    b = read_scores(runs["bad"]).query("metric == 'composite_score' and status == 'ok'").set_index("sample_id").value
    assert comp.diff == pytest.approx(float((b - a).mean()))
    assert comp.ci_high < 0 and comp.wrong_way and comp.beyond_tolerance and comp.beyond_noise
    fail_text = next(c for c in suite.findall("testcase") if c.get("name") == "composite_score").find("failure")
    assert f"diff {comp.diff:.4g}" in fail_text.get("message") and "tolerance 2" in fail_text.get("message")
    worst = comp.worst_samples[0]["sample_id"]
    assert worst == (b - a).idxmin()
    text = md.read_text()
    assert text.startswith("### mer-eval regress: ❌ regression")
    assert "| composite_score ↑ |" in text and "Most regressed samples" in text


def test_regress_tolerance_and_noise(runs, baseline):
    b = load_baseline(baseline)
    # big enough tolerances: the degraded copy passes
    tol = {m: 1e6 for m in b["metrics"]}
    assert regress(runs["bad"], b, tol).exit_code == 0
    # one of ten samples degraded: composite mean drops by more than the tolerance, but the paired
    # bootstrap CI reaches 0 (nine differences are exactly 0), so it is noise, not a regression
    res = regress(runs["one_bad"], b, {"composite_score": 2.0})
    comp = next(c for c in res.checks if c.metric == "composite_score")
    diffs = [v for v in (np.array(list(read_scores(runs["one_bad"]).query(
        "metric == 'composite_score' and status == 'ok'").sort_values("sample_id").value)) - np.array(
        [b["samples"]["composite_score"][k] for k in sorted(b["samples"]["composite_score"])])) if v != 0]
    assert len(diffs) == 1 and diffs[0] < -2.0  # the single degraded sample
    assert comp.wrong_way and comp.beyond_tolerance and not comp.beyond_noise and not comp.regressed
    assert comp.ci_high == 0.0
    assert "within bootstrap noise" in comp.message
    assert res.exit_code == 0


def test_regress_version_mismatch_exits_2(runs, baseline, tmp_path):
    # the same texts scored with another composite (another version) are not comparable
    other = copy_run(runs["good"], tmp_path / "other")
    score(other, runs["shared"], composite=None)  # the bundled default, mer-v2
    junit = tmp_path / "j.xml"
    r = CliRunner().invoke(regress_cmd, [str(other), "--baseline", str(baseline), "--junit", str(junit),
                                         "--markdown", str(tmp_path / "m.md")])
    assert r.exit_code == 2, r.output
    assert "composite version mer-v2 in the run, mer-v1-text in the baseline" in r.output
    suite = ET.parse(junit).getroot()
    # one errored testcase: the composite (fingerprinted, changed)
    errors = suite.findall("testcase/error")
    assert int(suite.get("errors")) == len(errors) == 1
    assert [e.get("message").split(":")[0] for e in errors] == ["composite_score"]
    assert all("params_hash" in e.get("message") for e in errors)  # the spec hash differs too
    assert "not comparable" in (tmp_path / "m.md").read_text()
    # a metric version bump recorded in run.json
    bumped = copy_run(runs["good"], tmp_path / "bumped")
    man = json.loads((bumped / "run.json").read_text())
    old = man["score"]["metric_versions"]["distinct2"]
    man["score"]["metric_versions"]["distinct2"] = old + ".next"
    (bumped / "run.json").write_text(json.dumps(man))
    res = regress(bumped, load_baseline(baseline))
    assert res.exit_code == 2
    # distinct2, and the composites that weigh it (their values were computed from the other distinct2)
    assert res.mismatches == [f"distinct2: metric version {old}.next in the run, {old} in the baseline",
                              "composite_score: weighs distinct2, whose metric_version differs"]


def test_regress_bad_inputs(runs, tmp_path):
    p = tmp_path / "nope.json"
    p.write_text(json.dumps({"kind": "something else"}))
    r = CliRunner().invoke(regress_cmd, [str(runs["good"]), "--baseline", str(p)])
    assert r.exit_code == 2 and "not a mer-eval baseline" in r.output
    r = CliRunner().invoke(regress_cmd, [str(runs["good"]), "--baseline", str(tmp_path / "missing.json")])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = CliRunner().invoke(regress_cmd, [str(runs["good"]), "--baseline", str(p), "--tolerance", "asr_wer"])
    assert r.exit_code == 2 and "METRIC=NUMBER" in r.output


def test_bless_of_unscored_folder(tmp_path):
    r = CliRunner().invoke(bless_cmd, [str(tmp_path), "-o", str(tmp_path / "b.json")])
    assert r.exit_code == 2 and "scores.parquet" in r.output
    assert not (tmp_path / "b.json").exists()
    with pytest.raises(GateError, match="scores.parquet"):
        bless(Path(tmp_path))


def test_cli_tolerances_from_flags_set_and_config(runs, baseline, tmp_path):
    metrics = list(load_baseline(baseline)["metrics"])
    args = [str(runs["bad"]), "--baseline", str(baseline)]
    r = CliRunner().invoke(regress_cmd, args + [x for m in metrics for x in ("--tolerance", f"{m}=1e6")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(regress_cmd, args + [x for m in metrics for x in ("--set", f"tolerances.{m}=1e6")])
    assert r.exit_code == 0, r.output
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tolerances:\n" + "".join(f"  {m}: 1.0e6\n" for m in metrics))
    r = CliRunner().invoke(regress_cmd, args + ["--config", str(cfg)])
    assert r.exit_code == 0, r.output
    # --tolerance wins over the config file: composite back to 2 -> that metric regresses again
    r = CliRunner().invoke(regress_cmd, args + ["--config", str(cfg), "--tolerance", "composite_score=2"])
    assert r.exit_code == 1 and "composite_score (higher is better)" in r.output and "REGRESSED" in r.output
    r = CliRunner().invoke(regress_cmd, args + ["--set", "tolerancez.x=1"])
    assert r.exit_code == 2 and "unknown config key" in r.output
    # a misspelt metric: before, "composite" got tolerance 1e6 and composite_score kept 2, and the run regressed
    # for a reason the user had meant to allow; now refused, naming the metric it is close to
    for extra in (["--set", "tolerances.composite=1e6"], ["--tolerance", "composite=1e6"]):
        r = CliRunner().invoke(regress_cmd, args + extra)
        assert r.exit_code == 2 and "did you mean composite_score?" in r.output, r.output


def test_metric_that_stopped_working_regresses(runs, baseline, tmp_path):
    """Samples scored ok in the baseline that are error in the run are a regression, also when no sample is
    left to pair (a metric that broke entirely must not pass as 'not checked'); unavailable ones make the
    run not comparable."""
    import pandas as pd

    broken = copy_run(runs["good"], tmp_path / "broken")
    p = broken / "scores.parquet"
    df = pd.read_parquet(p)
    sel = df["metric"] == "distinct2"
    df.loc[sel, "status"] = "error"
    df.loc[sel, "value"] = None
    df.loc[sel, "reason"] = "RuntimeError: boom"
    df.to_parquet(p)
    res = regress(broken, load_baseline(baseline))
    c = next(c for c in res.checks if c.metric == "distinct2")
    assert c.n_paired == 0 and c.regressed and len(c.lost_samples) == load_baseline(baseline)["metrics"]["distinct2"]["n"]
    assert res.exit_code == 1 and "are error in the run" in c.message
    r = CliRunner().invoke(regress_cmd, [str(broken), "--baseline", str(baseline), "--markdown",
                                         str(tmp_path / "m.md")])
    assert r.exit_code == 1, r.output
    assert "❌ regressed: " in (tmp_path / "m.md").read_text()
    # a model missing on this machine (unavailable) is not comparable, not a pass
    df.loc[sel, "status"] = "unavailable"
    df.loc[sel, "reason"] = "weights not found"
    df.to_parquet(p)
    res = regress(broken, load_baseline(baseline))
    assert res.exit_code == 2 and any("distinct2: unavailable in the run" in m for m in res.mismatches)


# ---- comparability: fingerprints, --allow-mismatch, baselines without fingerprints ---------------------

def _fingerprint(run: Path, metric: str) -> dict:
    return json.loads((run / "run.json").read_text())["score"]["fingerprints"][metric]


@pytest.fixture(scope="module")
def window40(runs, tmp_path_factory):
    """The same texts as the baseline run, scored with only metrics.text_quality.mattr_window 50 -> 40."""
    root = tmp_path_factory.mktemp("regress-window40")
    return score(build_run(runs["shared"], root / "w40"), runs["shared"],
                 sets=["metrics.text_quality.mattr_window=40"])


def test_bless_stores_fingerprints_and_model_identity(runs, baseline):
    b = load_baseline(baseline)
    fps = json.loads((runs["good"] / "run.json").read_text())["score"]["fingerprints"]
    for m, bm in b["metrics"].items():
        assert bm["fingerprint"] == fps[m], m
        assert bm["model"] == {"id": fps[m]["model_id"], "sha256": fps[m]["model_sha256"],
                               "revision": fps[m]["model_revision"]}
    assert b["metrics"]["asr_wer"]["model"]["id"] and b["metrics"]["asr_wer"]["family"] == "asr_wer"
    assert b["metrics"]["mattr"]["params"]["mattr_window"] == 50 and b["metrics"]["mattr"]["family"] == "text_quality"
    # what the text composite weighs, from the run's mer_eval_scores.json files
    assert {"distinct2", "repetition_rate", "asr_wer"} <= set(b["composite_inputs"]["composite_score"])


def test_regress_params_change_is_not_comparable(runs, baseline, window40, tmp_path):
    """Only mattr_window changed: not comparable (exit 2, naming mattr and its params hash), not a
    regression (exit 1) and not a pass (the values were computed differently)."""
    old, new = _fingerprint(runs["good"], "mattr")["params_hash"], _fingerprint(window40, "mattr")["params_hash"]
    assert old != new
    r = CliRunner().invoke(regress_cmd, [str(window40), "--baseline", str(baseline)])
    assert r.exit_code == 2, r.output
    assert "NOT COMPARABLE" in r.output and "REGRESSION" not in r.output
    assert f"mattr: params_hash '{old}' != '{new}' (baseline != run): mattr_window 50 != 40" in r.output
    # the params hash is the family's: every text_quality output was computed with the changed parameters,
    # and so are the composites that weigh distinct2 / repetition_rate
    res = regress(window40, load_baseline(baseline))
    named = sorted(m.split(":")[0] for m in res.mismatches)
    assert {"mattr", "distinct2", "repetition_rate", "composite_score"} <= set(named)
    assert not any(m.startswith(("asr_wer:", "label_match:")) for m in res.mismatches)
    assert "composite_score: weighs distinct2, whose params_hash differs" in res.mismatches

    # --allow-mismatch mattr lets mattr through (recorded) but hides none of the other differences
    r = CliRunner().invoke(regress_cmd, [str(window40), "--baseline", str(baseline), "--allow-mismatch", "mattr"])
    assert r.exit_code == 2, r.output
    refused, _, allowed = r.output.partition("ALLOWED MISMATCH")
    assert "distinct2: params_hash" in refused and "  mattr: params_hash" not in refused
    assert f"mattr: params_hash '{old}' != '{new}'" in allowed and "[allowed by --allow-mismatch mattr]" in allowed


def test_regress_allow_mismatch_runs_and_records_it_everywhere(runs, baseline, window40, tmp_path):
    junit, md, js = tmp_path / "j.xml", tmp_path / "r.md", tmp_path / "r.json"
    args = [str(window40), "--baseline", str(baseline), "--junit", str(junit), "--markdown", str(md), "--json",
            str(js)]
    for keys in (["text_quality"], ["mattr", "text_quality.params_hash"], ["all"]):
        r = CliRunner().invoke(regress_cmd, args + [x for k in keys for x in ("--allow-mismatch", k)])
        # the same texts: nothing regressed (mattr moved, in its better direction: smaller windows)
        assert r.exit_code == 0, (keys, r.output)
        assert "ALLOWED MISMATCH" in r.output and "PASS" in r.output and "allowed mismatch(es)" in r.output
        assert "mattr: params_hash" in r.output.split("ALLOWED MISMATCH")[1]
        data = json.loads(js.read_text())
        assert data["exit_code"] == 0 and data["mismatches"] == [] and data["allow"] == keys
        assert any(t.startswith("mattr: params_hash") for t in data["allowed_mismatches"])
        mattr = next(c for c in data["checks"] if c["metric"] == "mattr")
        assert mattr["allowed_mismatches"] and "mattr_window 50 != 40" in mattr["allowed_mismatches"][0]
        asr = next(c for c in data["checks"] if c["metric"] == "asr_wer")
        assert asr["allowed_mismatches"] == []  # nothing of asr_wer differed
        suite = ET.parse(junit).getroot()
        props = [p.get("value") for p in suite.findall("properties/property") if p.get("name") == "allowed_mismatch"]
        assert props == data["allowed_mismatches"]
        case = next(c for c in suite.findall("testcase") if c.get("name") == "mattr")
        assert case.find("properties/property[@name='allowed_mismatch']") is not None
        assert "mattr: params_hash" in case.find("system-out").text
        assert "mattr: params_hash" in suite.find("system-out").text
        text = md.read_text()
        assert "Allowed mismatches" in text and "mattr: params_hash" in text
        assert text.index("Allowed mismatches") < text.index("| metric |")  # above the table, not a footnote
    # a key that matches another field allows nothing, and says so
    res = regress(window40, load_baseline(baseline), allow=["mattr.code_hash"])
    assert res.exit_code == 2 and any(m.startswith("mattr: params_hash") for m in res.mismatches)
    assert "--allow-mismatch mattr.code_hash matched no difference" in res.notes
    r = CliRunner().invoke(regress_cmd, args + ["--allow-mismatch", "mattr.window"])
    assert r.exit_code == 2 and "METRIC.FIELD" in r.output


def test_regress_code_hash_and_model_differences(runs, baseline, tmp_path):
    """Fields the version does not show: another code hash or model file refuses, per metric and field."""
    other = copy_run(runs["good"], tmp_path / "other_code")
    man = json.loads((other / "run.json").read_text())
    fp = man["score"]["fingerprints"]
    old_code, old_sha = fp["distinct2"]["code_hash"], fp["asr_wer"]["model_sha256"]
    fp["distinct2"]["code_hash"] = "0" * 16
    fp["asr_wer"]["model_sha256"] = "f" * 64
    (other / "run.json").write_text(json.dumps(man))
    res = regress(other, load_baseline(baseline))
    assert res.exit_code == 2
    assert f"distinct2: code_hash '{old_code}' != '{'0' * 16}' (baseline != run)" in res.mismatches
    assert f"asr_wer: model_sha256 '{old_sha}' != '{'f' * 64}' (baseline != run)" in res.mismatches
    res = regress(other, load_baseline(baseline), allow=["distinct2.code_hash"])
    assert res.exit_code == 2 and not any(m.startswith("distinct2:") for m in res.mismatches)
    assert any(m.startswith("asr_wer: model_sha256") for m in res.mismatches)
    res = regress(other, load_baseline(baseline), allow=["distinct2.code_hash", "asr_wer"])
    # the two, and the composite for each of the two inputs it weighs
    assert res.exit_code == 0 and len(res.allowed_mismatches) == 2 + 2


def test_baseline_without_fingerprints_checks_versions_and_says_so(runs, baseline, window40, tmp_path):
    b = load_baseline(baseline)
    for m in b["metrics"].values():
        del m["fingerprint"]
    old = tmp_path / "old_baseline.json"
    old.write_text(json.dumps(b))
    r = CliRunner().invoke(regress_cmd, [str(runs["good"]), "--baseline", str(old)])
    assert r.exit_code == 0, r.output
    assert f"fingerprints unknown in baseline for {len(b['metrics'])} metric(s)" in r.output
    assert "compared metric versions and the model ids of the scores only" in r.output
    # the params change cannot be seen without fingerprints: it passes, and the output says what was unchecked
    res = regress(window40, load_baseline(old))
    assert res.exit_code == 0 and any("params, model files and code were not checked" in n for n in res.notes)
    # versions are still compared
    bumped = copy_run(runs["good"], tmp_path / "bumped")
    man = json.loads((bumped / "run.json").read_text())
    man["score"]["metric_versions"]["mattr"] = "9.9"
    man["score"]["fingerprints"]["mattr"]["metric_version"] = "9.9"
    (bumped / "run.json").write_text(json.dumps(man))
    res = regress(bumped, load_baseline(old))
    was = b["metric_versions"]["mattr"]
    assert res.exit_code == 2 and res.mismatches == [f"mattr: metric version 9.9 in the run, {was} in the baseline"]
    # and model ids the score tables name
    b2 = json.loads(old.read_text())
    b2["metrics"]["asr_wer"]["model"]["id"] = "someone/other-whisper"
    old2 = tmp_path / "old_baseline2.json"
    old2.write_text(json.dumps(b2))
    res = regress(runs["good"], load_baseline(old2))
    assert res.exit_code == 2 and any(m.startswith("asr_wer: model_id 'someone/other-whisper' != ") for m in res.mismatches)


def test_run_without_fingerprints_against_a_fingerprinted_baseline(runs, baseline, tmp_path):
    old_run = copy_run(runs["good"], tmp_path / "old_run")
    man = json.loads((old_run / "run.json").read_text())
    del man["score"]["fingerprints"]
    (old_run / "run.json").write_text(json.dumps(man))
    res = regress(old_run, load_baseline(baseline))
    assert res.exit_code == 0
    assert any(n.startswith("fingerprints unknown in run for ") for n in res.notes)


# ---- samples missing from the run, and a check that compared nothing -----------------------------------

EXAMPLES_MF = Path(__file__).resolve().parent.parent / "examples" / "mer-factory"
MF_METRICS = "text_quality,conclusion,grounding,au_faithfulness,abstention"
LLAVA = "llava-llama3_llama3.2"


def _mf_score(run: Path) -> Path:
    from mer_eval.cli import main

    r = CliRunner().invoke(main, ["score", str(run), "--metrics", MF_METRICS, "--no-cache"])
    assert r.exit_code == 0, r.output
    return run


@pytest.fixture(scope="module")
def mf(tmp_path_factory):
    """Copies of the bundled real MER-Factory outputs: all three (blessed), llava's summary emptied, llava's
    folder removed."""
    import shutil

    if not EXAMPLES_MF.is_dir():
        pytest.skip("examples/mer-factory is absent")
    root = tmp_path_factory.mktemp("regress-mf")
    runs = {k: root / f"run{k}" for k in "ABD"}
    for d in runs.values():
        shutil.copytree(EXAMPLES_MF, d)
    p = runs["B"] / LLAVA / f"{LLAVA}_merr_data.json"
    data = json.loads(p.read_text(encoding="utf-8"))
    data["final_summary"] = ""
    p.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    shutil.rmtree(runs["D"] / LLAVA)
    for d in runs.values():
        _mf_score(d)
    bl = root / "base.json"
    r = CliRunner().invoke(bless_cmd, [str(runs["A"]), "-o", str(bl)])
    assert r.exit_code == 0, r.output
    return {**runs, "baseline": bl, "root": root}


def test_sample_missing_from_the_run_is_lost(mf, tmp_path):
    """A baselined sample the run dropped regresses like one it stopped answering: dropping llava must not do
    better than emptying its summary."""
    b = load_baseline(mf["baseline"])
    assert LLAVA in b["samples"]["conclusion_consistency"]
    dropped, emptied = regress(mf["D"], b), regress(mf["B"], b)
    assert emptied.exit_code == 1
    assert dropped.exit_code == 1 and dropped.verdict == "REGRESSION" and dropped.missing_samples == [LLAVA]
    for c in dropped.checks:
        if LLAVA in b["samples"][c.metric]:
            assert c.regressed and c.lost_samples == {LLAVA: "missing: not in the run"}, c.metric
        else:
            assert LLAVA not in c.lost_samples
    assert {c.metric for c in emptied.regressed} <= {c.metric for c in dropped.regressed}
    md, junit, js = tmp_path / "m.md", tmp_path / "j.xml", tmp_path / "r.json"
    r = CliRunner().invoke(regress_cmd, [str(mf["D"]), "--baseline", str(mf["baseline"]), "--markdown", str(md),
                                         "--junit", str(junit), "--json", str(js)])
    assert r.exit_code == 1, r.output
    assert "REGRESSION:" in r.output and "PASS" not in r.output and "missing in the run" in r.output
    text = md.read_text()
    assert text.startswith("### mer-eval regress: ❌ regression") and f"`{LLAVA}` missing" in text
    suite = ET.parse(junit).getroot()
    fails = suite.findall("testcase/failure")
    assert len(fails) == int(suite.get("failures")) == len(dropped.regressed) > 0
    assert all(f"lost {LLAVA}: missing: not in the run" in f.text for f in fails)
    data = json.loads(js.read_text())
    assert data["verdict"] == "REGRESSION" and data["missing_samples"] == [LLAVA]


def test_run_with_none_of_the_baselines_samples_is_not_checked(mf, tmp_path):
    """Two other MER-Factory outputs, no sample id shared with the baseline: nothing compared, never a PASS."""
    import shutil

    shared = shared_or_skip()
    run = tmp_path / "runF"
    run.mkdir()
    for fn in ("gemini_merr.json", "bakllava_llama3.2_merr.json"):
        shutil.copy2(shared / "annotations-mer-factory" / fn, run / fn)
    _mf_score(run)
    b = load_baseline(mf["baseline"])
    assert not set(read_scores(run).sample_id) & set().union(*map(set, b["samples"].values()))
    res = regress(run, b)
    assert res.exit_code == 2 and res.verdict == "NOT CHECKED" and not res.mismatches
    assert res.not_checked.startswith("the run holds none of the baseline's 3 samples")
    assert all(c.n_paired == 0 and not c.regressed for c in res.checks)
    md, junit, js = tmp_path / "m.md", tmp_path / "j.xml", tmp_path / "r.json"
    r = CliRunner().invoke(regress_cmd, [str(run), "--baseline", str(mf["baseline"]), "--markdown", str(md),
                                         "--junit", str(junit), "--json", str(js)])
    assert r.exit_code == 2, r.output
    assert "NOT CHECKED" in r.output and "PASS" not in r.output
    text = md.read_text()
    assert text.startswith("### mer-eval regress: ⛔ not checked") and "no regression" not in text
    assert "**Nothing was checked** (exit 2)" in text
    suite = ET.parse(junit).getroot()
    errors = suite.findall("testcase/error")
    assert int(suite.get("errors")) == len(errors) == 1 and errors[0].get("type") == "NotChecked"
    assert int(suite.get("skipped")) < int(suite.get("tests"))  # not a suite of skips that CI reads as green
    assert json.loads(js.read_text())["verdict"] == "NOT CHECKED"


def test_baseline_with_nothing_to_pair_is_not_checked(mf, tmp_path):
    """A baseline whose metrics hold no value that counts (every sample's values removed): the run is the
    baseline's own, yet no metric can be compared, so it is NOT CHECKED, not PASS."""
    b = load_baseline(mf["baseline"])
    assert regress(mf["A"], b).verdict == "PASS"
    for m in b["samples"]:
        b["samples"][m] = {}
    p = tmp_path / "empty.json"
    p.write_text(json.dumps(b))
    res = regress(mf["A"], load_baseline(p))
    assert res.exit_code == 2 and res.verdict == "NOT CHECKED" and res.regressed == []
    assert res.not_checked.startswith("no metric was compared on any sample")
    r = CliRunner().invoke(regress_cmd, [str(mf["A"]), "--baseline", str(p), "--junit", str(tmp_path / "j.xml")])
    assert r.exit_code == 2 and "NOT CHECKED: 0 of " in r.output, r.output
    assert ET.parse(tmp_path / "j.xml").getroot().get("errors") == "1"


def test_one_paired_sample_has_no_interval_and_a_move_beyond_tolerance_counts(mf, tmp_path):
    """One sample on both sides: the bootstrap interval of one value would be [d, d], a certainty nobody
    measured. It is reported as none, and a wrong-way move beyond tolerance regresses (fail closed) instead of
    resting on that interval."""
    import shutil

    from mer_eval.reports.compare import bootstrap_mean_ci

    assert bootstrap_mean_ci([0.7]) == (None, None)
    base, run = tmp_path / "one", tmp_path / "one_worse"
    for d in (base, run):
        d.mkdir()
        shutil.copytree(EXAMPLES_MF / "gemini", d / "gemini")
    p = run / "gemini" / "gemini_merr_data.json"
    data = json.loads(p.read_text(encoding="utf-8"))
    data["final_summary"] = degrade_text(data["final_summary"])
    p.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    _mf_score(base)
    _mf_score(run)
    res = regress(run, bless(base))
    moved = [c for c in res.checks if c.n_paired == 1 and c.wrong_way and c.beyond_tolerance]
    assert moved, [c.message for c in res.checks]
    for c in moved:
        assert c.ci_low is None and c.ci_high is None and c.regressed, c.message
        assert "one paired sample has no bootstrap interval" in c.message
    assert res.exit_code == 1


OLD_11 = Path(__file__).resolve().parent / "data" / "schema" / "1.1"  # scored with the retired lenient composite
TEXT_FAMILIES = "text_quality,label_agreement,conclusion,grounding,au_faithfulness,abstention"


def test_a_baseline_with_the_retired_lenient_composite_still_checks_the_composite(tmp_path):
    """A baseline blessed while composite_lenient existed (tests/data/schema/1.1, real files of examples/mer-factory)
    against a run of today's mer-eval on the same data: the retired composite is a note, never a 'not scored in
    the run' refusal, and composite_score is still checked on every sample. The abstention family changed since (its
    docstring named the lenient composite; 1.2 weighs an image's visual description), and grounding (1.1: a peak
    given another emotion), so their fingerprints differ: refused until allowed, as any change of a metric."""
    from mer_eval.config import load_config
    from mer_eval.discovery import discover
    from mer_eval.scoring import score_dataset

    examples = Path(__file__).resolve().parent.parent / "examples" / "mer-factory"
    run = tmp_path / "run"
    score_dataset(discover(examples), run, load_config(sets=["cache.enabled=false"]), metrics=TEXT_FAMILIES.split(","))
    assert "composite_lenient" not in set(read_scores(run).metric)
    base = load_baseline(OLD_11 / "baseline.json")
    assert "composite_lenient" in base["metrics"]
    note = "composite_lenient: in the baseline, retired since (it left abstentions out); not checked"
    refused = regress(run, base)
    assert refused.exit_code == 2 and note in refused.notes
    assert not any(m.startswith("composite_lenient") for m in refused.mismatches)
    # (composite_score too: it weighs those metrics, and says which)
    assert {m.split(":")[0] for m in refused.mismatches} == {"abstained_score", "integrity_score", "grounding",
                                                             "specificity", "quote_fidelity", "number_fidelity",
                                                             "composite_score"}
    res = regress(run, base, allow=["abstained_score", "integrity_score", "grounding"])
    assert res.exit_code == 0 and note in res.notes
    comp = next(c for c in res.checks if c.metric == "composite_score")
    assert comp.n_paired == 3 and not comp.regressed
    assert not any(c.metric == "composite_lenient" for c in res.checks)
