"""Validity of the scores: `mer-eval probe` on real MER-Factory outputs (and the hand-written dev set).

    python bench/validity.py [--bootstrap 1000] [--json bench/validity.json] [--no-devset]

Sets, each probed with the same default config (`score.composite: mer-v2`), twins of every kind:

* ``shared``: the six real MER-Factory outputs in ``../shared/data/annotations-mer-factory`` (Gemini,
  LLaVA, BakLLaVA, the default clip's MER / sentiment / AU outputs), with and without their labels (they
  carry none: one row);
* ``examples``: the three real MER-Factory outputs bundled in ``examples/mer-factory`` (default with its real
  OpenFace CSV, Gemini, LLaVA);
* ``devset`` / ``devset-nolabel``: ``bench/devset`` (64 hand-written records, NOT real data; see its README),
  with its ``ground_truth_label`` and with the labels removed.

Prints, per set, the AUROC (original vs twin, 95% bootstrap CI) of the composite and of
the metrics mer-v2 counts, per corruption kind; writes everything to ``--json``. Weight-free metrics only
(the families that run offline); nothing is timed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "annotations-mer-factory"
FAMILIES = ["text_quality", "label_agreement", "conclusion", "grounding", "au_faithfulness", "abstention",
            "cross_modal", "au_f1"]
SHOW = ["composite_score", "conclusion_consistency", "grounding", "specificity",
        "quote_fidelity", "number_fidelity", "au_faithfulness", "repetition_rate", "abstained_score",
        "label_match", "distinct2", "cross_modal_agreement", "cm_semantic"]


def _copy_set(name: str, tmp: Path) -> Path | None:
    out = tmp / name
    if name == "shared":
        if not SHARED.is_dir():
            return None
        out.mkdir()
        for f in SHARED.glob("*.json"):
            shutil.copy(f, out / f.name)
    elif name == "examples":
        shutil.copytree(ROOT / "examples" / "mer-factory", out)
    elif name.startswith("devset"):
        src = ROOT / "bench" / "devset"
        out.mkdir()
        for f in src.glob("*/*/*_merr_data.json"):
            d = out / f.parent.name
            d.mkdir()
            data = json.loads(f.read_text(encoding="utf-8"))
            if name == "devset-nolabel":
                data.pop("ground_truth_label", None)
            (d / f.name).write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "validity.json")
    ap.add_argument("--no-devset", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from rich.console import Console

    from mer_eval.cli import run_probe
    from mer_eval.config import load_config
    from mer_eval.reports.probe import print_rich

    con = Console(width=170)
    cfg = load_config()
    sets = ["shared", "examples"] + ([] if args.no_devset else ["devset", "devset-nolabel"])
    report: dict = {"composite": cfg.score.composite, "families": FAMILIES, "bootstrap": args.bootstrap, "sets": {}}
    with tempfile.TemporaryDirectory() as td:
        for name in sets:
            run = _copy_set(name, Path(td))
            if run is None:
                con.print(f"[yellow]{name}: ../shared/data is absent, skipped[/yellow]")
                continue
            res, _ = run_probe(run, cfg, kinds=None, metrics=FAMILIES, seed=args.seed, n_boot=args.bootstrap,
                               use_cache=False)
            con.rule(f"{name}{' (hand-written, not real data)' if name.startswith('devset') else ' (real)'}")
            print_rich(con, res, [m for m in SHOW if m in res.cells])
            report["sets"][name] = {
                "real": not name.startswith("devset"), "n_originals": res.n_originals,
                "twins_by_kind": res.twins_by_kind,
                "auroc": {m: {k: c.to_dict() for k, c in res.cells[m].items()} for m in SHOW if m in res.cells},
                "skipped": res.skipped}
    args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    con.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
