"""``mer-eval demo``: the whole job on the bundled real example data, offline.

1. validate the bundled examples (media + real MER-Factory outputs)
2. generate annotations for the media with the deterministic offline provider
3. score our run and the real MER-Factory outputs with every metric whose weights exist here
4. gate both runs (include / exclude / review per sample, with every failed rule; fail closed)
5. probe the real MER-Factory outputs: corrupted twins, AUROC per metric and kind
6. write a self-contained HTML report of each
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mer_eval.scoring import score_run
from mer_eval.summary import print_score_summary
from mer_eval.validate import render_validation


def run_demo(con, examples: Path, out: Path, config: Any) -> int:
    from mer_eval.generators.commands import print_summary
    from mer_eval.generators.pipeline import run_generate

    out.mkdir(parents=True, exist_ok=True)
    con.rule("[bold]1. validate the bundled examples")
    render_validation(con, examples, config)

    con.rule("[bold]2. generate annotations for examples/media (provider: offline)")
    run_dir = out / "run-offline"
    summary = run_generate(examples / "media", run_dir, config, progress=True, console=con)
    print_summary(con, summary)

    con.rule("[bold]3a. score our generated run")
    ours = score_run(run_dir, config, progress=True, console=con)
    print_score_summary(con, ours)

    con.rule("[bold]3b. score real MER-Factory outputs (examples/mer-factory)")
    mf_dir = out / "mer-factory-scored"
    mf = score_run(examples / "mer-factory", config, out_dir=mf_dir, progress=True, console=con)
    print_score_summary(con, mf)

    con.rule("[bold]4. gate: which samples would enter the dataset (configs/gates/default.yaml)")
    from mer_eval.gates import gate_run, summary_lines

    for d in (run_dir, mf_dir):
        con.print(f"[bold]{d.name}[/bold]")
        for line in summary_lines(gate_run(d, config.gates)):
            con.print(f"  {line}", highlight=False)

    con.rule("[bold]5. probe: do the scores tell these real annotations from corrupted twins?")
    from mer_eval.cli import run_probe
    from mer_eval.registry import load_object

    res, probe_dir = run_probe(examples / "mer-factory", config, out_dir=out / "mer-factory-probe", n_boot=200,
                               con=con, progress=False)
    primary = ["composite_score", "conclusion_consistency", "grounding", "specificity",
               "quote_fidelity", "number_fidelity", "au_faithfulness", "repetition_rate", "abstained_score"]
    load_object("mer_eval.reports.probe:print_rich")(con, res, primary)
    con.print(f"probe: [bold]{(probe_dir / 'probe.json').resolve()}[/bold]")

    con.rule("[bold]6. report")
    from mer_eval.reports.html import write_report

    for d in (run_dir, mf_dir):
        target = d / "report.html"
        write_report([d], target)
        con.print(f"report: [bold]{target.resolve()}[/bold]")
    return 0
