"""``mer-eval compare RUN_A RUN_B [...]``: paired comparison of scored runs on their common samples.

Per metric and run: mean of the ``ok`` values with a bootstrap 95% CI, and beside it how many common
samples *abstained* on the metric (an empty summary, no concluded emotion: the annotation did not answer).
Per metric and run after the first: the paired difference to the first run (bootstrap 95% CI over the
samples both scored ok), Wilcoxon signed-rank p-value, and the win / tie / loss counts (direction from
``higher_is_better``). Win / tie / loss counts abstentions too: a sample ok in one run and abstained in the
other is a loss for the run that abstained (a win for it when the first run abstained and it answered),
abstained in both a tie, so not answering never scores better than answering wrong. A failed check (status
``error``) counts the same way: it is never a sample left out, where a run whose outputs crash the checks
would lose nothing by it. Runs are ranked by
their composite mean on the common samples; a run with no composite measured there gets no rank
(``rank`` None, with the reason).

Only values that count as evidence are compared: self-checks (``dependence`` set in scores.parquet) are left
out and listed. Before any number, every run is checked against the first for comparability: per metric
its fingerprint (version, params hash, model id / sha256 / revision, code hash; see
:func:`check_comparability`). A difference refuses the comparison ("NOT COMPARABLE", exit 2) unless
``--allow-mismatch`` allows it, and an allowed difference is written into every output.
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
    """Percentile bootstrap CI of the mean (resampling samples with replacement); (None, None) for fewer than two
    values: resampling one value gives the zero-width interval [v, v], a certainty nobody measured."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    if v.size < 2:
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
    win_rate: Optional[float] = None  # wins / n_wtl
    # common samples that abstained on this metric in this run (not in n or the mean: they have no value)
    n_abstained: int = 0
    # samples counted in win / tie / loss: ok in both, or abstained in one or both and ok in the other
    n_wtl: Optional[int] = None
    # the part of wins / ties / losses that comes from abstentions (this run answered where the first
    # abstained / both abstained / this run abstained where the first answered)
    abstain_wins: Optional[int] = None
    abstain_ties: Optional[int] = None
    abstain_losses: Optional[int] = None
    # common samples whose check of this metric failed in this run (status error: not in n or the mean), and
    # the part of wins / ties / losses that comes from them, as for abstentions: a check that failed in this run
    # where the first run's worked is a loss, one that worked where the first run's failed a win, failed or
    # unanswered in both a tie
    n_error: int = 0
    error_wins: Optional[int] = None
    error_ties: Optional[int] = None
    error_losses: Optional[int] = None


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
    # [{rank, run, composite_mean, ci_low, ci_high, n, reason}]: rank None (and a reason) for a run with no
    # composite measured on the common samples
    ranking: list[dict[str, Any]]
    n_boot: int
    seed: int
    notes: list[str] = field(default_factory=list)
    # comparability against the first run (fingerprints): refused differences make the comparison empty
    # (the command exits 2); allowed ones (--allow-mismatch) are listed in every output
    mismatches: list[str] = field(default_factory=list)
    allowed_mismatches: list[str] = field(default_factory=list)
    left_out: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # metric -> run -> {n, reasons}

    @property
    def comparable(self) -> bool:
        return not self.mismatches

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
    g = g[counted_mask(g)]
    return {str(s): float(v) for s, v in zip(g["sample_id"], g["value"]) if v is not None and math.isfinite(v)}


ABSTAINED = "abstained"
ERROR = "error"
NO_COMPOSITE = f"no {COMPOSITE} measured on the common samples"


def _ids_with_status(df, metric: str, ids: set[str], status: str = ABSTAINED) -> set[str]:
    """Samples of ``ids`` whose ``metric`` abstained (the annotation did not answer what the metric checks), or
    has another ``status`` (``error``: the check failed)."""
    g = df[(df["metric"] == metric) & (df["status"] == status) & (df["sample_id"].isin(ids))]
    return {str(s) for s in g["sample_id"]}


def compare_runs(run_dirs: list[Path], n_boot: int = N_BOOT, seed: int = SEED,
                 allow: Optional[AllowList] = None) -> Comparison:
    """Compare runs with the first. Runs whose metrics were computed differently (fingerprints: version,
    params, model, code) are not compared: ``mismatches`` says what differs and ``metrics`` stays empty,
    unless ``allow`` allows the differences, which then stand in ``allowed_mismatches``."""
    import numpy as np

    from mer_eval.gates import metric_directions, read_scores

    if len(run_dirs) < 2:
        raise ValueError("compare needs at least two runs")
    allow = allow or AllowList()
    paths = [Path(p) for p in run_dirs]
    labels = _labels(paths)
    frames = [read_scores(p) for p in paths]
    id_sets = [set(df["sample_id"]) for df in frames]
    common = set.intersection(*id_sets)
    notes = []
    refused, allowed, used = [], [], set()
    idents = [run_identity(p, df) for p, df in zip(paths, frames)]
    ref_metrics = list(dict.fromkeys(frames[0]["metric"].astype(str)))
    for i in range(1, len(paths)):
        shared = [m for m in ref_metrics if m in set(frames[i]["metric"].astype(str))]
        cmp_ = check_comparability(idents[0], idents[i], shared, allow, labels[0], labels[i], labels[0], labels[i])
        pre = f"{labels[i]} vs {labels[0]}: " if len(paths) > 2 else ""
        refused += [pre + t for t in cmp_.refused]
        allowed += [pre + t for t in cmp_.allowed]
        notes += [pre + t for t in cmp_.notes]
        used |= cmp_.used_keys
    notes += unused_allow_keys(allow, used)
    dropped = {lab: len(ids - common) for lab, ids in zip(labels, id_sets)}
    n_samples = {lab: len(ids) for lab, ids in zip(labels, id_sets)}
    if refused:
        notes.append("runs scored with other metric versions, parameters, models or code are not comparable: "
                     "score them alike, or name what may differ with --allow-mismatch METRIC[.FIELD] / all")
        return Comparison(labels, [str(p) for p in paths], len(common), dropped, n_samples, [], [], n_boot, seed,
                          notes, refused, allowed)
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
    left_out: dict[str, dict[str, dict[str, Any]]] = {}
    for m in order:
        hib = directions[m]
        series = [_ok_series(df, m, common) for df in frames]
        abstained = [_ids_with_status(df, m, common) - set(s) for df, s in zip(frames, series)]
        failed = [_ids_with_status(df, m, common, ERROR) - set(s) for df, s in zip(frames, series)]
        for lab, df in zip(labels, frames):
            lo = left_out_of(df, m, common)
            if lo["n"]:
                left_out.setdefault(m, {})[lab] = {"n": lo["n"], "reasons": lo["reasons"]}
        base, base_abst, base_err = series[0], abstained[0], failed[0]
        stats_ = []
        for i, (lab, s, abst, err) in enumerate(zip(labels, series, abstained, failed)):
            vals = np.array(list(s.values()), dtype=float)
            lo, hi = bootstrap_mean_ci(vals, n_boot, seed)
            st = RunStat(lab, int(vals.size), float(vals.mean()) if vals.size else None, lo, hi,
                         n_abstained=len(abst), n_error=len(err))
            if i > 0:
                both = sorted(set(base) & set(s))
                d = np.array([s[k] - base[k] for k in both], dtype=float)
                st.n_paired = int(d.size)
                wins = losses = 0
                if d.size:
                    st.diff = float(d.mean())
                    st.diff_ci_low, st.diff_ci_high = bootstrap_mean_ci(d, n_boot, seed)
                    st.p_wilcoxon, st.p_note = wilcoxon_p(d)
                    better = d > 0 if hib else d < 0
                    worse = d < 0 if hib else d > 0
                    wins, losses = int(better.sum()), int(worse.sum())
                else:
                    st.p_note = "no sample scored ok in both runs"
                # not answering is never better than answering wrong: abstained where the first run
                # answered is a loss, answered where it abstained a win, abstained in both a tie
                st.abstain_losses = len(abst & set(base))
                st.abstain_wins = len(base_abst & set(s))
                st.abstain_ties = len(abst & base_abst)
                # fail closed: a check that failed is no better than not answering
                st.error_losses = len(err & set(base))
                st.error_wins = len(base_err & set(s))
                st.error_ties = len((err & (base_abst | base_err)) | (abst & base_err))
                st.n_wtl = (int(d.size) + st.abstain_losses + st.abstain_wins + st.abstain_ties + st.error_losses
                            + st.error_wins + st.error_ties)
                if st.n_wtl:
                    st.wins = wins + st.abstain_wins + st.error_wins
                    st.losses = losses + st.abstain_losses + st.error_losses
                    st.ties = st.n_wtl - st.wins - st.losses
                    st.win_rate = st.wins / st.n_wtl
            stats_.append(st)
        metrics.append(MetricComparison(m, hib, stats_))
    comp = next((mc for mc in metrics if mc.metric == COMPOSITE), None)
    ranking = []
    if comp is None:
        notes.append("no composite_score in the runs: no ranking")
    else:
        # only a measured mean earns a rank; a run without one is listed, unranked, with the reason
        ranked = sorted((r for r in comp.runs if r.mean is not None), key=lambda r: -r.mean)
        for i, r in enumerate(ranked):
            ranking.append({"rank": i + 1, "run": r.run, "composite_mean": r.mean, "ci_low": r.ci_low,
                            "ci_high": r.ci_high, "n": r.n, "reason": None})
        for r in comp.runs:
            if r.mean is None:
                ranking.append({"rank": None, "run": r.run, "composite_mean": None, "ci_low": None,
                                "ci_high": None, "n": r.n, "reason": NO_COMPOSITE})
        unranked = [r["run"] for r in ranking if r["rank"] is None]
        if unranked:
            notes.append(f"not ranked ({NO_COMPOSITE}): " + ", ".join(unranked))
        errs = {r.run: r.n_error for r in comp.runs if r.n_error}
        if errs:
            notes.append(f"{COMPOSITE} failed (error: a check it needs failed) on " + ", ".join(
                f"{k} {v}" for k, v in errs.items()) + f" of the {len(common)} common samples: in no mean, and "
                "each a loss in win / tie / loss against a run whose check worked")
        ns = {r["run"]: r["n"] for r in ranking if r["rank"] is not None}
        if len(set(ns.values())) > 1:  # each mean is over the samples that run's composite scored
            notes.append("ranked on composites measured on different numbers of the common samples ("
                         + ", ".join(f"{k} {v}" for k, v in ns.items()) + f" of {len(common)}): a sample with no "
                         "composite is in no mean; the composite's left-out reasons say why")
    return Comparison(labels, [str(p) for p in paths], len(common), dropped, n_samples, metrics, ranking, n_boot,
                      seed, notes, [], allowed, left_out)


# ---- comparability ----------------------------------------------------------------------------------
#
# Two values of a metric are comparable only when they were computed the same way: the same metric
# version, parameters, model (id, file sha256, revision) and code (``score.fingerprints`` in run.json,
# written by :func:`mer_eval.scoring.fingerprints`). ``compare`` checks every run against the first,
# ``regress`` the run against the baseline. A difference refuses (exit 2, "NOT COMPARABLE") unless
# ``--allow-mismatch KEY`` allows it; an allowed difference is recorded in every output.

FP_FIELDS = ("metric_version", "params_hash", "model_id", "model_sha256", "model_revision", "code_hash")
COMPOSITES = ("composite_score", "composite_lenient")  # the second only in runs scored before it was retired
# None on one side of these means "not known" (a model loaded without hashing, an older mer-eval),
# not "different": said in a note, not refused. model_id None is a value (the metric uses no model).
_MAYBE_UNKNOWN = ("params_hash", "model_sha256", "model_revision", "code_hash")


class AllowError(ValueError):
    """A malformed ``--allow-mismatch`` key."""


@dataclass
class AllowList:
    """``--allow-mismatch`` keys: ``all``; a metric (or metric family) name: any difference of it;
    ``METRIC.FIELD`` (or ``FAMILY.FIELD``): that fingerprint field only."""

    keys: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, keys) -> "AllowList":
        out = []
        for k in keys or ():
            k = str(k).strip()
            if not k:
                raise AllowError("--allow-mismatch: empty key")
            if "." in k:
                name, _, fld = k.rpartition(".")
                if fld not in FP_FIELDS or not name:
                    raise AllowError(f"--allow-mismatch {k!r}: expected METRIC, METRIC.FIELD or all, FIELD one of "
                                     f"{', '.join(FP_FIELDS)}")
            out.append(k)
        return cls(list(dict.fromkeys(out)))

    def match(self, metric: str, family: Optional[str], fld: Optional[str]) -> Optional[str]:
        """The key that allows ``fld`` of ``metric`` to differ (``fld`` None: the whole metric), or None."""
        names = [metric] + ([family] if family and family != metric else [])
        for k in self.keys:
            if k == "all" or k in names:
                return k
            if fld is not None and any(k == f"{n}.{fld}" for n in names):
                return k
        return None


def counted_mask(df):
    """Rows whose value counts as evidence: the ``independent`` / ``dependence`` columns of scores.parquet
    (:func:`mer_eval.evidence.counts` decided them when scoring); files without them: every row counts."""
    import pandas as pd

    left = pd.Series(False, index=df.index)
    if "dependence" in df.columns:
        left |= df["dependence"].notna()
    if "independent" in df.columns:
        left |= df["independent"].astype(object).map(lambda v: (not pd.isna(v)) and not bool(v)).astype(bool)
    return ~left


def left_out_of(df, metric: str, ids: Optional[set] = None) -> dict[str, Any]:
    """{n, reasons: {why: count}, samples} of ``metric``'s ok values that are no evidence (self-checks)."""
    g = df[(df["metric"] == metric) & (df["status"] == "ok")]
    if ids is not None:
        g = g[g["sample_id"].isin(ids)]
    g = g[~counted_mask(g)]
    import pandas as pd

    reasons: dict[str, int] = {}
    for why in (g["dependence"] if "dependence" in g.columns else [None] * len(g)):
        w = "marked not independent" if pd.isna(why) else str(why)
        reasons[w] = reasons.get(w, 0) + 1
    return {"n": int(len(g)), "reasons": reasons, "samples": sorted(str(s) for s in g["sample_id"])}


def left_out_text(metric: str, lo: dict[str, Any], where: str = "") -> str:
    why = "; ".join(f"{n} x {r}" for r, n in sorted(lo["reasons"].items(), key=lambda x: -x[1]))
    return f"{metric}: {lo['n']} ok value(s){where} left out, not evidence ({why})"


def run_identity(run_dir: Path, df) -> dict[str, Any]:
    """What :func:`check_comparability` compares, from RUN/run.json and the score table: per metric its
    version, fingerprint (None when run.json has none: an older mer-eval), model identity and family."""
    from mer_eval.schema import load_manifest

    versions: dict[str, str] = {}
    fps: dict[str, dict[str, Any]] = {}
    composite_version = provider = None
    rj = Path(run_dir) / "run.json"
    if rj.is_file():
        man = load_manifest(rj)
        provider = man.provider
        if man.score is not None:
            versions = dict(man.score.metric_versions)
            composite_version = man.score.composite_version
            fps = {m: fp.model_dump() for m, fp in man.score.fingerprints.items()}
    if "metric_version" in df.columns:
        for m, g in df.groupby("metric"):
            vs = sorted({str(v) for v in g["metric_version"].dropna()})
            if m == "composite_score" and composite_version is None and vs:
                composite_version = vs[0]
            if str(m) not in versions and vs:
                versions[str(m)] = vs[0] if len(vs) == 1 else "|".join(vs)
    for c in COMPOSITES:
        if composite_version is not None and c in set(df["metric"]):
            versions.setdefault(c, composite_version)
    models: dict[str, Optional[dict[str, Any]]] = {}
    families: dict[str, str] = {}
    for m, g in df.groupby("metric", sort=False):
        m = str(m)
        if "family" in g.columns:
            fam = g["family"].dropna()
            if len(fam):
                families[m] = str(fam.iloc[0])
        fp = fps.get(m)
        if fp is not None:
            models[m] = {"id": fp.get("model_id"), "sha256": fp.get("model_sha256"),
                         "revision": fp.get("model_revision")}
            continue
        ids = sorted({str(v) for v in g["model"].dropna()}) if "model" in g.columns else []
        shas = sorted({str(v) for v in g["model_sha256"].dropna()}) if "model_sha256" in g.columns else []
        models[m] = ({"id": "|".join(ids), "sha256": "|".join(shas) or None, "revision": None} if ids else None)
    return {"metric_versions": versions, "composite_version": composite_version, "provider": provider,
            "fingerprints": fps, "models": models, "families": families,
            "composite_inputs": lambda: composite_inputs(run_dir, df), "params": lambda: metric_params(run_dir, df)}


def _evaluations(run_dir: Path, df):
    """The parsed ``RUN/<id>/mer_eval_scores.json`` of the samples in the score table (those that have one)."""
    import json

    from mer_eval.store import RunStore, evaluation_path

    store = RunStore(Path(run_dir))
    for sid in dict.fromkeys(df["sample_id"].astype(str)):
        p = evaluation_path(store.sample_dir(sid))  # mer_eval_scores.json, or an old run's evaluation.json
        if p is not None:
            yield json.loads(p.read_text(encoding="utf-8"))


def composite_inputs(run_dir: Path, df) -> dict[str, list[str]]:
    """The metrics each composite weighs (what its evaluation.json files name as counted or missing)."""
    out: dict[str, set[str]] = {c: set() for c in COMPOSITES}
    for ev in _evaluations(run_dir, df):
        for c, key in (("composite_score", "composite"), ("composite_lenient", "composite_lenient")):
            cr = ev.get(key) or {}
            out[c] |= set(cr.get("counted") or {}) | set(cr.get("missing") or {}) | set(cr.get("weights") or {})
    return {c: sorted(v) for c, v in out.items() if v}


def metric_params(run_dir: Path, df) -> dict[str, dict[str, Any]]:
    """Per metric the parameters it was computed with (``params`` of its results in evaluation.json): what a
    ``params_hash`` difference is a difference of."""
    want = set(df["metric"].astype(str)) - set(COMPOSITES)
    out: dict[str, dict[str, Any]] = {}
    for ev in _evaluations(run_dir, df):
        for r in ev.get("results") or []:
            m = r.get("metric")
            if m in want and m not in out and isinstance(r.get("params"), dict):
                out[m] = r["params"]
        if want <= set(out):
            break
    return out


def params_diff(a: Optional[dict[str, Any]], b: Optional[dict[str, Any]], limit: int = 6) -> str:
    """``key a != b`` for the parameters that differ; "" when either side is unknown."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return ""
    keys = sorted(k for k in set(a) | set(b) if a.get(k, "<unset>") != b.get(k, "<unset>"))
    parts = [f"{k} {a.get(k, '<unset>')!r} != {b.get(k, '<unset>')!r}" for k in keys[:limit]]
    return ", ".join(parts) + (", ..." if len(keys) > limit else "")


@dataclass
class Comparability:
    refused: list[str] = field(default_factory=list)  # differences that make the runs not comparable
    allowed: list[str] = field(default_factory=list)  # differences --allow-mismatch let through
    notes: list[str] = field(default_factory=list)  # what could not be checked (unknown fingerprints)
    by_metric: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # metric -> refused/allowed texts
    used_keys: set = field(default_factory=set)


def _fp_fields(ident: dict[str, Any], m: str) -> Optional[dict[str, Any]]:
    fp = (ident.get("fingerprints") or {}).get(m)
    return dict(fp) if fp else None


def check_comparability(ref: dict[str, Any], other: dict[str, Any], metrics, allow: AllowList,
                        ref_name: str = "baseline", other_name: str = "run",
                        ref_in: str = "the baseline", other_in: str = "the run") -> Comparability:
    """Compare two identities (:func:`run_identity`, or a baseline's) on ``metrics``: version, params hash,
    model id / sha256 / revision, code hash. A missing fingerprint is unknown: the versions (and the model
    ids the score tables name) are still compared, and a note says what was not."""
    res = Comparability()
    families = {**(ref.get("families") or {}), **(other.get("families") or {})}
    unknown_fp: dict[str, list[str]] = {ref_name: [], other_name: []}
    unknown_field: list[str] = []
    diffs_of: dict[str, list[str]] = {}  # metric -> differing fields (for the composites' inputs)
    allowed_fields: dict[str, set[str]] = {}
    params_cache: dict[int, dict[str, Any]] = {}

    def params_of(ident: dict[str, Any], m: str) -> Optional[dict[str, Any]]:
        if id(ident) not in params_cache:
            p = ident.get("params")
            params_cache[id(ident)] = (p() if callable(p) else p) or {}
        return params_cache[id(ident)].get(m)

    def record(m: str, parts: list[tuple[str, str]]) -> None:
        refused, allowed = [], []
        for fld, text in parts:
            key = allow.match(m, families.get(m), fld)
            if key is None:
                refused.append(text)
            else:
                res.used_keys.add(key)
                allowed_fields.setdefault(m, set()).add(fld)
                allowed.append((text, key))
        entry = res.by_metric.setdefault(m, {"refused": [], "allowed": []})
        if refused:
            t = f"{m}: " + "; ".join(refused)
            res.refused.append(t)
            entry["refused"].append(t)
        if allowed:
            keys = ", ".join(dict.fromkeys(k for _, k in allowed))
            t = f"{m}: " + "; ".join(x for x, _ in allowed) + f" [allowed by --allow-mismatch {keys}]"
            res.allowed.append(t)
            entry["allowed"].append(t)

    for m in metrics:
        parts: list[tuple[str, str]] = []
        rv, ov = (ref.get("metric_versions") or {}).get(m), (other.get("metric_versions") or {}).get(m)
        rf, of = _fp_fields(ref, m), _fp_fields(other, m)
        if rf is not None and of is not None and (rv is None or ov is None or rv == ov):
            rv, ov = rf.get("metric_version"), of.get("metric_version")  # the table agrees; the fingerprints?
        if rv is not None and ov is not None and rv != ov:
            what = "composite version" if m in COMPOSITES else "metric version"
            parts.append(("metric_version", f"{what} {ov} in {other_in}, {rv} in {ref_in}"))
        suffix = f" ({ref_name} != {other_name})"
        if rf is not None and of is not None:
            for fld in FP_FIELDS[1:]:
                a, b = rf.get(fld), of.get(fld)
                if a == b:
                    continue
                if fld in _MAYBE_UNKNOWN and (a is None or b is None):
                    unknown_field.append(f"{m}.{fld} ({ref_name if a is None else other_name})")
                    continue
                why = params_diff(params_of(ref, m), params_of(other, m)) if fld == "params_hash" else ""
                parts.append((fld, f"{fld} {a!r} != {b!r}{suffix}" + (f": {why}" if why else "")))
        else:
            for side, fp in ((ref_name, rf), (other_name, of)):
                if fp is None:
                    unknown_fp[side].append(m)
            ra, rb = (ref.get("models") or {}).get(m), (other.get("models") or {}).get(m)
            if ra and rb:  # model ids the score tables name, where both sides name one
                for fld, k in (("model_id", "id"), ("model_sha256", "sha256"), ("model_revision", "revision")):
                    a, b = ra.get(k), rb.get(k)
                    if a is not None and b is not None and a != b:
                        parts.append((fld, f"{fld} {a!r} != {b!r}{suffix}"))
        if parts:
            diffs_of[m] = [f for f, _ in parts]
            record(m, parts)

    # a composite weighs its inputs: a difference in one is a difference in the composite, recorded there too
    inputs_changed = [m for m in diffs_of if m not in COMPOSITES]
    comps = [c for c in COMPOSITES if c in set(metrics)]
    if inputs_changed and comps:
        weighs: dict[str, set[str]] = {c: set() for c in comps}
        for ident in (ref, other):
            ci = ident.get("composite_inputs")
            ci = ci() if callable(ci) else (ci or {})
            for c in comps:
                weighs[c] |= set(ci.get(c) or [])
        for c in comps:
            hit = sorted(set(inputs_changed) & weighs[c])
            if not hit:
                continue
            for i in hit:
                fields = diffs_of[i]
                text = f"weighs {i}, whose {', '.join(fields)} differ{'s' if len(fields) == 1 else ''}"
                if set(fields) <= allowed_fields.get(i, set()):
                    # allowed with its input: recorded on the composite as well, under the input's key
                    key = allow.match(i, families.get(i), fields[0]) or "?"
                    t = f"{c}: {text} [allowed by --allow-mismatch {key}]"
                    res.allowed.append(t)
                    res.by_metric.setdefault(c, {"refused": [], "allowed": []})["allowed"].append(t)
                else:
                    record(c, [("inputs", text)])

    for side, ms in unknown_fp.items():
        if ms:
            res.notes.append(
                f"fingerprints unknown in {side} for {len(ms)} metric(s) ({', '.join(ms[:8])}"
                f"{', ...' if len(ms) > 8 else ''}; written before fingerprints existed): compared metric versions "
                "and the model ids of the scores only; params, model files and code were not checked")
    if unknown_field:
        res.notes.append("not checked, unknown on one side: " + ", ".join(unknown_field))
    return res


def unused_allow_keys(allow: AllowList, used: set) -> list[str]:
    return [f"--allow-mismatch {k} matched no difference" for k in allow.keys if k not in used]


# ---- output -----------------------------------------------------------------------------------------

def _f(x: Optional[float], nd: int = 4) -> str:
    if x is None:
        return "–"
    return f"{x:.{nd}g}"


def _ci(lo: Optional[float], hi: Optional[float]) -> str:
    return "–" if lo is None else f"[{_f(lo)}, {_f(hi)}]"


CSV_FIELDS = ["metric", "higher_is_better", "run", "n", "n_abstained", "mean", "ci_low", "ci_high", "n_paired",
              "diff", "diff_ci_low", "diff_ci_high", "p_wilcoxon", "p_note", "n_wtl", "wins", "ties", "losses",
              "win_rate", "abstain_wins", "abstain_ties", "abstain_losses", "n_error", "error_wins", "error_ties",
              "error_losses", "allowed_mismatch", "left_out"]


def _allowed_for(c: Comparison, metric: str) -> str:
    """The allowed mismatches naming ``metric`` (a CSV cell: nobody can drop them by keeping one file)."""
    hits = [t for t in c.allowed_mismatches if t.startswith(f"{metric}:") or f": {metric}:" in t]
    return " | ".join(hits)


def to_csv(c: Comparison) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for mc in c.metrics:
        for r in mc.runs:
            row = {k: v for k, v in asdict(r).items() if k in CSV_FIELDS}
            lo = c.left_out.get(mc.metric, {}).get(r.run)
            row.update(metric=mc.metric, higher_is_better=mc.higher_is_better,
                       allowed_mismatch=_allowed_for(c, mc.metric) or None,
                       left_out=left_out_text(mc.metric, lo) if lo else None)
            w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_FIELDS})
    return buf.getvalue()


def comparability_lines(c: Comparison) -> list[str]:
    lines = []
    if c.mismatches:
        lines.append(f"NOT COMPARABLE (exit 2): {len(c.mismatches)} metric(s) computed differently than in "
                     f"{c.runs[0]}:")
        lines += [f"  {t}" for t in c.mismatches]
    if c.allowed_mismatches:
        lines.append(f"ALLOWED MISMATCH (--allow-mismatch): {len(c.allowed_mismatches)} difference(s) compared "
                     "anyway; these numbers were computed differently:")
        lines += [f"  {t}" for t in c.allowed_mismatches]
    for m, per in c.left_out.items():
        for lab, lo in per.items():
            lines.append("left out: " + left_out_text(m, lo, f" in {lab}"))
    return lines


ABSTAIN_RULE = ("abstentions and failed checks count in win / tie / loss (not in n, means, Δ or p): a sample ok "
                "in one run and abstained or error in the other is a loss for the run that abstained or failed, "
                "neither ok in both a tie; 'abstained' = common samples that abstained on the metric")


def _wtl(r: RunStat, sep: str) -> str:
    if r.wins is None:
        return ""
    out = sep.join(str(x) for x in (r.wins, r.ties, r.losses))
    notes = []
    for what, counts in (("abstentions", (r.abstain_wins, r.abstain_ties, r.abstain_losses)),
                         ("errors", (r.error_wins, r.error_ties, r.error_losses))):
        parts = [f"{n} {w}" for n, w in zip(counts, ("won", "tied", "lost")) if n]
        if parts:
            notes.append(f"{what}: {', '.join(parts)}")
    return out + (f" ({'; '.join(notes)})" if notes else "")


def _rank(r: dict[str, Any]) -> str:
    return "–" if r["rank"] is None else str(r["rank"])


def header_lines(c: Comparison) -> list[str]:
    lines = comparability_lines(c)
    lines += [f"{c.n_common} common samples; dropped (not in every run): "
              + ", ".join(f"{k} {v} of {c.n_samples[k]}" for k, v in c.dropped.items()),
              f"bootstrap: {c.n_boot} resamples, seed {c.seed}; differences are run − {c.runs[0]} on samples "
              f"scored ok in both (self-checks left out); win = better in the metric's direction",
              ABSTAIN_RULE]
    lines += c.notes
    return lines


def to_markdown(c: Comparison) -> str:
    out = ["# mer-eval compare", ""]
    out += [f"- {ln}" for ln in header_lines(c)]
    if c.ranking:
        out += ["", "## Ranking (composite mean)", "", "| rank | run | composite mean | 95% CI | n | note |",
                "|---:|---|---:|---|---:|---|"]
        for r in c.ranking:
            out.append(f"| {_rank(r)} | {_md(r['run'])} | {_f(r['composite_mean'])} | "
                       f"{_ci(r['ci_low'], r['ci_high'])} | {r['n']} | {_md(r.get('reason') or '')} |")
    out += ["", "## Metrics", "",
            "| metric | run | n | abstained | mean [95% CI] | Δ vs first [95% CI] | p (Wilcoxon) | "
            "win / tie / loss |",
            "|---|---|---:|---:|---|---|---:|---|"]
    for mc in c.metrics:
        arrow = "↑" if mc.higher_is_better else "↓"
        for r in mc.runs:
            if r.n_paired is None:
                delta, p, wtl = "(reference)", "", ""
            else:
                delta = f"{_f(r.diff)} {_ci(r.diff_ci_low, r.diff_ci_high)} (n={r.n_paired})"
                p = _f(r.p_wilcoxon, 3) if r.p_wilcoxon is not None else (r.p_note or "")
                wtl = _wtl(r, " / ")
            out.append(f"| {_md(mc.metric)} {arrow} | {_md(r.run)} | {r.n} | {r.n_abstained} | "
                       f"{_f(r.mean)} {_ci(r.ci_low, r.ci_high)} | {delta} | {_md(p)} | {wtl} |")
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
        for col in ("rank", "run", "composite mean", "95% CI", "n", "note"):
            t.add_column(col)
        for r in c.ranking:
            t.add_row(_rank(r), e(r["run"]), _f(r["composite_mean"]), e(_ci(r["ci_low"], r["ci_high"])),
                      str(r["n"]), e(r.get("reason") or ""))
        console.print(t)
    t = Table(title="Metrics (means of ok values; Δ = run − first run, paired; win/tie/loss counts abstentions)")
    for col, just in (("metric", "left"), ("run", "left"), ("n", "right"), ("abstained", "right"),
                      ("mean [95% CI]", "left"), ("Δ [95% CI] (n paired)", "left"), ("p Wilcoxon", "right"),
                      ("win/tie/loss", "right")):
        t.add_column(col, justify=just)
    for mc in c.metrics:
        for k, r in enumerate(mc.runs):
            if r.n_paired is None:
                delta, p, wtl = "reference", "", ""
            else:
                delta = f"{_f(r.diff)} {_ci(r.diff_ci_low, r.diff_ci_high)} ({r.n_paired})"
                p = _f(r.p_wilcoxon, 3) if r.p_wilcoxon is not None else (r.p_note or "")
                wtl = _wtl(r, "/")
            name = f"{mc.metric} {'↑' if mc.higher_is_better else '↓'}" if k == 0 else ""
            t.add_row(e(name), e(r.run), str(r.n), str(r.n_abstained), e(f"{_f(r.mean)} {_ci(r.ci_low, r.ci_high)}"),
                      e(delta), e(p), e(wtl), end_section=(k == len(mc.runs) - 1))
    console.print(t)
