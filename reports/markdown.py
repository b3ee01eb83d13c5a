"""Markdown for pull-request comments: ``mer-eval regress --markdown`` (and compare's table, in compare.py)."""

from __future__ import annotations

from typing import Any

from mer_eval.reports.regress import _fmt

VERDICTS = {"PASS": "✅ no regression", "REGRESSION": "❌ regression", "NOT COMPARABLE": "⚠️ not comparable",
            "NOT CHECKED": "⛔ not checked"}


def _md(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def regress_markdown(res) -> str:
    out = [f"### mer-eval regress: {VERDICTS[res.verdict]}", ""]
    if res.not_checked:
        out += [f"**Nothing was checked** (exit {res.exit_code}): {_md(res.not_checked)}. A regress check that "
                "compared nothing does not pass.", ""]
    if res.mismatches:
        out += ["Metric versions, parameters, models or code differ from the baseline:", ""]
        out += [f"- {_md(m)}" for m in res.mismatches]
        out += ["", "Re-bless the baseline with the new versions, or score with the old ones."]
    if res.checks:
        out += ["| metric | baseline | run | Δ [95% CI] | tolerance | n | verdict |",
                "|---|---:|---:|---|---:|---:|---|"]
        for c in res.checks:
            if c.lost_samples:
                states = sorted({v.split(":", 1)[0] for v in c.lost_samples.values()})
                verdict_c = (f"❌ regressed: {len(c.lost_samples)} sample(s) ok in the baseline now "
                             f"{' / '.join(states)}")
            elif c.diff is None:
                verdict_c = "not checked"
            else:
                verdict_c = ("❌ regressed" if c.regressed else
                             "worse, within noise" if c.wrong_way and c.beyond_tolerance else
                             "worse, within tolerance" if c.wrong_way else "✅ ok")
            arrow = "↑" if c.higher_is_better else "↓"
            out.append(f"| {_md(c.metric)} {arrow} | {_fmt(c.paired_baseline_mean)} | {_fmt(c.paired_run_mean)} | "
                       f"{_fmt(c.diff)} [{_fmt(c.ci_low)}, {_fmt(c.ci_high)}] | {_fmt(c.tolerance)} | {c.n_paired} | "
                       f"{verdict_c} |")
        worst = [c for c in res.checks if c.regressed and c.worst_samples]
        if worst:
            out += ["", "<details><summary>Most regressed samples</summary>", ""]
            for c in worst:
                out.append(f"- **{_md(c.metric)}**: " + ", ".join(
                    f"`{_md(w['sample_id'])}` {_fmt(w['baseline'])} → {_fmt(w['run'])}" for w in c.worst_samples))
            out += ["", "</details>"]
        lost = [c for c in res.checks if c.lost_samples]
        if lost:
            out += ["", "<details><summary>Samples ok in the baseline, not ok or not in the run</summary>", ""]
            for c in lost:
                items = list(c.lost_samples.items())
                out.append(f"- **{_md(c.metric)}**: " + ", ".join(
                    f"`{_md(k)}` {_md(v.split(':', 1)[0])}" for k, v in items[:20])
                    + (f", … ({len(items) - 20} more)" if len(items) > 20 else ""))
            out += ["", "</details>"]
    if res.notes:
        out += [""] + [f"_note: {_md(n)}_" for n in res.notes]
    return "\n".join(out) + "\n"
