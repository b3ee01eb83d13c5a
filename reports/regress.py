"""``mer-eval bless`` / ``mer-eval regress``: a score baseline and a CI check against it.

``bless RUN -o baseline.json`` stores per metric: aggregates (mean, n, std) and every sample's value over
the ``ok`` values that count as evidence (self-checks, ``dependence`` set in scores.parquet, are left out
and counted under ``left_out``), its fingerprint (run.json ``score.fingerprints``: version, params hash,
model id / sha256 / revision, code hash), its model identity and family; plus the metric versions, the
composite version, the metrics each composite weighs and the tool version.

``regress RUN --baseline baseline.json`` first checks comparability per metric: the fingerprints of the run
against the baseline's (:func:`mer_eval.reports.compare.check_comparability`). A difference makes the run
not comparable (exit 2, naming each metric and field, e.g. ``mattr: params_hash 'ab12' != 'cd34'``) unless
``--allow-mismatch KEY`` allows it (KEY: a metric or family name, ``METRIC.FIELD`` or ``all``); an allowed
difference is recorded in every output. A baseline or run without fingerprints (older mer-eval) is checked
on its versions (and the model ids in its scores), and the output says the rest was unknown.

Then it compares per metric, on the samples whose values count in both (paired). A metric *regresses* when
its mean moves the wrong way (by ``higher_is_better``) by more than its tolerance AND the paired bootstrap
95% CI of the difference excludes 0 (the move is beyond resampling noise; with one paired sample there is no
interval, and a move beyond tolerance counts). A metric also regresses when
samples it scored ok in the baseline are not ok in the run (``error``, ``abstained``, ``not_applicable``:
``lost_samples``): a metric that stopped answering must not pass because nothing is left to compare;
``unavailable`` there (a model missing on this machine) makes the run not comparable (exit 2). A baselined
sample that is *not in the run* is lost the same way (``missing: not in the run``): dropping a sample must
not score better than answering it wrongly. Self-check values are left out of every mean and listed with
their reasons. Exit codes: 0 pass, 1 regression, 2 not comparable (fingerprints differ, or a baselined metric
is missing from the run) or NOT CHECKED: no metric could be compared on any sample (the run holds none of
the baseline's samples, or no value that counts is ok in both), so there is nothing a pass could rest on.
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
BASELINE_FORMAT = 1  # later keys (fingerprint, model, family, left_out, composite_inputs) are additions
EXIT_OK, EXIT_REGRESSED, EXIT_MISMATCH = 0, 1, 2
EXIT_NOT_CHECKED = 2  # nothing was compared: never a pass (the exit code of "not comparable")
# a sample ok in the baseline and one of these in the run is a regression of that metric
LOST_STATUSES = ("error", "abstained", "not_applicable")
# ... and so is a sample ok in the baseline that is not in the run at all
MISSING = "missing"
NOT_IN_RUN = f"{MISSING}: not in the run"
NO_ROW = f"{MISSING}: the run has no score of this metric for this sample"
RETIRED = "composite_lenient"  # the lenient composite (left abstentions out): in baselines blessed before it went


class BaselineError(ValueError):
    pass


def _counted_values(df, metric: str) -> dict[str, float]:
    """ok values of ``metric`` that count as evidence (self-checks left out)."""
    from mer_eval.reports.compare import counted_mask

    g = df[(df["metric"] == metric) & (df["status"] == "ok")]
    g = g[counted_mask(g)]
    return {str(s): float(v) for s, v in zip(g["sample_id"], g["value"]) if v is not None and math.isfinite(v)}


def bless(run_dir: Path) -> dict[str, Any]:
    import numpy as np

    from mer_eval.gates import metric_directions, read_scores
    from mer_eval.reports.compare import composite_inputs, left_out_of, metric_params, run_identity

    run_dir = Path(run_dir)
    df = read_scores(run_dir)
    ident = run_identity(run_dir, df)
    directions = metric_directions(df)
    metrics: dict[str, Any] = {}
    samples: dict[str, dict[str, float]] = {}
    params = metric_params(run_dir, df)
    for m in directions:
        vals = _counted_values(df, m)
        arr = np.array(list(vals.values()), dtype=float)
        counts = df[df["metric"] == m]["status"].value_counts().to_dict()
        lo = left_out_of(df, m)
        metrics[m] = {
            "mean": float(arr.mean()) if arr.size else None,
            "std": float(arr.std(ddof=1)) if arr.size > 1 else None,
            "n": int(arr.size),
            "higher_is_better": directions[m],
            "counts_by_status": {str(k): int(v) for k, v in counts.items()},
            "left_out": {"n": lo["n"], "reasons": lo["reasons"]},
            "family": ident["families"].get(m),
            # None: run.json has no fingerprint of this metric (scored by an older mer-eval): unknown
            "fingerprint": ident["fingerprints"].get(m),
            "model": ident["models"].get(m),
            "params": params.get(m),  # what a params_hash difference is a difference of
        }
        samples[m] = vals
    return {
        "kind": BASELINE_KIND,
        "format": BASELINE_FORMAT,
        "tool_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(),
        "run": str(run_dir.resolve()),
        "provider": ident["provider"],
        "n_samples": int(df["sample_id"].nunique()),
        "metric_versions": ident["metric_versions"],
        "composite_version": ident["composite_version"],
        "composite_inputs": composite_inputs(run_dir, df),
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


def baseline_identity(baseline: dict[str, Any]) -> dict[str, Any]:
    """A baseline as :func:`mer_eval.reports.compare.check_comparability` reads it."""
    bm = baseline.get("metrics") or {}
    versions = dict(baseline.get("metric_versions") or {})
    cv = baseline.get("composite_version")
    for c in ("composite_score", RETIRED):
        if cv is not None and c in bm:
            versions.setdefault(c, cv)
    return {
        "metric_versions": versions,
        "composite_version": cv,
        "fingerprints": {m: v["fingerprint"] for m, v in bm.items() if isinstance(v, dict) and v.get("fingerprint")},
        "models": {m: v.get("model") for m, v in bm.items() if isinstance(v, dict)},
        "families": {m: v["family"] for m, v in bm.items() if isinstance(v, dict) and v.get("family")},
        "composite_inputs": baseline.get("composite_inputs") or {},
        "params": {m: v.get("params") for m, v in bm.items() if isinstance(v, dict) and v.get("params") is not None},
    }


@dataclass
class MetricCheck:
    metric: str
    higher_is_better: bool
    tolerance: float
    baseline_mean: Optional[float]  # over all counted ok samples of the baseline
    run_mean: Optional[float]  # over all counted ok samples of the run
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
    lost_samples: dict[str, str] = field(default_factory=dict)  # ok in the baseline, not ok now: "status: why"
    left_out: dict[str, Any] = field(default_factory=dict)  # run: {n, reasons, samples} of self-check values
    baseline_left_out: Optional[dict[str, Any]] = None  # the baseline's (None: blessed before it was recorded)
    allowed_mismatches: list[str] = field(default_factory=list)  # differences --allow-mismatch let through


@dataclass
class RegressResult:
    run: str
    baseline: str
    exit_code: int
    checks: list[MetricCheck]
    mismatches: list[str]
    notes: list[str]
    allowed_mismatches: list[str] = field(default_factory=list)
    allow: list[str] = field(default_factory=list)  # the --allow-mismatch keys given
    missing_samples: list[str] = field(default_factory=list)  # baseline samples not in the run
    not_checked: Optional[str] = None  # why nothing was compared (exit 2, "NOT CHECKED"); None otherwise

    @property
    def regressed(self) -> list[MetricCheck]:
        return [c for c in self.checks if c.regressed]

    @property
    def verdict(self) -> str:
        if self.exit_code == EXIT_OK:
            return "PASS"
        if self.exit_code == EXIT_REGRESSED:
            return "REGRESSION"
        return "NOT CHECKED" if self.not_checked and not self.mismatches else "NOT COMPARABLE"

    @property
    def left_out(self) -> dict[str, dict[str, Any]]:
        return {c.metric: c.left_out for c in self.checks if c.left_out.get("n")}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["left_out"] = self.left_out
        d["verdict"] = self.verdict
        return d


def _fmt(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _ids(ids, limit: int = 10) -> str:
    ids = list(ids)
    return ", ".join(ids[:limit]) + (", ..." if len(ids) > limit else "")


def _lost_text(lost: dict[str, str]) -> str:
    by: dict[str, int] = {}
    for v in lost.values():
        st = v.split(":", 1)[0]
        by[st] = by.get(st, 0) + 1
    states = next(iter(by)) if len(by) == 1 else "not ok (" + ", ".join(f"{k} {n}" for k, n in sorted(by.items())) + ")"
    first = next(iter(lost.items()))
    return (f": REGRESSED ({len(lost)} sample(s) scored ok in the baseline are {states} in the run, "
            f"e.g. {first[0]}: {first[1]})")


def regress(run_dir: Path, baseline: dict[str, Any], tolerances: Optional[dict[str, float]] = None,
            baseline_path: str = "", n_boot: int = 2000, seed: int = 0, top: int = 5,
            allow: Any = None) -> RegressResult:
    """``allow``: an :class:`~mer_eval.reports.compare.AllowList` or the ``--allow-mismatch`` keys."""
    import numpy as np

    from mer_eval.gates import metric_directions, read_scores
    from mer_eval.reports.compare import (AllowList, bootstrap_mean_ci, check_comparability, left_out_of,
                                          run_identity, unused_allow_keys)

    allow = allow if isinstance(allow, AllowList) else AllowList.parse(allow or ())
    run_dir = Path(run_dir)
    tolerances = dict(tolerances or {})
    df = read_scores(run_dir)
    ident = run_identity(run_dir, df)
    bident = baseline_identity(baseline)
    versions = ident["metric_versions"]
    bmetrics = dict(baseline.get("metrics", {}))
    mismatches: list[str] = []
    notes: list[str] = []
    if RETIRED in bmetrics and RETIRED not in set(df["metric"].astype(str)):
        # a baseline blessed while the lenient composite existed: composite_score is checked, the retired one not
        bmetrics.pop(RETIRED)
        notes.append(f"{RETIRED}: in the baseline, retired since (it left abstentions out); not checked")
    for m, bv in sorted((baseline.get("metric_versions") or {}).items()):
        if m in ("composite_score", RETIRED):
            continue  # the composite is checked with its fingerprint; the retired one above
        if versions.get(m) is None:
            mismatches.append(f"{m}: in the baseline (version {bv}) but not scored in the run")
    directions = metric_directions(df)
    for m in bmetrics:
        if m not in directions and not any(x.startswith(f"{m}:") for x in mismatches):
            mismatches.append(f"{m}: in the baseline but absent from the run's scores")
    for m in directions:
        if m not in bmetrics:
            notes.append(f"{m}: scored in the run but not in the baseline; not checked")
    shared = [m for m in bmetrics if m in directions]
    comp = check_comparability(bident, ident, shared, allow)
    mismatches += comp.refused
    notes += comp.notes + unused_allow_keys(allow, comp.used_keys)
    for m in bmetrics:  # a model missing here cannot be compared, it did not regress
        base_ids = set((baseline.get("samples", {}).get(m) or {}))
        un = df[(df["metric"] == m) & (df["status"] == "unavailable") & df["sample_id"].isin(base_ids)]
        if len(un):
            mismatches.append(f"{m}: unavailable in the run for {len(un)} sample(s) scored ok in the baseline "
                              f"({un['reason'].iloc[0]})")
    if mismatches:
        notes.append("scores made with other metric versions, parameters, models or code are not comparable: "
                     "re-bless the baseline, score with the old settings, or name what may differ with "
                     "--allow-mismatch METRIC[.FIELD] / all (recorded in every output)")
        return RegressResult(str(run_dir), baseline_path, EXIT_MISMATCH, [], mismatches, notes, comp.allowed,
                             list(allow.keys))
    run_ids = set(df["sample_id"].astype(str))
    base_ids = set().union(*[set(v or {}) for v in (baseline.get("samples") or {}).values()])
    absent = sorted(base_ids - run_ids)
    # a run that holds none of the baseline's samples is another data set: nothing to check, not a pass
    nothing_shared = bool(base_ids) and not (base_ids & run_ids)
    checks = []
    for m, bm in bmetrics.items():
        hib = bool(bm.get("higher_is_better", True))
        tol = float(tolerances.get(m, 0.0))
        cur = _counted_values(df, m)
        base = {str(k): float(v) for k, v in (baseline.get("samples", {}).get(m) or {}).items()}
        common = sorted(set(cur) & set(base))
        c = MetricCheck(m, hib, tol, bm.get("mean"), float(np.mean(list(cur.values()))) if cur else None,
                        len(common))
        c.left_out = left_out_of(df, m)
        c.baseline_left_out = bm.get("left_out")
        c.allowed_mismatches = list(comp.by_metric.get(m, {}).get("allowed", []))
        lost = df[(df["metric"] == m) & df["status"].isin(LOST_STATUSES)]
        c.lost_samples = {str(sid): f"{st}: {why}" for sid, st, why in
                          zip(lost["sample_id"], lost["status"], lost["reason"]) if str(sid) in base}
        if not nothing_shared:  # a baselined sample the run dropped is lost like one it stopped answering
            rows = set(df.loc[df["metric"] == m, "sample_id"].astype(str))
            for sid in sorted(base):
                if sid not in cur and sid not in c.lost_samples and sid not in rows:
                    c.lost_samples[sid] = NOT_IN_RUN if sid not in run_ids else NO_ROW
        lost_msg = _lost_text(c.lost_samples) if c.lost_samples else ""
        if c.lost_samples:
            c.regressed = True
        lo_msg = ""
        if c.left_out["n"]:
            reasons = "; ".join(f"{n} x {r}" for r, n in sorted(c.left_out["reasons"].items(), key=lambda x: -x[1]))
            lo_msg = f"; {c.left_out['n']} self-check value(s) in the run left out ({reasons})"
        if not common:
            why = (f"none of the baseline's {len(base_ids)} samples is in the run" if nothing_shared else
                   "no sample whose value counts scored ok in both the run and the baseline")
            c.message = f"{m}: {why}: not checked" + lo_msg + lost_msg
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
        if c.ci_low is None:  # one paired sample: no interval can tell noise from a change; fail closed, it counts
            c.beyond_noise = c.wrong_way and c.beyond_tolerance
        else:
            c.beyond_noise = bool(c.ci_high < 0) if hib else bool(c.ci_low > 0)
        c.regressed = (c.wrong_way and c.beyond_tolerance and c.beyond_noise) or bool(c.lost_samples)
        order = np.argsort(-bad)
        c.worst_samples = [{"sample_id": common[i], "baseline": float(b[i]), "run": float(r[i]),
                            "diff": float(d[i])} for i in order[:top] if bad[i] > 0]
        direction = "higher is better" if hib else "lower is better"
        c.message = (f"{m} ({direction}): mean {_fmt(c.paired_baseline_mean)} -> {_fmt(c.paired_run_mean)} on "
                     f"{len(common)} paired samples, diff {_fmt(c.diff)} (95% CI {_fmt(c.ci_low)} .. "
                     f"{_fmt(c.ci_high)}), tolerance {_fmt(tol)}")
        if c.wrong_way and c.beyond_tolerance and c.ci_low is None:
            c.message += (": REGRESSED (wrong way and beyond tolerance; one paired sample has no bootstrap interval "
                          "to call it noise)")
        elif c.wrong_way and c.beyond_tolerance and c.beyond_noise:
            c.message += ": REGRESSED (wrong way, beyond tolerance and beyond bootstrap noise)"
        elif c.wrong_way and c.beyond_tolerance:
            c.message += ": worse beyond tolerance but within bootstrap noise (CI includes 0)"
        elif c.wrong_way:
            c.message += ": worse, within tolerance"
        else:
            c.message += ": ok"
        c.message += lost_msg + lo_msg
        checks.append(c)
    not_checked = None
    if nothing_shared:
        not_checked = (f"the run holds none of the baseline's {len(base_ids)} samples ({_ids(sorted(base_ids))}): "
                       "no metric could be compared")
    elif absent:
        notes.append(f"{len(absent)} sample(s) of the baseline are not in the run, lost for every metric that "
                     f"scored them ok in the baseline: {_ids(absent)}")
    if any(c.regressed for c in checks):
        code = EXIT_REGRESSED
    elif not_checked is None and any(c.n_paired for c in checks):
        code = EXIT_OK
    else:  # no metric compared on any sample and none lost one: there is nothing a pass could rest on
        code = EXIT_NOT_CHECKED
        not_checked = not_checked or ("no metric was compared on any sample: no value that counts is ok in both "
                                      "the run and the baseline")
    return RegressResult(str(run_dir), baseline_path, code, checks, [], notes, comp.allowed, list(allow.keys),
                         absent, not_checked if code == EXIT_NOT_CHECKED else None)


# ---- reports ----------------------------------------------------------------------------------------

def _allowed_lines(res: RegressResult) -> list[str]:
    if not res.allowed_mismatches:
        return []
    return ([f"ALLOWED MISMATCH (--allow-mismatch {' '.join(res.allow)}): {len(res.allowed_mismatches)} "
             "difference(s) compared anyway; these numbers were computed differently:"]
            + [f"  {t}" for t in res.allowed_mismatches])


def _left_out_lines(res: RegressResult) -> list[str]:
    from mer_eval.reports.compare import left_out_text

    return [f"left out of the means: {left_out_text(m, lo, ' in the run')}" for m, lo in res.left_out.items()]


def to_text(res: RegressResult) -> str:
    lines = []
    if res.mismatches:
        lines.append("NOT COMPARABLE (exit 2):")
        lines += [f"  {m}" for m in res.mismatches]
    if res.not_checked:
        lines.append(f"NOT CHECKED (exit {res.exit_code}): {res.not_checked}")
    lines += _allowed_lines(res)
    for c in res.checks:
        lines.append(c.message)
        if c.regressed and c.worst_samples:
            lines.append("  most regressed samples: " + ", ".join(
                f"{w['sample_id']} ({_fmt(w['baseline'])} -> {_fmt(w['run'])})" for w in c.worst_samples))
        if c.lost_samples:
            lines.append("  lost samples: " + _ids(f"{k} ({v.split(':', 1)[0]})" for k, v in c.lost_samples.items()))
    lines += _left_out_lines(res)
    lines += [f"note: {n}" for n in res.notes]
    tail = f"; {len(res.allowed_mismatches)} allowed mismatch(es)" if res.allowed_mismatches else ""
    checked = sum(1 for c in res.checks if c.n_paired)
    lines.append(f"{res.verdict}: {len(res.regressed)} of {len(res.checks)} metrics regressed, {checked} compared on "
                 f"paired samples (exit {res.exit_code})" + tail)
    return "\n".join(lines)


def to_junit(res: RegressResult) -> str:
    """JUnit XML (reports/junit.py), plus what must not get lost in CI: every allowed mismatch and every
    left-out self-check as a suite property and in the suite's system-out, and on the metric's testcase."""
    import xml.etree.ElementTree as ET

    from mer_eval.reports.junit import regress_junit

    xml = regress_junit(res)
    extra = _allowed_lines(res) + _left_out_lines(res)
    if not extra:
        return xml
    suite = ET.fromstring(xml)
    props = ET.Element("properties")
    for t in res.allowed_mismatches:
        ET.SubElement(props, "property", name="allowed_mismatch", value=t)
    for m, lo in res.left_out.items():
        ET.SubElement(props, "property", name=f"left_out.{m}", value=str(lo["n"]))
    suite.insert(0, props)
    for tc in suite.findall("testcase"):
        c = next((c for c in res.checks if c.metric == tc.get("name")), None)
        if c is None or tc.get("classname") != "mer_eval.regress":
            continue
        mine = c.allowed_mismatches + ([f"left out: {c.left_out['n']} self-check value(s)"] if c.left_out.get("n")
                                       else [])
        if not mine:
            continue
        tp = ET.Element("properties")
        for t in c.allowed_mismatches:
            ET.SubElement(tp, "property", name="allowed_mismatch", value=t)
        if c.left_out.get("n"):
            ET.SubElement(tp, "property", name="left_out", value=str(c.left_out["n"]))
        tc.insert(0, tp)
        so = tc.find("system-out")
        if so is None:
            so = ET.SubElement(tc, "system-out")
            so.text = "\n".join(mine)
        else:
            so.text = (so.text or "") + "\n" + "\n".join(mine)
    ET.SubElement(suite, "system-out").text = "\n".join(extra)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def to_markdown(res: RegressResult) -> str:
    """Markdown (reports/markdown.py) with the allowed mismatches right under the heading and the left-out
    self-checks at the end."""
    from mer_eval.reports.markdown import _md, regress_markdown

    text = regress_markdown(res)
    head, sep, rest = text.partition("\n\n")
    block = []
    if res.allowed_mismatches:
        block += [f"**⚠️ Allowed mismatches** (`--allow-mismatch {_md(' '.join(res.allow))}`): these metrics were "
                  "computed differently in the run and the baseline and compared anyway:", ""]
        block += [f"- {_md(t)}" for t in res.allowed_mismatches] + [""]
    if res.left_out:
        from mer_eval.reports.compare import left_out_text

        rest = rest.rstrip("\n") + "\n\nLeft out of the means (self-checks, not evidence):\n\n" + "\n".join(
            f"- {_md(left_out_text(m, lo, ' in the run'))}" for m, lo in res.left_out.items()) + "\n"
    if block:
        return head + sep + "\n".join(block) + "\n" + rest
    return head + sep + rest
