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
status but ok; a list such as ``[error, unavailable]``), in which case the sample is excluded.

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


@dataclass
class GateResult:
    rules: list[Rule]
    decisions: list[SampleDecision]
    origin: str
    on_unknown: str = "exclude"

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


def evaluate(df, rules: list[Rule], origin: str = "", on_unknown: str = "exclude") -> GateResult:
    """Apply ``rules`` to the long-form scores ``df``; every sample in ``df`` gets a decision.

    Fail closed: a rule whose metric *abstained* (no conclusion, empty summary) fails, as the metric's worst
    value would; a rule whose metric was not measured is skipped, unless ``required`` names that status,
    and then the sample is *unknown*; a sample no rule could judge is unknown too. Unknown samples get
    ``on_unknown`` (``exclude`` by default, ``review``, or ``include`` -- only ever by explicit choice).
    A failed rule decides by its ``action`` (``exclude``, or ``review``: a person should look)."""
    if on_unknown not in ("exclude", "review", "include"):
        raise GateError(f"on_unknown must be exclude, review or include, got {on_unknown!r}")
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
            status, value, reason = cells.get((sid, r.metric), ("missing", None, f"no {r.metric} row in scores"))
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
                if status in r.required:
                    d.issues[r.name] = True
                    d.failed.append(f"{r.name}: {r.metric} is {why} (required)")
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
    header = ["sample_id", "decision", "why", "failed", "unknown", "skipped"]
    for r in result.rules:
        header += [f"is_{r.name}_issue", f"{r.name}_score"]
    w.writerow(header)
    for d in result.decisions:
        row: list[Any] = [d.sample_id, d.decision, d.why, "; ".join(d.failed), "; ".join(d.unknown),
                          "; ".join(d.skipped)]
        for r in result.rules:
            iss = d.issues.get(r.name)
            sc = d.scores.get(r.name)
            row += ["" if iss is None else str(bool(iss)), "" if sc is None else repr(float(sc))]
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
    })
    return paths


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
    result = evaluate(read_scores(run_dir), rule_list, origin, on_unknown)
    write_gate(run_dir, result)
    return result


def load_gate(run_dir: Path) -> Optional[dict[str, bool]]:
    """``{sample_id: included}`` from ``RUN/gate.csv``, or None when the run was never gated."""
    p = Path(run_dir) / GATE_CSV
    if not p.is_file():
        return None
    out: dict[str, bool] = {}
    with p.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            dec = (row.get("decision") or "").strip()
            if dec not in ("include", "exclude", "review"):
                raise GateError(f"{p}: sample {row.get('sample_id')!r} has decision {dec!r}")
            out[row["sample_id"]] = dec == "include"
    return out


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
    return lines


def to_json(result: GateResult) -> str:
    return json.dumps({"rules": [r.to_json() for r in result.rules], "counts": result.counts()}, indent=2)
