"""Quality gates: decide per sample whether it goes into the dataset, and say why.

A gate is a list of rules read from ``configs/gates/<name>.yaml`` (bundled), a YAML path, or
``--rule`` strings. Rule forms (a string, or ``{rule: ..., name: ..., required: ...}`` in YAML):

* absolute requirement: ``composite_score >= 60``, ``asr_wer <= 0.3`` (the sample must satisfy it);
* relative flag: ``nli_contra_rate > 3 x median``, ``distinct2 < 0.5 x median`` (the median of the
  metric's ``ok`` values in this run; the sample is flagged when the condition holds);
* percentile flag: ``composite_score bottom 10%`` / ``top 10%`` (by value), ``worst 10%`` /
  ``best 10%`` (by the metric's direction); the sample is flagged when it falls in that tail;
* status rule: ``asr_wer is ok`` (the metric must have been scored).

``require:`` / ``flag:`` as a prefix forces the mode (``flag: asr_wer > 0.5``).

A metric that is not ``ok`` for a sample is never silently passed or failed: the rule is recorded as
``skipped: <status>: <reason>``, unless the rule's ``required`` names that status (``true`` = every
status but ok; a list such as ``[error, unavailable]``), in which case the sample is unknown (excluded by
default). A metric that failed (``error``) always makes the sample unknown: a check that crashed is not one
that did not apply.

Outputs in the run folder: ``gate.csv`` (per sample: decision, failed and skipped rules, cleanlab-style
``is_<rule>_issue`` / ``<rule>_score`` columns, where the score is the value the rule tested),
``include.txt`` (one included id per line) and ``gate.json`` (rules with resolved thresholds, counts).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from mer_eval import __version__
from mer_eval.paths import check_sample_id, is_within

NOT_OK_STATUSES = ("unavailable", "not_applicable", "error", "missing", "abstained")
ACTIONS = ("exclude", "review")
GATE_CSV = "gate.csv"
GATE_JSON = "gate.json"
INCLUDE_TXT = "include.txt"


class GateError(ValueError):
    pass


# ---- reading scores -------------------------------------------------------------------------------

SCORE_COLUMNS = ("sample_id", "metric", "family", "value", "status", "reason", "model", "model_sha256",
                 "metric_version", "higher_is_better")


def read_scores(run_dir: Path):
    """``RUN/scores.parquet`` as a long-form DataFrame (one row per sample and metric)."""
    from mer_eval.scoring import load_scores

    run_dir = Path(run_dir)
    try:
        df = load_scores(run_dir)
    except FileNotFoundError as e:
        raise GateError(str(e)) from None
    missing = [c for c in ("sample_id", "metric", "value", "status") if c not in df.columns]
    if missing:
        raise GateError(f"{run_dir}/scores.parquet lacks columns {missing}")
    df = df.copy()
    df["sample_id"] = df["sample_id"].astype(str)
    df["status"] = df["status"].astype(str)
    if "reason" not in df.columns:
        df["reason"] = None
    if "higher_is_better" not in df.columns:
        df["higher_is_better"] = True
    return df


def metric_directions(df) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for m, g in df.groupby("metric", sort=False):
        vals = g["higher_is_better"].dropna()
        out[str(m)] = bool(vals.iloc[0]) if len(vals) else True
    return out


def sample_ids(df) -> list[str]:
    return list(dict.fromkeys(df["sample_id"].tolist()))


# ---- rules ----------------------------------------------------------------------------------------

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_METRIC = r"[A-Za-z_][A-Za-z0-9_.\-]*"
_OPS = {">=": "ge", "<=": "le", ">": "gt", "<": "lt", "==": "eq", "!=": "ne"}
_RE_ABS = re.compile(rf"^(?P<metric>{_METRIC})\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<num>{_NUM})$")
_RE_REL = re.compile(
    rf"^(?P<metric>{_METRIC})\s*(?P<op>>=|<=|>|<)\s*(?P<k>{_NUM})\s*(?:x|\*|×)\s*median$", re.I
)
_RE_PCT = re.compile(rf"^(?P<metric>{_METRIC})\s+(?P<side>bottom|top|worst|best)\s+(?P<p>{_NUM})\s*%$", re.I)
_RE_STATUS = re.compile(rf"^(?P<metric>{_METRIC})\s+is\s+ok$", re.I)


def _cmp(op: str, a: float, b: float) -> bool:
    return {"ge": a >= b, "le": a <= b, "gt": a > b, "lt": a < b, "eq": a == b, "ne": a != b}[op]


def _fmt(x: Optional[float]) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.4g}"


def _slug(s: str) -> str:
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9]+", "_", s)).strip("_").lower()


@dataclass
class Rule:
    text: str
    metric: str
    kind: str  # absolute | relative | percentile | status
    mode: str  # require | flag
    name: str
    op: Optional[str] = None  # ge le gt lt eq ne
    number: Optional[float] = None  # threshold, factor k, or percent
    side: Optional[str] = None  # bottom top worst best
    required: frozenset = frozenset()  # statuses (other than ok) that exclude the sample
    threshold: Optional[float] = None  # resolved on the run (absolute: = number)
    basis: Optional[str] = None  # how the threshold was resolved
    action: str = "exclude"  # what a failed rule does to the sample: exclude | review

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "rule": self.text, "metric": self.metric, "kind": self.kind, "mode": self.mode,
            "op": self.op, "number": self.number, "side": self.side, "required": sorted(self.required),
            "threshold": self.threshold, "basis": self.basis,
        }


def _required_set(v: Any, where: str) -> frozenset:
    if v is None or v is False:
        return frozenset()
    if v is True:
        return frozenset(NOT_OK_STATUSES)
    if isinstance(v, str):
        v = [v]
    if isinstance(v, (list, tuple)):
        bad = [x for x in v if x not in NOT_OK_STATUSES]
        if bad:
            raise GateError(f"{where}: required statuses {bad} unknown; use {', '.join(NOT_OK_STATUSES)}")
        return frozenset(v)
    raise GateError(f"{where}: 'required' must be true/false or a list of statuses, got {v!r}")


@dataclass(frozen=True)
class RuleKind:
    """One form of gate rule: how its text is parsed and (for run-relative kinds) how its threshold is set
    from the run's values. New kinds register themselves in :data:`RULE_KINDS`, tried in order."""

    name: str
    pattern: re.Pattern
    build: Any  # (match, raw text, forced mode, name, where) -> (Rule, default of `required`)
    form: str  # the form shown when no kind understands a rule
    resolve: Any = None  # (rule, ok values, higher_is_better) -> None, sets rule.threshold / rule.basis


def _build_relative(m, raw, forced, name, where):
    op = _OPS[m["op"]]
    return Rule(raw, m["metric"], "relative", forced or "flag", name or _slug(f"{m['metric']}_{op}_{m['k']}x_median"),
                op=op, number=float(m["k"])), None


def _build_percentile(m, raw, forced, name, where):
    p = float(m["p"])
    if not 0 < p < 100:
        raise GateError(f"{where}: percent must be between 0 and 100")
    if forced == "require":
        raise GateError(f"{where}: percentile rules flag a tail; 'require:' does not apply")
    side = m["side"].lower()
    return Rule(raw, m["metric"], "percentile", "flag", name or _slug(f"{m['metric']}_{side}_{m['p']}pct"),
                number=p, side=side), None


def _build_absolute(m, raw, forced, name, where):
    op = _OPS[m["op"]]
    return Rule(raw, m["metric"], "absolute", forced or "require", name or _slug(f"{m['metric']}_{op}_{m['num']}"),
                op=op, number=float(m["num"]), threshold=float(m["num"]), basis="absolute"), None


def _build_status(m, raw, forced, name, where):
    return Rule(raw, m["metric"], "status", "require", name or _slug(f"{m['metric']}_is_ok")), True


RULE_KINDS: list[RuleKind] = [
    RuleKind("relative", _RE_REL, _build_relative, "'METRIC > 3 x median'"),
    RuleKind("percentile", _RE_PCT, _build_percentile, "'METRIC bottom 10%'"),
    RuleKind("absolute", _RE_ABS, _build_absolute, "'METRIC >= 60'"),
    RuleKind("status", _RE_STATUS, _build_status, "'METRIC is ok'"),
]


def parse_rule(text: str, name: Optional[str] = None, required: Any = None, action: Optional[str] = None) -> Rule:
    """Parse one rule string (see the module docstring) with the first of :data:`RULE_KINDS` that matches."""
    raw = str(text).strip()
    forced = None
    m = re.match(r"^(require|flag)\s*:\s*(.*)$", raw, re.I)
    body = raw
    if m:
        forced, body = m.group(1).lower(), m.group(2).strip()
    where = f"rule {raw!r}"
    for kind in RULE_KINDS:
        m = kind.pattern.match(body)
        if m:
            r, req_default = kind.build(m, raw, forced, name, where)
            if required is None:
                required = req_default
            break
    else:
        raise GateError(f"{where}: not understood; forms: {', '.join(k.form for k in RULE_KINDS)}, optionally "
                        "prefixed 'flag:' or 'require:'")
    if not re.match(r"^[a-z0-9_]+$", r.name):
        raise GateError(f"{where}: rule name {r.name!r} must be lower-case letters, digits and '_'")
    r.required = _required_set(required, where)
    if action is not None:
        if action not in ACTIONS:
            raise GateError(f"{where}: action must be one of {', '.join(ACTIONS)}, got {action!r}")
        r.action = action
    return r


def load_rules(source: Union[str, Path, None] = None, rules: Iterable[str] = ()) -> tuple[list[Rule], str]:
    """Rules from a bundled gate name or YAML path (``source``) plus ``--rule`` strings.

    Returns (rules, where they came from).
    """
    out: list[Rule] = []
    origin: list[str] = []
    if source:
        spec = _read_gate_yaml(source)
        origin.append(spec["_origin"])
        entries = spec.get("rules") or []
        if not isinstance(entries, list):
            raise GateError(f"{spec['_origin']}: 'rules' must be a list")
        for i, e in enumerate(entries):
            if isinstance(e, str):
                out.append(parse_rule(e))
            elif isinstance(e, dict):
                extra = set(e) - {"rule", "name", "required", "description", "action"}
                if extra or "rule" not in e:
                    raise GateError(f"{spec['_origin']}: rules[{i}] needs 'rule' and allows name, required, "
                                    f"action, description; got {sorted(e)}")
                out.append(parse_rule(e["rule"], name=e.get("name"), required=e.get("required"),
                                      action=e.get("action")))
            else:
                raise GateError(f"{spec['_origin']}: rules[{i}] must be a string or a mapping")
    for s in rules:
        out.append(parse_rule(s))
        origin.append("--rule")
    seen: dict[str, int] = {}
    for r in out:
        if r.name in seen:
            seen[r.name] += 1
            r.name = f"{r.name}_{seen[r.name]}"
        else:
            seen[r.name] = 1
    if not out:
        raise GateError("no gate rules given (use --rules NAME|FILE or --rule 'METRIC >= X')")
    return out, ", ".join(dict.fromkeys(origin))


def _read_gate_yaml(source: Union[str, Path]) -> dict:
    import yaml

    from mer_eval.config import read_bundled_yaml

    p = Path(str(source))
    if p.suffix.lower() in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise GateError(f"gate file {p} does not exist")
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        origin = str(p)
    else:
        name = str(source)
        if not re.match(r"^[A-Za-z0-9_\-]+$", name):
            raise GateError(f"gate name {name!r}: use a bundled name (e.g. default) or a .yaml path")
        try:
            data = read_bundled_yaml(f"gates/{name}.yaml") or {}
        except FileNotFoundError:
            raise GateError(f"no bundled gate {name!r} (configs/gates/{name}.yaml); give a .yaml path") from None
        origin = f"configs/gates/{name}.yaml"
    if not isinstance(data, dict):
        raise GateError(f"{origin}: must hold a mapping with 'rules'")
    data["_origin"] = origin
    return data


# ---- evaluation -------------------------------------------------------------------------------------

@dataclass
class SampleDecision:
    sample_id: str
    include: bool
    failed: list[str] = field(default_factory=list)  # "rule: value vs threshold"
    skipped: list[str] = field(default_factory=list)  # "rule: skipped: status: reason"
    issues: dict[str, Optional[bool]] = field(default_factory=dict)  # rule -> is issue (None: skipped)
    scores: dict[str, Optional[float]] = field(default_factory=dict)  # rule -> value tested
    decision: str = "include"  # include | exclude | review
    unknown: list[str] = field(default_factory=list)  # why nothing could judge (part of) this sample
    why: str = ""  # one line: what decided
    duplicate_of: Optional[str] = None  # the kept sample this one nearly duplicates (curation)
    decided_by: str = "rules"  # rules | human (a curator's accept / reject in review.jsonl beats every rule)
    human: Optional[dict[str, Any]] = None  # the curator's decision: decision, who, when, what the rules said


@dataclass
class GateResult:
    rules: list[Rule]
    decisions: list[SampleDecision]
    origin: str
    on_unknown: str = "exclude"
    curation: Any = None  # Curation applied (None: gate_run's curation step did not run)
    labels: dict[str, str] = field(default_factory=dict)
    histogram: dict[str, Any] = field(default_factory=dict)  # label counts before / after gating
    warnings: list[str] = field(default_factory=list)  # min_per_label shortfalls

    @property
    def included(self) -> list[str]:
        return [d.sample_id for d in self.decisions if d.decision == "include"]

    def counts(self) -> dict[str, Any]:
        per_rule = {}
        for r in self.rules:
            c = {"failed": 0, "passed": 0, "skipped": 0}
            for d in self.decisions:
                v = d.issues.get(r.name)
                c["skipped" if v is None else "failed" if v else "passed"] += 1
            per_rule[r.name] = c
        by = {k: sum(d.decision == k for d in self.decisions) for k in ("include", "exclude", "review")}
        return {"samples": len(self.decisions), "included": by["include"], "excluded": by["exclude"],
                "review": by["review"], "unknown": sum(bool(d.unknown) for d in self.decisions),
                "near_duplicates": sum(d.duplicate_of is not None for d in self.decisions),
                "human": sum(d.decided_by == "human" for d in self.decisions),
                "on_unknown": self.on_unknown, "per_rule": per_rule}


def _resolve(rule: Rule, values, higher_is_better: bool) -> None:
    """Set ``rule.threshold`` from the run's ok values of its metric (relative and percentile rules)."""
    import numpy as np

    vals = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if rule.kind == "relative":
        if len(vals) == 0:
            rule.threshold, rule.basis = None, f"no ok values of {rule.metric} in this run: no median"
            return
        med = float(np.median(vals))
        rule.threshold = rule.number * med
        rule.basis = f"{_fmt(rule.number)} x median {_fmt(med)} over {len(vals)} ok samples"
    elif rule.kind == "percentile":
        if len(vals) == 0:
            rule.threshold, rule.basis = None, f"no ok values of {rule.metric} in this run: no percentile"
            return
        side = rule.side
        if side in ("worst", "best"):
            low_is_bad = higher_is_better
            side = ("bottom" if low_is_bad else "top") if side == "worst" else ("top" if low_is_bad else "bottom")
        q = rule.number if side == "bottom" else 100.0 - rule.number
        rule.threshold = float(np.percentile(vals, q))
        rule.op = "le" if side == "bottom" else "ge"
        rule.basis = (f"{'bottom' if side == 'bottom' else 'top'} {_fmt(rule.number)}% by value: "
                      f"{_fmt(q)}th percentile {_fmt(rule.threshold)} over {len(vals)} ok samples")


_OP_TXT = {"ge": ">=", "le": "<=", "gt": ">", "lt": "<", "eq": "==", "ne": "!="}


def check_rule_metrics(df, rules: list[Rule]) -> None:
    """Refuse a rule whose metric no score table could hold: not in this run, and no installed metric family
    writes it (a misspelt ``composit_score >= 60`` would otherwise be skipped on every sample, and the other
    rules would decide alone, as if it had passed). A known metric this run did not compute stays a rule that
    is skipped with that reason."""
    from mer_eval.config import close_names
    from mer_eval.registry import metric_outputs

    present = set(df["metric"].astype(str))
    absent = [r for r in rules if r.metric not in present]
    if not absent:
        return
    known = set(metric_outputs()) | {"composite_score"}
    names = sorted(known | present)
    bad = [(r, close_names(r.metric, names)) for r in absent if r.metric not in known]
    if bad:
        raise GateError("; ".join(
            f"rule {r.name}: no metric {r.metric!r} in this run or in any installed metric family"
            + (f" (did you mean {', '.join(near)}?)" if near else "") for r, near in bad))


def evaluate(df, rules: list[Rule], origin: str = "", on_unknown: str = "exclude") -> GateResult:
    """Apply ``rules`` to the long-form scores ``df``; every sample in ``df`` gets a decision.

    Fail closed: a rule whose metric *abstained* (no conclusion, empty summary) fails, as the metric's worst
    value would; a rule whose metric *failed* (status ``error``: the check was due and crashed) makes the
    sample *unknown*, whatever ``required`` says; a rule whose metric was not measured otherwise is skipped,
    unless ``required`` names that status, and then the sample is unknown; a sample no rule could judge is
    unknown too. Unknown samples get
    ``on_unknown`` (``exclude`` by default, ``review``, or ``include`` -- only ever by explicit choice).
    A failed rule decides by its ``action`` (``exclude``, or ``review``: a person should look)."""
    if on_unknown not in ("exclude", "review", "include"):
        raise GateError(f"on_unknown must be exclude, review or include, got {on_unknown!r}")
    check_rule_metrics(df, rules)
    directions = metric_directions(df)
    ids = sample_ids(df)
    cells: dict[tuple[str, str], tuple[str, Optional[float], Optional[str]]] = {}
    dep = df["dependence"] if "dependence" in df.columns else [None] * len(df)  # older score files lack it
    for sid, metric, value, status, reason, why_dep in zip(df["sample_id"], df["metric"], df["value"],
                                                           df["status"], df["reason"], dep):
        v = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        if str(status) == "ok" and isinstance(why_dep, str) and why_dep:
            # a self-check (AUs vs the AUs the text came from, label in the prompt, WER against the same
            # ASR model) decides nothing: the rule is skipped with the reason (mer_eval.evidence.counts)
            cells[(sid, str(metric))] = ("not_independent", None, why_dep)
            continue
        cells[(sid, str(metric))] = (str(status), v, None if reason is None or reason != reason else str(reason))
    resolvers = {k.name: k.resolve or (_resolve if k.name in ("relative", "percentile") else None)
                 for k in RULE_KINDS}
    for r in rules:
        if resolvers.get(r.kind):
            vals = [v for (sid, m), (st, v, _) in cells.items() if m == r.metric and st == "ok"]
            resolvers[r.kind](r, vals, directions.get(r.metric, True))
    decisions = []
    for sid in ids:
        d = SampleDecision(sid, True)
        actions: list[str] = []
        judged = 0  # rules decided on a measured value (or an abstention)
        for r in rules:
            status, value, reason = cells.get(
                (sid, r.metric), ("missing", None, f"no {r.metric} row in scores (not computed in this run)"))
            if status == "abstained" and r.kind != "status":
                d.scores[r.name] = None
                d.issues[r.name] = True
                d.failed.append(f"{r.name}: {r.metric} abstained: {reason or 'no answer'} (counts as worst)")
                actions.append(r.action)
                judged += 1
                continue
            if status != "ok":
                why = f"{status}: {reason or 'no reason given'}"
                d.scores[r.name] = None
                if status in r.required or status == "error":  # a failed check never passes by being skipped
                    d.issues[r.name] = True
                    how = "required" if status in r.required else "the check failed"
                    d.failed.append(f"{r.name}: {r.metric} is {why} ({how})")
                    d.unknown.append(f"{r.metric} {why}")
                else:
                    d.issues[r.name] = None
                    d.skipped.append(f"{r.name}: skipped: {why}")
                continue
            d.scores[r.name] = value
            if r.kind == "status":  # the requirement it states (scored) is met: a judgment
                d.issues[r.name] = False
                judged += 1
                continue
            if r.threshold is None:
                d.issues[r.name] = None
                d.skipped.append(f"{r.name}: skipped: threshold unresolved: {r.basis}")
                continue
            holds = _cmp(r.op, value, r.threshold)
            judged += 1
            issue = (not holds) if r.mode == "require" else holds
            d.issues[r.name] = issue
            if issue:
                actions.append(r.action)
                if r.mode == "require":
                    d.failed.append(f"{r.name}: {r.metric} = {_fmt(value)}, needs {_OP_TXT[r.op]} {_fmt(r.threshold)}")
                else:
                    extra = f" ({r.basis})" if r.basis and r.kind != "absolute" else ""
                    d.failed.append(
                        f"{r.name}: {r.metric} = {_fmt(value)} {_OP_TXT[r.op]} {_fmt(r.threshold)}{extra}"
                    )
        if judged == 0 and not d.unknown:
            d.unknown.append("no rule could judge this sample (every rule skipped)")
        if "exclude" in actions:
            d.decision, d.why = "exclude", "failed " + ", ".join(f.split(":")[0] for f in d.failed)
        elif "review" in actions:
            d.decision, d.why = "review", "flagged for review: " + ", ".join(f.split(":")[0] for f in d.failed)
        elif d.unknown:
            d.decision = on_unknown
            d.why = (f"unknown ({'; '.join(d.unknown)}): "
                     + {"exclude": "excluded (fail closed)", "review": "sent to review",
                        "include": "included only because unknowns are included on request"}[on_unknown])
        else:
            d.decision, d.why = "include", "every rule that could judge it passed"
        d.include = d.decision == "include"
        decisions.append(d)
    return GateResult(rules, decisions, origin, on_unknown)


# ---- files -------------------------------------------------------------------------------------------

def write_gate(run_dir: Path, result: GateResult) -> dict[str, Path]:
    from mer_eval.store import atomic_write_json, atomic_write_text
    import io

    run_dir = Path(run_dir)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = ["sample_id", "decision", "decided_by", "why", "failed", "unknown", "skipped", "label"]
    extra = [n for n in ("near_duplicate", "label_cap") if any(n in d.issues for d in result.decisions)]
    for r in result.rules:
        header += [f"is_{r.name}_issue", f"{r.name}_score"]
    for n in extra:
        header += [f"is_{n}_issue", f"{n}_score"]
    if "near_duplicate" in extra:
        header.append("near_duplicate_of")
    w.writerow(header)
    for d in result.decisions:
        row: list[Any] = [d.sample_id, d.decision, d.decided_by, d.why, "; ".join(d.failed), "; ".join(d.unknown),
                          "; ".join(d.skipped), result.labels.get(d.sample_id, "")]
        for name in [r.name for r in result.rules] + extra:
            iss = d.issues.get(name)
            sc = d.scores.get(name)
            row += ["" if iss is None else str(bool(iss)), "" if sc is None else repr(float(sc))]
        if "near_duplicate" in extra:
            row.append(d.duplicate_of or "")
        w.writerow(row)
    paths = {"csv": run_dir / GATE_CSV, "include": run_dir / INCLUDE_TXT, "json": run_dir / GATE_JSON}
    atomic_write_text(paths["csv"], buf.getvalue())
    atomic_write_text(paths["include"], "".join(f"{i}\n" for i in result.included))
    atomic_write_json(paths["json"], {
        "tool_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(),
        "run": str(run_dir),
        "origin": result.origin,
        "on_unknown": result.on_unknown,
        "rules": [r.to_json() for r in result.rules],
        "counts": result.counts(),
        "curation": result.curation.to_json() if result.curation else None,
        "label_histogram": result.histogram,
        "warnings": result.warnings,
        "human_decisions": {d.sample_id: d.human for d in result.decisions if d.human},
        "near_duplicates": {d.sample_id: d.duplicate_of for d in result.decisions if d.duplicate_of},
        # what the decision was made on: a later export refuses it once the scores have changed (gate_staleness)
        "scores": scores_fingerprint(run_dir),
    })
    return paths


def scores_fingerprint(run_dir: Path) -> Optional[dict[str, Any]]:
    """``{"file", "bytes", "sha256"}`` of the run's scores.parquet (the gate's input), or None without one."""
    p = Path(run_dir) / "scores.parquet"
    if not p.is_file():
        return None
    return {"file": p.name, "bytes": p.stat().st_size, "sha256": _file_sha256(p)}


def gate_staleness(run_dir: Path) -> Optional[str]:
    """Why the run's gate decision no longer holds, or None: the scores it decided on (gate.json's ``scores``)
    are not the run's scores now (re-scored, or a sample re-annotated and re-scored after ``mer-eval gate``). A
    gate.json written before it recorded them (or none) cannot be checked: None."""
    gj = Path(run_dir) / GATE_JSON
    try:
        meta = json.loads(gj.read_text(encoding="utf-8")) if gj.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return None
    then = meta.get("scores") if isinstance(meta, dict) else None
    if not isinstance(then, dict) or not then.get("sha256"):
        return None
    now = scores_fingerprint(run_dir)
    if now is None:
        return f"the gate decided on a scores.parquet (sha256 {then['sha256'][:12]}) that is gone"
    if now["sha256"] != then["sha256"]:
        return (f"scores.parquet changed after the gate decided (sha256 {then['sha256'][:12]} then, "
                f"{now['sha256'][:12]} now): its decisions are about other scores; run `mer-eval gate` again")
    return None


# ---- curation: near-duplicates, per-label caps, human decisions ----------------------------------------

REVIEW_JSONL = "review.jsonl"
REVIEW_ACTIONS = ("accept", "reject", "edit")
EDIT_FIELDS = ("final_summary", "label")
REVIEWED_SHA = "annotation_sha256"  # review.jsonl: the annotation a decision was made on (annotation_sha256)
DUP_JACCARD = 0.9  # default: summaries whose 3-word-shingle Jaccard similarity is >= 0.9 are near-duplicates
DUP_SHINGLE = 3
MINHASH_PERM = 128
_MERSENNE = (1 << 61) - 1


def read_review(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The curator's decisions from ``RUN/review.jsonl`` (appended by ``mer-eval review``), per sample: the last
    accept / reject (``decision``, ``who``, ``when``) and the last edit of each field (``edits``). A line that
    is not a review entry is an error (a decision file we cannot read is not silently ignored)."""
    p = Path(run_dir) / REVIEW_JSONL
    out: dict[str, dict[str, Any]] = {}
    if not p.is_file():
        return out
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
        except json.JSONDecodeError as ex:
            raise GateError(f"{p}:{n}: not JSON ({ex})") from None
        if not isinstance(e, dict) or e.get("action") not in REVIEW_ACTIONS or not isinstance(e.get("sample_id"), str):
            raise GateError(f"{p}:{n}: a review entry needs sample_id and action ({', '.join(REVIEW_ACTIONS)})")
        st = out.setdefault(e["sample_id"], {"decision": None, "who": None, "when": None, "sha256": None,
                                             "edits": {}})
        if e["action"] == "edit":
            if e.get("field") not in EDIT_FIELDS:
                raise GateError(f"{p}:{n}: edit of {e.get('field')!r}; editable: {', '.join(EDIT_FIELDS)}")
            st["edits"][e["field"]] = {"after": e.get("after"), "before": e.get("before"), "who": e.get("who"),
                                       "when": e.get("when"), "sha256": e.get(REVIEWED_SHA)}
        else:
            st.update(decision=e["action"], who=e.get("who"), when=e.get("when"), sha256=e.get(REVIEWED_SHA))
    return out


def annotation_sha256(sample: Any) -> Optional[str]:
    """sha256 of what a curator judges: the sample's annotation files (each kind's name and bytes, in kind
    order), or None for a sample without one. ``mer-eval review`` records it with each decision
    (``annotation_sha256``); a decision whose annotation has changed since is stale (:func:`human_staleness`)."""
    import hashlib

    files = getattr(sample, "annotation_files", None) or {}
    if not files:
        return None
    h = hashlib.sha256()
    for kind in sorted(files):
        h.update(kind.encode("utf-8") + b"\0")
        try:
            h.update(_file_sha256(Path(files[kind])).encode("ascii"))
        except OSError as e:
            h.update(f"unreadable: {e.strerror}".encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def human_staleness(recorded: Optional[str], now: Optional[str]) -> Optional[str]:
    """Why a curator's decision no longer applies, or None: the annotation it was made on (``recorded``) is not
    the sample's annotation ``now`` (re-generated, or its files edited after the review). A decision recorded
    before mer-eval kept that hash (None) cannot be checked and applies as before."""
    if not recorded or recorded == now:
        return None
    if now is None:
        return f"the annotation it was made on (sha256 {recorded[:12]}) is gone"
    return f"the annotation changed after it (sha256 {recorded[:12]} then, {now[:12]} now)"


def append_review(run_dir: Path, entry: dict[str, Any]) -> None:
    """Append one entry to ``RUN/review.jsonl`` in a single ``O_APPEND`` write, flushed to disk (a reader never
    sees half a line; nothing else in the run is touched)."""
    if entry.get("action") not in REVIEW_ACTIONS:
        raise GateError(f"review action must be one of {', '.join(REVIEW_ACTIONS)}")
    check_sample_id(str(entry.get("sample_id")))
    data = (json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(Path(run_dir) / REVIEW_JSONL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def shingles(text: Optional[str], k: int = DUP_SHINGLE) -> set[str]:
    w = re.findall(r"[a-z0-9']+", (text or "").lower())
    if len(w) < k:
        return {" ".join(w)} if w else set()
    return {" ".join(w[i:i + k]) for i in range(len(w) - k + 1)}


def minhash(sh: set[str], num_perm: int = MINHASH_PERM, seed: int = 1):
    """MinHash signature of a shingle set: ``num_perm`` universal hashes ``(a*x + b) mod (2^61 - 1)`` of each
    shingle's 64-bit blake2b; the share of equal positions of two signatures estimates their Jaccard."""
    import hashlib

    import numpy as np

    rng = np.random.default_rng(seed)
    a = rng.integers(1, _MERSENNE, size=num_perm, dtype=np.uint64).astype(object)
    b = rng.integers(0, _MERSENNE, size=num_perm, dtype=np.uint64).astype(object)
    xs = [int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "big") for s in sh]
    if not xs:
        return None
    x = np.asarray(xs, dtype=object)[:, None]
    return ((x * a[None, :] + b[None, :]) % _MERSENNE).min(axis=0)


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if (a or b) else 0.0


def _file_sha256(p: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_duplicates(samples: list[Any], rank: dict[str, float], jaccard_min: float = DUP_JACCARD,
                    shingle: int = DUP_SHINGLE, num_perm: int = MINHASH_PERM) -> dict[str, dict[str, Any]]:
    """Near-duplicates among ``samples`` (:class:`mer_eval.schema.Sample`): identical primary media (sha256 of
    the video, else audio, else image, else peak frame) or summaries whose word-shingle Jaccard is at least
    ``jaccard_min`` (MinHash candidates, confirmed by the exact Jaccard). In each group the best sample (highest
    ``rank``, then id) is kept; returns ``{duplicate id: {"of": kept id, "why": ..., "score": similarity}}``."""
    import numpy as np

    parent = {s.id: s.id for s in samples}
    why: dict[tuple[str, str], list[tuple[str, float]]] = {}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b, reason, score):
        why.setdefault((a, b), []).append((reason, score))
        why.setdefault((b, a), []).append((reason, score))
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra

    by_hash: dict[str, str] = {}
    for s in samples:
        media = next((getattr(s, k) for k in ("video", "audio", "image", "peak_frame_image") if getattr(s, k)), None)
        if media is None or not Path(media).is_file():
            continue
        h = _file_sha256(Path(media))
        if h in by_hash:
            union(by_hash[h], s.id, f"identical media (sha256 {h[:12]})", 1.0)
        else:
            by_hash[h] = s.id
    sets = {s.id: shingles(s.annotation.final_summary, shingle) for s in samples}
    sigs = {sid: minhash(sh, num_perm) for sid, sh in sets.items() if sh}
    ids = list(sigs)
    est_min = max(0.0, jaccard_min - 0.15)  # MinHash is an estimate: candidates a little below, confirmed exactly
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            if float(np.mean(sigs[a] == sigs[b])) >= est_min:
                j = jaccard(sets[a], sets[b])
                if j >= jaccard_min:
                    union(a, b, f"summary Jaccard {j:.3f} >= {jaccard_min:g} ({shingle}-word shingles)", j)
    groups: dict[str, list[str]] = {}
    for s in samples:
        groups.setdefault(find(s.id), []).append(s.id)
    out: dict[str, dict[str, Any]] = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        keep = sorted(members, key=lambda x: (-rank.get(x, -math.inf), x))[0]
        for m in members:
            if m != keep:
                edges = sorted(((o, v) for (o, q), vs in why.items() if q == m for v in vs),
                               key=lambda e: (e[0] != keep, e[0]))
                out[m] = {"of": keep, "why": "; ".join(f"{r} with {o}" for o, (r, _) in edges),
                          "score": max(v[1] for _, v in edges)}
    return out


@dataclass
class Curation:
    """The gate's curation keys (``curation:`` in the gate YAML)."""

    duplicates: bool = True
    jaccard: float = DUP_JACCARD
    shingle: int = DUP_SHINGLE
    rank_by: str = "composite_score"
    max_per_label: Union[int, dict, None] = None
    min_per_label: Union[int, dict, None] = None

    @classmethod
    def from_spec(cls, spec: Any, where: str) -> "Curation":
        if spec is None:
            return cls()
        if not isinstance(spec, dict):
            raise GateError(f"{where}: 'curation' must be a mapping")
        extra = set(spec) - {"duplicates", "near_duplicate_jaccard", "shingle", "rank_by", "max_per_label",
                             "min_per_label"}
        if extra:
            raise GateError(f"{where}: curation keys {sorted(extra)} unknown")
        c = cls(duplicates=bool(spec.get("duplicates", True)),
                jaccard=float(spec.get("near_duplicate_jaccard", DUP_JACCARD)),
                shingle=int(spec.get("shingle", DUP_SHINGLE)), rank_by=str(spec.get("rank_by", "composite_score")),
                max_per_label=spec.get("max_per_label"), min_per_label=spec.get("min_per_label"))
        if not 0 < c.jaccard <= 1:
            raise GateError(f"{where}: near_duplicate_jaccard must be in (0, 1]")
        for k in ("max_per_label", "min_per_label"):
            v = getattr(c, k)
            if v is not None and not isinstance(v, (int, dict)):
                raise GateError(f"{where}: {k} must be a number or a mapping label -> number")
        return c

    def limit(self, key: str, label: str) -> Optional[int]:
        v = getattr(self, key)
        if isinstance(v, dict):
            v = v.get(label, v.get("*"))
        return None if v is None else int(v)

    def to_json(self) -> dict[str, Any]:
        return {"duplicates": self.duplicates, "near_duplicate_jaccard": self.jaccard, "shingle": self.shingle,
                "rank_by": self.rank_by, "max_per_label": self.max_per_label, "min_per_label": self.min_per_label}


def sample_labels(samples: list[Any], review: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Per sample (label, where from): the curator's edit, else the dataset label, else the emotion the summary
    concludes (``mer_eval.domain.emotion_text``), else ``(none)``."""
    from mer_eval.domain.emotion_text import concluded_emotion

    out = {}
    for s in samples:
        ed = review.get(s.id, {}).get("edits", {}).get("label")
        if ed and ed.get("after"):
            out[s.id] = (str(ed["after"]), "human edit")
        elif s.label:
            out[s.id] = (str(s.label), "label")
        else:
            f = concluded_emotion(s.annotation.final_summary)
            out[s.id] = (f.emotion, "concluded") if f.emotion else ("(none)", "none")
    return out


def _histogram(labels: dict[str, tuple[str, str]], ids: Iterable[str]) -> dict[str, int]:
    from collections import Counter

    c = Counter(labels[i][0] for i in ids if i in labels)
    return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


def curate(result: GateResult, df, run_dir: Path, curation: Curation) -> GateResult:
    """Near-duplicates, per-label caps and minimums, then the curator's decisions (``review.jsonl``), applied
    to ``result`` in that order; a human decision beats every rule (``decided_by = human``)."""
    from mer_eval.discovery import DiscoveryError, discover

    try:
        samples = [s for s in discover(Path(run_dir)).samples]
    except DiscoveryError as e:
        raise GateError(f"curation: cannot read the run's samples ({e})") from None
    review = read_review(run_dir)
    by_id = {d.sample_id: d for d in result.decisions}
    samples = [s for s in samples if s.id in by_id]
    rank: dict[str, float] = {}
    g = df[(df["metric"] == curation.rank_by) & (df["status"] == "ok")]
    hib = metric_directions(df).get(curation.rank_by, True)
    for sid, v in zip(g["sample_id"], g["value"]):
        if v is not None and math.isfinite(float(v)):
            rank[str(sid)] = float(v) if hib else -float(v)
    labels = sample_labels(samples, review)
    result.labels = {k: v[0] for k, v in labels.items()}
    result.curation = curation
    before = _histogram(labels, [d.sample_id for d in result.decisions])
    if curation.duplicates:
        dups = find_duplicates(samples, rank, curation.jaccard, curation.shingle)
        for sid, info in dups.items():
            d = by_id[sid]
            d.issues["near_duplicate"] = True
            d.scores["near_duplicate"] = info["score"]
            d.duplicate_of = info["of"]
            d.failed.append(f"near_duplicate: duplicate of {info['of']} ({info['why']}; the better one is kept)")
            if d.decision == "include":
                d.decision, d.why = "exclude", f"near-duplicate of {info['of']}"
        for s in samples:
            by_id[s.id].issues.setdefault("near_duplicate", False)
    result.warnings = []
    if curation.max_per_label is not None:
        inc: dict[str, list[str]] = {}
        for d in result.decisions:
            if d.decision == "include" and d.sample_id in labels:
                inc.setdefault(labels[d.sample_id][0], []).append(d.sample_id)
        for lab, ids in inc.items():
            cap = curation.limit("max_per_label", lab)
            if cap is None or len(ids) <= cap:
                continue
            for sid in sorted(ids, key=lambda x: (-rank.get(x, -math.inf), x))[cap:]:
                d = by_id[sid]
                d.issues["label_cap"] = True
                d.failed.append(f"label_cap: label {lab!r} over max_per_label {cap} (kept the {cap} best by "
                                f"{curation.rank_by})")
                d.decision, d.why = "exclude", f"label {lab!r} capped at {cap}"
    current = {s.id: annotation_sha256(s) for s in samples if review.get(s.id, {}).get("decision")}
    stale_n = 0
    for d in result.decisions:
        r = review.get(d.sample_id)
        stale = human_staleness(r["sha256"], current.get(d.sample_id)) if r and r["decision"] else None
        if stale:  # made on another annotation: an accept opens nothing; a reject goes back to a person
            stale_n += 1
            d.human = {"decision": r["decision"], "who": r["who"], "when": r["when"], "rules": d.decision,
                       "stale": stale}
            said = f"{r['decision']}ed by {r['who']} at {r['when']}"
            if r["decision"] == "reject" and d.decision == "include":
                d.decision = "review"
                d.why = (f"review: {said}, not applied: {stale}; the rules alone would include it ({d.why}); "
                         "review it again")
            else:
                d.why = f"{d.why}; {said}, not applied: {stale}"
        elif r and r["decision"] in ("accept", "reject"):
            d.decided_by = "human"
            d.human = {"decision": r["decision"], "who": r["who"], "when": r["when"], "rules": d.decision}
            d.decision = "include" if r["decision"] == "accept" else "exclude"
            d.why = (f"{d.decision} (human): {r['decision']}ed by {r['who']} at {r['when']}; the rules said "
                     f"{d.human['rules']} ({d.why})")
        d.include = d.decision == "include"
    if stale_n:
        result.warnings.append(f"{stale_n} human decision(s) in {REVIEW_JSONL} were made on an annotation that "
                               "has changed since: not applied (a reject whose sample the rules would include is "
                               "sent to review); run `mer-eval review` again")
    after = _histogram(labels, [d.sample_id for d in result.decisions if d.decision == "include"])
    if curation.min_per_label is not None:
        for lab in sorted(set(before) | set(after) | (set(curation.min_per_label) - {"*"} if isinstance(
                curation.min_per_label, dict) else set())):
            need = curation.limit("min_per_label", lab)
            if need is not None and after.get(lab, 0) < need:
                result.warnings.append(f"label {lab!r}: {after.get(lab, 0)} included, min_per_label is {need}")
    result.histogram = {"before": before, "after": after,
                        "label_source": dict(_histogram({k: (v[1], "") for k, v in labels.items()}, labels))}
    return result


def load_on_unknown(source: Union[str, Path, None]) -> str:
    """The rule set's ``on_unknown`` (exclude | review); ``include`` is refused here: including samples nothing
    could judge takes the explicit ``--include-unknown`` option."""
    if not source:
        return "exclude"
    v = _read_gate_yaml(source).get("on_unknown", "exclude")
    if v not in ("exclude", "review"):
        raise GateError(f"{source}: on_unknown must be exclude or review (including unknown samples takes "
                        f"--include-unknown), got {v!r}")
    return v


def gate_run(run_dir: Path, source: Union[str, Path, None] = "default", rules: Iterable[str] = (),
             include_unknown: bool = False) -> GateResult:
    """Read the run's scores, apply the rules, write gate.csv / include.txt / gate.json."""
    rule_list, origin = load_rules(source, rules)
    on_unknown = "include" if include_unknown else load_on_unknown(source)
    df = read_scores(run_dir)
    result = evaluate(df, rule_list, origin, on_unknown)
    spec = _read_gate_yaml(source) if source else {}
    curate(result, df, run_dir, Curation.from_spec(spec.get("curation"), spec.get("_origin", "--rule")))
    skipped = skipped_inputs(run_dir)
    if skipped:
        result.warnings.append(f"{len(skipped)} input(s) skipped when the run was scored (unreadable, or not a "
                               f"sample): in no decision; e.g. {skipped[0]}")
    write_gate(run_dir, result)
    return result


def skipped_inputs(run_dir: Path) -> list[str]:
    """Discovery's notes of inputs it skipped when the run was scored (run.json ``extra.input_notes``): files or
    folders that are in no score row, so in no gate decision either. [] for runs scored before they were kept."""
    try:
        meta = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    from mer_eval.discovery import skipped_notes

    notes = (meta.get("extra") or {}).get("input_notes") if isinstance(meta, dict) else None
    return skipped_notes([n for n in notes if isinstance(n, str)]) if isinstance(notes, list) else []


def load_gate(run_dir: Path) -> Optional[dict[str, bool]]:
    """``{sample_id: included}`` from ``RUN/gate.csv``, or None when the run was never gated. A decision made on
    scores the run no longer has is a :class:`GateError` (:func:`gate_staleness`): it never selects samples."""
    p = Path(run_dir) / GATE_CSV
    if not p.is_file():
        return None
    stale = gate_staleness(run_dir)
    if stale:
        raise GateError(f"{Path(run_dir) / GATE_CSV}: {stale}")
    out: dict[str, bool] = {}
    with p.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            dec = (row.get("decision") or "").strip()
            if dec not in ("include", "exclude", "review"):
                raise GateError(f"{p}: sample {row.get('sample_id')!r} has decision {dec!r}")
            out[row["sample_id"]] = dec == "include"
    return out


NEEDS_REVIEW = "needs review"
UNKNOWN_INCLUDED = "nothing could check it: included by --include-unknown"


def left_to_person(row: dict[str, Any]) -> Optional[str]:
    """Why the gate left a sample's decision to a person, or None: a ``review`` decision, or a sample nothing could
    check (``unknown``) that is in the dataset only because unknowns were included on request. A curator's own
    decision (``decided_by`` human) settles both. ``row``: a gate.csv row, or the report's row of it."""
    if row.get("decided_by") == "human":
        return None
    if row.get("decision") == "review":
        return NEEDS_REVIEW
    if row.get("decision") == "include" and row.get("unknown"):
        return UNKNOWN_INCLUDED
    return None


def read_gate_table(run_dir: Path) -> Optional[list[dict[str, str]]]:
    p = Path(run_dir) / GATE_CSV
    if not p.is_file():
        return None
    with p.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def copy_included(run_dir: Path, dest: Path, include: Iterable[str]) -> dict[str, Any]:
    """Copy included sample folders and run.json to ``dest``; never follow a link out of the run.

    Returns {"copied": [ids], "skipped": [notes]}.
    """
    from mer_eval.paths import safe_join, UnsafePathError

    run_dir, dest = Path(run_dir), Path(dest)
    if is_within(dest, run_dir):
        raise GateError(f"--copy-to {dest} lies inside the run {run_dir}")
    dest.mkdir(parents=True, exist_ok=True)
    copied, notes = [], []
    for sid in include:
        check_sample_id(sid)
        try:
            src = safe_join(run_dir, sid)
        except UnsafePathError as e:
            notes.append(f"{sid}: not copied ({e})")
            continue
        if not src.is_dir():
            notes.append(f"{sid}: no sample folder in the run; nothing copied")
            continue
        for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
            dp = Path(dirpath)
            for dn in list(dirnames):
                if (dp / dn).is_symlink():
                    dirnames.remove(dn)
                    notes.append(f"{(dp / dn).relative_to(run_dir)}: symlinked folder not copied")
            for fn in filenames:
                fp = dp / fn
                if fp.is_symlink() and not is_within(fp, run_dir):
                    notes.append(f"{fp.relative_to(run_dir)}: symlink leads outside the run; not copied")
                    continue
                target = dest / fp.relative_to(run_dir)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(fp, target)  # a link inside the run: copy its content
        copied.append(sid)
    rj = run_dir / "run.json"
    if rj.is_file() and not rj.is_symlink():
        shutil.copy2(rj, dest / "run.json")
    elif rj.exists():
        notes.append("run.json is a symlink; not copied")
    return {"copied": copied, "skipped": notes}


def summary_lines(result: GateResult) -> list[str]:
    c = result.counts()
    lines = [f"{c['included']} of {c['samples']} samples included, {c['excluded']} excluded, {c['review']} to review "
             f"(rules from {result.origin}; {c['unknown']} could not be judged: {result.on_unknown})"]
    for r in result.rules:
        pr = c["per_rule"][r.name]
        thr = f" threshold {_fmt(r.threshold)}" if r.threshold is not None else ""
        basis = f" [{r.basis}]" if r.basis and r.kind != "absolute" else ""
        lines.append(f"  {r.name} ({r.mode}: {r.text}){thr}{basis}: {pr['failed']} failed, {pr['passed']} passed, "
                     f"{pr['skipped']} skipped")
    if result.curation is not None:
        lines.append(f"  near-duplicates excluded: {c['near_duplicates']}; human decisions: {c['human']}")
        for k in ("before", "after"):
            h = result.histogram.get(k) or {}
            lines.append(f"  labels {k} gating: " + (", ".join(f"{a} {n}" for a, n in h.items()) or "none"))
    for w in result.warnings:
        lines.append(f"  warning: {w}")
    return lines


def to_json(result: GateResult) -> str:
    return json.dumps({"rules": [r.to_json() for r in result.rules], "counts": result.counts()}, indent=2)
