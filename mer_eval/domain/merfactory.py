"""Read MER-Factory's result JSONs (current and older schema) into :class:`Annotation` fields."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Optional

from mer_eval.domain import records
from mer_eval.schema import Annotation, SampleType, clean_text

# result file suffix -> processing type
RESULT_SUFFIXES: dict[str, SampleType] = {
    "_merr_data.json": SampleType.mer,
    "_au_analysis.json": SampleType.au,
    "_audio_analysis.json": SampleType.audio,
    "_video_analysis.json": SampleType.video,
    "_image_analysis.json": SampleType.image,
}

# keys that identify a JSON as one of MER-Factory's results, whatever its file name
_SIGNATURES: list[tuple[SampleType, set[str]]] = [
    (SampleType.mer, {"final_summary", "coarse_descriptions_at_peak"}),
    (SampleType.mer, {"final_summary", "coarse_descriptions"}),  # older schema
    (SampleType.mer, {"overall_peak_frame_info"}),
    (SampleType.image, {"image_visual_description"}),
    (SampleType.video, {"llm_video_summary"}),
    (SampleType.audio, {"audio_analysis"}),
    (SampleType.au, {"overall_peak_au_description"}),
]


class MerFactoryFormatError(ValueError):
    pass


def result_kind(path: Path, data: Optional[dict] = None) -> Optional[SampleType]:
    name = path.name
    for suf, t in RESULT_SUFFIXES.items():
        if name.endswith(suf):
            return t
    if data is None:
        return None
    keys = set(data)
    for t, sig in _SIGNATURES:
        if sig <= keys:
            return t
    return None


def sample_stem(path: Path) -> str:
    name = path.name
    for suf in RESULT_SUFFIXES:
        if name.endswith(suf):
            return name[: -len(suf)]
    return path.stem


MAX_JSON_DEPTH = 64  # MER-Factory's results nest 3 deep; deeper is not one of them (and can exhaust the stack)


def _depth_ok(text: str) -> bool:
    """Whether brackets outside strings nest at most :data:`MAX_JSON_DEPTH` deep (checked before parsing)."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:  # fast path: cannot nest deeper than it opens
        return True
    depth = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def load_json(path: Path) -> dict:
    """A MER-Factory result (or mer-eval meta) JSON object. UTF-8, a BOM allowed; anything that is not one
    JSON object of sane depth is a :class:`MerFactoryFormatError` that says what is wrong."""
    name = Path(path).name
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MerFactoryFormatError(f"{name}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                                    f"{e.start})") from None
    except OSError as e:
        raise MerFactoryFormatError(f"{name}: unreadable ({e.strerror or e})") from None
    if not _depth_ok(text):
        raise MerFactoryFormatError(f"{name}: JSON nested more than {MAX_JSON_DEPTH} levels deep; not a "
                                    "MER-Factory result")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise MerFactoryFormatError(f"{name}: not valid JSON ({e})") from None
    except RecursionError:
        raise MerFactoryFormatError(f"{name}: JSON nested too deeply to read") from None
    if not isinstance(data, dict):
        raise MerFactoryFormatError(f"{Path(path).name}: expected a JSON object, got {type(data).__name__}")
    return data


_TRANSCRIPT_PATTERNS = [
    re.compile(r"""^(?:the\s+)?(?:audio\s+)?transcript(?:ion)?\s*(?:is)?\s*[:：]\s*['"“‘]?(.+?)['"”’]?\s*$""",
               re.I | re.S),
    re.compile(r"""^(?:speech|subtitles?|transcription)\s*[:：]\s*(.*)$""", re.I | re.S),
]


def split_audio_analysis(text: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """Split MER-Factory's ``audio_analysis`` into (transcript, tone description).

    MER-Factory's prompt asks for the transcript first, then the tone; its evaluator takes the first line
    as the transcript. We do the same, but recognise the shapes real outputs take: ``"The audio
    transcript is: '...'"`` (all transcript), ``"Speech:\\nAudio Characteristics: ..."`` (an empty
    transcript) and lines that describe tone rather than words.
    """
    t = clean_text(text)
    if t is None:
        return None, None
    lines = [ln.strip() for ln in t.splitlines() if ln.strip()]
    if not lines:
        return None, None
    first, rest = lines[0], lines[1:]
    tone_first = re.match(
        r"^(speaker'?s? tone|tone|audio characteristics|pitch|background|the audio features|the speaker)\b",
        first, re.I,
    )
    if tone_first:
        return None, "\n".join(lines)
    transcript: Optional[str] = first
    for pat in _TRANSCRIPT_PATTERNS:
        m = pat.match(first)
        if m:
            transcript = clean_text(m.group(1))
            break
    tone = clean_text("\n".join(rest)) if rest else None
    if tone:
        tone = re.sub(r"^audio characteristics\s*:\s*", "", tone, flags=re.I)
    return transcript, tone


def _audio_field(v: Any) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """``audio_analysis`` can be a string or (after provider errors / other providers) a dict."""
    if isinstance(v, dict):
        transcript = clean_text(v.get("transcript") or v.get("transcription") or v.get("subtitles"))
        tone = clean_text(v.get("tone_description") or v.get("tone") or v.get("audio_tone")
                          or v.get("description") or v.get("analysis"))
        if transcript is None and tone is None:
            return None, None, None  # a provider's error dict ({"error": ...}): no text to score
        return transcript, tone, json.dumps(v, ensure_ascii=False)
    if isinstance(v, str):
        tr, tone = split_audio_analysis(v)
        return tr, tone, clean_text(v)
    return None, None, None


def _floats(d: Any, notes: Optional[list[str]] = None, what: str = "") -> dict[str, float]:
    """The finite numbers of a ``{name: number}`` dict; ``notes`` (when given) names what was dropped
    (a string, NaN, Infinity: never read as an intensity or a probability)."""
    out = {}
    bad = []
    if isinstance(d, dict):
        for k, v in d.items():
            x = None
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                x = float(v)
            if x is None or not math.isfinite(x):
                bad.append(f"{k}={v!r}")
                continue
            out[str(k)] = x
    if bad and notes is not None:
        notes.append(f"{what}: {', '.join(bad)} not finite numbers; dropped")
    return out


def _number(v: Any, integer: bool = False) -> Optional[float]:
    """A finite JSON number (ints for ``integer``), else None (``"abc"``, NaN, 1e400, true)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if not math.isfinite(float(v)):
        return None
    if integer and float(v) != int(v):
        return None
    return int(v) if integer else float(v)


# text fields per processing type: a non-string there makes the file not a MER-Factory result
_TEXT_FIELDS: dict[SampleType, tuple[str, ...]] = {
    SampleType.mer: ("final_summary",),
    SampleType.au: ("overall_peak_au_description",),
    SampleType.video: ("llm_video_summary",),
    SampleType.image: ("au_text_description", "llm_au_description", "image_visual_description", "final_summary"),
    SampleType.audio: (),
}
_COARSE_TEXT = ("visual_expression", "visual_objective", "video_content", "audio_tone", "subtitles")


def check_result(kind: SampleType, data: dict) -> None:
    """Raise :class:`MerFactoryFormatError` when a text field holds something else than text (``null``
    allowed): such a file is not what MER-Factory writes and its texts are not scored."""
    wrong = [f"{k} is {type(data[k]).__name__}" for k in _TEXT_FIELDS.get(kind, ())
             if data.get(k) is not None and not isinstance(data[k], str)]
    if kind == SampleType.mer:
        coarse = data.get("coarse_descriptions_at_peak", data.get("coarse_descriptions"))
        if coarse is not None and not isinstance(coarse, dict):
            wrong.append(f"coarse_descriptions_at_peak is {type(coarse).__name__}")
        elif isinstance(coarse, dict):
            wrong += [f"coarse_descriptions_at_peak.{k} is {type(coarse[k]).__name__}" for k in _COARSE_TEXT
                      if coarse.get(k) is not None and not isinstance(coarse[k], str)]
    a = data.get("audio_analysis") if kind == SampleType.audio else None
    if a is not None and not isinstance(a, (str, dict)):
        wrong.append(f"audio_analysis is {type(a).__name__}")
    if isinstance(a, dict) and _audio_field(a)[:2] == (None, None):
        # an audio result that is only the provider's error: there is no annotation to score
        err = a.get("error")
        raise MerFactoryFormatError("audio_analysis is a dict without transcript or tone"
                                    + (f" (a provider error: {str(err)[:120]!r})" if err else ""))
    if wrong:
        raise MerFactoryFormatError(f"{'; '.join(wrong)}, expected text")


def merge_result(ann: Annotation, kind: SampleType, data: dict) -> list[str]:
    """Fill ``ann`` from one MER-Factory result JSON. Returns notes on what was odd; a file whose text fields
    are not text raises :class:`MerFactoryFormatError` (:func:`check_result`) before anything is taken."""
    check_result(kind, data)
    notes: list[str] = []
    if kind == SampleType.mer:
        peaks = data.get("chronological_emotion_peaks")
        if isinstance(peaks, list):
            ann.chronological_emotion_peaks = [str(p) for p in peaks]
        info = data.get("overall_peak_frame_info") or data.get("peak_frame_info") or {}
        if isinstance(info, dict):
            fn = info.get("frame_number")
            if fn is not None:
                n = _number(fn, integer=True)
                if n is None or n < 0:
                    notes.append(f"frame_number {json.dumps(fn)} is not a frame number; peak frame not used")
                else:
                    ann.peak_frame = int(n)
            ts = info.get("timestamp")
            if ts is not None:
                t = _number(ts)
                if t is None or t < 0:
                    notes.append(f"timestamp {json.dumps(ts)} is not a time in seconds; not used")
                else:
                    ann.peak_timestamp = t
            ann.top_aus_intensities = _floats(info.get("top_aus_intensities"), notes, "top_aus_intensities")
        coarse = data.get("coarse_descriptions_at_peak")
        legacy = False
        if coarse is None:
            coarse = data.get("coarse_descriptions")
            legacy = coarse is not None
        coarse = coarse if isinstance(coarse, dict) else {}
        ann.visual_expression = clean_text(coarse.get("visual_expression")) or ann.visual_expression
        ann.visual_objective = clean_text(coarse.get("visual_objective")) or ann.visual_objective
        ann.video_content = clean_text(coarse.get("video_content")) or ann.video_content
        if legacy:
            ann.audio_description = clean_text(coarse.get("audio_tone")) or ann.audio_description
            ann.transcript = clean_text(coarse.get("subtitles")) or ann.transcript
        elif "audio_analysis" in coarse:
            tr, tone, raw = _audio_field(coarse.get("audio_analysis"))
            ann.transcript = tr or ann.transcript
            ann.audio_description = tone or ann.audio_description
            ann.audio_analysis_raw = raw
        det = data.get("detected_emotions")
        if isinstance(det, list):
            ann.detected_emotions = [str(x) for x in det]
        ann.final_summary = clean_text(data.get("final_summary")) or ann.final_summary
    elif kind == SampleType.au:
        peaks = data.get("chronological_emotion_peaks")
        if isinstance(peaks, list) and not ann.chronological_emotion_peaks:
            ann.chronological_emotion_peaks = [str(p) for p in peaks]
        ann.visual_expression = ann.visual_expression or clean_text(data.get("overall_peak_au_description"))
    elif kind == SampleType.audio:
        tr, tone, raw = _audio_field(data.get("audio_analysis"))
        ann.transcript = ann.transcript or tr
        ann.audio_description = ann.audio_description or tone
        ann.audio_analysis_raw = ann.audio_analysis_raw or raw
        if isinstance(data.get("audio_analysis"), dict) and tr is None and tone is None:
            err = data["audio_analysis"].get("error")
            notes.append("audio_analysis is a dict without transcript or tone"
                         + (f" (a provider error: {str(err)[:120]!r})" if err else " (a provider error?)"))
    elif kind == SampleType.video:
        ann.video_content = ann.video_content or clean_text(data.get("llm_video_summary"))
    elif kind == SampleType.image:
        ann.au_text_description = clean_text(data.get("au_text_description"))
        ann.visual_expression = ann.visual_expression or ann.au_text_description
        ann.llm_au_description = clean_text(data.get("llm_au_description"))
        ann.image_description = clean_text(data.get("image_visual_description"))
        ann.final_summary = ann.final_summary or clean_text(data.get("final_summary"))
    for k in ("provider", "model"):
        v = data.get(f"mer_eval_{k}")
        if isinstance(v, str):
            setattr(ann, k, v)
    return notes


META_NAME = records.META_NAME


def merge_meta(ann: Annotation, meta: dict, notes: Optional[list[str]] = None) -> list[str]:
    """Provenance mer-eval's own ``generate`` writes beside MER-Factory's files (``<id>/mer_eval_meta.json``):
    who wrote the texts, whether the label was in the prompt, and measured FER probabilities. Returns ``notes``
    (what was dropped: non-finite or out-of-range FER probabilities are never used)."""
    notes = [] if notes is None else notes
    if isinstance(meta.get("provider"), str):
        ann.provider = meta["provider"]
    if isinstance(meta.get("model"), str):
        ann.model = meta["model"]
    prompts = meta.get("prompts")
    if isinstance(prompts, dict) and isinstance(prompts.get("synthesis"), str):
        ann.label_aware = prompts["synthesis"].endswith("_label")
    evidence = meta.get("evidence")
    fer = evidence.get("fer") if isinstance(evidence, dict) else None
    if isinstance(fer, dict) and not ann.fer_probabilities:
        probs = _floats(fer, notes, "evidence.fer")
        off = [k for k, v in probs.items() if not 0.0 <= v <= 1.0]
        if off and notes is not None:
            notes.append(f"evidence.fer: {', '.join(off)} outside 0..1; FER probabilities not used")
        ann.fer_probabilities = {} if off or len(probs) < len(fer) else probs
    return notes


def ground_truth(data: dict) -> Optional[str]:
    for k in ("ground_truth_label", "label", "ground_truth"):
        v = clean_text(data.get(k)) if isinstance(data.get(k), str) else None
        if v:
            return v
    return None


def source_stem(data: dict) -> Optional[str]:
    for k in ("source_path", "source_video", "video_id"):
        v = data.get(k)
        if isinstance(v, str) and v.strip():
            return Path(v.strip()).stem
    return None
