"""``mer-eval bless`` / ``mer-eval regress``: a score baseline and a CI check against it.

``bless RUN -o baseline.json`` stores per-metric aggregates (mean, n, std of the ``ok`` values), every
sample's ``ok`` values, the metric versions, the composite version and the tool version.

``regress RUN --baseline baseline.json`` compares the run with the baseline, per metric, on the samples
scored ok in both (paired). A metric *regresses* when its mean moves the wrong way (by
``higher_is_better``) by more than its tolerance AND the paired bootstrap 95% CI of the difference
excludes 0 (the move is beyond resampling noise). A metric also regresses when samples it scored ok in
the baseline are ``error`` in the run (``lost_samples``): a metric that stopped working must not pass because
nothing is left to compare; ``unavailable`` there (a model missing on this machine) makes the run not
comparable (exit 2). Exit codes: 0 pass, 1 regression, 2 not comparable
(metric or composite versions differ, or a baselined metric is missing from the run).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from mer_eval import __version__

BASELINE_KIND = "mer-eval-baseline"
BASELINE_FORMAT = 1
EXIT_OK, EXIT_REGRESSED, EXIT_MISMATCH = 0, 1, 2


class BaselineError(ValueError):
    pass


def _versions(run_dir: Path, df) -> tuple[dict[str, str], Optional[str], Optional[str]]:
    """(metric -> version, composite version, provider) from run.json, else from the scores."""
    from mer_eval.schema import load_manifest

    metric_versions: dict[str, str] = {}
    composite_version = provider = None
    rj = Path(run_dir) / "run.json"
    if rj.is_file():
        man = load_manifest(rj)
        provider = man.provider
        if man.score is not None:
            metric_versions = dict(man.score.metric_versions)
            composite_version = man.score.composite_version
    if "metric_version" in df.columns:
        for m, g in df.groupby("metric"):
            vs = sorted({str(v) for v in g["metric_version"].dropna()})
            if m == "composite_score":
                if composite_version is None and vs:
                    composite_version = vs[0]
            elif m not in metric_versions and vs:
                metric_versions[str(m)] = vs[0] if len(vs) == 1 else "|".join(vs)
    return metric_versions, composite_version, provider


def bless(run_dir: Path) -> dict[str, Any]:
    import numpy as np

    from mer_eval.gates import metric_directions, read_scores

    run_dir = Path(run_dir)
    df = read_scores(run_dir)
    versions, composite_version, provider = _versions(run_dir, df)
    directions = metric_directions(df)
    metrics: dict[str, Any] = {}
    samples: dict[str, dict[str, float]] = {}
    for m in directions:
        g = df[(df["metric"] == m) & (df["status"] == "ok")]
        vals = {str(s): float(v) for s, v in zip(g["sample_id"], g["value"]) if v is not None and math.isfinite(v)}
        arr = np.array(list(vals.values()), dtype=float)
        counts = df[df["metric"] == m]["status"].value_counts().to_dict()
        metrics[m] = {
            "mean": float(arr.mean()) if arr.size else None,
            "std": float(arr.std(ddof=1)) if arr.size > 1 else None,
            "n": int(arr.size),
            "higher_is_better": directions[m],
            "counts_by_status": {str(k): int(v) for k, v in counts.items()},
        }
        samples[m] = vals
    return {
        "kind": BASELINE_KIND,
        "format": BASELINE_FORMAT,
        "tool_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(),
        "run": str(run_dir.resolve()),
        "provider": provider,
        "n_samples": int(df["sample_id"].nunique()),
        "metric_versions": versions,
        "composite_version": composite_version,
        "metrics": metrics,
        "samples": samples,
    }


def write_baseline(run_dir: Path, out: Path) -> dict[str, Any]:
    from mer_eval.store import atomic_write_json

    b = bless(run_dir)
    atomic_write_json(Path(out), b)
    return b


def load_baseline(path: Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise BaselineError(f"baseline {p} does not exist (make one with `mer-eval bless RUN -o {p}`)")
    try:
        b = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BaselineError(f"baseline {p} is not JSON: {e}") from None
    if not isinstance(b, dict) or b.get("kind") != BASELINE_KIND:
        raise BaselineError(f"{p} is not a mer-eval baseline (kind != {BASELINE_KIND!r})")
    if b.get("format") != BASELINE_FORMAT:
        raise BaselineError(f"{p}: baseline format {b.get('format')!r}, this mer-eval reads {BASELINE_FORMAT}")
    return b


@dataclass
class MetricCheck:
    metric: str
    higher_is_better: bool
    tolerance: float
    baseline_mean: Optional[float]  # over all ok samples of the baseline
    run_mean: Optional[float]  # over all ok samples of the run
    n_paired: int
    paired_baseline_mean: Optional[float] = None
    paired_run_mean: Optional[float] = None
    diff: Optional[float] = None  # paired: run - baseline
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None
    wrong_way: bool = False
    beyond_tolerance: bool = False
    beyond_noise: bool = False
    regressed: bool = False
    message: str = ""
    worst_samples: list[dict[str, Any]] = field(default_factory=list)  # most regressed samples
    lost_samples: dict[str, str] = field(default_factory=dict)  # ok in the baseline, error now


@dataclass
class RegressResult:
    run: str
    baseline: str
    exit_code: int
    checks: list[MetricCheck]
    mismatches: list[str]
    notes: list[str]

    @property
    def regressed(self) -> list[MetricCheck]:
        return [c for c in self.checks if c.regressed]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fmt(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def regress(run_dir: Path, baseline: dict[str, Any], tolerances: Optional[dict[str, float]] = None,
            baseline_path: str = "", n_boot: int = 2000, seed: int = 0, top: int = 5) -> RegressResult:
    import numpy as np

    from mer_eval.gates import metric_directions, read_scores
    from mer_eval.reports.compare import bootstrap_mean_ci

    run_dir = Path(run_dir)
    tolerances = dict(tolerances or {})
    df = read_scores(run_dir)
    versions, composite_version, _ = _versions(run_dir, df)
    mismatches: list[str] = []
    notes: list[str] = []
    bver = baseline.get("metric_versions") or {}
    for m, bv in sorted(bver.items()):
        if m in ("composite_score", "composite_lenient"):
            continue  # the composite version is checked below
        rv = versions.get(m)
        if rv is None:
            mismatches.append(f"{m}: in the baseline (version {bv}) but not scored in the run")
        elif rv != bv:
            mismatches.append(f"{m}: metric version {rv} in the run, {bv} in the baseline")
    bcv = baseline.get("composite_version")
    if bcv != composite_version and "composite_score" in baseline.get("metrics", {}):
        mismatches.append(f"composite version {composite_version} in the run, {bcv} in the baseline")
    directions = metric_directions(df)
    for m in baseline.get("metrics", {}):
        if m not in directions and not any(x.startswith(f"{m}:") for x in mismatches):
            mismatches.append(f"{m}: in the baseline but absent from the run's scores")
    for m in directions:
        if m not in baseline.get("metrics", {}):
            notes.append(f"{m}: scored in the run but not in the baseline; not checked")
    for m in baseline.get("metrics", {}):  # a model missing here cannot be compared, it did not regress
        base_ids = set((baseline.get("samples", {}).get(m) or {}))
        un = df[(df["metric"] == m) & (df["status"] == "unavailable") & df["sample_id"].isin(base_ids)]
        if len(un):
            mismatches.append(f"{m}: unavailable in the run for {len(un)} sample(s) scored ok in the baseline "
                              f"({un['reason'].iloc[0]})")
    if mismatches:
        return RegressResult(str(run_dir), baseline_path, EXIT_MISMATCH, [], mismatches,
                             notes + ["scores made with other metric or composite versions are not comparable: "
                                      "re-bless the baseline with the new versions or score with the old ones"])
    checks = []
    for m, bm in baseline["metrics"].items():
        hib = bool(bm.get("higher_is_better", True))
        tol = float(tolerances.get(m, 0.0))
        g = df[(df["metric"] == m) & (df["status"] == "ok")]
        cur = {str(s): float(v) for s, v in zip(g["sample_id"], g["value"]) if v is not None and math.isfinite(v)}
        base = {str(k): float(v) for k, v in (baseline.get("samples", {}).get(m) or {}).items()}
        common = sorted(set(cur) & set(base))
        c = MetricCheck(m, hib, tol, bm.get("mean"), float(np.mean(list(cur.values()))) if cur else None,
                        len(common))
        failed = df[(df["metric"] == m) & (df["status"] == "error")]
        c.lost_samples = {str(sid): f"{st}: {why}" for sid, st, why in
                          zip(failed["sample_id"], failed["status"], failed["reason"]) if str(sid) in base}
        lost_msg = ""
        if c.lost_samples:
            c.regressed = True
            first = next(iter(c.lost_samples.items()))
            lost_msg = (f": REGRESSED ({len(c.lost_samples)} sample(s) scored ok in the baseline are "
                        f"error in the run, e.g. {first[0]}: {first[1]})")
        if not common:
            c.message = f"{m}: no sample scored ok in both the run and the baseline: not checked" + lost_msg
            if not c.lost_samples:
                notes.append(c.message)
            checks.append(c)
            continue
        b = np.array([base[k] for k in common])
        r = np.array([cur[k] for k in common])
        d = r - b
        c.paired_baseline_mean, c.paired_run_mean = float(b.mean()), float(r.mean())
        c.diff = float(d.mean())
        c.ci_low, c.ci_high = bootstrap_mean_ci(d, n_boot, seed)
        bad = -d if hib else d  # > 0: worse
        c.wrong_way = bool(c.diff < 0) if hib else bool(c.diff > 0)
        c.beyond_tolerance = abs(c.diff) > tol
        c.beyond_noise = bool(c.ci_high < 0) if hib else bool(c.ci_low > 0)
        c.regressed = (c.wrong_way and c.beyond_tolerance and c.beyond_noise) or bool(c.lost_samples)
        order = np.argsort(-bad)
        c.worst_samples = [{"sample_id": common[i], "baseline": float(b[i]), "run": float(r[i]),
                            "diff": float(d[i])} for i in order[:top] if bad[i] > 0]
        direction = "higher is better" if hib else "lower is better"
        c.message = (f"{m} ({direction}): mean {_fmt(c.paired_baseline_mean)} -> {_fmt(c.paired_run_mean)} on "
                     f"{len(common)} paired samples, diff {_fmt(c.diff)} (95% CI {_fmt(c.ci_low)} .. "
                     f"{_fmt(c.ci_high)}), tolerance {_fmt(tol)}")
        if c.wrong_way and c.beyond_tolerance and c.beyond_noise:
            c.message += ": REGRESSED (wrong way, beyond tolerance and beyond bootstrap noise)"
        elif c.wrong_way and c.beyond_tolerance:
            c.message += ": worse beyond tolerance but within bootstrap noise (CI includes 0)"
        elif c.wrong_way:
            c.message += ": worse, within tolerance"
        else:
            c.message += ": ok"
        c.message += lost_msg
        checks.append(c)
    code = EXIT_REGRESSED if any(c.regressed for c in checks) else EXIT_OK
    return RegressResult(str(run_dir), baseline_path, code, checks, [], notes)


# ---- reports ----------------------------------------------------------------------------------------

def to_text(res: RegressResult) -> str:
    lines = []
    if res.mismatches:
        lines.append("NOT COMPARABLE (exit 2):")
        lines += [f"  {m}" for m in res.mismatches]
    for c in res.checks:
        lines.append(c.message)
        if c.regressed and c.worst_samples:
            lines.append("  most regressed samples: " + ", ".join(
                f"{w['sample_id']} ({_fmt(w['baseline'])} -> {_fmt(w['run'])})" for w in c.worst_samples))
    lines += [f"note: {n}" for n in res.notes]
    verdict = {EXIT_OK: "PASS", EXIT_REGRESSED: "REGRESSION", EXIT_MISMATCH: "NOT COMPARABLE"}[res.exit_code]
    lines.append(f"{verdict}: {len(res.regressed)} of {len(res.checks)} metrics regressed (exit {res.exit_code})")
    return "\n".join(lines)


def to_junit(res: RegressResult) -> str:
    from mer_eval.reports.junit import regress_junit

    return regress_junit(res)


def to_markdown(res: RegressResult) -> str:
    from mer_eval.reports.markdown import regress_markdown

    return regress_markdown(res)
