"""mer-eval compare: a real scored run against a degraded copy (truncated+repeated summaries, shuffled
transcripts) and against itself."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats

from mer_eval.gates import read_scores
from mer_eval.reports.commands import compare_cmd
from mer_eval.reports.compare import bootstrap_mean_ci, compare_runs, to_csv, to_markdown, wilcoxon_p
from score_fixtures import copy_run, scored_run, shared_or_skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    shared = shared_or_skip()
    root = tmp_path_factory.mktemp("compare-runs")
    return {"good": scored_run(shared, root / "good"), "bad": scored_run(shared, root / "bad", degraded=True)}


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
    assert bootstrap_mean_ci([]) == (None, None)
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
