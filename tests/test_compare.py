"""mer-eval compare: a real scored run against a degraded copy (truncated+repeated summaries, shuffled
transcripts) and against itself."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats

from mer_eval.gates import read_scores
from mer_eval.reports.commands import compare_cmd
from mer_eval.reports.compare import AllowList, bootstrap_mean_ci, compare_runs, to_csv, to_markdown, wilcoxon_p
from score_fixtures import build_run, copy_run, score, scored_run, shared_or_skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    shared = shared_or_skip()
    root = tmp_path_factory.mktemp("compare-runs")
    return {"good": scored_run(shared, root / "good"), "bad": scored_run(shared, root / "bad", degraded=True),
            "shared": shared, "root": root}


def ok(run: Path, metric: str) -> dict[str, float]:
    df = read_scores(run)
    g = df[(df.metric == metric) & (df.status == "ok")]
    return dict(zip(g.sample_id, g.value.astype(float)))


def by_metric(c, metric):
    return next(m for m in c.metrics if m.metric == metric)


def test_bootstrap_and_wilcoxon_helpers():
    v = np.array([1.0, 2.0, 3.0, 10.0])
    lo, hi = bootstrap_mean_ci(v, 2000, 0)
    assert lo <= v.mean() <= hi and lo >= v.min() and hi <= v.max()
    assert bootstrap_mean_ci(v, 2000, 0) == (lo, hi)  # fixed seed: reproducible
    assert bootstrap_mean_ci([0.7, 0.7, 0.7]) == (pytest.approx(0.7), pytest.approx(0.7))
    assert bootstrap_mean_ci([]) == (None, None) == bootstrap_mean_ci([0.7])  # one value: no interval, not [v, v]
    assert wilcoxon_p([0, 0, 0]) == (None, "all paired differences are zero")
    assert wilcoxon_p([]) == (None, "no paired samples")
    # n = 5, all of one sign: exact two-sided p = 2 / 2^5
    assert wilcoxon_p([-0.1, -0.2, -0.3, -0.4, -0.5])[0] == pytest.approx(2 / 32)


def test_compare_good_vs_degraded(runs):
    c = compare_runs([runs["good"], runs["bad"]])
    assert c.runs == ["good", "bad"] and c.n_common == 10 and c.dropped == {"good": 0, "bad": 0}
    assert [r["run"] for r in c.ranking] == ["good", "bad"]
    assert c.metrics[0].metric == "composite_score"

    for metric, hib in (("composite_score", True), ("distinct2", True), ("repetition_rate", False),
                        ("asr_wer", False)):
        mc = by_metric(c, metric)
        assert mc.higher_is_better is hib
        a, b = ok(runs["good"], metric), ok(runs["bad"], metric)
        base, other = mc.runs
        assert base.n == len(a) and other.n == len(b)  # only ok values count
        assert base.mean == pytest.approx(np.mean(list(a.values())))
        assert base.ci_low <= base.mean <= base.ci_high
        common = sorted(set(a) & set(b))
        d = np.array([b[k] - a[k] for k in common])
        assert other.n_paired == len(common) and other.diff == pytest.approx(d.mean())
        assert other.diff_ci_low <= other.diff <= other.diff_ci_high
        # the degraded copy is worse on every paired sample here, in the metric's direction
        assert other.wins == 0 and other.losses == len(common) and other.ties == 0 and other.win_rate == 0
        if hib:
            assert other.diff_ci_high < 0
        else:
            assert other.diff_ci_low > 0
        assert other.p_wilcoxon == pytest.approx(stats.wilcoxon(d).pvalue)
    # 5 paired samples with one sign -> the smallest possible exact p-value, 2/2^5
    assert by_metric(c, "distinct2").runs[1].p_wilcoxon == pytest.approx(0.0625)
    # metrics not ok anywhere are still listed, with n = 0
    lm = by_metric(c, "label_match")
    assert [r.n for r in lm.runs] == [0, 0] and lm.runs[1].p_note == "no sample scored ok in both runs"


def test_compare_with_itself_is_all_ties(runs):
    c = compare_runs([runs["good"], runs["good"]])
    assert c.runs == ["good#1", "good#2"]
    comp = by_metric(c, "composite_score").runs[1]
    assert comp.diff == 0 and comp.ties == comp.n_paired == 10 and comp.wins == comp.losses == 0
    assert comp.p_wilcoxon is None and comp.p_note == "all paired differences are zero"


def test_compare_reports_dropped_samples(runs, tmp_path):
    bad = copy_run(runs["bad"], tmp_path / "bad_subset")
    df = pd.read_parquet(bad / "scores.parquet")
    df[df.sample_id != "lv0870"].to_parquet(bad / "scores.parquet", index=False)
    c = compare_runs([runs["good"], bad])
    assert c.n_common == 9 and c.dropped == {"good": 1, "bad_subset": 0}
    assert c.n_samples == {"good": 10, "bad_subset": 9}
    assert by_metric(c, "asr_wer").runs[0].n == 4  # the first run's mean is taken on the common samples too


def test_cli_compare_outputs(runs, tmp_path):
    md, cs, js = tmp_path / "c.md", tmp_path / "c.csv", tmp_path / "c.json"
    r = CliRunner().invoke(compare_cmd, [str(runs["good"]), str(runs["bad"]), "--markdown", str(md), "--csv",
                                         str(cs), "--json", str(js), "--bootstrap", "500"])
    assert r.exit_code == 0, r.output
    assert "10 common samples" in r.output and "Ranking" in r.output
    rows = list(csv.DictReader(io.StringIO(cs.read_text())))
    c = compare_runs([runs["good"], runs["bad"]], n_boot=500)
    assert len(rows) == 2 * len(c.metrics)
    assert cs.read_text() == to_csv(c)
    comp = [x for x in rows if x["metric"] == "composite_score" and x["run"] == "bad"][0]
    assert float(comp["diff"]) == pytest.approx(by_metric(c, "composite_score").runs[1].diff)
    text = md.read_text()
    assert text == to_markdown(c)
    assert "| 1 | good |" in text and "| 2 | bad |" in text
    r = CliRunner().invoke(compare_cmd, [str(runs["good"])])
    assert r.exit_code == 2 and "at least two runs" in r.output


def test_bootstrap_large_run_ci_matches_standard_error():
    rng = np.random.default_rng(1)
    v = rng.normal(size=50_000)
    lo, hi = bootstrap_mean_ci(v, 200, 0)  # 200 x 50k draws, in chunks of 80
    se = v.std(ddof=1) / np.sqrt(v.size)
    assert lo < v.mean() < hi
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.25)  # percentile CI ~ normal CI for a mean


def test_self_checks_are_not_compared(tmp_path):
    """A run whose AU-F1 is a self-check contributes no AU-F1 values to the comparison."""
    import pandas as pd

    from mer_eval.reports.compare import _ok_series

    df = pd.DataFrame([
        {"sample_id": "a", "metric": "au_f1", "value": 1.0, "status": "ok", "dependence": "au_source is self"},
        {"sample_id": "b", "metric": "au_f1", "value": 0.4, "status": "ok", "dependence": None},
    ])
    assert _ok_series(df, "au_f1", {"a", "b"}) == {"b": 0.4}


# ---- comparability: the runs' fingerprints are checked against the first run's ----------------------

@pytest.fixture(scope="module")
def window40(runs):
    """The good run's texts scored with only metrics.text_quality.mattr_window 50 -> 40."""
    return score(build_run(runs["shared"], runs["root"] / "w40"), runs["shared"],
                 sets=["metrics.text_quality.mattr_window=40"])


def _params_hash(run: Path, metric: str) -> str:
    import json

    return json.loads((run / "run.json").read_text())["score"]["fingerprints"][metric]["params_hash"]


def test_compare_refuses_runs_scored_with_other_params(runs, window40, tmp_path):
    a, b = _params_hash(runs["good"], "mattr"), _params_hash(window40, "mattr")
    js, md = tmp_path / "c.json", tmp_path / "c.md"
    r = CliRunner().invoke(compare_cmd, [str(runs["good"]), str(window40), "--json", str(js), "--markdown", str(md)])
    assert r.exit_code == 2, r.output
    assert "NOT COMPARABLE" in r.output
    assert f"mattr: params_hash '{a}' != '{b}' (good != w40): mattr_window 50 != 40" in r.output
    assert "Ranking" not in r.output and not md.exists()  # no numbers for runs that are not comparable
    import json

    data = json.loads(js.read_text())
    assert data["metrics"] == [] and any(t.startswith("mattr: params_hash") for t in data["mismatches"])
    c = compare_runs([runs["good"], window40])
    assert not c.comparable and c.metrics == [] and c.ranking == []
    assert not any(t.startswith(("asr_wer:", "label_match:")) for t in c.mismatches)  # only what differs
    # the degraded copy was scored alike: comparable, as before
    assert compare_runs([runs["good"], runs["bad"]]).comparable
    # three runs: every run against the first, each line names its pair
    c3 = compare_runs([runs["good"], runs["bad"], window40])
    assert c3.mismatches and all(t.startswith("w40 vs good: ") for t in c3.mismatches)


def test_compare_allow_mismatch_compares_and_records_it(runs, window40, tmp_path):
    md, cs, js = tmp_path / "c.md", tmp_path / "c.csv", tmp_path / "c.json"
    r = CliRunner().invoke(compare_cmd, [str(runs["good"]), str(window40), "--allow-mismatch", "all", "--markdown",
                                         str(md), "--csv", str(cs), "--json", str(js), "--bootstrap", "500"])
    assert r.exit_code == 0, r.output
    assert "ALLOWED MISMATCH" in r.output and "Ranking" in r.output
    c = compare_runs([runs["good"], window40], n_boot=500, allow=AllowList.parse(["all"]))
    assert c.comparable and c.mismatches == []
    mattr_allowed = [t for t in c.allowed_mismatches if t.startswith("mattr: params_hash")]
    assert len(mattr_allowed) == 1 and mattr_allowed[0].endswith("[allowed by --allow-mismatch all]")
    import json

    assert json.loads(js.read_text())["allowed_mismatches"] == c.allowed_mismatches
    text = md.read_text()
    assert text == to_markdown(c) and mattr_allowed[0] in text
    rows = list(csv.DictReader(io.StringIO(cs.read_text())))
    assert all(row["allowed_mismatch"] == mattr_allowed[0] for row in rows if row["metric"] == "mattr")
    assert all(row["allowed_mismatch"] == "" for row in rows if row["metric"] == "asr_wer")
    # the same texts: mattr differs only by its window, the other text_quality outputs not at all
    assert by_metric(c, "distinct2").runs[1].diff == 0
    assert by_metric(c, "mattr").runs[1].diff != 0
    r = CliRunner().invoke(compare_cmd, [str(runs["good"]), str(window40), "--allow-mismatch", "mattr.nope"])
    assert r.exit_code == 2 and "METRIC.FIELD" in r.output


def test_compare_runs_without_fingerprints(runs, tmp_path):
    """Runs scored before fingerprints existed are compared on their versions, and the output says so."""
    import json

    old = copy_run(runs["bad"], tmp_path / "old")
    man = json.loads((old / "run.json").read_text())
    del man["score"]["fingerprints"]
    (old / "run.json").write_text(json.dumps(man))
    c = compare_runs([runs["good"], old])
    assert c.comparable and any(n.startswith("fingerprints unknown in old for ") for n in c.notes)
    was = man["score"]["metric_versions"]["distinct2"]
    man["score"]["metric_versions"]["distinct2"] = "0.1"
    (old / "run.json").write_text(json.dumps(man))
    c = compare_runs([runs["good"], old])
    assert f"distinct2: metric version 0.1 in old, {was} in good" in c.mismatches


# ---- abstentions and unranked runs, on copies of the bundled real MER-Factory outputs -------------------

EXAMPLES_MF = Path(__file__).resolve().parent.parent / "examples" / "mer-factory"
MF_METRICS = "text_quality,conclusion,grounding,au_faithfulness,abstention"
LLAVA = "llava-llama3_llama3.2"


def mf_copy(dest: Path, summary: Optional[str] = None, metrics: str = MF_METRICS, extra: tuple = ()) -> Path:
    """A copy of examples/mer-factory (llava's final summary replaced when ``summary`` is given), scored
    through the CLI."""
    import json
    import shutil

    from mer_eval.cli import main

    shutil.copytree(EXAMPLES_MF, dest)
    if summary is not None:
        p = dest / LLAVA / f"{LLAVA}_merr_data.json"
        data = json.loads(p.read_text(encoding="utf-8"))
        data["final_summary"] = summary
        p.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    r = CliRunner().invoke(main, ["score", str(dest), "--metrics", metrics, "--no-cache", *extra])
    assert r.exit_code == 0, r.output
    return dest


@pytest.fixture(scope="module")
def mf(tmp_path_factory):
    if not EXAMPLES_MF.is_dir():
        pytest.skip("examples/mer-factory is absent")
    root = tmp_path_factory.mktemp("compare-mf")
    return {"A": mf_copy(root / "runA"),
            "B": mf_copy(root / "runB", summary=""),  # llava answers nothing: abstained
            "C": mf_copy(root / "runC", summary="The person is clearly happy and joyful, smiling with delight."),
            "X": mf_copy(root / "runX", metrics="text_quality"),  # too little coverage: no composite anywhere
            "root": root}


def status_of(run: Path, metric: str, sid: str) -> str:
    df = read_scores(run)
    return str(df[(df.metric == metric) & (df.sample_id == sid)].status.iloc[0])


def test_abstention_is_a_loss_not_a_tie(mf):
    a, b, cr = mf["A"], mf["B"], mf["C"]
    m = "conclusion_consistency"
    assert status_of(a, m, LLAVA) == "ok" and status_of(b, m, LLAVA) == "abstained"
    c = compare_runs([a, b, cr], n_boot=200)
    ra, rb, rc = by_metric(c, m).runs
    # Δ stays over the samples ok in both (two, unchanged: 0); the abstention is the third sample, a loss
    assert rb.n_paired == 2 and rb.diff == 0
    assert (rb.wins, rb.ties, rb.losses) == (0, 2, 1) and rb.abstain_losses == 1 and rb.n_wtl == 3
    assert rb.win_rate == 0 and rb.n_abstained == 1 and rb.n == 2
    assert ra.n_abstained == 0 and rc.n_abstained == 0 and rc.abstain_losses == 0
    # answering wrong is never worse than not answering: the wrong answer has no more losses
    assert rc.losses <= rb.losses
    # every metric the empty summary abstained on, where the first run answered, counts it as a loss
    hit = 0
    for mc in c.metrics:
        if status_of(b, mc.metric, LLAVA) == "abstained" and LLAVA in ok(a, mc.metric):
            hit += 1
            r = mc.runs[1]
            assert r.abstain_losses == 1 and r.losses >= 1 and r.n_abstained == 1, mc.metric
            assert r.wins + r.ties + r.losses == r.n_wtl == r.n_paired + 1, mc.metric
    assert hit >= 4
    # the other way round the answering run wins that sample; both abstained is a tie
    rev = by_metric(compare_runs([b, a], n_boot=200), m).runs[1]
    assert (rev.wins, rev.ties, rev.losses) == (1, 2, 0) and rev.abstain_wins == 1 and rev.n_paired == 2
    same = by_metric(compare_runs([b, b], n_boot=200), m).runs[1]
    assert (same.wins, same.ties, same.losses) == (0, 3, 0) and same.abstain_ties == 1


def test_cli_compare_reports_abstentions(mf, tmp_path):
    md, cs, js = tmp_path / "c.md", tmp_path / "c.csv", tmp_path / "c.json"
    r = CliRunner().invoke(compare_cmd, [str(mf["A"]), str(mf["B"]), "--markdown", str(md), "--csv", str(cs),
                                         "--json", str(js), "--bootstrap", "200"], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    assert "abstentions and failed checks count in win / tie / loss" in r.output and "abstained" in r.output
    assert "0/2/1 (abstentions: 1 lost)" in r.output
    import json

    data = json.loads(js.read_text())
    cc = next(x for x in data["metrics"] if x["metric"] == "conclusion_consistency")
    assert [x["n_abstained"] for x in cc["runs"]] == [0, 1] and cc["runs"][1]["losses"] == 1
    text = md.read_text()
    assert "| abstained |" in text and "abstentions and failed checks count in win / tie / loss" in text
    assert "| conclusion_consistency ↑ | runB | 2 | 1 | " in text and "0 / 2 / 1 (abstentions: 1 lost)" in text
    row = next(x for x in csv.DictReader(io.StringIO(cs.read_text()))
               if x["metric"] == "conclusion_consistency" and x["run"] == "runB")
    assert (row["n_abstained"], row["losses"], row["abstain_losses"], row["n_wtl"]) == ("1", "1", "1", "3")


def test_a_failed_check_is_a_loss_not_left_out(mf, tmp_path, monkeypatch):
    """A run whose grounding check crashed on the real llava output (status error, so its composite is error too):
    before, the sample was in neither run's win / tie / loss, so a run whose outputs crash the checks lost
    nothing by it."""
    import json

    from mer_eval.metrics.grounding import Grounding

    real = Grounding.compute

    def crash_on_llava(self, samples):
        if any(s.id == LLAVA for s in samples):
            raise RuntimeError("grounding crashed on this sample")
        return real(self, samples)

    monkeypatch.setattr(Grounding, "compute", crash_on_llava)
    e = mf_copy(tmp_path / "runE", extra=("--set", "score.batch_size=1"))  # one sample a batch: only llava fails
    monkeypatch.undo()
    assert status_of(e, "grounding", "gemini") == "ok"
    assert status_of(e, "grounding", LLAVA) == status_of(e, "composite_score", LLAVA) == "error"
    a = mf["A"]
    c = compare_runs([a, e], n_boot=200)
    for m in ("grounding", "composite_score"):
        r = by_metric(c, m).runs[1]
        assert r.n_error == 1 and r.error_losses == 1 and r.losses >= 1 and r.n == 2, m
        assert r.wins + r.ties + r.losses == r.n_wtl == r.n_paired + 1, m
    back = compare_runs([e, a], n_boot=200)  # seen from the run that failed, the other run wins it
    assert by_metric(back, "composite_score").runs[1].error_wins == 1
    assert any(n.startswith("composite_score failed (error: a check it needs failed) on runE 1 of the 3 common")
               for n in c.notes)
    js = tmp_path / "c.json"
    r = CliRunner().invoke(compare_cmd, [str(a), str(e), "--json", str(js), "--bootstrap", "200"],
                           env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    assert "(errors: 1 lost)" in r.output
    row = next(x for x in json.loads(js.read_text())["metrics"] if x["metric"] == "composite_score")["runs"][1]
    assert (row["n_error"], row["error_losses"]) == (1, 1)


def test_runs_without_a_composite_get_no_rank(mf, tmp_path):
    x, y = mf["X"], copy_run(mf["X"], mf["root"] / "runY")
    assert not ok(x, "composite_score") and ok(mf["A"], "composite_score")
    c = compare_runs([mf["A"], x, y], n_boot=200)
    assert [(r["rank"], r["run"]) for r in c.ranking] == [(1, "runA"), (None, "runX"), (None, "runY")]
    assert [r["reason"] for r in c.ranking] == [None] + ["no composite_score measured on the common samples"] * 2
    assert c.ranking[1]["composite_mean"] is None and c.ranking[1]["n"] == 0
    md, js = tmp_path / "c.md", tmp_path / "c.json"
    r = CliRunner().invoke(compare_cmd, [str(mf["A"]), str(x), str(y), "--markdown", str(md), "--json", str(js),
                                         "--bootstrap", "200"], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    assert "no composite_score measured on the common samples" in r.output
    import json

    assert [(r["rank"], r["run"]) for r in json.loads(js.read_text())["ranking"]] == [
        (1, "runA"), (None, "runX"), (None, "runY")]
    ranking = md.read_text().split("## Metrics")[0]
    ranks = [ln.split("|")[1].strip() for ln in ranking.splitlines() if ln.startswith("| ") and "run" in ln]
    assert ranks == ["rank", "1", "–", "–"] and "| 1 | runA |" in ranking
    assert "| – | runX | – | – | 0 | no composite_score measured on the common samples |" in ranking
    # no run with a composite: nobody is ranked
    c = compare_runs([x, y], n_boot=200)
    assert [r["rank"] for r in c.ranking] == [None, None]
    # the HTML report's leaderboard shows them unranked, with the reason (not "None")
    import re

    from mer_eval.reports.html import build_report

    html = build_report([mf["A"], x, y])
    rows = re.findall(r'<tr data-rank-run="([^"]+)"><td class="num">([^<]*)</td><td>(.*?)</td>', html)
    assert [(run, rank) for run, rank, _ in rows] == [("runA", "1"), ("runX", "–"), ("runY", "–")]
    assert "not ranked: no composite_score measured on the common samples" in rows[1][2]
    assert ">None<" not in html


def test_ranking_over_different_numbers_of_samples_says_so(mf, tmp_path):
    """Two runs whose composites were measured on different numbers of the common samples are ranked, each on
    its own measured samples, and the comparison says so (the unscored sample is in no mean)."""
    import pandas as pd

    a = mf["A"]
    b = copy_run(a, tmp_path / "runA_fewer")
    df = pd.read_parquet(b / "scores.parquet")
    hit = (df.sample_id == LLAVA) & (df.metric == "composite_score")
    assert hit.sum() == 1 and (df.loc[hit, "status"] == "ok").all()
    df.loc[hit, ["status", "value", "reason"]] = ["not_applicable", None, "below_min_coverage (test)"]
    df.to_parquet(b / "scores.parquet", index=False)
    c = compare_runs([a, b], n_boot=200)
    ns = {r["run"]: r["n"] for r in c.ranking}
    assert ns[a.name] == ns[b.name] + 1 and all(r["rank"] for r in c.ranking)
    note = next(n for n in c.notes if n.startswith("ranked on composites measured on different numbers of the "
                                                     "common samples ("))
    assert f"{a.name} {ns[a.name]}" in note and f"{b.name} {ns[b.name]}" in note and "of 3)" in note
    assert not any("different numbers" in n for n in compare_runs([a, copy_run(a, tmp_path / "same")],
                                                                     n_boot=200).notes)


def test_a_sample_generation_failed_on_is_a_loss_not_a_smaller_run(mf, tmp_path):
    """MER-Factory failed on llava's clip in run F (no result, only error_logs/<name>_error.log, as it writes).
    Before, score skipped the folder and compare dropped the sample ("not in every run"): a provider that fails
    on hard clips was compared on the clips it managed. Now the sample is scored abstained on every metric with
    the log's reason (composite 0), it is a loss in compare, the gate excludes it and export skips it."""
    import json
    import shutil

    from mer_eval.cli import main
    from mer_eval.gates import gate_run
    from mer_eval.generators.export import export_run

    f = tmp_path / "runF"
    shutil.copytree(EXAMPLES_MF, f)
    for p in (f / LLAVA).glob("*.json"):
        p.unlink()  # the result never written (its folder keeps what came before the failure)
    (f / "error_logs").mkdir()
    (f / "error_logs" / f"{LLAVA}_error.log").write_text(
        "Error processing llava-llama3_llama3.2: 429 Resource has been exhausted (e.g. check quota).\nTraceback ...",
        encoding="utf-8")
    r = CliRunner().invoke(main, ["score", str(f), "--metrics", MF_METRICS, "--no-cache"], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    assert "generate failed (MER-Factory's error log: Error processing llava" in r.output
    df = read_scores(f)
    rows = df[df.sample_id == LLAVA]
    assert len(rows) > 10 and set(rows.status) == {"abstained", "ok"}  # ok: the composite alone
    assert all("no annotation: generate failed (MER-Factory's error log: Error processing" in w
               for w in rows[rows.status == "abstained"].reason)
    assert ok(f, "composite_score")[LLAVA] == 0.0
    c = compare_runs([mf["A"], f], n_boot=200)
    comp = by_metric(c, "composite_score").runs[1]
    assert comp.losses >= 1 and comp.n_wtl == 3  # llava is a common sample, lost by the run that failed it
    assert not any("dropped" in n and "runF" in n for n in c.notes), c.notes
    cc = by_metric(c, "conclusion_consistency").runs[1]
    assert cc.abstain_losses == 1 and cc.n_abstained == 1
    g = gate_run(f)
    assert LLAVA not in g.included and "gemini" in g.included
    res = export_run(f, "csv", tmp_path / "out.csv", only_included=False)
    assert res.skipped[LLAVA].startswith("no annotation: generate failed"), res.skipped
    run_json = json.loads((f / "run.json").read_text(encoding="utf-8"))
    assert any("scored as abstained on every metric" in n for n in run_json["extra"]["input_notes"])
    v = CliRunner().invoke(main, ["validate", str(f), "--json"])
    assert v.exit_code == 0, v.output
    ds = json.loads(v.stdout)["datasets"][0]
    assert next(x for x in ds["samples"] if x["id"] == LLAVA)["generation_error"].startswith("MER-Factory's")
    for fam, m in ds["metrics"].items():  # no metric claims it can use what was never written
        assert [LLAVA] == next(ids for why, ids in m["cannot_run"].items() if "generate failed" in why), fam
