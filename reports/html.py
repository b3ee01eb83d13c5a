"""``mer-eval report RUN [RUN ...] -o report.html``: one self-contained HTML file.

No external URL at all: CSS and JS are inline, histograms are inline SVG made here, peak-frame
thumbnails are PIL-downscaled (<= 160 px) JPEG data URLs. The Jinja2 template renders with autoescape on;
the per-sample data for the table goes in a ``<script type="application/json">`` block with ``<``, ``>``,
``&`` escaped as ``\\u003c`` etc. and is rendered by the inline script with ``textContent`` only. A
Content-Security-Policy meta tag allows nothing but that one script (by its sha256), inline styles and
``data:`` images. Only files inside a run folder are ever embedded (:func:`mer_eval.paths.is_within`).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import re
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from mer_eval import __version__

THUMB_PX = 160
MAX_THUMBNAILS = 2000  # beyond this many samples the report would grow past a few tens of MB
TEXT_FIELDS = ("transcript", "audio_description", "visual_expression", "visual_objective", "video_content",
               "image_description", "au_text_description", "llm_au_description", "final_summary")
SCRIPT_HASH_PLACEHOLDER = "__MER_EVAL_SCRIPT_SHA256__"


def json_for_script(obj: Any) -> str:
    """JSON safe to put inside ``<script type="application/json">``: no ``<``, ``>``, ``&`` left raw."""
    s = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    return (s.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def thumbnail_data_url(path: Optional[Path], root: Path, max_px: int = THUMB_PX) -> tuple[Optional[str], Optional[str]]:
    """(data URL, None) for an image inside ``root``, or (None, why not)."""
    from PIL import Image, UnidentifiedImageError

    from mer_eval.paths import is_within

    if path is None:
        return None, "no peak frame or image in the sample"
    p = Path(path)
    if not is_within(p, root):
        return None, f"{p.name}: outside the run folder, not embedded"
    if not p.is_file():
        return None, f"{p.name}: not found"
    try:
        with Image.open(p) as im:
            im = im.convert("RGB")
            im.thumbnail((max_px, max_px))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=82, optimize=True)
    except (UnidentifiedImageError, OSError) as e:
        return None, f"{p.name}: unreadable image ({e})"
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), None


def histogram_svg(values: list[float], title: str, bins: int = 12, width: int = 260, height: int = 120) -> str:
    """An inline SVG histogram of ``values`` (escaped labels, numbers only otherwise)."""
    import numpy as np

    t = html.escape(title)
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return (f'<svg width="{width}" height="{height}" role="img" '
                f'aria-label="{t}: no ok values" class="hist"><text x="8" y="60" font-size="12">no ok values</text></svg>')
    lo, hi = float(v.min()), float(v.max())
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    pad_l, pad_b, pad_t = 28, 22, 8
    pw, ph = width - pad_l - 6, height - pad_b - pad_t
    cmax = max(int(counts.max()), 1)
    bw = pw / bins
    parts = [f'<svg width="{width}" height="{height}" role="img" '
             f'aria-label="{t}: histogram of {v.size} values" class="hist">', f"<title>{t}</title>"]
    for i, c in enumerate(counts):
        h = ph * int(c) / cmax
        x = pad_l + i * bw
        y = pad_t + ph - h
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bw - 1, 1):.1f}" height="{h:.1f}" fill="#4a78c2">'
                     f"<title>{edges[i]:.4g} – {edges[i + 1]:.4g}: {int(c)}</title></rect>")
    base = pad_t + ph
    parts.append(f'<line x1="{pad_l}" y1="{base}" x2="{pad_l + pw}" y2="{base}" stroke="#555"/>')
    parts.append(f'<text x="{pad_l}" y="{height - 6}" font-size="10">{lo:.3g}</text>')
    parts.append(f'<text x="{pad_l + pw}" y="{height - 6}" font-size="10" text-anchor="end">{hi:.3g}</text>')
    parts.append(f'<text x="{pad_l - 4}" y="{pad_t + 9}" font-size="10" text-anchor="end">{cmax}</text>')
    parts.append(f'<text x="{pad_l - 4}" y="{base}" font-size="10" text-anchor="end">0</text>')
    parts.append("</svg>")
    return "".join(parts)


def _coverage(df, metrics: list[str]) -> list[dict[str, Any]]:
    out = []
    for m in metrics:
        g = df[df["metric"] == m]
        counts = Counter(g["status"])
        reasons = Counter((st, r if isinstance(r, str) else "no reason given")
                          for st, r in zip(g["status"], g["reason"]) if st != "ok")
        out.append({
            "metric": m, "n": int(len(g)), "ok": int(counts.get("ok", 0)),
            "counts": {k: int(v) for k, v in sorted(counts.items())},
            "reasons": [{"status": st, "reason": r, "count": n} for (st, r), n in reasons.most_common()],
        })
    return out


def _num(x: Any) -> Optional[float]:
    if x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _run_section(run_dir: Path, label: str, with_samples: bool, max_thumbnails: int = MAX_THUMBNAILS
                 ) -> dict[str, Any]:
    from mer_eval.discovery import discover
    from mer_eval.gates import metric_directions, read_gate_table, read_scores
    from mer_eval.schema import load_evaluation, load_manifest

    run_dir = Path(run_dir)
    df = read_scores(run_dir)
    directions = metric_directions(df)
    metrics = sorted(directions, key=lambda m: (m != "composite_score", m))
    ids = list(dict.fromkeys(df["sample_id"]))
    manifest = None
    if (run_dir / "run.json").is_file():
        manifest = load_manifest(run_dir / "run.json")
    # coverage per sample: composite coverage from evaluation.json when there, else share of ok metrics
    coverage_vals, coverage_src = [], "evaluation.json composite coverage"
    evals = {}
    for sid in ids:
        ep = run_dir / sid / "evaluation.json"
        if ep.is_file():
            try:
                evals[sid] = load_evaluation(ep)
            except (ValueError, OSError):
                pass
    if evals and len(evals) == len(ids) and all(e.composite is not None for e in evals.values()):
        coverage_vals = [float(e.composite.coverage) for e in evals.values()]
    else:
        coverage_src = "share of metrics scored ok per sample (no evaluation.json composite)"
        nc = df[df["metric"] != "composite_score"]
        for sid, g in nc.groupby("sample_id"):
            coverage_vals.append(float((g["status"] == "ok").mean()))
    comp = df[(df["metric"] == "composite_score") & (df["status"] == "ok")]["value"].dropna()
    sec: dict[str, Any] = {
        "label": label, "path": str(run_dir), "n_samples": len(ids),
        "provider": manifest.provider if manifest else None,
        "composite_version": (manifest.score.composite_version if manifest and manifest.score else None),
        "composite_mean": float(comp.mean()) if len(comp) else None, "composite_n": int(len(comp)),
        "coverage_mean": float(sum(coverage_vals) / len(coverage_vals)) if coverage_vals else None,
        "coverage_source": coverage_src,
        "metrics": [{"metric": m, "higher_is_better": directions[m]} for m in metrics],
        "histograms": [],
        "coverage": _coverage(df, metrics),
        "gate": None,
    }
    for m in metrics:
        vals = df[(df["metric"] == m) & (df["status"] == "ok")]["value"].dropna().astype(float).tolist()
        mean = sum(vals) / len(vals) if vals else None
        sec["histograms"].append({"metric": m, "n": len(vals), "mean": mean, "svg": histogram_svg(vals, m),
                                  "arrow": "↑" if directions[m] else "↓"})
    gate_rows = read_gate_table(run_dir)
    gate_by_id: dict[str, dict[str, str]] = {}
    if gate_rows is not None:
        gate_by_id = {r["sample_id"]: r for r in gate_rows}
        gj = run_dir / "gate.json"
        try:
            gate_meta = json.loads(gj.read_text(encoding="utf-8")) if gj.is_file() else {}
        except (json.JSONDecodeError, OSError):
            gate_meta = {}  # gate.csv alone still gives the decisions
        inc = sum(1 for r in gate_rows if r.get("decision") == "include")
        sec["gate"] = {"included": inc, "excluded": len(gate_rows) - inc, "rules": gate_meta.get("rules", []),
                       "per_rule": (gate_meta.get("counts") or {}).get("per_rule", {}),
                       "origin": gate_meta.get("origin")}
    if not with_samples:
        return sec
    ds = discover(run_dir)
    by_id = ds.by_id()
    rows = []
    cells = {(s, m): (st, _num(v), r if isinstance(r, str) else None, mv, mdl)
             for s, m, st, v, r, mv, mdl in zip(df["sample_id"], df["metric"], df["status"], df["value"],
                                                 df["reason"], df.get("metric_version", [None] * len(df)),
                                                 df.get("model", [None] * len(df)))}
    for sid in ids:
        s = by_id.get(sid)
        thumb, thumb_note = (None, "sample folder not found by discovery")
        texts: dict[str, str] = {}
        label = None
        if s is not None:
            if len(rows) < max_thumbnails:
                thumb, thumb_note = thumbnail_data_url(s.frame_image(), run_dir)
            else:
                thumb_note = f"only the first {max_thumbnails} samples get an embedded thumbnail"
            texts = {f: getattr(s.annotation, f) for f in TEXT_FIELDS if getattr(s.annotation, f)}
            label = s.label
        values, statuses, details = {}, {}, []
        for m in metrics:
            st, v, r, mv, mdl = cells.get((sid, m), ("missing", None, f"no {m} row in scores", None, None))
            values[m] = v
            statuses[m] = st
            details.append({"metric": m, "status": st, "value": v, "reason": r,
                            "version": mv if isinstance(mv, str) else None,
                            "model": mdl if isinstance(mdl, str) else None})
        g = gate_by_id.get(sid)
        ev = evals.get(sid)
        rows.append({
            "id": sid, "label": label, "type": s.type.value if s is not None else None,
            "decision": g.get("decision") if g else None,
            "failed": g.get("failed") if g else None, "skipped": g.get("skipped") if g else None,
            "coverage": float(ev.composite.coverage) if ev is not None and ev.composite is not None else None,
            "values": values, "statuses": statuses, "metrics": details, "texts": texts,
            "thumb": thumb, "thumb_note": thumb_note,
        })
    sec["samples"] = rows
    sec["discovery_notes"] = ds.notes
    return sec


def build_report(run_dirs: list[Path], n_boot: int = 2000, seed: int = 0,
                 max_thumbnails: int = MAX_THUMBNAILS) -> str:
    """Render the report for ``run_dirs`` (the first one's samples fill the per-sample table)."""
    from jinja2 import Environment, FileSystemLoader
    from markupsafe import Markup

    from mer_eval.reports.compare import _labels, compare_runs

    run_dirs = [Path(p) for p in run_dirs]
    labels = _labels(run_dirs)
    sections = [_run_section(p, lab, with_samples=(i == 0), max_thumbnails=max_thumbnails) for i, (p, lab) in enumerate(zip(run_dirs, labels))]
    comparison = compare_runs(run_dirs, n_boot=n_boot, seed=seed).to_dict() if len(run_dirs) > 1 else None
    primary = sections[0]
    table = {
        "run": primary["label"],
        "metrics": primary["metrics"],
        "has_gate": primary["gate"] is not None,
        "samples": primary.pop("samples"),
    }
    for h in primary["histograms"] + [h for s in sections[1:] for h in s["histograms"]]:
        h["svg"] = Markup(h["svg"])  # generated here from numbers and escaped names only
    env = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda x, nd=4: "–" if x is None else f"{x:.{nd}g}"
    env.filters["pct"] = lambda x: "–" if x is None else f"{100 * x:.1f}%"
    tpl = env.get_template("report.html.j2")
    out = tpl.render(
        sections=sections, comparison=comparison, table_run=table["run"],
        data_json=Markup(json_for_script(table)),
        created=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), tool_version=__version__,
        script_hash=SCRIPT_HASH_PLACEHOLDER,
    )
    m = re.search(r'<script id="app">(.*?)</script>', out, re.S)
    if m is None:
        raise RuntimeError("report template lacks <script id=\"app\">")
    digest = base64.b64encode(hashlib.sha256(m.group(1).encode("utf-8")).digest()).decode("ascii")
    return out.replace(SCRIPT_HASH_PLACEHOLDER, f"sha256-{digest}", 1)


def write_report(run_dirs: list[Path], out: Path, **kw: Any) -> Path:
    from mer_eval.store import atomic_write_text

    atomic_write_text(Path(out), build_report(run_dirs, **kw))
    return Path(out)
