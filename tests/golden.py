"""Golden metric outputs (lm-eval's ``tests/testdata`` idea): every metric's value on real data, pinned per
metric version, so a changed number without a version bump fails ``tests/test_golden.py``.

    python tests/golden.py --write    # after a deliberate change: bump the metric's version, then rewrite

Data: the bundled real MER-Factory outputs (``examples/mer-factory``) always; with ``../shared/data`` also its
six MER-Factory outputs and the LibriVox speech run of ``score_fixtures.build_run`` (transcripts checked by
Whisper against the human references). Families: every one that runs offline on real weights (text metrics,
label, conclusion, grounding, AU faithfulness, abstention, cross-modal with MiniLM, AU-F1, ASR with Whisper
base). CLIP / CLAP / NLI have no offline weights; their numbers are pinned against independent references in
their own tests.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GOLDEN = HERE / "data" / "golden" / "metric_outputs.json"
FAMILIES = ["text_quality", "label_agreement", "conclusion", "grounding", "au_faithfulness", "abstention",
            "cross_modal", "au_f1", "asr_wer"]


def compute(shared: Path | None) -> dict:
    """{"versions": {metric: version}, "values": {"set/sample/metric": [status, value]}}."""
    sys.path.insert(0, str(HERE))
    from mer_eval.config import load_config
    from mer_eval.scoring import score_run

    cfg = load_config(None, ["cache.enabled=false"])
    out: dict = {"versions": {}, "values": {}}
    with tempfile.TemporaryDirectory() as td:
        sets = [("examples", REPO / "examples" / "mer-factory", None)]
        if shared is not None:
            import score_fixtures as sf

            loose = Path(td) / "loose"
            loose.mkdir()
            for f in (shared / "annotations-mer-factory").glob("*.json"):
                (loose / f.name).write_bytes(f.read_bytes())
            run = sf.build_run(shared, Path(td) / "run", peak_frames=False)
            sets += [("shared", loose, None), ("librivox", run, sf.write_references(shared, Path(td) / "refs.txt"))]
        for name, path, refs in sets:
            o = score_run(path, cfg, out_dir=Path(td) / f"out-{name}", metrics=FAMILIES, transcripts=refs)
            for m, fam in o.families.items():
                for spec in fam.outputs:
                    out["versions"][spec.name] = fam.version
            for sid, rs in o.results.items():
                for r in rs:
                    if r.metric.startswith("composite"):
                        continue
                    v = None if r.value is None else round(float(r.value), 6)
                    out["values"][f"{name}/{sid}/{r.metric}"] = [r.status.value, v]
    return out


def compare(golden: dict, now: dict) -> list[str]:
    """What changed without a version bump (empty: nothing)."""
    problems = []
    for key, (st, v) in golden["values"].items():
        metric = key.rsplit("/", 1)[1]
        if golden["versions"].get(metric) != now["versions"].get(metric):
            continue  # a new version: its numbers may change (rewrite the golden file)
        if key not in now["values"]:
            problems.append(f"{key}: no longer computed")
            continue
        st2, v2 = now["values"][key]
        if st2 != st or (v is None) != (v2 is None) or (v is not None and not math.isclose(v, v2, abs_tol=1e-6)):
            problems.append(f"{key}: {st} {v} -> {st2} {v2} (version {golden['versions'].get(metric)} unchanged)")
    return problems


if __name__ == "__main__":
    shared = REPO.parent / "shared" / "data"
    if "--write" in sys.argv:
        data = compute(shared if shared.is_dir() else None)
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {GOLDEN}: {len(data['values'])} values")
