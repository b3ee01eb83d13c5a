"""``mer-eval probe``: how well each metric, and the composite, tells a run's own samples from corrupted twins.

For each corruption kind (:mod:`mer_eval.generators.corrupt`) and each metric, the AUROC of *original vs
twin*: the probability that an original scores better than a twin (ties count half), over all
original-twin pairs of that kind (Mann-Whitney; 1.0 = every original above every twin, 0.5 = chance). A
value that was not measured (not ok, or a self-check) ranks *last*, as the gates treat it: a metric that
cannot run on some samples of a kind shows 0.5 or less, never a flattering number. A cell where the metric
measured no original and no twin has no AUROC at all (``auroc``, ``ci95`` and ``win_rate`` are null): its
``not_measured`` says why, from the results' own statuses and reasons (``unavailable``: which model is missing;
``not_applicable``: which input the samples lack). Two unmeasured values tie, so such a cell would read 0.5 as
if the metric had been tried and found at chance: a number nobody measured. ``win_rate`` is the paired version (each
original against its own twin). The 95% interval is a percentile bootstrap over samples (pairs resampled
with replacement, ``n_boot`` times, seeded). ``all`` pools every twin of every kind against the originals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

PROBE_JSON = "probe.json"
PROBE_DIR = "mer-eval-probe"


def auroc(pos: np.ndarray, neg: np.ndarray) -> Optional[float]:
    """P(pos > neg) + 0.5 P(pos == neg) (Mann-Whitney U / (n_pos n_neg), average ranks for ties); -inf values
    are the worst and tie each other."""
    from scipy.stats import rankdata

    if len(pos) == 0 or len(neg) == 0:
        return None
    allv = np.concatenate([np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)])
    ranks = rankdata(allv, method="average")
    r_pos = ranks[: len(pos)].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg)))


def win_rate(pairs: list[tuple[float, float]]) -> Optional[float]:
    if not pairs:
        return None
    return float(np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs]))


def bootstrap_ci(pairs: list[tuple[float, float]], n_boot: int, seed: int) -> Optional[tuple[float, float]]:
    """Percentile 95% interval of the pooled AUROC, resampling original samples (with their twins)."""
    return bootstrap_ci_clusters([(a, [b]) for a, b in pairs], n_boot, seed)


def bootstrap_ci_clusters(clusters: list[tuple[float, list[float]]], n_boot: int, seed: int
                          ) -> Optional[tuple[float, float]]:
    """The same for originals each with any number of twins (the ``all`` column): an original is drawn with
    all its twins, so the interval describes the AUROC as it is computed."""
    if len(clusters) < 2 or n_boot <= 0:
        return None
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(clusters), len(clusters))
        pos = np.array([clusters[i][0] for i in idx], dtype=float)
        neg = np.array([b for i in idx for b in clusters[i][1]], dtype=float)
        v = auroc(pos, neg)
        if v is not None:
            vals.append(v)
    if not vals:
        return None
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


@dataclass
class Cell:
    auroc: Optional[float]
    ci: Optional[tuple[float, float]]
    win_rate: Optional[float]
    n_pairs: int
    measured_original: int
    measured_twin: int
    not_measured: Optional[str] = None  # why the metric measured no sample of the cell (then no AUROC)

    def to_dict(self) -> dict[str, Any]:
        return {"auroc": None if self.auroc is None else round(self.auroc, 4),
                "ci95": None if self.ci is None else [round(self.ci[0], 4), round(self.ci[1], 4)],
                "win_rate": None if self.win_rate is None else round(self.win_rate, 4),
                "n_pairs": self.n_pairs, "measured_original": self.measured_original,
                "measured_twin": self.measured_twin, "not_measured": self.not_measured}


@dataclass
class ProbeResult:
    kinds: list[str]
    metrics: list[str]
    cells: dict[str, dict[str, Cell]]  # metric -> kind (and "all") -> cell
    n_originals: int
    twins_by_kind: dict[str, int]
    skipped: dict[str, dict[str, str]]
    twins: list[dict[str, str]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kinds": self.kinds, "metrics": self.metrics, "n_originals": self.n_originals,
                "twins_by_kind": self.twins_by_kind, "skipped": self.skipped,
                "auroc": {m: {k: c.to_dict() for k, c in row.items()} for m, row in self.cells.items()},
                "twins": self.twins, **self.meta}


def _value(row: Optional[dict], higher_is_better: bool) -> float:
    """A measured value oriented so that higher is better; anything unmeasured is -inf (ranks last)."""
    if row is None or row.get("status") != "ok" or not row.get("independent", True):
        return -math.inf
    v = row.get("value")
    if v is None or not math.isfinite(float(v)):
        return -math.inf
    return float(v) if higher_is_better else -float(v)


REASON_CHARS = 200  # of one result's reason in ``not_measured``


def why_unmeasured(rows: list[Optional[dict]], most: int = 3) -> str:
    """Why none of ``rows`` (one metric's results on a cell's samples) was measured: each status and reason with
    its count, most frequent first (``most`` of them, then how many other reasons)."""
    why: dict[str, int] = {}
    for row in rows:
        if row is None:
            w = "no result"
        elif row.get("status") == "ok" and not row.get("independent", True):
            w = "self-check (not independent of the annotation)"
        else:
            r = row.get("reason")
            if isinstance(r, str) and len(r) > REASON_CHARS:  # a composite's reason lists every metric's
                r = r[:REASON_CHARS - 1].rstrip() + "…"
            w = str(row.get("status")) + (f": {r}" if isinstance(r, str) and r else "")
        why[w] = why.get(w, 0) + 1
    order = sorted(why.items(), key=lambda x: (-x[1], x[0]))
    text = "; ".join(f"{w} ({n})" for w, n in order[:most])
    if len(order) > most:
        text += f"; {len(order) - most} other reason(s)"
    return text


def analyse(df, twins: list[Any], originals: list[str], kinds: list[str], skipped: dict[str, dict[str, str]],
            metrics: Optional[list[str]] = None, n_boot: int = 1000, seed: int = 0) -> ProbeResult:
    """``df``: the long score table of originals and twins; ``twins``: :class:`corrupt.Twin` objects."""
    rows: dict[tuple[str, str], dict] = {}
    hib: dict[str, bool] = {}
    for rec in df.to_dict("records"):
        rows[(str(rec["sample_id"]), str(rec["metric"]))] = rec
        if rec.get("higher_is_better") is not None and rec["metric"] not in hib:
            hib[str(rec["metric"])] = bool(rec["higher_is_better"])
    names = metrics or list(dict.fromkeys(str(m) for m in df["metric"]))
    by_kind: dict[str, list[Any]] = {k: [t for t in twins if t.kind == k] for k in kinds}
    cells: dict[str, dict[str, Cell]] = {}
    for m in names:
        up = hib.get(m, True)
        row: dict[str, Cell] = {}
        all_pairs: list[tuple[float, float]] = []
        for k in kinds + ["all"]:
            tw = by_kind[k] if k != "all" else twins
            pairs = [(_value(rows.get((t.original_id, m)), up), _value(rows.get((t.sample.id, m)), up)) for t in tw]
            if k == "all":
                pos = np.array([_value(rows.get((o, m)), up) for o in originals], dtype=float)
                neg = np.array([b for _, b in pairs], dtype=float)
                au = auroc(pos, neg)
            else:
                au = auroc(np.array([a for a, _ in pairs]), np.array([b for _, b in pairs]))
                all_pairs += pairs
            if k == "all":
                of: dict[str, list[float]] = {o: [] for o in originals}
                for t in tw:
                    of.setdefault(t.original_id, []).append(_value(rows.get((t.sample.id, m)), up))
                ci = bootstrap_ci_clusters([(_value(rows.get((o, m)), up), v) for o, v in of.items()], n_boot, seed)
            else:
                ci = bootstrap_ci(pairs, n_boot, seed)
            n_orig = sum(1 for a, _ in pairs if a != -math.inf) if k != "all" else \
                sum(1 for o in originals if _value(rows.get((o, m)), up) != -math.inf)
            n_twin = sum(1 for _, b in pairs if b != -math.inf)
            unmeasured = None
            if pairs and n_orig == 0 and n_twin == 0:  # every value ties at -inf: no AUROC was measured
                ids = originals if k == "all" else list(dict.fromkeys(t.original_id for t in tw))
                unmeasured = why_unmeasured([rows.get((i, m)) for i in ids + [t.sample.id for t in tw]])
                au = ci = None
            row[k] = Cell(auroc=au, ci=ci, win_rate=None if unmeasured else win_rate(pairs), n_pairs=len(pairs),
                          measured_original=n_orig, measured_twin=n_twin, not_measured=unmeasured)
        cells[m] = row
    return ProbeResult(kinds=list(kinds), metrics=names, cells=cells, n_originals=len(originals),
                       twins_by_kind={k: len(v) for k, v in by_kind.items()}, skipped=skipped,
                       twins=[{"id": t.sample.id, "original": t.original_id, "kind": t.kind, "what": t.what}
                              for t in twins])


HEADLINE = ("composite_score",)


def _fmt(c: Cell) -> str:
    if c.not_measured:
        return "not measured"
    if c.auroc is None:
        return "-"
    ci = f" [{c.ci[0]:.2f},{c.ci[1]:.2f}]" if c.ci else ""
    return f"{c.auroc:.2f}{ci}"


def paired_line(row: dict[str, Cell], kinds: list[str]) -> str:
    """The paired counts of one metric, kind by kind: "flip 3/4, swap 5/5, ... originals above their own twin
    (a tie counts half)". The pooled AUROC also compares an original with *other* samples' twins, so on a few
    samples of unequal quality it mixes how good the samples are with what the corruption did; the paired count
    says only the second."""
    parts = []
    for k in kinds:
        c = row[k]
        if c.not_measured or c.win_rate is None or not c.n_pairs:
            parts.append(f"{k} -")
            continue
        wins = c.win_rate * c.n_pairs
        parts.append(f"{k} {wins:.0f}/{c.n_pairs}" if abs(wins - round(wins)) < 1e-9 else f"{k} {wins:.1f}/{c.n_pairs}")
    return ", ".join(parts) + " originals above their own twin (a tie counts half)"


def print_rich(con: Any, res: ProbeResult, only_primary: Optional[list[str]] = None) -> None:
    from rich.table import Table

    t = Table(title=f"probe: AUROC original vs corrupted twin ({res.n_originals} originals; 95% bootstrap CI)",
              show_lines=False)
    t.add_column("metric", overflow="fold")
    for k in res.kinds + ["all"]:
        n = res.twins_by_kind.get(k, sum(res.twins_by_kind.values()))
        t.add_column(f"{k} (n={n})", justify="right")
    order = [m for m in HEADLINE if m in res.cells] + [m for m in res.metrics if m not in HEADLINE]
    for m in order:
        if only_primary is not None and m not in only_primary and m not in HEADLINE:
            continue
        style = "bold" if m in HEADLINE else None
        t.add_row(m, *[_fmt(res.cells[m][k]) for k in res.kinds + ["all"]], style=style)
    con.print(t)
    for m in HEADLINE:
        if m in res.cells:
            con.print(f"  {m}, each original against its own twin: " + paired_line(res.cells[m], res.kinds),
                      highlight=False)
    for m in order:
        if only_primary is not None and m not in only_primary and m not in HEADLINE:
            continue
        gone = [k for k in res.kinds + ["all"] if res.cells[m][k].not_measured]
        if gone:
            where = "any sample" if "all" in gone else "the twins of " + ", ".join(gone) + " or their originals"
            con.print(f"  {m}: not measured on {where} (no AUROC): "
                      f"{res.cells[m]['all' if 'all' in gone else gone[0]].not_measured}", highlight=False)
    for k, sk in res.skipped.items():
        if sk:
            reasons: dict[str, int] = {}
            for why in sk.values():
                reasons[why] = reasons.get(why, 0) + 1
            con.print(f"  {k}: {len(sk)} sample(s) without a twin: "
                      + "; ".join(f"{why} ({n})" for why, n in reasons.items()), highlight=False)
