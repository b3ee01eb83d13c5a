"""Corrupted twins of a run's own samples, for ``mer-eval probe``.

Each twin is a copy of one sample whose annotation carries exactly one known defect; media, labels and the
sample folder are the original's (read, never written: twins live in memory and are scored into the probe
folder). Kinds:

=============  ===========================================================================================
``flip``       every word of the concluded emotion's family in the summary (and the concluding word) is
               replaced by the same part of speech of another emotion; the reasoning around is unchanged
``swap``       the summary of another clip's sample that concludes a different emotion (or has another
               label); annotations of the same clip (same AU peaks, or same media) are not donors
``au``         one detected AU the summary names is renamed, wherever it is named, to an AU that was not
               detected nor seen in a visual description (the rest of its AU reasoning stays true); a summary
               that names no AU gets one sentence claiming two such AUs at the peak
``degen``      one sentence of the summary repeated as many times as the summary had sentences (>= 4)
``generic``    a one-sentence boilerplate naming the label (or, without one, the summary's own conclusion)
``transcript`` the transcript's words (CJK: characters) shuffled, a third of them replaced by words of
               other samples' transcripts in the same script (CJK or not; none: its own words)
``drop``       one modality's description removed: the audio analysis (transcript and tone), else the
               peak-frame / image description, else the video description
=============  ===========================================================================================

Every choice is drawn from ``random.Random(f"{seed}:{kind}:{sample id}")``, so twins are reproducible
and independent of the order and number of samples. A kind that cannot be made for a sample (no
conclusion to flip, no other sample to swap with, no transcript, ...) is skipped with the reason.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Optional

from mer_eval.domain.facs import AU_NAMES, EMOTION_SYNONYMS, au_code
from mer_eval.schema import Sample
from mer_eval.domain.text import cjk_ratio, split_sentences

KINDS = ("flip", "swap", "au", "degen", "generic", "transcript", "drop")

# (adjective, noun) of each canonical emotion, for same-part-of-speech replacement
FORMS: dict[str, tuple[str, str]] = {
    "neutral": ("neutral", "neutrality"), "happy": ("happy", "happiness"), "sad": ("sad", "sadness"),
    "angry": ("angry", "anger"), "surprise": ("surprised", "surprise"), "fear": ("fearful", "fear"),
    "disgust": ("disgusted", "disgust"), "contempt": ("contemptuous", "contempt"),
    "worried": ("worried", "worry"),
}
ZH_FORMS = {"neutral": "平静", "happy": "高兴", "sad": "悲伤", "angry": "愤怒", "surprise": "惊讶",
            "fear": "恐惧", "disgust": "厌恶", "contempt": "轻蔑", "worried": "担心"}
FLIP_TARGETS = ("neutral", "happy", "sad", "angry", "surprise", "fear", "disgust", "worried")
_NOUN_SUFFIX = ("ness", "tion", "ment", "ity", "ance", "ence", "ure", "sion", "ery", "ism")
_NOUNS = {"joy", "anger", "fear", "rage", "grief", "sorrow", "surprise", "shock", "disgust", "contempt", "worry",
          "stress", "tension", "concern", "panic", "horror", "dread", "delight", "relief", "pride", "glee",
          "bliss", "fury", "envy", "guilt", "shame", "regret", "despair", "scorn", "disdain", "laughter",
          "unease", "distress", "misery", "anguish", "heartache", "melancholy", "wrath", "outrage", "terror",
          "fright", "alarm", "hurt", "sarcasm", "mockery", "amusement", "excitement", "elation", "euphoria",
          "anxiety", "enthusiasm", "affection", "gratitude", "nostalgia", "remorse", "resentment", "hostility",
          "derision", "arrogance", "discomfort", "insecurity", "hesitation", "hesitancy", "confusion",
          "uncertainty", "apprehension", "aversion", "revulsion", "distaste", "repulsion", "loathing",
          "boredom", "calm", "calmness", "neutrality", "disbelief", "amazement", "astonishment", "frustration",
          "irritation", "annoyance", "exasperation", "indignation", "agitation", "aggravation", "jealousy",
          "impatience", "displeasure", "defiance", "bitterness", "embarrassment", "awkwardness",
          "happiness", "sadness", "satisfaction", "contentment", "enjoyment", "playfulness", "cheerfulness",
          "indifference", "incredulity", "bewilderment", "heartbreak", "resignation", "condescension"}


@dataclass
class Twin:
    sample: Sample
    kind: str
    original_id: str
    what: str


def twin_id(sid: str, kind: str) -> str:
    return f"{sid}.twin-{kind}"[:200]


def _rng(seed: int, kind: str, sid: str) -> random.Random:
    return random.Random(f"{seed}:{kind}:{sid}")


def _copy(s: Sample, kind: str) -> Sample:
    t = s.model_copy(deep=True)
    t.id = twin_id(s.id, kind)
    return t


def _is_noun(word: str) -> bool:
    w = word.lower()
    return w in _NOUNS or w.endswith(_NOUN_SUFFIX)


def _match_case(src: str, repl: str) -> str:
    if src.isupper() and len(src) > 1:
        return repl.upper()
    if src[:1].isupper():
        return repl[:1].upper() + repl[1:]
    return repl


def _family_words(emotion: str) -> list[str]:
    from mer_eval.domain.emotion_text import AMBIGUOUS

    return sorted((w for w, e in EMOTION_SYNONYMS.items() if e == emotion and len(w) >= 3 and w not in AMBIGUOUS),
                  key=len, reverse=True)


def flip_summary(text: str, source: str, target: str) -> tuple[str, int]:
    """Replace every word of ``source``'s family with ``target``'s same-part-of-speech form."""
    from mer_eval.domain.emotion_text import ZH_EMOTIONS

    words = _family_words(source)
    n = 0
    if words:
        rx = re.compile(r"(?<![A-Za-z])(" + "|".join(re.escape(w) for w in words) + r")(?![A-Za-z])", re.I)
        adj, noun = FORMS[target]

        def sub(m: re.Match) -> str:
            nonlocal n
            n += 1
            return _match_case(m.group(1), noun if _is_noun(m.group(1)) else adj)

        text = rx.sub(sub, text)
    zh = [w for w, e in ZH_EMOTIONS.items() if e == source]
    for w in sorted(zh, key=len, reverse=True):
        if w in text:
            n += text.count(w)
            text = text.replace(w, ZH_FORMS[target])
    return text, n


def _concluded(s: Sample) -> Optional[str]:
    from mer_eval.domain.emotion_text import concluded_emotion

    return concluded_emotion(s.annotation.final_summary).emotion if s.annotation.final_summary else None


def make_flip(s: Sample, seed: int) -> tuple[Optional[Twin], str]:
    summ = s.annotation.final_summary
    if not summ:
        return None, "no final summary"
    src = _concluded(s)
    if src is None:
        return None, "the summary concludes no emotion to flip"
    rng = _rng(seed, "flip", s.id)
    target = rng.choice([e for e in FLIP_TARGETS if e != src])
    new, n = flip_summary(summ, src, target)
    if n == 0:
        return None, f"no word of the {src} family found to replace"
    t = _copy(s, "flip")
    t.annotation.final_summary = new
    return Twin(t, "flip", s.id, f"{n} {src} words -> {target}"), ""


def same_clip(a: Sample, b: Sample) -> bool:
    """Two annotations of one clip (another provider's run, the other task): the same AU peaks and
    intensities, or the same media file. Swapping between them is no corruption."""
    if a.video is not None and b.video is not None and a.video == b.video:
        return True
    x, y = a.annotation, b.annotation
    return bool(x.top_aus_intensities) and x.top_aus_intensities == y.top_aus_intensities and \
        x.chronological_emotion_peaks == y.chronological_emotion_peaks


def make_swap(s: Sample, others: list[Sample], seed: int) -> tuple[Optional[Twin], str]:
    if not s.annotation.final_summary:
        return None, "no final summary"
    mine = _concluded(s)
    cands = [o for o in others if o.id != s.id and o.annotation.final_summary
             and o.annotation.final_summary != s.annotation.final_summary and not same_clip(s, o)]
    diff = [o for o in cands if (o.label and s.label and o.label != s.label)
            or (not (o.label and s.label) and _concluded(o) != mine)]
    pool = diff or cands
    if not pool:
        return None, "no other clip with a summary in this run to swap with"
    donor = _rng(seed, "swap", s.id).choice(sorted(pool, key=lambda o: o.id))
    t = _copy(s, "swap")
    t.annotation.final_summary = donor.annotation.final_summary
    how = "a different label" if (donor.label and s.label and donor.label != s.label) else (
        "a different conclusion" if diff else "the same conclusion (no sample concludes another emotion)")
    return Twin(t, "swap", s.id, f"summary of {donor.id} ({how})"), ""


def reported_aus(s: Sample, threshold: float = 0.8) -> set[str]:
    from mer_eval.domain.au_claims import extract_claims

    out = {au_code(k) for k, v in s.annotation.top_aus_intensities.items() if au_code(k) and v > threshold}
    for f in ("visual_expression", "au_text_description"):
        v = getattr(s.annotation, f)
        if v:
            out |= extract_claims(v).present
    return {a for a in out if a}


def visible_aus(s: Sample) -> set[str]:
    """AUs a visual description of the sample mentions (the evidence au_faithfulness also accepts)."""
    from mer_eval.domain.au_claims import extract_claims

    out: set[str] = set()
    for f in ("visual_objective", "image_description", "video_content"):
        v = getattr(s.annotation, f)
        if v:
            out |= extract_claims(v).present
    return out


_AU_POOL = ("01", "02", "04", "05", "06", "07", "09", "10", "12", "14", "15", "17", "20", "23", "26")


def _au_name(au: str) -> str:
    return re.sub(r"\s*\(.*?\)", "", AU_NAMES[au]).strip().lower()


def make_au(s: Sample, seed: int) -> tuple[Optional[Twin], str]:
    from mer_eval.domain.au_claims import extract_claims

    summ = s.annotation.final_summary
    if not summ:
        return None, "no final summary"
    if cjk_ratio(summ) > 0.3:
        return None, "the summary is not English (AU names are English)"
    rng = _rng(seed, "au", s.id)
    have = reported_aus(s)
    # the AU claimed instead is one no evidence shows: neither reported nor seen in a visual description ("her
    # mouth is open" shows a jaw drop), else the twin's claim would be true of the clip
    shown = have | visible_aus(s)
    pool = [a for a in _AU_POOL if a not in shown]
    if len(pool) < 2:
        return None, "nearly every AU is reported: no undetected AU to claim"
    rng.shuffle(pool)
    claims = extract_claims(summ)
    mentions = [m for m in claims.mentions if not m.negated and m.au in have]
    t = _copy(s, "au")
    if mentions:
        # one detected AU the summary names becomes one nobody detected, everywhere it is named: the rest of
        # the AU reasoning stays true (a single hallucinated movement is the hard case)
        victim = rng.choice(sorted({m.au for m in mentions}))
        fake = pool[0]
        out, pos, n = [], 0, 0
        for m in sorted(mentions, key=lambda x: x.start):
            if m.au != victim or m.start < pos or m.end <= m.start:
                continue
            out.append(summ[pos:m.start])
            out.append(_match_case(summ[m.start:m.start + 1], _au_name(fake)))
            pos = m.end
            n += 1
        out.append(summ[pos:])
        t.annotation.final_summary = "".join(out)
        what = f"AU{victim} renamed to undetected AU{fake} ({n} mentions)"
    else:
        a, b = pool[0], pool[1]
        sents = split_sentences(summ)
        claim = f"At the peak frame, the {_au_name(a)} and the {_au_name(b)} are clearly active."
        t.annotation.final_summary = " ".join(sents[:1] + [claim] + sents[1:])
        what = f"added a claim of undetected AU{a} and AU{b}"
    return Twin(t, "au", s.id, what), ""


def make_degen(s: Sample, seed: int) -> tuple[Optional[Twin], str]:
    summ = s.annotation.final_summary
    if not summ:
        return None, "no final summary"
    sents = split_sentences(summ)
    if not sents:
        return None, "no sentence in the summary"
    long = [x for x in sents if len(x.split()) >= 6 or cjk_ratio(x) > 0.3] or sents
    one = _rng(seed, "degen", s.id).choice(long)
    t = _copy(s, "degen")
    t.annotation.final_summary = " ".join([one] * max(4, len(sents)))
    return Twin(t, "degen", s.id, f"one sentence repeated {max(4, len(sents))} times"), ""


GENERIC_TEMPLATES = (
    "The person in the video appears to be {adj}.",
    "Overall, the subject seems {adj}.",
    "The core emotional state is {noun}.",
    "Based on the clip, the person feels {adj}.",
    "The speaker is clearly {adj} in this scene.",
)


def make_generic(s: Sample, seed: int) -> tuple[Optional[Twin], str]:
    from mer_eval.domain.facs import canonical_emotion

    emo = canonical_emotion(s.label) if s.label else None
    src = "label"
    if emo is None:
        emo, src = _concluded(s), "conclusion"
    if emo is None:
        return None, "no label and no concluded emotion to name"
    adj, noun = FORMS.get(emo, (emo, emo))
    tpl = _rng(seed, "generic", s.id).choice(GENERIC_TEMPLATES)
    t = _copy(s, "generic")
    t.annotation.final_summary = tpl.format(adj=adj, noun=noun)
    return Twin(t, "generic", s.id, f"boilerplate naming the {src} ({emo})"), ""


def make_transcript(s: Sample, others: list[Sample], seed: int) -> tuple[Optional[Twin], str]:
    tr = s.annotation.transcript
    if not tr or not tr.strip():
        return None, "no transcript"
    rng = _rng(seed, "transcript", s.id)
    cjk = cjk_ratio(tr) > 0.3
    toks = [c for c in tr if not c.isspace()] if cjk else tr.split()
    if len(toks) < 3:
        return None, "transcript shorter than 3 tokens"
    # donors in the transcript's own script: a third of the words wrong, not a second language spliced in (a
    # mixed-script transcript reads as a possible translation to quote_fidelity, which then checks nothing)
    donors = [o.annotation.transcript for o in others if o.id != s.id and o.annotation.transcript
              and (cjk_ratio(o.annotation.transcript) > 0.3) == cjk]
    pool = ([c for d in donors for c in d if not c.isspace()] if cjk else [w for d in donors for w in d.split()])
    pool = pool or toks
    n_rep = max(1, len(toks) // 3)
    new = toks[:]
    rng.shuffle(new)
    for i in rng.sample(range(len(new)), n_rep):
        new[i] = rng.choice(pool)
    text = "".join(new) if cjk else " ".join(new)
    t = _copy(s, "transcript")
    t.annotation.transcript = text
    if t.annotation.audio_analysis_raw and tr in t.annotation.audio_analysis_raw:
        t.annotation.audio_analysis_raw = t.annotation.audio_analysis_raw.replace(tr, text)
    return Twin(t, "transcript", s.id, f"transcript shuffled, {n_rep} of {len(toks)} tokens replaced"), ""


def make_drop(s: Sample, seed: int) -> tuple[Optional[Twin], str]:
    a = s.annotation
    t = _copy(s, "drop")
    ta = t.annotation
    if a.transcript or a.audio_description:
        ta.transcript = ta.audio_description = ta.audio_analysis_raw = None
        return Twin(t, "drop", s.id, "audio analysis (transcript and tone) removed"), ""
    for f in ("visual_objective", "image_description", "video_content"):
        if getattr(a, f):
            setattr(ta, f, None)
            return Twin(t, "drop", s.id, f"{f} removed"), ""
    return None, "no modality description to remove"


def make_twins(samples: list[Sample], kinds: tuple[str, ...] = KINDS, seed: int = 0
               ) -> tuple[list[Twin], dict[str, dict[str, str]]]:
    """Twins of ``samples`` for each kind, and per kind the samples skipped with the reason."""
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown corruption kind(s) {bad}; known: {', '.join(KINDS)}")
    twins: list[Twin] = []
    skipped: dict[str, dict[str, str]] = {k: {} for k in kinds}
    for s in samples:
        for k in kinds:
            if k == "flip":
                tw, why = make_flip(s, seed)
            elif k == "swap":
                tw, why = make_swap(s, samples, seed)
            elif k == "au":
                tw, why = make_au(s, seed)
            elif k == "degen":
                tw, why = make_degen(s, seed)
            elif k == "generic":
                tw, why = make_generic(s, seed)
            elif k == "transcript":
                tw, why = make_transcript(s, samples, seed)
            else:
                tw, why = make_drop(s, seed)
            if tw is None:
                skipped[k][s.id] = why
            else:
                twins.append(tw)
    return twins, skipped
