"""``mer-eval export RUN --format ... -o PATH``: a run (ours or MER-Factory's) in training formats.

* ``csv``: one row per sample.
* ``sharegpt``: LLaMA-Factory's ShareGPT layout as MER-Factory writes it (roles ``user`` / ``gpt``,
  ``<video><audio>`` / ``<image>`` / ``<audio>`` tags, ``videos`` / ``audios`` / ``images`` lists) plus the
  ``dataset_info.json`` entry that lets LLaMA-Factory load it.
* ``merr-coarse`` / ``merr-fine``: Emotion-LLaMA's MERR JSON keyed by sample name (``AU_list``,
  ``visual_prior_list``, ``audio_prior_list``, ``peak_index`` (string), ``peak_AU_list``, ``pseu_emotion``,
  ``caption`` or ``smp_reason_caption``, ``text``) and its ``.txt`` (``name frame_count emotion``).
  ``AU_list`` is really filled from the sample's OpenFace CSV (MER-Factory leaves it empty): the AUs
  present in at least :data:`AU_LIST_MIN_SHARE` of the frames with a tracked face, most frequent first;
  present = ``AUxx_c == 1`` where that column exists, else ``AUxx_r >= 1.0``.
  Written for Emotion-LLaMA's dataset class (``minigpt4/datasets/datasets/first_face.py``), which reads the
  ``.txt`` lines ``name frame_count emotion`` split on spaces, looks the emotion up in its 9 classes
  (:data:`EMOTION_LLAMA_CLASSES`, a ``KeyError`` otherwise), opens ``<vis_root>/<name>.mp4`` (else ``.avi``)
  and reads ``transcription_en_all.csv`` (columns ``name,sentence``) for the line the person says. So: the
  emotion is mapped onto those classes (:func:`emotion_llama_class`: any case, synonyms); a sample whose
  emotion maps to none (``disgust``, ``x``) is skipped with the reason; only video samples are exported (an
  image sample, a video that is not .mp4/.avi, or a name with whitespace is skipped, said why); and
  ``transcription_en_all.csv`` is written beside the JSON with one row per exported sample (its transcript;
  an empty cell when nobody speaks, which pandas and so its loader read as ``nan``). A sample whose frame
  count cannot be measured keeps its JSON entry but gets no ``.txt`` line (never a count of 0).
* ``au-instruct``: JSONL ``{"instruction", "input": "AU06: 1.45, AU12: 2.01", "output"}``.

``only_included`` keeps the samples the run's gate decision includes (``mer_eval.gates.load_gate``).

No label is written that was not derived. The AU-rule pseudo-label is the emotion a rule table gives at the
peak; when the rules ran and none fired there is *no* pseudo-label (not ``neutral``: a face matching no rule
is not thereby neutral), and when they could not run (no face, no AU table) there is none either. Such a
sample gets an empty ``pseudo_emotion`` / ``pseu_emotion`` (``ExportResult.no_pseudo_label`` says why), is
skipped by ``au-instruct`` (its output would state the label) and by MERR when nothing else gives it an
emotion for the ``.txt`` (no label, no concluded emotion in ``merr-fine``; ``undetermined`` is no emotion).
Every reason is in ``ExportResult.skipped`` / ``no_pseudo_label`` and counted by
:meth:`ExportResult.reason_counts`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from mer_eval.generators import synthesis

from mer_eval.discovery import discover
from mer_eval.domain.facs import RULE_AUS, au_code, au_rule_hits
from mer_eval.domain.openface import OpenFaceError, read_openface_csv
from mer_eval.domain.records import META_NAME
from mer_eval.schema import Sample, SampleType
from mer_eval.store import atomic_write_json, atomic_write_text

AU_LIST_MIN_SHARE = 0.10
PRESENT_R = 1.0

QUESTIONS = {
    ("emotion", "mer"): "What emotion does the person in this video express, and what most likely caused it? "
                        "Reason over the facial expression, the voice and the words.",
    ("sentiment", "mer"): "What is the overall sentiment (positive, negative or neutral) of this video, and "
                          "why? Reason over the facial expression, the voice and the words.",
    ("emotion", "image"): "What emotion does the person in this image express? Reason over the facial "
                          "expression.",
    ("sentiment", "image"): "What is the overall sentiment (positive, negative or neutral) of this image, "
                            "and why?",
    ("any", "audio"): "Transcribe the speech, then describe the speaker's tone of voice.",
    ("any", "video"): "Describe what happens in this video.",
    ("any", "au"): "Describe the facial expression at the peak of this video in terms of facial action units.",
}
AU_INSTRUCTION = ("Given the intensities (0-5) of these facial action units at the peak frame, describe the "
                  "facial expression and the emotion it indicates.")


class ExportError(ValueError):
    pass


NO_RULE_FIRED = ("no AU emotion rule fires at the peak frame, so the rules give no pseudo-label "
                 "('neutral' would be a label they did not derive)")
NOT_EVALUATED = ("the AU emotion rules were not evaluated (no OpenFace table with the peak frame and no "
                 "recorded pseudo-label)")


@dataclass
class ExportResult:
    format: str
    path: Path
    written: int
    skipped: dict[str, str] = field(default_factory=dict)  # sample id -> why it is not in the export
    extra_files: list[Path] = field(default_factory=list)
    # sample id -> why it is exported without an AU-rule pseudo-label (the field is left empty)
    no_pseudo_label: dict[str, str] = field(default_factory=dict)

    def reason_counts(self) -> dict[str, dict[str, int]]:
        """``{"skipped": {reason: n}, "no_pseudo_label": {reason: n}}``, most frequent first."""
        out: dict[str, dict[str, int]] = {}
        for name, d in (("skipped", self.skipped), ("no_pseudo_label", self.no_pseudo_label)):
            counts: dict[str, int] = {}
            for why in d.values():
                counts[why] = counts.get(why, 0) + 1
            out[name] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return out


# ---- per-sample facts ------------------------------------------------------------------------------

def _meta(s: Sample) -> dict:
    if s.folder is None:
        return {}
    p = Path(s.folder) / META_NAME
    try:
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _openface(s: Sample):
    if s.openface_csv is None or not Path(s.openface_csv).is_file():
        return None
    try:
        return read_openface_csv(Path(s.openface_csv))
    except OpenFaceError:
        return None


def _present_matrix(of) -> dict[str, np.ndarray]:
    """AU code -> boolean per frame (presence as documented in the module docstring)."""
    out: dict[str, np.ndarray] = {}
    codes = {c[2:4] for c in of.au_r} | {c[2:4] for c in of.au_c}
    for code in sorted(codes):
        c_col = of.column(f"AU{code}_c")
        r_col = of.column(f"AU{code}_r")
        if c_col is not None:
            out[code] = c_col >= 0.5
        elif r_col is not None:
            out[code] = r_col >= PRESENT_R
    return out


def au_list(of) -> list[str]:
    """AUs present in >= AU_LIST_MIN_SHARE of the tracked frames, most frequent first (``["AU25", ...]``)."""
    valid = of.valid_mask(0.0)
    n = int(valid.sum())
    if n == 0:
        return []
    freq = []
    for code, pres in _present_matrix(of).items():
        share = float((pres & valid).sum()) / n
        if share >= AU_LIST_MIN_SHARE:
            freq.append((share, code))
    freq.sort(key=lambda x: (-x[0], x[1]))
    return [f"AU{c}" for _, c in freq]


def top_aus(s: Sample, meta: dict) -> dict[str, float]:
    """Peak AU intensities: the annotation's, else (image type, whose JSON has no peak info) the run's meta."""
    if s.annotation.top_aus_intensities:
        return dict(s.annotation.top_aus_intensities)
    ev = meta.get("evidence") or {}
    return {str(k): float(v) for k, v in (ev.get("top_aus") or {}).items()}


def peak_frame(s: Sample, meta: dict) -> int | None:
    if s.annotation.peak_frame is not None:
        return s.annotation.peak_frame
    v = (meta.get("evidence") or {}).get("peak_frame")
    return int(v) if v is not None else None


def peak_au_list(s: Sample, of, meta: dict | None = None) -> list[str]:
    tops = [au_code(k) for k in top_aus(s, meta or {})]
    if tops:
        return [f"AU{c}" for c in tops if c]
    pf = peak_frame(s, meta or {})
    if of is not None and pf is not None:
        idx = of.row_index_of_frame(pf)
        if idx is not None:
            return [f"AU{code}" for code, pres in _present_matrix(of).items() if pres[idx]]
    return []


def pseudo_label(s: Sample, meta: dict, of) -> tuple[str | None, str | None]:
    """``(emotion, None)``: the AU-rule pseudo-label (the run's own when it wrote one, else MER-Factory's rule
    table at the peak); ``(None, why)`` when the rules give none: none fired (:data:`NO_RULE_FIRED`), or they
    could not be evaluated."""
    pl = meta.get("pseudo_labels") or {}
    if (meta.get("evidence") or {}).get("au_pseudo_label"):
        return meta["evidence"]["au_pseudo_label"], None
    if pl:
        for table in ("mer-factory", "merr"):
            v = pl.get(table)
            if v:
                first = v[0]
                return (first["emotion"] if isinstance(first, dict) else str(first)), None
        return None, NO_RULE_FIRED
    no_face = (meta.get("absent") or {}).get("visual_expression")
    if no_face:
        return None, f"no AU rule to evaluate: {no_face}"
    if of is None or s.annotation.peak_frame is None:
        return None, NOT_EVALUATED
    idx = of.row_index_of_frame(s.annotation.peak_frame)
    if idx is None:
        return None, NOT_EVALUATED
    inten = of.intensities(idx)
    pres = of.presences(idx)
    present = {a: pres.get(f"AU{a}_c") == 1 for a in RULE_AUS}
    intensity = {a: inten[f"AU{a}_r"] for a in RULE_AUS if f"AU{a}_r" in inten}
    hits = au_rule_hits("mer-factory", present, intensity, 0.8)
    if not hits:
        return None, NO_RULE_FIRED
    return max(hits, key=lambda h: h.score).emotion, None  # the highest mean; the first in the table on ties


def pseudo_emotion(s: Sample, meta: dict, of) -> str | None:
    """The AU-rule pseudo-label, or None when the rules give none (see :func:`pseudo_label`)."""
    return pseudo_label(s, meta, of)[0]


def _conclusion(s: Sample, meta: dict, task: str) -> str | None:
    return meta.get("conclusion") or synthesis.parse_conclusion(s.annotation.final_summary, task)


def _coarse(s: Sample, meta: dict) -> str:
    if meta.get("coarse_description"):
        return meta["coarse_description"]
    a = s.annotation
    return synthesis.coarse_description({"au_text": a.visual_expression or "", "visual_objective": a.visual_objective,
                                         "tone": a.audio_description, "transcript": a.transcript,
                                         "video_content": a.video_content})


def _task(run_dir: Path, samples: list[Sample] | None = None) -> str:
    """The run's task: the one ``generate`` recorded in run.json; else (MER-Factory's outputs record none) the
    one its summaries were written for (:func:`mer_eval.domain.task.detect_task`; a mixed run takes the task
    most of its samples have, emotion on a tie)."""
    p = Path(run_dir) / "run.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
    except (OSError, json.JSONDecodeError):
        data = {}
    recorded = ((data.get("config") or {}).get("generate") or {}).get("task")
    if recorded:
        return recorded
    from mer_eval.domain.task import detect_task

    tasks = [detect_task(s.annotation.final_summary)[0] for s in samples or [] if s.annotation.final_summary]
    return "sentiment" if tasks.count("sentiment") > tasks.count("emotion") else "emotion"


def _wav(s: Sample) -> Path | None:
    if s.folder is not None:
        w = Path(s.folder) / f"{s.id}.wav"
        if w.is_file():
            return w.resolve()
    return Path(s.audio).resolve() if s.audio else None


# ---- selection -----------------------------------------------------------------------------------

def select_samples(run_dir: Path, only_included: bool) -> tuple[list[Sample], dict[str, str]]:
    ds = discover(Path(run_dir))
    skipped: dict[str, str] = {}
    samples = []
    for s in ds.samples:
        if s.generation_error:
            skipped[s.id] = f"no annotation: generate failed ({s.generation_error})"
        else:
            samples.append(s)
    if only_included:
        try:
            from mer_eval.gates import GateError, load_gate
        except ImportError as e:
            raise ExportError(f"--only-included needs mer_eval.gates.load_gate, which is not available ({e})") \
                from None
        try:
            decision = load_gate(Path(run_dir))
        except GateError as e:  # a stale decision, an unreadable gate.csv: no samples are picked by it
            raise ExportError(f"--only-included: {e}") from None
        if decision is None:
            raise ExportError(f"--only-included: {run_dir} has no gate decision; run `mer-eval gate {run_dir}` "
                              "first")
        kept = []
        for s in samples:
            if s.id not in decision:
                skipped[s.id] = "not in the gate decision"
            elif not decision[s.id]:
                skipped[s.id] = "excluded by the gate"
            else:
                kept.append(s)
        samples = kept
    samples = apply_review_edits(Path(run_dir), samples, skipped)
    return samples, skipped


def apply_review_edits(run_dir: Path, samples: list[Sample], skipped: dict[str, str]) -> list[Sample]:
    """A curator's edits from ``RUN/review.jsonl`` (``mer-eval review``): the edited final summary and label
    replace the generated ones in the export (the run's files stay as generated). A summary edited on an
    annotation that has changed since (re-generated after the review) is neither exported nor silently dropped
    for the new text: the sample is skipped, said why, until a curator looks again. Returns the samples kept."""
    from mer_eval.gates import GateError, annotation_sha256, human_staleness, read_review

    try:
        review = read_review(run_dir)
    except GateError as e:
        raise ExportError(str(e)) from None
    kept = []
    for s in samples:
        ed = review.get(s.id, {}).get("edits", {})
        if "final_summary" in ed:
            e = ed["final_summary"]
            stale = human_staleness(e.get("sha256"), annotation_sha256(s)) if e.get("sha256") else None
            if stale:
                skipped[s.id] = (f"its final_summary was edited by {e.get('who')} at {e.get('when')}, but {stale}; "
                                 "review it again (`mer-eval review`)")
                continue
            s.annotation.final_summary = e["after"] or None
        if "label" in ed:
            s.label = ed["label"]["after"] or None
        kept.append(s)
    return kept


# ---- formats --------------------------------------------------------------------------------------

# ``file_type`` (mer / au / audio / video / image) is the column MER-Factory's ``export.py --input_csv`` reads
# (from the first row, for every row) to pick its output column: final_summary (mer, image),
# chronological_emotion_peaks (au), audio_analysis (audio), llm_video_summary (video) -- all present here, so
# one type's CSV converts there; ``type`` is the same value under mer-eval's earlier name.
CSV_COLUMNS = ("sample_id", "file_type", "type", "label", "conclusion", "pseudo_emotion", "source_path",
               "transcript", "audio_description", "audio_analysis", "visual_expression", "visual_objective",
               "video_content", "llm_video_summary", "image_description", "final_summary", "peak_frame",
               "peak_timestamp", "top_aus_intensities", "chronological_emotion_peaks", "provider", "model")


def _recorded_source(s: Sample) -> str:
    """The ``source_path`` a MER-Factory result file records (as written there, also when that file is not
    on this machine), or ""."""
    for f in s.annotation_files.values():
        try:
            v = json.loads(Path(f).read_text(encoding="utf-8")).get("source_path")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(v, str) and v.strip():
            return v.strip()
    return ""


def _audio_analysis(a) -> str:
    """MER-Factory's ``audio_analysis`` text: the transcript on the first line, then the tone description
    (what its evaluator and exports read): the text it wrote when the sample has one, else the transcript line
    and our tone description (the description alone when there is no transcript)."""
    if isinstance(a.audio_analysis_raw, str) and a.audio_analysis_raw.strip():  # MER-Factory's own text
        return a.audio_analysis_raw.strip()
    desc, tr = (a.audio_description or "").strip(), (a.transcript or "").strip()
    if not tr or desc.startswith(tr):
        return desc
    return f"{tr}\n{desc}" if desc else tr


def _csv_rows(samples: list[Sample], task: str, no_pseudo: dict[str, str]) -> list[dict]:
    rows = []
    for s in samples:
        meta = _meta(s)
        a = s.annotation
        pseu, why = pseudo_label(s, meta, _openface(s))
        if pseu is None and s.type in (SampleType.mer, SampleType.image, SampleType.au):
            no_pseudo[s.id] = why
        src = meta.get("inputs", {}).get("video") or meta.get("inputs", {}).get("image") \
            or meta.get("inputs", {}).get("audio") or (str(s.video or s.image or s.audio or "")) \
            or _recorded_source(s)
        rows.append({
            "sample_id": s.id, "file_type": s.type.value, "type": s.type.value, "label": s.label or "",
            "conclusion": _conclusion(s, meta, task) or "",
            "pseudo_emotion": pseu or "",
            "source_path": src, "transcript": a.transcript or "", "audio_description": a.audio_description or "",
            "visual_expression": a.visual_expression or "", "visual_objective": a.visual_objective or "",
            "audio_analysis": _audio_analysis(a),
            "video_content": a.video_content or "", "llm_video_summary": a.video_content or "",
            "image_description": a.image_description or "",
            "final_summary": a.final_summary or "",
            "peak_frame": "" if a.peak_frame is None else a.peak_frame,
            "peak_timestamp": "" if a.peak_timestamp is None else a.peak_timestamp,
            "top_aus_intensities": json.dumps(a.top_aus_intensities) if a.top_aus_intensities else "",
            "chronological_emotion_peaks": " | ".join(a.chronological_emotion_peaks),
            "provider": a.provider or meta.get("provider") or "", "model": a.model or meta.get("model") or "",
        })
    return rows


def _sharegpt(samples: list[Sample], task: str, skipped: dict[str, str]) -> list[dict]:
    out = []
    for s in samples:
        a = s.annotation
        t = s.type.value
        media: dict[str, list[str]] = {}
        tags = ""
        if t == "mer":
            answer = a.final_summary
            if s.video:
                media["videos"] = [str(Path(s.video).resolve())]
                tags += "<video>"
            wav = _wav(s)
            if wav is not None:
                media["audios"] = [str(wav)]
                tags += "<audio>"
        elif t == "image":
            answer = a.final_summary
            if s.image:
                media["images"] = [str(Path(s.image).resolve())]
                tags = "<image>"
        elif t == "audio":
            answer = a.audio_analysis_raw
            wav = _wav(s)
            if wav is not None:
                media["audios"] = [str(wav)]
                tags = "<audio>"
        elif t == "video":
            answer = a.video_content
            if s.video:
                media["videos"] = [str(Path(s.video).resolve())]
                tags = "<video>"
        else:
            answer = a.visual_expression
            if s.video:
                media["videos"] = [str(Path(s.video).resolve())]
                tags = "<video>"
        if not answer:
            skipped[s.id] = f"no answer text for a {t} sample"
            continue
        if not media:
            skipped[s.id] = "its media file was not found (run.json input folder moved?)"
            continue
        q = QUESTIONS.get((task, t)) or QUESTIONS[("any", t)]
        out.append({"messages": [{"role": "user", "content": f"{tags}\n{q}"},
                                 {"role": "gpt", "content": answer}], **media})
    return out


def dataset_info_entry(file_name: str, records: list[dict]) -> dict:
    cols = {"messages": "messages"}
    for k in ("videos", "audios", "images"):
        if any(k in r for r in records):
            cols[k] = k
    return {"file_name": file_name, "formatting": "sharegpt", "columns": cols,
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "gpt"}}


def frame_count(s: Sample, of) -> int | None:
    """MERR's frame_count: the OpenFace table's rows, else the video's frame count (probed), 1 for an image;
    None when it cannot be measured."""
    if of is not None:
        return int(of.n)
    if s.video is not None and Path(s.video).is_file():
        from mer_eval.domain.media import MediaError, probe

        try:
            n = probe(s.video).n_frames
        except MediaError:
            return None
        return int(n) if n else None
    if s.type == SampleType.image and s.image is not None:
        return 1
    return None


# Emotion-LLaMA's classes (its dataset class's emotion list, in its order) and the words mapped onto them
# besides mer-eval's canonical emotions (mer_eval.domain.facs.canonical_emotion): doubt is no canonical emotion
EMOTION_LLAMA_CLASSES = ("neutral", "angry", "happy", "sad", "worried", "surprise", "fear", "contempt", "doubt")
EMOTION_LLAMA_SYNONYMS = {"doubtful": "doubt", "skeptical": "doubt", "sceptical": "doubt", "skepticism": "doubt",
                          "scepticism": "doubt", "disbelief": "doubt", "suspicious": "doubt", "suspicion": "doubt"}
EMOTION_LLAMA_TRANSCRIPTS = "transcription_en_all.csv"
EMOTION_LLAMA_VIDEO_EXT = (".mp4", ".avi")  # what its loader opens


def emotion_llama_class(word: str | None) -> str | None:
    """One of :data:`EMOTION_LLAMA_CLASSES` for a label or emotion word (any case; mer-eval's synonyms, e.g.
    ``Happy``/``hap``/``joy`` -> happy, ``Anger``/``frustration`` -> angry), or None (e.g. ``disgust``, ``x``)."""
    if not word or not word.strip():
        return None
    w = " ".join(word.strip().lower().replace("_", " ").split())
    if w in EMOTION_LLAMA_CLASSES:
        return w
    if w in EMOTION_LLAMA_SYNONYMS:
        return EMOTION_LLAMA_SYNONYMS[w]
    from mer_eval.domain.facs import canonical_emotion

    c = canonical_emotion(w)
    return c if c in EMOTION_LLAMA_CLASSES else None


def _merr_emotion(s: Sample, meta: dict, task: str, fine: bool, pseu: str | None) -> str | None:
    """The emotion of MERR's ``.txt`` line: the label, else (fine) the concluded emotion, else the
    pseudo-label; None when none of them gives one (``undetermined`` is no emotion)."""
    if s.label:
        return s.label
    if fine:
        c = _conclusion(s, meta, task)
        if c and c != synthesis.UNDETERMINED:
            return c
    return pseu


def _merr(samples: list[Sample], task: str, fine: bool, skipped: dict[str, str],
          no_pseudo: dict[str, str]) -> tuple[dict, list[str], list[tuple[str, str]]]:
    data: dict[str, dict] = {}
    lines: list[str] = []
    sentences: list[tuple[str, str]] = []
    for s in samples:
        a = s.annotation
        if s.type == SampleType.image:
            skipped[s.id] = "an image sample: Emotion-LLaMA's dataset reads a video (<name>.mp4 / .avi)"
            continue
        if s.type != SampleType.mer:
            skipped[s.id] = f"MERR holds mer (video) samples, not {s.type.value}"
            continue
        if s.video is not None and Path(s.video).suffix.lower() not in EMOTION_LLAMA_VIDEO_EXT:
            skipped[s.id] = (f"its video is {Path(s.video).suffix.lower()}; Emotion-LLaMA opens only "
                             f"<name>.mp4 / .avi (convert it)")
            continue
        if any(ch.isspace() for ch in s.id):
            skipped[s.id] = "the name has whitespace; Emotion-LLaMA splits the .txt lines on spaces"
            continue
        caption = a.final_summary if fine else None
        if fine and not caption:
            skipped[s.id] = "no final_summary"
            continue
        meta = _meta(s)
        of = _openface(s)
        pseu, why = pseudo_label(s, meta, of)
        emotion = _merr_emotion(s, meta, task, fine, pseu)
        if emotion is None:
            skipped[s.id] = (f"no emotion to write: no label, "
                             f"{'no concluded emotion in the final_summary, ' if fine else ''}and {why}")
            continue
        el_class = emotion_llama_class(emotion)
        if el_class is None:
            skipped[s.id] = (f"{'label' if s.label else 'emotion'} {emotion!r} is none of Emotion-LLaMA's 9 "
                             f"classes ({', '.join(EMOTION_LLAMA_CLASSES)})")
            continue
        if pseu is None:
            no_pseudo[s.id] = why
        entry = {
            "AU_list": au_list(of) if of is not None else [],
            "visual_prior_list": [x for x in (a.visual_expression, a.visual_objective or a.image_description) if x],
            "audio_prior_list": [x for x in (a.audio_description,) if x],
            "peak_index": "" if peak_frame(s, meta) is None else str(peak_frame(s, meta)),
            "peak_AU_list": peak_au_list(s, of, meta),
            "pseu_emotion": pseu or "",
        }
        if fine:
            entry["smp_reason_caption"] = caption
        else:
            entry["caption"] = _coarse(s, meta)
        entry["text"] = a.transcript or ""
        data[s.id] = entry
        sentences.append((s.id, a.transcript or ""))
        frames = frame_count(s, of)
        if frames is not None:  # an unknown count is left out, never written as 0
            lines.append(f"{s.id} {frames} {el_class}")
    return data, lines, sentences


def _au_instruct(samples: list[Sample], skipped: dict[str, str]) -> list[dict]:
    out = []
    for s in samples:
        a = s.annotation
        meta = _meta(s)
        tops = top_aus(s, meta)
        if not tops:
            skipped[s.id] = ("an audio sample has no action units" if s.type == SampleType.audio
                             else "no action unit above threshold at the peak, or no face")
            continue
        inp = ", ".join(f"AU{au_code(k)}: {v:.2f}" for k, v in tops.items() if au_code(k))
        pseu, why = pseudo_label(s, meta, _openface(s))
        if pseu is None:  # the output would state an emotion (or "neutral") no rule derived
            skipped[s.id] = f"{why}; an output naming an emotion would be invented"
            continue
        text = a.llm_au_description or (a.visual_expression or "")
        output = f"{text.rstrip('.')}. By the action-unit rules the expression indicates {pseu}."
        out.append({"instruction": AU_INSTRUCTION, "input": inp, "output": output})
    return out


def export_run(run_dir: Path, fmt: str, out: Path, only_included: bool = False) -> ExportResult:
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir} is not a run folder")
    samples, skipped = select_samples(run_dir, only_included)
    task = _task(run_dir, samples)
    out = Path(out)
    no_pseudo: dict[str, str] = {}
    n, extra = FORMATS[fmt](samples, task, out, skipped, no_pseudo)
    return ExportResult(format=fmt, path=out, written=n, skipped=skipped, extra_files=extra,
                        no_pseudo_label=no_pseudo)


# ---- formats: each registers itself here (name -> writer); --format and export_run read this table ------

Writer = Callable[[list, str, Path, dict, dict], tuple[int, list[Path]]]
FORMATS: dict[str, Writer] = {}


def export_format(name: str) -> Callable[[Writer], Writer]:
    """Register a writer ``(samples, task, out, skipped, no_pseudo) -> (records written, extra files)``."""
    def deco(fn: Writer) -> Writer:
        FORMATS[name] = fn
        return fn
    return deco


@export_format("csv")
def _write_csv(samples, task, out, skipped, no_pseudo):
    import io

    rows = _csv_rows(samples, task, no_pseudo)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out, buf.getvalue())
    return len(rows), []


@export_format("sharegpt")
def _write_sharegpt(samples, task, out, skipped, no_pseudo):
    recs = _sharegpt(samples, task, skipped)
    atomic_write_json(out, recs)
    info_p = out.parent / "dataset_info.json"
    info: dict[str, Any] = {}
    if info_p.is_file():
        try:
            info = json.loads(info_p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ExportError(f"{info_p} exists but is not valid JSON ({e}); not overwriting it") from None
    info[out.stem] = dataset_info_entry(out.name, recs)
    atomic_write_json(info_p, info)
    return len(recs), [info_p]


def _write_merr(fine: bool) -> Writer:
    def write(samples, task, out, skipped, no_pseudo):
        import io

        data, lines, sentences = _merr(samples, task, fine, skipped, no_pseudo)
        atomic_write_json(out, data)
        txt = out.with_suffix(".txt")
        atomic_write_text(txt, "".join(f"{ln}\n" for ln in lines))
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["name", "sentence"])
        w.writerows(sentences)
        tr = out.parent / EMOTION_LLAMA_TRANSCRIPTS
        atomic_write_text(tr, buf.getvalue())
        return len(data), [txt, tr]
    return write


export_format("merr-coarse")(_write_merr(False))
export_format("merr-fine")(_write_merr(True))


@export_format("au-instruct")
def _write_au_instruct(samples, task, out, skipped, no_pseudo):
    recs = _au_instruct(samples, skipped)
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
    return len(recs), []
