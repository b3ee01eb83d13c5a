"""Shared vocabulary: FACS action units, AU-combination emotion rules, canonical emotions.

Used by generators (AU -> text, pseudo-labels) and metrics (AU-F1, label and cross-modal agreement)
alike, so both sides speak the same names.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Optional

import numpy as np

# OpenFace 2.x AU numbers with an intensity (_r) column; AU28 has presence (_c) only.
OPENFACE_R_AUS = ("01", "02", "04", "05", "06", "07", "09", "10", "12", "14", "15", "17", "20", "23", "25",
                  "26", "45")
OPENFACE_C_AUS = OPENFACE_R_AUS[:-1] + ("28", "45")

# MER-Factory's names (text form "Name (intensity: x.xx)").
AU_NAMES: dict[str, str] = {
    "01": "Inner brow raiser",
    "02": "Outer brow raiser",
    "04": "Brow lowerer",
    "05": "Upper lid raiser",
    "06": "Cheek raiser",
    "07": "Lid tightener",
    "09": "Nose wrinkler",
    "10": "Upper lip raiser",
    "12": "Lip corner puller (smile)",
    "14": "Dimpler",
    "15": "Lip corner depressor",
    "17": "Chin raiser",
    "20": "Lip stretcher",
    "23": "Lip tightener",
    "25": "Lips part",
    "26": "Jaw drop",
    "28": "Lip suck",
    "45": "Blink",
}

# Everyday phrasings annotators and LLMs use for each AU (lower case; matched on word boundaries).
AU_SYNONYMS: dict[str, tuple[str, ...]] = {
    "01": ("inner brow raiser", "inner brow raise", "inner brows raised", "raised inner brows",
           "inner eyebrows raised", "raised inner eyebrows", "inner brow raising"),
    "02": ("outer brow raiser", "outer brow raise", "outer brows raised", "raised outer brows",
           "raised eyebrows", "eyebrows raised", "raised brows", "brows raised", "brow raise",
           "eyebrow raise", "raising her eyebrows", "raising his eyebrows", "raises eyebrows",
           "raises his eyebrows", "raises her eyebrows"),
    "04": ("brow lowerer", "brow lowering", "lowered brows", "lowered eyebrows", "brows lowered",
           "furrowed brow", "furrowed brows", "furrowing", "frown", "frowning", "frowns", "knitted brows",
           "brows drawn together", "eyebrows drawn together"),
    "05": ("upper lid raiser", "upper lid raise", "raised upper lids", "widened eyes", "wide eyes",
           "eyes wide", "wide-eyed", "eyes widen", "eyes widened", "widening of the eyes"),
    "06": ("cheek raiser", "raised cheeks", "cheeks raised", "cheek raise", "crow's feet"),
    "07": ("lid tightener", "tightened lids", "tightened eyelids", "narrowed eyes", "eyes narrowed",
           "squinting", "squint", "lid tightening"),
    "09": ("nose wrinkler", "wrinkled nose", "nose wrinkle", "nose wrinkling", "wrinkles his nose",
           "wrinkles her nose"),
    "10": ("upper lip raiser", "raised upper lip", "upper lip raised", "upper lip raise", "sneer",
           "sneering"),
    "12": ("lip corner puller", "lip corners pulled", "smile", "smiling", "smiles", "grin", "grinning",
           "grins"),
    "14": ("dimpler", "dimpling", "dimples"),
    "15": ("lip corner depressor", "lip corners down", "downturned mouth", "mouth corners down",
           "corners of the mouth turned down", "lip corners depressed"),
    "17": ("chin raiser", "raised chin", "chin raise", "chin raised", "pouting", "pout"),
    "20": ("lip stretcher", "stretched lips", "lips stretched", "lip stretch"),
    "23": ("lip tightener", "tightened lips", "lips tightened", "pressed lips", "lips pressed",
           "pursed lips", "lips pursed", "tight lips", "lip tightening"),
    "25": ("lips part", "lips parted", "parted lips", "lips apart", "mouth slightly open",
           "lip parting", "lips parting", "parting of the lips"),
    "26": ("jaw drop", "jaw dropped", "dropped jaw", "mouth open", "open mouth", "mouth opened",
           "opens his mouth", "opens her mouth", "opens mouth", "mouth hanging open", "gaping"),
    "28": ("lip suck", "lips sucked in", "sucked lips"),
    "45": ("blink", "blinking", "blinks", "eyes closed", "closed eyes"),
}

# MER-Factory's rule table: emotion -> AUs. Fires when >= half its AUs are present (_c) and the mean
# of their _r reaches the threshold; strength strong at 3x, moderate at 2x the threshold, else slight.
MER_FACTORY_RULES: dict[str, tuple[str, ...]] = {
    "happy": ("06", "12", "14"),
    "sad": ("01", "04", "15", "14"),
    "surprise": ("01", "02", "05", "26"),
    "fear": ("01", "02", "04", "05", "07", "20", "26"),
    "angry": ("04", "05", "07", "23", "10", "17"),
    "contempt": ("12", "10", "14", "17"),
    "worried": ("28", "20"),
    "disgust": ("09", "15"),
}

# MERR's (Emotion-LLaMA) pseudo-label table: every AU of a rule must be present.
MERR_RULES: dict[str, tuple[str, ...]] = {
    "surprise": ("05", "26"),
    "happy": ("06", "12"),
    "sad": ("01", "04", "15"),
    "angry": ("04", "05", "07", "23"),
}

RULE_TABLES: dict[str, dict[str, tuple[str, ...]]] = {"mer-factory": MER_FACTORY_RULES, "merr": MERR_RULES}
RULE_AUS: tuple[str, ...] = tuple(sorted({a for t in RULE_TABLES.values() for aus in t.values() for a in aus}))


@dataclass(frozen=True)
class RuleHit:
    """One emotion an AU rule table fires for."""

    emotion: str
    score: Optional[float] = None  # mer-factory: mean intensity of the rule's AUs (unrounded); merr: None
    strength: Optional[str] = None  # mer-factory: slight | moderate | strong; merr: None


def au_rule_hits(table: str, present: Mapping[str, bool], intensity: Optional[Mapping[str, float]] = None,
                 threshold: float = 0.8, *, intensity_aus: Optional[Iterable[str]] = None,
                 skip_unknown: bool = False) -> list[RuleHit]:
    """The emotions whose AU combination fires, in the table's order: the one implementation of both tables.

    ``present``: two-digit AU code -> present (a code that is not a key is not present); ``intensity``: AU
    code -> intensity (``_r``).

    * ``mer-factory`` (:data:`MER_FACTORY_RULES`): an emotion fires when at least half its AUs are present and
      the mean intensity of its AUs that have an intensity channel reaches ``threshold``; strength strong at
      3x, moderate at 2x the threshold, else slight. The AUs with an intensity channel are
      ``intensity_aus`` (default: the keys of ``intensity``; one of them missing from ``intensity`` counts
      0); a rule none of whose AUs has one (AU28 has presence only) never fires. ``skip_unknown``: an
      emotion with an AU that is not a key of ``present`` is skipped (MER-Factory skips an emotion whose
      ``_c`` columns are not all in the CSV).
    * ``merr`` (:data:`MERR_RULES`): an emotion fires when every one of its AUs is present.

    The mean is ``numpy.mean`` over the rule's intensities in table order.
    """
    rules = RULE_TABLES[table]
    if table == "merr":
        return [RuleHit(emo) for emo, aus in rules.items() if all(present.get(a) for a in aus)]
    intensity = intensity or {}
    channels = set(intensity if intensity_aus is None else intensity_aus)
    out = []
    for emo, aus in rules.items():
        if skip_unknown and not all(a in present for a in aus):
            continue
        n_present = sum(1 for a in aus if present.get(a))
        values = [intensity.get(a, 0.0) for a in aus if a in channels]
        if n_present < 0.5 * len(aus) or not values:
            continue
        score = float(np.mean(values))
        if score >= threshold:
            strength = ("strong" if score >= 3.0 * threshold else "moderate" if score >= 2.0 * threshold
                        else "slight")
            out.append(RuleHit(emo, score, strength))
    return out


# ---- canonical emotions -------------------------------------------------------------------------

CANONICAL_EMOTIONS = ("neutral", "happy", "sad", "angry", "surprise", "fear", "disgust", "contempt",
                      "worried")

# word or phrase -> canonical emotion (families: "frustration" is in the anger family, ...)
EMOTION_SYNONYMS: dict[str, str] = {}
_FAMILIES = {
    "neutral": ["neutral", "neutrality", "calm", "calmness", "composed", "indifferent", "indifference",
                "impassive", "expressionless", "blank expression", "no emotion", "emotionless", "unemotional",
                "stoic", "detached", "nonchalant", "deadpan", "flat affect", "matter-of-fact", "bored", "boredom",
                "pensive", "contemplative", "reflective", "neutral emotion", "neutral state"],
    "happy": ["happy", "happiness", "joy", "joyful", "joyous", "glad", "delight", "delighted", "pleased",
              "amusement", "amused", "cheerful", "cheerfulness", "content", "contentment", "elated",
              "excited", "excitement", "playful", "playfulness", "laughter", "laughing", "enjoyment",
              "satisfied", "satisfaction", "relief", "relieved", "pride", "proud", "happiness/joy",
              "lighthearted", "light-hearted", "jovial", "gleeful", "glee", "euphoric", "euphoria", "thrilled",
              "ecstatic", "overjoyed", "elation", "bliss", "blissful", "merry", "exhilarated", "exhilaration",
              "enthusiastic", "enthusiasm", "giddy", "affection", "affectionate", "grateful", "gratitude",
              "hopeful", "triumphant", "amusing", "happy/excited"],
    "sad": ["sad", "sadness", "sorrow", "sorrowful", "grief", "grieving", "unhappy", "unhappiness",
            "depressed", "depression", "melancholy", "disappointed", "disappointment", "despair",
            "gloomy", "heartbroken", "dejected", "hurt", "regret", "lonely", "loneliness", "upset", "tearful",
            "mournful", "miserable", "misery", "devastated", "distraught", "anguish", "hopeless", "hopelessness",
            "crestfallen", "downcast", "somber", "sombre", "glum", "forlorn", "wistful", "nostalgic", "nostalgia",
            "remorse", "remorseful", "guilt", "guilty", "shame", "ashamed", "regretful", "resigned",
            "resignation", "defeated", "heartache", "melancholic", "saddened", "grieved", "heartbreak"],
    "angry": ["angry", "anger", "annoyed", "annoyance", "irritated", "irritation", "frustrated",
              "frustration", "exasperated", "exasperation", "furious", "fury", "rage", "mad", "hostile",
              "hostility", "resentment", "resentful", "indignant", "indignation", "outraged", "outrage", "irate",
              "livid", "enraged", "agitated", "agitation", "irked", "peeved", "vexed", "aggravated",
              "aggravation", "bitter", "bitterness", "defensive", "defiant", "defiance", "jealous", "jealousy",
              "envy", "envious", "impatient", "impatience", "grumpy", "cranky", "infuriated", "displeased",
              "displeasure", "wrath", "irritable", "irritability", "antagonistic", "exasperating"],
    "surprise": ["surprise", "surprised", "astonished", "astonishment", "amazed", "amazement", "shock",
                 "shocked", "startled", "stunned", "disbelief", "astounded", "incredulous", "incredulity",
                 "dumbfounded", "flabbergasted", "taken aback", "caught off guard", "bewildered",
                 "bewilderment"],
    "fear": ["fear", "fearful", "afraid", "scared", "frightened", "terrified", "terror", "panic",
             "panicked", "horror", "dread", "alarmed", "fright", "petrified", "horrified", "intimidated",
             "threatened", "spooked", "paranoid", "panicky"],
    "disgust": ["disgust", "disgusted", "revulsion", "repulsed", "distaste", "aversion", "disgusting",
                "grossed out", "repulsion", "revolted", "nauseated", "repugnance", "loathing", "abhorrence",
                "distasteful"],
    "contempt": ["contempt", "contemptuous", "scorn", "disdain", "disdainful", "sarcasm", "sarcastic",
                 "mockery", "smug", "condescending", "condescension", "derision", "derisive", "mocking",
                 "scornful", "dismissive", "disrespect", "arrogant", "arrogance", "haughty", "sardonic",
                 "snide"],
    "worried": ["worried", "worry", "anxious", "anxiety", "nervous", "nervousness", "concern",
                "concerned", "uneasy", "unease", "apprehensive", "apprehension", "tense", "tension",
                "stress", "stressed", "uncertain", "uncertainty", "confused", "confusion", "fretful",
                "insecure", "insecurity", "embarrassed", "embarrassment", "awkward", "awkwardness", "hesitant",
                "hesitation", "hesitancy", "doubtful", "overwhelmed", "flustered", "uncomfortable",
                "discomfort", "troubled", "perplexed", "puzzled", "restless", "on edge", "jittery", "distress",
                "distressed", "worrying", "anxiously", "nervously"],
}
for _canon, _words in _FAMILIES.items():
    for _w in _words:
        EMOTION_SYNONYMS[_w] = _canon

# MER2023 / MERR labels and common dataset spellings
EMOTION_SYNONYMS.update({"hap": "happy", "sad": "sad", "ang": "angry", "neu": "neutral", "sur": "surprise",
                         "wor": "worried", "fea": "fear", "dis": "disgust"})

SENTIMENTS = ("positive", "negative", "neutral")
EMOTION_TO_SENTIMENT: dict[str, str] = {
    "happy": "positive",
    "neutral": "neutral",
    "surprise": "neutral",
    "sad": "negative",
    "angry": "negative",
    "fear": "negative",
    "disgust": "negative",
    "contempt": "negative",
    "worried": "negative",
}
SENTIMENT_SYNONYMS = {
    "positive": "positive", "pos": "positive", "negative": "negative", "neg": "negative",
    "neutral": "neutral", "neu": "neutral", "mixed": "neutral",
}


def canonical_emotion(word: Optional[str], extra: Optional[dict[str, str]] = None) -> Optional[str]:
    """Map a label or emotion word onto the canonical set; None when it is not an emotion we know."""
    if not word:
        return None
    w = re.sub(r"[^a-z/ ]+", " ", word.lower()).strip()
    w = re.sub(r"\s+", " ", w)
    table = {**EMOTION_SYNONYMS, **{k.lower(): v for k, v in (extra or {}).items()}}
    if w in table:
        return table[w]
    if w in CANONICAL_EMOTIONS:
        return w
    for tok in w.replace("/", " ").split():
        if tok in table:
            return table[tok]
    return None


def canonical_sentiment(word: Optional[str], extra: Optional[dict[str, str]] = None) -> Optional[str]:
    if not word:
        return None
    w = word.strip().lower()
    if w in SENTIMENT_SYNONYMS:
        return SENTIMENT_SYNONYMS[w]
    emo = canonical_emotion(w, extra)
    return EMOTION_TO_SENTIMENT.get(emo) if emo else None


@functools.lru_cache(maxsize=4096)  # the same few AU column / key names in every sample: parsed once
def au_code(name: str) -> Optional[str]:
    """``"AU06_r"`` / ``"AU6"`` / ``"au 06"`` -> ``"06"``."""
    m = re.search(r"au\s*0*(\d{1,2})", name.lower())
    return f"{int(m.group(1)):02d}" if m else None


def au_text(intensities: dict[str, float]) -> str:
    """MER-Factory's AU text: ``Name (intensity: x.xx), ...``; ``Neutral expression.`` when empty."""
    parts = []
    for key, v in intensities.items():
        code = au_code(key)
        if code in AU_NAMES:
            parts.append(f"{AU_NAMES[code]} (intensity: {v:.2f})")
    return ", ".join(parts) if parts else "Neutral expression."
