"""``mer-eval demo``: the whole job on the bundled real example data, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mer_eval.scoring import score_run
from mer_eval.summary import print_score_summary
from mer_eval.validate import render_validation


def run_demo(con, examples: Path, out: Path, config: Any) -> int:
    out.mkdir(parents=True, exist_ok=True)
    con.rule("[bold]1. validate the bundled examples")
    render_validation(con, examples, config)

    con.rule("[bold]2. score real MER-Factory outputs (examples/mer-factory)")
    mf = score_run(examples / "mer-factory", config, out_dir=out / "mer-factory-scored", progress=True,
                   console=con)
    print_score_summary(con, mf)
    return 0
