"""Console summary of a scored run: mean, coverage and reasons per metric, top / bottom samples."""

from __future__ import annotations

from typing import Any

from mer_eval.schema import Status


def metric_table_rows(outcome: Any) -> list[dict]:
    """One row per metric: n ok / n, mean, and the most common reasons it could not score. The mean is the run's
    (run.json's means): self-check values left out (``self_checks`` counts them), each abstention counted at the
    output's worst value (None where the output has none)."""
    if getattr(outcome, "metric_rows", None) is not None:  # accumulated while scoring (a streamed run)
        return outcome.metric_rows
    from mer_eval.scoring import _Stats

    stats = _Stats(getattr(outcome, "families", None) or {})  # the same counts and means a streamed run keeps
    stats.add(outcome.results)
    return stats.metric_rows()


def print_score_summary(con, outcome: Any, top: int = 3) -> None:
    from rich.markup import escape  # paths, reasons and model names are data: never rich markup
    from rich.table import Table

    t = Table(title=f"scores: {escape(str(outcome.out_dir))}  ({len(outcome.results)} samples, "
                    f"{outcome.seconds:.1f} s, cache hits {outcome.section.cache_hits})")
    for c in ("metric", "coverage", "mean", "model", "why not (most common)"):
        t.add_column(c, overflow="fold")
    for row in metric_table_rows(outcome):
        mean = "-" if row["mean"] is None else f"{row['mean']:.3f}"
        if row.get("abstained"):  # counted in the mean at the worst value (or no mean: the output has none)
            mean += f" ({row['abstained']} abstained{', no worst value' if row['mean'] is None else ' = worst'})"
        if row.get("self_checks"):  # ok values that re-check the annotation's own inputs: in no mean
            mean += f" ({row['self_checks']} self-check{'s' if row['self_checks'] > 1 else ''} left out)"
        why = "\n".join(f"{n}× {r[:120]}" for r, n in row["reasons"]) or "-"
        t.add_row(row["metric"], f"{row['ok']}/{row['n']}", mean, escape(row["model"] or "-"), escape(why))
    con.print(t)
    from mer_eval.discovery import skipped_notes

    notes = list(getattr(outcome.dataset, "notes", []) or [])
    skipped = skipped_notes(notes)
    if notes:
        con.print(f"input: {len(notes)} note(s) from reading it" + (
            f", {len(skipped)} of them input(s) skipped: not scored, in no gate or export" if skipped else "")
            + " (all in run.json, extra.input_notes)", highlight=False)
        for n in (skipped or notes)[:5]:
            con.print(f"  {n}", highlight=False, markup=False)
        if len(skipped or notes) > 5:
            con.print(f"  … and {len(skipped or notes) - 5} more", highlight=False)
    comps = [(sid, v) for sid, st, v, _ in outcome.composites() if st == Status.ok.value and v is not None]
    comps.sort(key=lambda x: x[1], reverse=True)
    if comps:
        best = ", ".join(f"{s} {v:.1f}" for s, v in comps[:top])
        worst = ", ".join(f"{s} {v:.1f}" for s, v in comps[-top:][::-1])
        con.print(f"composite ({outcome.section.composite_version}): top {best}  ·  bottom {worst}")
    for fam, agg in outcome.aggregates.items():
        if agg:
            figures = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in agg.items())
            con.print(f"{fam} (dataset level): {figures}")
    con.print(f"wrote {outcome.out_dir}/mer_eval_summary.csv, scores.parquet, <id>/mer_eval_scores.json, run.json")


def score_summary_json(outcome: Any) -> dict:
    """What ``score --json`` prints: where it wrote, per metric n ok / n / mean / reasons, per sample its
    composite (or why none), dataset-level aggregates."""
    comp = {sid: {"status": st, "value": v, "reason": why} for sid, st, v, why in outcome.composites()}
    return {
        "out_dir": str(outcome.out_dir), "n_samples": len(outcome.results), "seconds": round(outcome.seconds, 3),
        "cache_hits": outcome.section.cache_hits, "composite_version": outcome.section.composite_version,
        "metrics": [{"metric": r["metric"], "ok": r["ok"], "n": r["n"], "mean": r["mean"],
                     "abstained": r.get("abstained", 0), "self_checks": r.get("self_checks", 0), "model": r["model"],
                     "reasons": [{"reason": why, "count": n} for why, n in r["reasons"]]}
                    for r in metric_table_rows(outcome)],
        "composite": comp,
        "aggregates": outcome.aggregates,
    }
