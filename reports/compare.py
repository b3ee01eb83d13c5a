"""``mer-eval compare RUN_A RUN_B [...]``: paired comparison of scored runs on their common samples.

Per metric and run: mean of the ``ok`` values with a bootstrap 95% CI. Per metric and run after the
first: the paired difference to the first run (bootstrap 95% CI over the samples both scored ok),
Wilcoxon signed-rank p-value, and the win / tie / loss counts (direction from ``higher_is_better``).
Runs are ranked by their composite mean on the common samples.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

N_BOOT = 2000
SEED = 0
COMPOSITE = "composite_score"


# ---- statistics -------------------------------------------------------------------------------------

def bootstrap_mean_ci(values, n_boot: int = N_BOOT, seed: int = SEED, alpha: float = 0.05
                      ) -> tuple[Optional[float], Optional[float]]:
    """Percentile bootstrap CI of the mean (resampling samples with replacement); (None, None) when empty."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return None, None
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, 4_000_000 // v.size))  # bounded memory for large runs
    means = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        means[start:start + k] = v[rng.integers(0, v.size, size=(k, v.size))].mean(axis=1)
    lo, hi = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def wilcoxon_p(diffs) -> tuple[Optional[float], Optional[str]]:
    """Two-sided Wilcoxon signed-rank p-value of paired differences, or (None, why not)."""
    import numpy as np
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        return None, "no paired samples"
    if np.all(d == 0):
        return None, "all paired differences are zero"
    try:
        res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    except ValueError as e:
        return None, f"wilcoxon: {e}"
    return float(res.pvalue), None


# ---- data -------------------------------------------------------------------------------------------

@dataclass
class RunStat:
    run: str
    n: int
    mean: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    # paired against the first run (None for the first run itself)
    n_paired: Optional[int] = None
    diff: Optional[float] = None
    diff_ci_low: Optional[float] = None
    diff_ci_high: Optional[float] = None
    p_wilcoxon: Optional[float] = None
    p_note: Optional[str] = None
    wins: Optional[int] = None
    ties: Optional[int] = None
    losses: Optional[int] = None
    win_rate: Optional[float] = None  # wins / n_paired


@dataclass
class MetricComparison:
    metric: str
    higher_is_better: bool
    runs: list[RunStat]


@dataclass
class Comparison:
    runs: list[str]  # labels
    paths: list[str]
    n_common: int
    dropped: dict[str, int]  # label -> samples not in every run
    n_samples: dict[str, int]
    metrics: list[MetricComparison]
    ranking: list[dict[str, Any]]  # [{rank, run, composite_mean, n}]
    n_boot: int
    seed: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _labels(paths: list[Path]) -> list[str]:
    names = [p.resolve().name or str(p) for p in paths]
    out = []
    for i, n in enumerate(names):
        out.append(n if names.count(n) == 1 else f"{n}#{i + 1}")
    return out


def _ok_series(df, metric: str, ids: set[str]) -> dict[str, float]:
    """ok values of ``metric``; self-checks (``dependence`` set: AUs vs the AUs the text came from, a label in
    the prompt, WER against the same ASR model) are left out, as the gate and the composite leave them out."""
    g = df[(df["metric"] == metric) & (df["status"] == "ok") & (df["sample_id"].isin(ids))]
    if "dependence" in g.columns:
        g = g[g["dependence"].isna()]
    return {str(s): float(v) for s, v in zip(g["sample_id"], g["value"]) if v is not None and math.isfinite(v)}


def compare_runs(run_dirs: list[Path], n_boot: int = N_BOOT, seed: int = SEED) -> Comparison:
    import numpy as np

    from mer_eval.gates import metric_directions, read_scores

    if len(run_dirs) < 2:
        raise ValueError("compare needs at least two runs")
    paths = [Path(p) for p in run_dirs]
    labels = _labels(paths)
    frames = [read_scores(p) for p in paths]
    id_sets = [set(df["sample_id"]) for df in frames]
    common = set.intersection(*id_sets)
    notes = []
    if not common:
        notes.append("the runs share no sample id: nothing to compare")
    dropped = {lab: len(ids - common) for lab, ids in zip(labels, id_sets)}
    directions: dict[str, bool] = {}
    order: list[str] = []
    for df in frames:
        for m, hib in metric_directions(df).items():
            if m in directions and directions[m] != hib:
                notes.append(f"{m}: runs disagree on higher_is_better; using the first run's")
            directions.setdefault(m, hib)
            if m not in order:
                order.append(m)
    pos = {m: i for i, m in enumerate(order)}
    order = sorted(order, key=lambda m: (m != COMPOSITE, pos[m]))
    metrics = []
    for m in order:
        hib = directions[m]
        series = [_ok_series(df, m, common) for df in frames]
        base = series[0]
        stats_ = []
        for i, (lab, s) in enumerate(zip(labels, series)):
            vals = np.array(list(s.values()), dtype=float)
            lo, hi = bootstrap_mean_ci(vals, n_boot, seed)
            st = RunStat(lab, int(vals.size), float(vals.mean()) if vals.size else None, lo, hi)
            if i > 0:
                both = sorted(set(base) & set(s))
                d = np.array([s[k] - base[k] for k in both], dtype=float)
                st.n_paired = int(d.size)
                if d.size:
                    st.diff = float(d.mean())
                    st.diff_ci_low, st.diff_ci_high = bootstrap_mean_ci(d, n_boot, seed)
                    st.p_wilcoxon, st.p_note = wilcoxon_p(d)
                    better = d > 0 if hib else d < 0
                    worse = d < 0 if hib else d > 0
                    st.wins, st.losses = int(better.sum()), int(worse.sum())
                    st.ties = int(d.size - st.wins - st.losses)
                    st.win_rate = st.wins / d.size
                else:
                    st.p_note = "no sample scored ok in both runs"
            stats_.append(st)
        metrics.append(MetricComparison(m, hib, stats_))
    comp = next((mc for mc in metrics if mc.metric == COMPOSITE), None)
    ranking = []
    if comp is None:
        notes.append("no composite_score in the runs: no ranking")
    else:
        ranked = sorted(comp.runs, key=lambda r: (r.mean is None, -(r.mean or 0.0)))
        for i, r in enumerate(ranked):
            ranking.append({"rank": i + 1, "run": r.run, "composite_mean": r.mean, "ci_low": r.ci_low,
                            "ci_high": r.ci_high, "n": r.n})
    return Comparison(labels, [str(p) for p in paths], len(common), dropped,
                      {lab: len(ids) for lab, ids in zip(labels, id_sets)}, metrics, ranking, n_boot, seed, notes)


# ---- output -----------------------------------------------------------------------------------------

def _f(x: Optional[float], nd: int = 4) -> str:
    if x is None:
        return "–"
    return f"{x:.{nd}g}"


def _ci(lo: Optional[float], hi: Optional[float]) -> str:
    return "–" if lo is None else f"[{_f(lo)}, {_f(hi)}]"


CSV_FIELDS = ["metric", "higher_is_better", "run", "n", "mean", "ci_low", "ci_high", "n_paired", "diff",
              "diff_ci_low", "diff_ci_high", "p_wilcoxon", "p_note", "wins", "ties", "losses", "win_rate"]


def to_csv(c: Comparison) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for mc in c.metrics:
        for r in mc.runs:
            row = {k: v for k, v in asdict(r).items() if k in CSV_FIELDS}
            row.update(metric=mc.metric, higher_is_better=mc.higher_is_better)
            w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_FIELDS})
    return buf.getvalue()


def header_lines(c: Comparison) -> list[str]:
    lines = [f"{c.n_common} common samples; dropped (not in every run): "
             + ", ".join(f"{k} {v} of {c.n_samples[k]}" for k, v in c.dropped.items()),
             f"bootstrap: {c.n_boot} resamples, seed {c.seed}; differences are run − {c.runs[0]} on samples "
             f"scored ok in both; win = better in the metric's direction"]
    lines += c.notes
    return lines


def to_markdown(c: Comparison) -> str:
    out = ["# mer-eval compare", ""]
    out += [f"- {ln}" for ln in header_lines(c)]
    if c.ranking:
        out += ["", "## Ranking (composite mean)", "", "| rank | run | composite mean | 95% CI | n |",
                "|---:|---|---:|---|---:|"]
        for r in c.ranking:
            out.append(f"| {r['rank']} | {_md(r['run'])} | {_f(r['composite_mean'])} | "
                       f"{_ci(r['ci_low'], r['ci_high'])} | {r['n']} |")
    out += ["", "## Metrics", "",
            "| metric | run | n | mean [95% CI] | Δ vs first [95% CI] | p (Wilcoxon) | win / tie / loss |",
            "|---|---|---:|---|---|---:|---|"]
    for mc in c.metrics:
        arrow = "↑" if mc.higher_is_better else "↓"
        for r in mc.runs:
            if r.n_paired is None:
                delta, p, wtl = "(reference)", "", ""
            else:
                delta = f"{_f(r.diff)} {_ci(r.diff_ci_low, r.diff_ci_high)} (n={r.n_paired})"
                p = _f(r.p_wilcoxon, 3) if r.p_wilcoxon is not None else (r.p_note or "")
                wtl = f"{r.wins} / {r.ties} / {r.losses}" if r.wins is not None else ""
            out.append(f"| {_md(mc.metric)} {arrow} | {_md(r.run)} | {r.n} | {_f(r.mean)} {_ci(r.ci_low, r.ci_high)}"
                       f" | {delta} | {_md(p)} | {wtl} |")
    return "\n".join(out) + "\n"


def _md(s: str) -> str:
    return str(s).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def print_rich(c: Comparison, console=None) -> None:
    from rich.console import Console
    from rich.markup import escape as e
    from rich.table import Table

    console = console or Console()
    for ln in header_lines(c):
        console.print(ln, markup=False, highlight=False)
    if c.ranking:
        t = Table(title="Ranking (composite mean on common samples)")
        for col in ("rank", "run", "composite mean", "95% CI", "n"):
            t.add_column(col)
        for r in c.ranking:
            t.add_row(str(r["rank"]), e(r["run"]), _f(r["composite_mean"]), e(_ci(r["ci_low"], r["ci_high"])),
                      str(r["n"]))
        console.print(t)
    t = Table(title="Metrics (only ok values; Δ = run − first run, paired)")
    for col, just in (("metric", "left"), ("run", "left"), ("n", "right"), ("mean [95% CI]", "left"),
                      ("Δ [95% CI] (n paired)", "left"), ("p Wilcoxon", "right"), ("win/tie/loss", "right")):
        t.add_column(col, justify=just)
    for mc in c.metrics:
        for k, r in enumerate(mc.runs):
            if r.n_paired is None:
                delta, p, wtl = "reference", "", ""
            else:
                delta = f"{_f(r.diff)} {_ci(r.diff_ci_low, r.diff_ci_high)} ({r.n_paired})"
                p = _f(r.p_wilcoxon, 3) if r.p_wilcoxon is not None else (r.p_note or "")
                wtl = "" if r.wins is None else f"{r.wins}/{r.ties}/{r.losses}"
            name = f"{mc.metric} {'↑' if mc.higher_is_better else '↓'}" if k == 0 else ""
            t.add_row(e(name), e(r.run), str(r.n), e(f"{_f(r.mean)} {_ci(r.ci_low, r.ci_high)}"), e(delta), e(p),
                      wtl, end_section=(k == len(mc.runs) - 1))
    console.print(t)
