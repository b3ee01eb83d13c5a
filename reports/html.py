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
# the composite (abstentions count as worst); composite_lenient (abstentions left out) only in runs scored before
# it was retired, shown as such
COMPOSITES = ("composite_score", "composite_lenient")
# the per-sample table's columns shown by default (the rest are toggled in the column chooser)
DEFAULT_COLUMNS = ("run", "id", "label", "decision", "m:composite_score")
ATTENTION_MAX = 50  # cards in "needs attention" (the table lists them all, in the same order)
ATTENTION_WORST = 10  # without gate decisions or flags: this many worst composites
COMPOSITE_TITLES = {"composite_score": "abstentions count as worst",
                    "composite_lenient": "retired lenient composite of an older run: abstentions left out, so not "
                                         "answering could score above answering wrong"}
# what each corruption kind of ``mer-eval probe`` does (generators/corrupt.py)
PROBE_KINDS = {
    "flip": "the concluded emotion's words replaced by another emotion's",
    "swap": "the summary of another clip that concludes a different emotion",
    "au": "a detected AU the summary names renamed to one no evidence shows",
    "degen": "one sentence of the summary repeated",
    "generic": "a one-sentence boilerplate naming the label or conclusion",
    "transcript": "the transcript shuffled, a third replaced by other samples' words of its script",
    "drop": "one modality's description removed",
    "all": "every twin of every kind against the originals",
}


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


def histogram_svg(values: list[float], title: str, bins: int = 12, width: int = 260, height: int = 120,
                  empty: str = "no ok values") -> str:
    """An inline SVG histogram of ``values`` (escaped labels, numbers only otherwise); ``empty`` is what it
    says when there is no value."""
    import numpy as np

    t = html.escape(title)
    e = html.escape(empty)
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return (f'<svg width="{width}" height="{height}" role="img" '
                f'aria-label="{t}: {e}" class="hist"><text x="8" y="60" font-size="12">{e}</text></svg>')
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


def self_check_mask(df):
    """Rows of a score table that are self-checks (:func:`mer_eval.evidence.counts` said no, as recorded in
    scores.parquet's ``independent`` / ``dependence``): never shown as evidence."""
    import pandas as pd

    mask = pd.Series(False, index=df.index)
    if "independent" in df.columns:
        mask |= df["independent"].map(lambda x: not pd.isna(x) and not bool(x)).astype(bool)  # NaN/None: unrecorded
    if "dependence" in df.columns:
        # astype: on an empty column map keeps the column's dtype (str), and bool | str is deprecated in pandas
        mask |= df["dependence"].map(lambda x: isinstance(x, str) and bool(x.strip())).astype(bool)
    return mask


def _dependence_reason(x: Any) -> str:
    if isinstance(x, str) and x.strip():
        return x
    return "self-check: marked not independent (no reason recorded)"


def _coverage(df, metrics: list[str]) -> list[dict[str, Any]]:
    """Per metric: how many values count, how many were left out as self-checks (and why), how many
    abstained (a defect), and why the rest were not scored."""
    sc = self_check_mask(df)
    out = []
    for m in metrics:
        sel = df["metric"] == m
        g = df[sel]
        gsc = sc[sel]
        counts = Counter(g["status"])
        ok = g["status"] == "ok"
        left = g[ok & gsc]
        dep = left["dependence"] if "dependence" in left.columns else [None] * len(left)
        left_reasons = Counter(_dependence_reason(r).removeprefix("self-check: ") for r in dep)
        reasons = Counter((st, r if isinstance(r, str) else "no reason given")
                          for st, r in zip(g["status"], g["reason"]) if st != "ok")
        relations = Counter(str(r) for r in g["relation"].dropna()) if "relation" in g.columns else Counter()
        n_ok = int(counts.get("ok", 0))
        out.append({
            "metric": m, "n": int(len(g)), "ok": n_ok,
            "counted": int((ok & ~gsc).sum()), "self_check": int(len(left)),
            "self_check_reasons": [{"reason": r, "count": n} for r, n in left_reasons.most_common()],
            "abstained": int(counts.get("abstained", 0)),
            "not_scored": int(len(g)) - n_ok - int(counts.get("abstained", 0)),
            "counts": {k: int(v) for k, v in sorted(counts.items())},
            "relations": [{"relation": r, "count": n} for r, n in relations.most_common()],
            "reasons": [{"status": st, "reason": r, "count": n} for (st, r), n in reasons.most_common()],
        })
    return out


def _num(x: Any) -> Optional[float]:
    if x is None or isinstance(x, bool):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(x: Any) -> Optional[int]:
    f = _num(x)
    return int(f) if f is not None and f == int(f) and f >= 0 else None


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> str:
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b))


CHANCE_RGB, PERFECT_RGB, BELOW_RGB = (246, 246, 246), (34, 125, 68), (228, 150, 140)


def auroc_style(a: Optional[float]) -> str:
    """Inline style of one probe cell: grey at chance (0.5), deepening to green at 1.0; below chance (the
    metric ranks corrupted twins higher) a red tint. Numbers only: safe in a style attribute."""
    if a is None:
        return "background:#ffffff;color:#8a8f99"
    if a >= 0.5:
        t = min((a - 0.5) / 0.5, 1.0)
        return f"background:{_mix(CHANCE_RGB, PERFECT_RGB, t)};color:{'#ffffff' if t > 0.55 else '#1d2330'}"
    t = min((0.5 - a) / 0.5, 1.0)
    return f"background:{_mix(CHANCE_RGB, BELOW_RGB, t)};color:#1d2330"


def _probe_section(run_dir: Path, coverage: list[dict[str, Any]], manifest: Any) -> Optional[dict[str, Any]]:
    """``RUN/mer-eval-probe/probe.json`` (``mer-eval probe``) as the rows of the report's probe table, or
    None when the run has none. A file that cannot be read gives a section that says why."""
    from mer_eval.reports.probe import HEADLINE, PROBE_DIR, PROBE_JSON

    path = Path(run_dir) / PROBE_DIR / PROBE_JSON
    if not path.is_file():
        return None
    out: dict[str, Any] = {"path": str(path), "error": None, "warnings": [], "rows": [], "kinds": []}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        out["error"] = f"unreadable: {e}"
        return out
    if not isinstance(data, dict) or not isinstance(data.get("auroc"), dict):
        out["error"] = "not a probe.json written by mer-eval probe (no 'auroc' table)"
        return out
    table = data["auroc"]
    kinds = [k for k in data["kinds"] if isinstance(k, str)] if isinstance(data.get("kinds"), list) else []
    if not kinds:  # older or hand-made files: the kinds the cells name
        kinds = list(dict.fromkeys(str(k) for row in table.values() if isinstance(row, dict) for k in row
                                   if k != "all"))
    if any(isinstance(row, dict) and "all" in row for row in table.values()):
        kinds = kinds + ["all"]
    tbk = data.get("twins_by_kind") if isinstance(data.get("twins_by_kind"), dict) else {}
    skipped = data.get("skipped") if isinstance(data.get("skipped"), dict) else {}
    for k in kinds:
        n = _int(tbk.get(k)) if k != "all" else sum(_int(v) or 0 for v in tbk.values())
        sk = skipped.get(k) if isinstance(skipped.get(k), dict) else {}
        by_reason: dict[str, list[str]] = {}
        for sid, why in sk.items():
            by_reason.setdefault(str(why), []).append(str(sid))
        out["kinds"].append({"kind": k, "n": n, "what": PROBE_KINDS.get(k),
                             "skipped": [{"reason": r, "count": len(ids), "ids": ids}
                                         for r, ids in sorted(by_reason.items(), key=lambda x: -len(x[1]))]})
    listed = [m for m in data["metrics"] if isinstance(m, str) and m in table] \
        if isinstance(data.get("metrics"), list) else []
    names = [m for m in HEADLINE if m in table] + [m for m in listed + [str(m) for m in table]
                                                   if m not in HEADLINE]
    cov = {c["metric"]: c for c in coverage}
    for m in dict.fromkeys(names):
        row = table.get(m)
        if not isinstance(row, dict):
            continue
        cells = []
        for k in kinds:
            c = row.get(k) if isinstance(row.get(k), dict) else {}
            a = _num(c.get("auroc"))
            ci = c.get("ci95")
            ci = [_num(ci[0]), _num(ci[1])] if isinstance(ci, (list, tuple)) and len(ci) == 2 else None
            if ci is not None and None in ci:
                ci = None
            nm = c.get("not_measured") if isinstance(c.get("not_measured"), str) else None
            if nm is None and "not_measured" not in c and _int(c.get("n_pairs")) and \
                    _int(c.get("measured_original")) == 0 and _int(c.get("measured_twin")) == 0:
                # a probe.json older than the field holds 0.5 there (two unmeasured values tie): not a measurement
                nm = "measured on no original and no twin (probe.json of an older mer-eval: run mer-eval probe " \
                     "again for the reasons)"
            if nm:
                a = ci = None
            cell = {"kind": k, "auroc": a, "ci": ci, "win_rate": None if nm else _num(c.get("win_rate")),
                    "n_pairs": _int(c.get("n_pairs")), "measured_original": _int(c.get("measured_original")),
                    "measured_twin": _int(c.get("measured_twin")), "style": auroc_style(a), "not_measured": nm}
            bits = [f"{m} on {k}: " + (f"not measured: {nm}" if nm else "AUROC " + ("–" if a is None else f"{a:.4g}"))]
            if ci:
                bits.append(f"95% CI [{ci[0]:.4g}, {ci[1]:.4g}]")
            if cell["win_rate"] is not None:
                bits.append(f"paired win rate {cell['win_rate']:.4g}")
            if cell["n_pairs"] is not None:
                bits.append(f"{cell['n_pairs']} pairs")
            if cell["measured_original"] is not None and cell["measured_twin"] is not None:
                bits.append(f"measured: {cell['measured_original']} originals, {cell['measured_twin']} twins")
            cell["title"] = "; ".join(bits)
            cells.append(cell)
        c = cov.get(m)
        note = None
        if c is not None and c["self_check"] and not c["counted"]:
            note = "self-check in this run: never measured"
        elif cells and cells[-1]["kind"] == "all" and cells[-1]["not_measured"]:
            note = f"not measured on any sample: {cells[-1]['not_measured']}"
        out["rows"].append({"metric": m, "headline": m in HEADLINE, "note": note, "cells": cells})
    out["n_originals"] = _int(data.get("n_originals"))
    out["n_boot"] = _int(data.get("n_boot"))
    out["seed"] = data.get("seed") if isinstance(data.get("seed"), int) else None
    cv = data.get("composite_version")
    out["composite_version"] = cv if isinstance(cv, str) else None
    run_cv = manifest.score.composite_version if manifest is not None and manifest.score else None
    run_hash = manifest.score.config_hash if manifest is not None and manifest.score else None
    if run_cv and out["composite_version"] and run_cv != out["composite_version"]:
        out["warnings"].append(f"the probe measured composite {out['composite_version']}, the run is scored "
                               f"with {run_cv}: run mer-eval probe again")
    ph = data.get("config_hash")
    if run_hash and isinstance(ph, str) and ph != run_hash:
        out["warnings"].append(f"the probe was scored with config {ph}, the run with {run_hash}: the AUROCs "
                               f"may not describe these scores")
    return out


def _run_section(run_dir: Path, label: str, with_samples: bool, max_thumbnails: int = MAX_THUMBNAILS
                 ) -> dict[str, Any]:
    from mer_eval.discovery import discover
    from mer_eval.gates import gate_staleness, metric_directions, read_gate_table, read_scores
    from mer_eval.schema import load_evaluation, load_manifest
    from mer_eval.store import evaluation_path

    run_dir = Path(run_dir)
    df = read_scores(run_dir)
    sc = self_check_mask(df)
    df = df.assign(_counts=(df["status"] == "ok") & ~sc)
    directions = metric_directions(df)
    metrics = sorted(directions, key=lambda m: (COMPOSITES.index(m) if m in COMPOSITES else len(COMPOSITES),
                                                m))
    ids = list(dict.fromkeys(df["sample_id"]))
    manifest = None
    if (run_dir / "run.json").is_file():
        manifest = load_manifest(run_dir / "run.json")
    # coverage per sample: composite coverage from evaluation.json when there, else share of counted metrics
    coverage_vals, coverage_src = [], "mer_eval_scores.json composite coverage"
    evals = {}
    for sid in ids:
        ep = evaluation_path(run_dir / sid)  # mer_eval_scores.json, or an old run's evaluation.json
        if ep is not None:
            try:
                evals[sid] = load_evaluation(ep)
            except (ValueError, OSError):
                pass
    if evals and len(evals) == len(ids) and all(e.composite is not None for e in evals.values()):
        coverage_vals = [float(e.composite.coverage) for e in evals.values()]
    else:
        coverage_src = "share of metrics with a value that counts per sample (no mer_eval_scores.json composite)"
        nc = df[~df["metric"].isin(COMPOSITES)]
        for sid, g in nc.groupby("sample_id"):
            coverage_vals.append(float(g["_counts"].mean()))
    coverage = _coverage(df, metrics)
    composites = []
    for name in COMPOSITES:
        v = df[(df["metric"] == name) & df["_counts"]]["value"].dropna()
        st = Counter(df[df["metric"] == name]["status"])
        if name in directions or len(v):
            composites.append({"metric": name, "title": COMPOSITE_TITLES[name],
                               "mean": float(v.mean()) if len(v) else None, "n": int(len(v)),
                               "abstained": int(st.get("abstained", 0))})
    abst = df[df["status"] == "abstained"]
    self_checked = [c for c in coverage if c["self_check"]]
    sec: dict[str, Any] = {
        "label": label, "path": str(run_dir), "n_samples": len(ids),
        "provider": manifest.provider if manifest else None,
        "composite_version": (manifest.score.composite_version if manifest and manifest.score else None),
        "composites": composites,
        "composite_mean": composites[0]["mean"] if composites else None,
        "composite_n": composites[0]["n"] if composites else 0,
        "coverage_mean": float(sum(coverage_vals) / len(coverage_vals)) if coverage_vals else None,
        "coverage_source": coverage_src,
        "abstained": {"values": int(len(abst)), "samples": int(abst["sample_id"].nunique()),
                      "metrics": int(abst["metric"].nunique())},
        "self_checks": {"values": sum(c["self_check"] for c in self_checked),
                        "metrics": [c["metric"] for c in self_checked]},
        "metrics": [{"metric": m, "higher_is_better": directions[m], "title": COMPOSITE_TITLES.get(m)}
                    for m in metrics],
        "histograms": [],
        "coverage": coverage,
        "gate": None,
        "probe": _probe_section(run_dir, coverage, manifest),
    }
    cov = {c["metric"]: c for c in coverage}
    for m in metrics:
        vals = df[(df["metric"] == m) & df["_counts"]]["value"].dropna().astype(float).tolist()
        mean = sum(vals) / len(vals) if vals else None
        c = cov[m]
        empty = "only self-checks: no mean" if c["self_check"] and not vals else "no ok values"
        sec["histograms"].append({"metric": m, "n": len(vals), "mean": mean,
                                  "svg": histogram_svg(vals, m, empty=empty),
                                  "arrow": "↑" if directions[m] else "↓", "self_check": c["self_check"],
                                  "self_check_reasons": c["self_check_reasons"], "abstained": c["abstained"]})
    gate_rows = read_gate_table(run_dir)
    gate_by_id: dict[str, dict[str, str]] = {}
    if gate_rows is not None:
        gate_by_id = {r["sample_id"]: r for r in gate_rows}
        gj = run_dir / "gate.json"
        try:
            gate_meta = json.loads(gj.read_text(encoding="utf-8")) if gj.is_file() else {}
        except (json.JSONDecodeError, OSError):
            gate_meta = {}  # gate.csv alone still gives the decisions
        if not isinstance(gate_meta, dict):
            gate_meta = {}
        counts = _gate_counts(gate_rows, gate_meta)
        sec["gate"] = {**counts, "rules": gate_meta.get("rules", []),
                       "per_rule": (gate_meta.get("counts") or {}).get("per_rule", {}),
                       "origin": gate_meta.get("origin"),
                       "human": sum(1 for r in gate_rows if r.get("decided_by") == "human"),
                       "histogram": gate_meta.get("label_histogram") or {},
                       "warnings": list(gate_meta.get("warnings") or []) + counts["mismatch"]
                       + [f"stale gate decision: {w}" for w in [gate_staleness(run_dir)] if w]}
    if not with_samples:
        return sec
    ds = discover(run_dir)
    by_id = ds.by_id()
    # scores written elsewhere (``score --out``): the annotation texts are in the input run.json records
    input_by_id: dict[str, Any] = {}
    if manifest is not None and manifest.input and any(sid not in by_id for sid in ids):
        src = Path(manifest.input)
        if src.exists() and src.resolve() != run_dir.resolve():
            try:
                input_by_id = discover(src).by_id()
            except (OSError, ValueError) as e:
                sec.setdefault("notes", []).append(f"annotation texts: {src} unreadable ({e})")
    rows = []
    deps = df["dependence"] if "dependence" in df.columns else [None] * len(df)
    cells = {(s, m): (st, _num(v), r if isinstance(r, str) else None, mv, mdl,
                      _dependence_reason(dp) if selfc else None)
             for s, m, st, v, r, mv, mdl, dp, selfc in zip(
                 df["sample_id"], df["metric"], df["status"], df["value"], df["reason"],
                 df.get("metric_version", [None] * len(df)), df.get("model", [None] * len(df)), deps, sc)}
    for sid in ids:
        s = by_id.get(sid)
        thumb, thumb_note = (None, "sample folder not found by discovery")
        texts: dict[str, str] = {}
        label = None
        texts_from = None
        if s is None and sid in input_by_id:
            s, texts_from = input_by_id[sid], str(manifest.input)
        if s is not None:
            if len(rows) < max_thumbnails:
                thumb, thumb_note = thumbnail_data_url(s.frame_image(), run_dir)
            else:
                thumb_note = f"only the first {max_thumbnails} samples get an embedded thumbnail"
            texts = {f: getattr(s.annotation, f) for f in TEXT_FIELDS if getattr(s.annotation, f)}
            label = s.label
        values, statuses, self_checks, details, abstained = {}, {}, {}, [], []
        for m in metrics:
            st, v, r, mv, mdl, dep = cells.get((sid, m),
                                               ("missing", None, f"no {m} row in scores", None, None, None))
            dep = dep if st == "ok" else None  # a value that was never measured needs no warning
            # the table and its sort see only values that count; a self-check keeps its value in the
            # drill-down, marked as not counted
            values[m] = v if st == "ok" and dep is None else None
            statuses[m] = st
            if dep is not None:
                self_checks[m] = dep
            if st == "abstained":
                abstained.append(m)
            details.append({"metric": m, "status": st, "value": v, "reason": r, "self_check": dep,
                            "version": mv if isinstance(mv, str) else None,
                            "model": mdl if isinstance(mdl, str) else None})
        g = gate_by_id.get(sid)
        ev = evals.get(sid)
        rows.append({
            "id": sid, "key": f"{sec['label']}/{sid}", "label": label,
            "type": s.type.value if s is not None else None,
            # a curator's decision (mer-eval review) beats the rules and is shown as such
            "decision": (g.get("decision") + (" (human)" if g.get("decided_by") == "human" else "")) if g else None,
            "failed": g.get("failed") if g else None, "skipped": g.get("skipped") if g else None,
            # why no rule could judge it (gate.csv's unknown column; an older gate.csv has none)
            "unknown": (g.get("unknown") or None) if g else None,
            "decided_by": (g.get("decided_by") or "rules") if g else None,
            "coverage": float(ev.composite.coverage) if ev is not None and ev.composite is not None else None,
            "values": values, "statuses": statuses, "self_checks": self_checks, "abstained": abstained,
            "metrics": details, "texts": texts, "texts_from": texts_from,
            "thumb": thumb, "thumb_note": thumb_note, "run": sec["label"],
            "media": _media_link(s, run_dir) if s is not None else None,
        })
    sec["samples"] = rows
    sec["discovery_notes"] = ds.notes
    return sec


def _media_link(s: Any, run_dir: Path) -> Optional[dict[str, str]]:
    """A ``file:`` link to the sample's video or audio when it lies inside the run folder (never outside)."""
    from mer_eval.paths import is_within

    for kind in ("video", "audio"):
        p = getattr(s, kind, None)
        if p is not None and is_within(Path(p), run_dir) and Path(p).is_file():
            return {"kind": kind, "name": Path(p).name, "uri": Path(p).resolve().as_uri()}
    return None


GATE_DECISIONS = ("include", "exclude", "review")
GATE_COUNT_KEYS = {"include": "included", "exclude": "excluded", "review": "review"}
ON_UNKNOWN = {"include": "unknowns included by --include-unknown", "exclude": "unknowns excluded (fail closed)",
              "review": "unknowns sent to review"}


def _gate_counts(gate_rows: list[dict[str, str]], gate_meta: dict[str, Any]) -> dict[str, Any]:
    """The gate card's counts: gate.json's own ``counts`` (included, excluded, review, unknown) as the gate wrote
    them; for an older gate.json without them, the decisions in gate.csv counted (``unknown``: None where gate.csv
    has no unknown column either). ``mismatch``: where gate.json's counts and gate.csv's decisions disagree."""
    tally: dict[str, Optional[int]] = {
        GATE_COUNT_KEYS[k]: sum(1 for r in gate_rows if r.get("decision") == k) for k in GATE_DECISIONS}
    has_unknown_col = all("unknown" in r for r in gate_rows)
    tally["unknown"] = sum(1 for r in gate_rows if r.get("unknown")) if has_unknown_col else None
    c = gate_meta.get("counts")
    keys = ("included", "excluded", "review", "unknown")
    ok = isinstance(c, dict) and all(isinstance(c.get(k), int) and not isinstance(c.get(k), bool) and c[k] >= 0
                                     for k in keys)
    on_unknown = (c.get("on_unknown") if isinstance(c, dict) else None) or gate_meta.get("on_unknown")
    out: dict[str, Any] = {"on_unknown": on_unknown if on_unknown in ON_UNKNOWN else None,
                           "on_unknown_text": ON_UNKNOWN.get(on_unknown), "mismatch": []}
    if ok:
        out.update({k: c[k] for k in keys}, counts_from="gate.json")
        for k in keys:
            if tally[k] is not None and tally[k] != c[k]:
                out["mismatch"].append(f"gate.json counts {k} {c[k]} but gate.csv has {tally[k]}: the two files "
                                       "are not from the same gate run; the card shows gate.json's counts")
    else:
        out.update(tally, counts_from="gate.csv (gate.json has no counts)" if c is None
                   else "gate.csv (gate.json's counts are unreadable)")
    return out


def _is_excluded(r: dict[str, Any]) -> bool:
    return isinstance(r.get("decision"), str) and r["decision"].startswith("exclude")


def _needs_person(r: dict[str, Any]) -> bool:
    """The gate left the decision to a person (:func:`mer_eval.gates.left_to_person`)."""
    from mer_eval.gates import left_to_person

    return left_to_person(r) is not None


def _flags(r: dict[str, Any]) -> list[str]:
    """Why a sample needs a curator's look besides an exclusion: a review decision, a sample nothing could
    check included by ``--include-unknown``, abstentions and errors."""
    from mer_eval.gates import left_to_person

    person = left_to_person(r)
    out = [person] if person else []
    if r["abstained"]:
        out.append("abstained: " + ", ".join(r["abstained"]))
    errs = [m["metric"] for m in r["metrics"] if m["status"] == "error"]
    if errs:
        out.append("error: " + ", ".join(errs))
    return out


def attention_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in the order a curator acts on them: the samples the gate left to a person first (review, unknown
    included on request), then excluded, then flagged (abstained / error), then the rest; within each, worst
    composite first (none counts as worst)."""
    def comp(r):
        v = r["values"].get("composite_score")
        return float("-inf") if v is None else v

    return sorted(rows, key=lambda r: (0 if _needs_person(r) else 1 if _is_excluded(r) else 2 if _flags(r) else 3,
                                       comp(r)))


def build_report(run_dirs: list[Path], n_boot: int = 2000, seed: int = 0,
                 max_thumbnails: int = MAX_THUMBNAILS) -> str:
    """Render the report for ``run_dirs``: every run's samples in one table (a run column), opening on the
    samples a curator acts on (excluded / flagged, or the worst composites when no gate ran)."""
    from jinja2 import Environment, FileSystemLoader
    from markupsafe import Markup

    from mer_eval.reports.compare import _labels, compare_runs

    run_dirs = [Path(p) for p in run_dirs]
    labels = _labels(run_dirs)
    sections = [_run_section(p, lab, with_samples=True, max_thumbnails=max_thumbnails)
                for p, lab in zip(run_dirs, labels)]
    comparison = compare_runs(run_dirs, n_boot=n_boot, seed=seed).to_dict() if len(run_dirs) > 1 else None
    primary = sections[0]
    metrics: dict[str, dict[str, Any]] = {}
    for sec in sections:
        for m in sec["metrics"]:
            metrics.setdefault(m["metric"], m)
    samples = attention_order([r for sec in sections for r in sec.pop("samples")])
    for r in samples:
        r["excluded"] = _is_excluded(r)
        r["needs_person"] = _needs_person(r)
        r["flags"] = _flags(r)
    has_gate = any(sec["gate"] is not None for sec in sections)
    attention = [r["key"] for r in samples if r["excluded"] or r["flags"]] if has_gate else []
    attention_basis = "left to a person (review / unknown included), excluded, or flagged (abstained / error)"
    if not attention:
        attention = [r["key"] for r in samples if r["flags"]]
        attention_basis = "flagged (abstained / error)" if attention else ""
    if not attention:  # no gate and nothing flagged: the worst composites
        attention = [r["key"] for r in samples][:ATTENTION_WORST]
        attention_basis = f"no gate decisions: the {len(attention)} lowest composite_score first"
    table = {
        "run": primary["label"],
        "runs": [sec["label"] for sec in sections],
        "metrics": list(metrics.values()),
        "has_gate": has_gate,
        "default_columns": DEFAULT_COLUMNS,
        "attention": attention[:ATTENTION_MAX], "attention_total": len(attention),
        "attention_basis": attention_basis,
        "samples": samples,
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
        probe_legend={"below": auroc_style(0.25), "chance": auroc_style(0.5), "mid": auroc_style(0.75),
                      "perfect": auroc_style(1.0)},
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
