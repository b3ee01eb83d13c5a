"""Synthesis: the coarse description (template concatenation of the clues, like MERR's coarse set) and
the fine one (a provider's reasoning over the clues, ending in a parseable conclusion).

Prompts are versioned template files under ``generators/prompts/`` (``<name>.v<N>.txt``, ``${field}``
placeholders); their sha256 go into ``run.json`` ``prompt_hashes`` so a changed prompt is a changed run.

The *evidence* is a plain dict of measured signals (built by the pipeline from the stage outputs):

=====================  ==========================================================================
key                    meaning
=====================  ==========================================================================
task                   ``emotion`` | ``sentiment``
label                  ground-truth label or None (label-aware prompts use it)
peaks                  MER-Factory's ``chronological_emotion_peaks`` strings
au_text                AU text at the peak (``Cheek raiser (intensity: 1.45), ...``) or ""
top_aus                {``AU06_r``: 1.45, ...} at the peak
au_pseudo_label        rule-based emotion of the peak AUs (MER-Factory's table) or None
au_pseudo_labels       every emotion whose AU rule fires at the peak, strongest first
fer                    {emotion: probability} from the FER classifier at the peak frame, or {}
transcript             ASR transcript or None
tone                   measured tone description (prosody in words) or None
prosody                raw prosody measurements (dict)
tone_emotion           an emotion read from the voice by a measured rule, or None
visual_objective       description of the peak frame, or "" (none)
video_content          description of the clip, or "" (none)
peak_frame/peak_time   the overall peak (OpenFace frame number, seconds)
=====================  ==========================================================================

Offline rule for X (label-free), documented here and in the summary text it writes: each measured cue
supports emotions (mapped onto the canonical emotions of :mod:`mer_eval.domain.facs`) -- the AU rule table
supports every emotion whose rule fires at the peak (``au_pseudo_labels``, strongest first), the FER
classifier its argmax, the voice its ``tone_emotion`` when one was measured. X is the emotion supported by
the most cues; ties are broken by the order FER > AU rules > voice (the classifier is trained on faces and
gives a probability; the AU tables are hand-written lookups, e.g. MER-Factory's contempt rule fires on
many smiles). With no measured cue X is ``undetermined``. For sentiment, every vote is first mapped to
positive/negative/neutral
(:data:`mer_eval.domain.facs.EMOTION_TO_SENTIMENT`) and the same rule applies. Label-aware: X is the label.
"""

from __future__ import annotations

import hashlib
import json
import re
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

from mer_eval.domain.emotion_text import concluded_emotion, concluded_sentiment, sentiment_conclusion
from mer_eval.domain.facs import EMOTION_TO_SENTIMENT, canonical_emotion, canonical_sentiment

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
UNKNOWN_CAUSE = "not determinable from the measured signals alone (offline provider, no language model)"
UNDETERMINED = "undetermined"
VOTE_ORDER = ("fer", "au", "tone")


# ---- prompts ------------------------------------------------------------------------------------

@cache
def _prompt_files() -> dict[str, Path]:
    """name (without version) -> newest version's file."""
    best: dict[str, tuple[int, Path]] = {}
    for p in sorted(PROMPTS_DIR.glob("*.txt")):
        m = re.match(r"^(?P<name>.+)\.v(?P<v>\d+)\.txt$", p.name)
        if not m:
            continue
        v = int(m.group("v"))
        if m.group("name") not in best or v > best[m.group("name")][0]:
            best[m.group("name")] = (v, p)
    return {k: p for k, (_, p) in best.items()}


def prompt_names() -> list[str]:
    return sorted(_prompt_files())


def prompt_path(name: str) -> Path:
    files = _prompt_files()
    if name not in files:
        raise KeyError(f"no prompt template {name!r} in {PROMPTS_DIR}; known: {', '.join(sorted(files))}")
    return files[name]


def prompt_hashes() -> dict[str, str]:
    """``{"synthesis_emotion.v1": sha256, ...}`` for every template in use; a template replaced by a prompts
    file (:func:`prompts_override`) is ``<name>.v<N>.override`` with the sha256 of the replacement text."""
    out = {}
    for name, p in sorted(_prompt_files().items()):
        if name in _OVERRIDES:
            out[p.name[: -len(".txt")] + ".override"] = hashlib.sha256(_OVERRIDES[name].encode("utf-8")).hexdigest()
        else:
            out[p.name[: -len(".txt")]] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def prompt_text(name: str) -> str:
    """The template text of prompt ``name``: the prompts file's when one is in use, else the packaged one."""
    if name in _OVERRIDES:
        return _OVERRIDES[name]
    return prompt_path(name).read_text(encoding="utf-8")


def render_prompt(name: str, fields: dict[str, Any]) -> str:
    return Template(prompt_text(name)).safe_substitute({k: _show(v) for k, v in fields.items()}).strip()


# ---- a prompts file (generate --prompts-file, MER-Factory's option) --------------------------------

_OVERRIDES: dict[str, str] = {}  # prompt name -> replacement template text, while prompts_override is active


def load_prompts_file(path: str | Path) -> dict[str, str]:
    """Read a prompts file: a JSON (or YAML, by suffix .yaml/.yml) mapping of prompt names (``prompt_names()``,
    e.g. ``synthesis_emotion``) to template texts with ``${field}`` placeholders (the fields of
    :func:`prompt_fields`). Names not given keep the packaged template. ValueError names what is wrong."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"prompts file {path}: cannot read it ({e.strerror or e})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ValueError(f"prompts file {path}: not valid YAML ({e})") from None
    else:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"prompts file {path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"prompts file {path}: expected a non-empty mapping of prompt name -> template text; "
                         f"prompt names: {', '.join(prompt_names())}")
    known = set(prompt_names())
    fields = set(prompt_fields({}))
    out: dict[str, str] = {}
    for name, text in data.items():
        if name not in known:
            raise ValueError(f"prompts file {path}: unknown prompt {name!r}; known: {', '.join(sorted(known))}")
        if isinstance(text, list) and all(isinstance(t, str) for t in text):
            text = "\n".join(text)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"prompts file {path}: prompt {name!r} must be a non-empty string")
        t = Template(text)
        if not t.is_valid():
            raise ValueError(f"prompts file {path}: prompt {name!r} has a malformed placeholder (write $$ for a "
                             "literal $)")
        bad = sorted(set(t.get_identifiers()) - fields)
        if bad:
            raise ValueError(f"prompts file {path}: prompt {name!r} uses unknown field"
                             f"{'s' if len(bad) > 1 else ''} {', '.join('${' + b + '}' for b in bad)}; "
                             f"fields: {', '.join('${' + f + '}' for f in sorted(fields))}")
        out[name] = text
    return out


@contextmanager
def prompts_override(path: str | Path | None):
    """While active, the prompts of the file at ``path`` (:func:`load_prompts_file`) replace the packaged
    ones in :func:`render_prompt`, :func:`prompt_inputs` and :func:`prompt_hashes` (so the run's config hash
    changes with them). ``None``: no change. Yields the replaced names."""
    if path is None:
        yield []
        return
    mapping = load_prompts_file(path)
    before = dict(_OVERRIDES)
    _OVERRIDES.clear()
    _OVERRIDES.update(mapping)
    try:
        yield sorted(mapping)
    finally:
        _OVERRIDES.clear()
        _OVERRIDES.update(before)


def synthesis_prompt_name(task: str, label: str | None) -> str:
    return f"synthesis_{task}{'_label' if label else ''}"


def _show(v: Any) -> str:
    """Evidence value as prompt text; absent values say so."""
    if v is None or v == "" or v == [] or v == {}:
        return "(not available)"
    if isinstance(v, dict):
        items = sorted(v.items(), key=lambda kv: -kv[1]) if all(isinstance(x, (int, float))
                                                                   for x in v.values()) else v.items()
        return ", ".join(f"{k} {x:.2f}" if isinstance(x, float) else f"{k} {x}" for k, x in items)
    if isinstance(v, (list, tuple)):
        return "; ".join(str(x) for x in v)
    return str(v)


def prompt_fields(ev: dict) -> dict[str, Any]:
    return {
        "peaks": ev.get("peaks"),
        "au_text": ev.get("au_text"),
        "au_pseudo_label": ev.get("au_pseudo_label"),
        "fer": _top_fer(ev.get("fer") or {}, 3),
        "visual_objective": ev.get("visual_objective"),
        "transcript": ev.get("transcript"),
        "tone": ev.get("tone"),
        "prosody": ev.get("prosody"),
        "video_content": ev.get("video_content"),
        "label": ev.get("label"),
    }


def _top_fer(fer: dict, k: int) -> dict:
    """The k most probable FER classes; after the first, only those that round to at least 0.01."""
    items = sorted(((str(e), float(p)) for e, p in fer.items()), key=lambda kv: -kv[1])[:k]
    return dict(items[:1] + [kv for kv in items[1:] if kv[1] >= 0.005])


# ---- provenance: which annotation fields a text was written from ------------------------------------

# evidence key -> the annotation field it shows (mer_eval's annotation names, mer_eval.schema.Annotation);
# "audio" is the media input (prosody is measured from the samples)
_EVIDENCE_FIELDS = {
    "peaks": "chronological_emotion_peaks",
    "au_pseudo_label": "top_aus_intensities",  # the AU rule tables read at the peak AUs
    "au_pseudo_labels": "top_aus_intensities",
    "top_aus": "top_aus_intensities",
    "fer": "fer_probabilities",
    "transcript": "transcript",
    "tone": "audio_description",
    "tone_emotion": "audio_description",
    "prosody": "audio",
    "video_content": "video_content",
    "label": "label",
}


def evidence_field(key: str, ev: dict) -> str | None:
    """The annotation field that evidence key ``key`` stands for (None: not an annotation input)."""
    image = bool(ev.get("is_image"))
    if key == "au_text":
        return "au_text_description" if image else "visual_expression"
    if key == "visual_objective":
        return "image_description" if image else "visual_objective"
    return _EVIDENCE_FIELDS.get(key)


def _unique(xs) -> list[str]:
    return list(dict.fromkeys(x for x in xs if x))


def prompt_inputs(name: str, ev: dict) -> list[str]:
    """The annotation fields prompt ``name`` shows for this evidence (placeholders that are filled, i.e.
    not rendered as "(not available)"), in the prompt's order."""
    keys = re.findall(r"\$\{(\w+)\}", prompt_text(name))
    shown = prompt_fields(ev)
    return _unique(evidence_field(k, ev) for k in keys if _show(shown.get(k)) != "(not available)")


def offline_inputs(purpose: str, ev: dict) -> list[str]:
    """The annotation fields the offline templates write the text of ``purpose`` from (exactly the clues
    :func:`offline_summary` / :func:`offline_tone` / :func:`offline_au_description` put into it)."""
    if purpose == "synthesis":
        keys = []
        peaks = [p for p in (ev.get("peaks") or []) if p]
        if peaks:
            keys.append("peaks")
        if ev.get("au_text"):
            keys.append("au_text")
        if ev.get("au_pseudo_labels") or ev.get("au_pseudo_label"):
            keys.append("au_pseudo_labels")
        if _top_fer(ev.get("fer") or {}, 1):
            keys.append("fer")
        keys += [k for k in ("transcript", "tone", "tone_emotion") if ev.get(k)]
        if ev.get("label"):
            keys.append("label")
        return _unique(evidence_field(k, ev) for k in keys)
    if purpose == "tone":  # the transcript line is ASR's text; the tone line restates measured prosody
        return ["audio"]
    if purpose == "au_description":
        au = ev.get("au_text") or ""
        out = [evidence_field("au_text", ev)] if au else []
        if au and au != "Neutral expression.":  # names the rule reading (or that none fires)
            out.append("top_aus_intensities")
        return _unique(out)
    return []


# vote cue -> the annotation fields it read (the AU rules read the peak AUs; the chronological peaks are the
# same rule tables over the same AU table, so a conclusion voted by the AU cue is no independent check of
# them either)
_CUE_FIELDS = {"fer": ("fer_probabilities",), "au": ("top_aus_intensities", "chronological_emotion_peaks"),
               "tone": ("audio_description",)}


def conclusion_signals(ev: dict, task: str | None = None) -> list[str]:
    """The signals the offline rule decided X from, for this evidence: ``["label"]`` when label-aware (X is
    the label), else the fields of every cue that took part in :func:`vote` (``[]`` when none did: X is
    ``undetermined``). ``chronological_emotion_peaks`` only where the sample has peaks."""
    task = task or ev.get("task") or "emotion"
    if ev.get("label"):
        return ["label"]
    cues = _cues(ev, task)
    out: list[str] = []
    for cue in VOTE_ORDER:
        if cue not in cues:
            continue
        for f in _CUE_FIELDS[cue]:
            if f == "chronological_emotion_peaks" and not [p for p in (ev.get("peaks") or []) if p]:
                continue
            out.append(f)
    return _unique(out)


# ---- coarse --------------------------------------------------------------------------------------

def coarse_description(ev: dict) -> str:
    """MERR's coarse caption: the clues concatenated by a template (only those that were measured)."""
    parts = []
    if ev.get("au_text") and ev["au_text"] != "Neutral expression.":
        parts.append(f"The facial action units at the peak frame are: {ev['au_text']}.")
    elif ev.get("au_text"):
        parts.append("The face shows a neutral expression at the peak frame (no action unit above threshold).")
    if ev.get("au_pseudo_label"):
        parts.append(f"By the action-unit rules the expression reads as {ev['au_pseudo_label']}.")
    fer = _top_fer(ev.get("fer") or {}, 1)
    if fer:
        (e, p), = fer.items()
        parts.append(f"The facial expression classifier rates {e} highest ({p:.2f}).")
    if ev.get("visual_objective"):
        parts.append(ev["visual_objective"].rstrip(".") + ".")
    if ev.get("tone"):
        parts.append(f"The tone of voice: {ev['tone'].rstrip('.')}.")
    if ev.get("transcript"):
        parts.append(f"The subtitle reads: \"{ev['transcript']}\".")
    if ev.get("video_content"):
        parts.append(ev["video_content"].rstrip(".") + ".")
    return " ".join(parts)


# ---- the conclusion ------------------------------------------------------------------------------

def parse_conclusion(text: str | None, task: str = "emotion") -> str | None:
    """X of the closing line ("the core emotional state is X" / "the overall sentiment is X"), canonical
    when it maps onto the canonical set, else as written (lower case); None when there is no such line.

    Read by the one conclusion parser the metrics use (:func:`mer_eval.domain.emotion_text.concluded_emotion`,
    :func:`~mer_eval.domain.emotion_text.concluded_sentiment` for ``task="sentiment"``): X is what it finds in
    the last concluding statement; a text without one (where the metrics fall back to the most frequent
    emotion word) has no closing line here, and for the emotion task neither has a text whose statement names
    a sentiment instead (:func:`~mer_eval.domain.emotion_text.sentiment_conclusion`)."""
    if not text:
        return None
    f = (concluded_sentiment if task == "sentiment" else concluded_emotion)(text)
    if f.method != "conclusion":
        return None
    if task != "sentiment" and f.emotion is None and sentiment_conclusion(text):
        return None  # a sentiment-task closing line ("the overall sentiment is positive") concludes no emotion
    return f.emotion or (f.raw or "").strip().lower() or None


def _cues(ev: dict, task: str) -> dict[str, list[str]]:
    """cue -> the canonical emotions (or sentiments) it supports, strongest first."""
    cues: dict[str, list[str]] = {}
    fired = list(ev.get("au_pseudo_labels") or [])
    if not fired and ev.get("au_pseudo_label"):
        fired = [ev["au_pseudo_label"]]
    au = [c for c in (canonical_emotion(str(e)) for e in fired) if c]
    if au:
        cues["au"] = list(dict.fromkeys(au))
    fer = _top_fer(ev.get("fer") or {}, 1)
    if fer:
        f = canonical_emotion(next(iter(fer)))
        if f:
            cues["fer"] = [f]
    if ev.get("tone_emotion"):
        t = canonical_emotion(ev["tone_emotion"])
        if t:
            cues["tone"] = [t]
    if task == "sentiment":
        cues = {k: list(dict.fromkeys(EMOTION_TO_SENTIMENT.get(v, "neutral") for v in vs)) for k, vs in cues.items()}
    return cues


def vote(ev: dict, task: str = "emotion") -> tuple[str, dict[str, str]]:
    """The offline rule for X (see the module docstring). Returns (X, {cue: what it supports})."""
    cues = _cues(ev, task)
    shown = {k: "/".join(v) for k, v in cues.items()}
    if not cues:
        return UNDETERMINED, shown
    support: dict[str, int] = {}
    for vs in cues.values():
        for v in vs:
            support[v] = support.get(v, 0) + 1
    best = max(support.values())
    for cue in VOTE_ORDER:  # ties: FER > AU rules (strongest first) > voice
        for v in cues.get(cue, []):
            if support[v] == best:
                return v, shown
    raise AssertionError("unreachable")


def offline_summary(ev: dict) -> str:
    """The offline provider's fine summary: deterministic reasoning over the measured evidence only."""
    task = ev.get("task") or "emotion"
    label = ev.get("label")
    lines: list[str] = []
    peaks = [p for p in (ev.get("peaks") or []) if p]
    if peaks and peaks != ["neutral"]:
        lines.append("Over time, the facial action units show these emotion peaks: " + "; ".join(peaks) + ".")
    elif peaks:
        lines.append("Over time, no emotion peak rises above the action-unit threshold.")
    if ev.get("au_text") and ev.get("is_image"):
        if ev["au_text"] == "Neutral expression.":
            lines.append("In the image no action unit exceeds the intensity threshold.")
        else:
            lines.append(f"In the image the measured action units are {ev['au_text']}.")
    elif ev.get("au_text"):
        when = ""
        if ev.get("peak_time") is not None:
            when = f" ({float(ev['peak_time']):.2f} s"
            when += f", frame {ev['peak_frame']})" if ev.get("peak_frame") is not None else ")"
        if ev["au_text"] == "Neutral expression.":
            lines.append(f"At the overall peak frame{when} no action unit exceeds the intensity threshold.")
        else:
            lines.append(f"At the overall peak frame{when} the measured action units are {ev['au_text']}.")
    fired = [str(e) for e in (ev.get("au_pseudo_labels") or [])] or (
        [ev["au_pseudo_label"]] if ev.get("au_pseudo_label") else [])
    if fired:
        lines.append(f"By the action-unit emotion rules this reads as {' or '.join(fired)}.")
    fer = _top_fer(ev.get("fer") or {}, 3)
    if fer:
        lines.append(f"The facial expression classifier on the {'image' if ev.get('is_image') else 'peak frame'} gives "
                     + ", ".join(f"{e} {p:.2f}" for e, p in fer.items()) + ".")
    if ev.get("transcript"):
        lines.append(f"The speech transcript is: \"{ev['transcript']}\".")
    if ev.get("tone"):
        lines.append(f"The voice, as measured: {ev['tone'].rstrip('.')}.")
    if ev.get("tone_emotion"):
        lines.append(f"The voice measurements suggest {ev['tone_emotion']}.")
    x, votes = vote(ev, task)
    if label:
        target = (canonical_sentiment(label) if task == "sentiment" else canonical_emotion(label)) or label
        agree = [cue for cue, v in votes.items() if target in v.split("/")]
        disagree = [f"{cue} ({v})" for cue, v in votes.items() if target not in v.split("/")]
        if agree:
            lines.append(f"The known label {target} is supported by the {', '.join(_CUE_NAMES[c] for c in agree)}.")
        if disagree:
            lines.append("It is not supported by " + ", ".join(
                f"the {_CUE_NAMES[d.split(' ')[0]]} {d[d.index(' ') + 1:]}" for d in disagree) + ".")
        x = target
    elif votes:
        n_for = sum(1 for v in votes.values() if x in v.split("/"))
        lines.append(f"{n_for} of {len(votes)} measured cues point to {x} "
                     f"({', '.join(f'{_CUE_NAMES[c]}: {v}' for c, v in votes.items())}); "
                     "ties are resolved in the order expression classifier, action units, voice.")
    else:
        lines.append("No emotion cue was measured, so the emotional state cannot be determined.")
    if task == "sentiment":
        lines.append(f"In conclusion, the overall sentiment is {x}, and the most likely cause is {UNKNOWN_CAUSE}.")
    else:
        lines.append(f"In conclusion, the core emotional state is {x}, and the most likely cause is {UNKNOWN_CAUSE}.")
    return " ".join(lines)


_CUE_NAMES = {"au": "action-unit rules", "fer": "expression classifier", "tone": "voice"}


def offline_tone(ev: dict) -> str:
    """MER-Factory's audio_analysis shape: the transcript on the first line (``Speech:`` when none),
    then the measured tone."""
    tr = (ev.get("transcript") or "").strip().replace("\n", " ")
    if tr and re.match(r"^(speaker'?s? tone|tone|audio characteristics|pitch|background|the audio features|"
                       r"the speaker|speech|subtitles?|transcription)\b", tr, re.IGNORECASE):
        tr = f"Transcript: {tr}"
    first = tr if tr else "Speech:"
    tone = ev.get("tone")
    if not tone and ev.get("prosody"):
        tone = "measured prosody: " + _show(ev["prosody"])
    if not tone:
        return first
    return f"{first}\nAudio Characteristics: {tone.strip()}"


def offline_au_description(ev: dict) -> str:
    au = ev.get("au_text") or ""
    if not au or au == "Neutral expression.":
        return "No facial action unit exceeds the intensity threshold; the expression is neutral by the AU rules."
    s = f"The measured action units are {au}."
    if ev.get("au_pseudo_label"):
        s += f" Together they match the action-unit pattern of {ev['au_pseudo_label']}."
    else:
        s += " They match none of the action-unit emotion patterns."
    return s
