"""Markdown for pull-request comments: ``mer-eval regress --markdown`` (and compare's table, in compare.py)."""

from __future__ import annotations

from typing import Any

from mer_eval.reports.regress import EXIT_MISMATCH, EXIT_OK, EXIT_REGRESSED, _fmt


def _md(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def regress_markdown(res) -> str:
    verdict = {EXIT_OK: "✅ no regression", EXIT_REGRESSED: "❌ regression",
               EXIT_MISMATCH: "⚠️ not comparable"}[res.exit_code]
    out = [f"### mer-eval regress: {verdict}", ""]
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
    if res.notes:
        out += [""] + [f"_note: {_md(n)}_" for n in res.notes]
    return "\n".join(out) + "\n"
