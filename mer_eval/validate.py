"""``mer-eval validate``: what a dataset holds and, per generate stage and per metric, which samples have
the inputs it needs and which do not, and why."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Optional

from mer_eval import registry
from mer_eval.discovery import Dataset, discover_tree
from mer_eval.domain.openface import MultiFaceError, OpenFaceError, read_openface_csv
from mer_eval.schema import Sample, SampleType

# generate stage -> sample -> reason it cannot run (None: it can)
STAGE_NEEDS: dict[str, Callable[[Sample], Optional[str]]] = {
    "media": lambda s: None if (s.video or s.audio or s.image) else "no video, audio or image file",
    "au": lambda s: None if (s.video or s.image or s.openface_csv) else "no video, image or OpenFace CSV",
    "peaks": lambda s: None if (s.video or s.openface_csv) else (
        "a still image has one frame: no peak search" if s.image else "no video or OpenFace CSV"),
    "audio": lambda s: None if (s.audio or s.video) else "no audio or video file",
    "visual": lambda s: None if (s.image or s.video or s.peak_frame_image) else "no image, video or peak frame",
    "synthesis": lambda s: None if (s.video or s.audio or s.image or s.openface_csv or not s.annotation.is_empty())
    else "no media and no annotation text",
}

# metric family -> (model key, whether the model is needed for every sample)
def metric_models(name: str) -> str:
    """Which model a metric family loads, and when (its own ``model_uses``)."""
    from mer_eval.registry import get_metric

    return getattr(get_metric(name), "model_uses", "") or ""


def _sample_flags(s: Sample) -> dict[str, str]:
    a = s.annotation
    media = "".join(k for k, v in (("V", s.video), ("A", s.audio), ("I", s.image), ("P", s.peak_frame_image),
                                   ("C", s.openface_csv)) if v)
    texts = "".join(k for k, v in (("t", a.transcript), ("o", a.audio_description), ("x", a.visual_expression),
                                   ("v", a.visual_text()), ("s", a.final_summary)) if v)
    return {"media": media or "-", "texts": texts or "-"}


def check_stages(samples: list[Sample]) -> dict[str, dict[str, list[str]]]:
    """stage -> reason -> sample ids (reason "" = can run)."""
    out: dict[str, dict[str, list[str]]] = {}
    for stage, need in STAGE_NEEDS.items():
        groups: dict[str, list[str]] = defaultdict(list)
        for s in samples:
            groups[need(s) or ""].append(s.id)
        out[stage] = dict(groups)
    return out


FAILED = "no annotation: generate failed on it (error_logs/); scored abstained on every metric"


def check_metrics(samples: list[Sample], names: list[str], config: Any) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for name in names:
        groups: dict[str, list[str]] = defaultdict(list)
        try:
            cls = registry.get_metric(name)
        except (ImportError, AttributeError, KeyError) as e:
            groups[f"metric not available: {type(e).__name__}: {e}"] = [s.id for s in samples]
            out[name] = dict(groups)
            continue
        m = cls(config.metric_params(name))
        for s in samples:
            groups[FAILED if s.generation_error else m.missing_inputs(s) or ""].append(s.id)
        out[name] = dict(groups)
    return out


def _ids(ids: list[str], n: int = 6) -> str:
    return ", ".join(ids[:n]) + (f" (+{len(ids) - n} more)" if len(ids) > n else "")


def render_dataset(con, ds: Dataset, config: Any) -> None:
    from rich.markup import escape  # paths, labels, notes and reasons are data: never rich markup
    from rich.table import Table

    con.rule(f"[bold]{escape(str(ds.root))}[/bold]  ({ds.kind}, {len(ds.samples)} samples)")
    t = Table(caption="media: V video, A audio, I image, P peak frame, C OpenFace CSV · "
                      "texts: t transcript, o tone/audio, x AU text, v visual, s summary")
    for c in ("sample", "type", "media", "label", "ref. transcript", "texts", "notes"):
        t.add_column(c, overflow="fold")
    for s in ds.samples:
        f = _sample_flags(s)
        notes = list(s.notes)
        if s.openface_csv is not None:
            try:
                of = read_openface_csv(s.openface_csv)
                notes.append(f"OpenFace: {of.n} frames kept of {of.rows_read}"
                             + (f"; {'; '.join(of.notes)}" if of.notes else ""))
            except MultiFaceError as e:  # read, but which face is the annotated person cannot be told
                notes.append(f"OpenFace CSV not used: {e}")
            except OpenFaceError as e:
                notes.append(f"OpenFace CSV unreadable: {e}")
        t.add_row(s.id, s.type.value, f["media"], escape(s.label or "-"), "yes" if s.reference_transcript else "-",
                  f["texts"], escape("; ".join(notes)))
    con.print(t)
    for n in ds.notes:
        con.print(f"  [dim]note:[/dim] {escape(n)}")
    for title, table in (("generate stage", check_stages(ds.samples)),
                         ("metric", check_metrics(ds.samples, config.score_metrics(), config))):
        tt = Table(title=f"per {title}: which samples have the inputs it needs")
        tt.add_column(title)
        tt.add_column("ready", justify="right")
        tt.add_column("cannot run: why (samples)", overflow="fold")
        for name, groups in table.items():
            ready = len(groups.get("", []))
            why = escape("\n".join(f"{r} ({_ids(ids)})" for r, ids in groups.items() if r))
            uses = metric_models(name) if title == "metric" else ""
            label = f"{name}\nmodel: {uses}" if uses else name
            tt.add_row(label, f"{ready}/{len(ds.samples)}", why or "-")
        con.print(tt)


def render_validation(con, input_path: Path, config: Any, label_file=None, transcripts=None) -> list[Dataset]:
    datasets = discover_tree(Path(input_path), label_file=label_file, transcripts=transcripts)
    for ds in datasets:
        render_dataset(con, ds, config)
    total = sum(len(d.samples) for d in datasets)
    by_type = defaultdict(int)
    for d in datasets:
        for s in d.samples:
            by_type[s.type.value] += 1
    con.print(f"[bold]{total} samples[/bold] in {len(datasets)} dataset(s): "
              + ", ".join(f"{v} {k}" for k, v in sorted(by_type.items())))
    con.print("Model availability: run [bold]mer-eval models[/bold].")
    return datasets


__all__ = ["render_validation", "check_stages", "check_metrics", "STAGE_NEEDS", "SampleType"]
