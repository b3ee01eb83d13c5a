"""Reading emotions out of free text: what a summary *concludes*, and what a description *evidences*.

Shared by the label-agreement and cross-modal metrics so both read a summary the same way.

* :func:`concluded_emotion` looks for the closing statement MER-Factory's prompt asks for ("the core
  emotional state is X, and the most likely cause is Y") and its common variants ("X is the most likely
  emotion", "the inferred sentiment is X", a line ``Emotion: X``). The last such statement in the text wins;
  the first known emotion word inside it is the prediction (``method="conclusion"``). When the statement
  names nothing we know, the finding keeps the raw phrase and ``emotion=None`` (it is *not* replaced by a
  guess). When the text has no such statement at all, the most frequent emotion in the text is used,
  ties going to the one mentioned last (``method="dominant_words"``).
* :func:`emotion_mentions` scans text with the English lexicon of :mod:`mer_eval.facs` (whole words,
  longest phrase first). A mention preceded within three words by a negation ("not", "no", "without",
  "lack of", ...) is dropped. The word "content" is not read as an emotion ("video content" is everywhere
  in MER-Factory summaries); "contentment" is. A small Chinese lexicon (:data:`ZH_EMOTIONS`, matched as
  substrings; 不/没/无/非 right before a word negates it) and the closing statements "核心情绪是X" /
  "情绪状态是X" cover Chinese summaries and transcripts.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from mer_eval.facs import EMOTION_SYNONYMS, EMOTION_TO_SENTIMENT, SENTIMENT_SYNONYMS, canonical_emotion

# lexicon entries that are too ambiguous in free text
AMBIGUOUS = {"content", "hap", "ang", "neu", "sur", "wor", "fea", "dis"}  # + dataset abbreviations

# facial-expression cues that evidence an emotion in a *visual* description (not emotion words themselves)
EXPRESSION_CUES: dict[str, str] = {
    "smile": "happy", "smiles": "happy", "smiling": "happy", "smiled": "happy", "grin": "happy",
    "grins": "happy", "grinning": "happy", "beaming": "happy", "laughs": "happy", "laugh": "happy",
    "crying": "sad", "cries": "sad", "tears": "sad", "weeping": "sad", "sobbing": "sad",
    "scowl": "angry", "scowling": "angry", "glaring": "angry", "shouting": "angry", "yelling": "angry",
    "gasp": "surprise", "gasps": "surprise", "gasping": "surprise",
    "trembling": "fear", "cowering": "fear",
}

# A small Chinese lexicon (MER2023/MERR clips are Chinese): matched as substrings, CJK has no word spaces.
ZH_EMOTIONS: dict[str, str] = {
    "中性": "neutral", "平静": "neutral", "冷静": "neutral", "面无表情": "neutral",
    "高兴": "happy", "快乐": "happy", "开心": "happy", "喜悦": "happy", "愉快": "happy", "兴奋": "happy",
    "悲伤": "sad", "伤心": "sad", "难过": "sad", "失望": "sad", "沮丧": "sad", "痛苦": "sad",
    "愤怒": "angry", "生气": "angry", "恼火": "angry", "烦躁": "angry", "不耐烦": "angry", "恼怒": "angry",
    "惊讶": "surprise", "吃惊": "surprise", "震惊": "surprise", "惊奇": "surprise",
    "恐惧": "fear", "害怕": "fear", "惊恐": "fear",
    "厌恶": "disgust", "恶心": "disgust", "反感": "disgust",
    "轻蔑": "contempt", "蔑视": "contempt", "鄙视": "contempt",
    "担心": "worried", "焦虑": "worried", "紧张": "worried", "不安": "worried", "担忧": "worried",
}
ZH_NEGATIONS = ("不", "没", "无", "非")

NEGATIONS = {"not", "no", "never", "without", "lack", "absence", "absent", "nor", "isn't", "doesn't",
             "don't", "wasn't", "aren't", "hardly", "neither"}

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_STOP = re.compile(r",|;|\.(?:\s|$)|\band the\b|\bwith the most likely\b|\bwhich\b|\bbecause\b|\bdue to\b")

_CONCLUSION_PATTERNS = [
    re.compile(r"core emotional state\s+(?:is|was|would be|appears to be|seems to be|can be described as)"
               r"\s*:?\s*(?P<x>[^\n]+)"),
    re.compile(r"(?:most likely|predominant|dominant|primary|overall|final|inferred|predicted|main|underlying)"
               r"\s+(?:emotion|emotional state|sentiment|emotion label|sentiment label)\s+"
               r"(?:is|was|would be|appears to be|seems to be)\s*:?\s*(?P<x>[^\n]+)"),
    re.compile(r"(?:the|this|his|her|their)\s+(?:sentiment|emotion)\s+(?:is|was)\s*:?\s*(?P<x>[^\n]+)"),
    re.compile(r"(?P<x>[a-z][a-z ,/-]{0,40}?)\s+(?:is|was|seems|appears)\s+(?:to be\s+)?the\s+"
               r"(?:most likely|most probable|predominant|dominant|primary|main|core)\s+"
               r"(?:emotion|emotional state|sentiment)"),
    re.compile(r"(?:核心情绪|情绪状态|主要情绪|最可能的情绪|情感倾向|情绪)(?:是|为|：|:)\s*(?P<x>[^，。；\n,.;]+)"),
    re.compile(r"^\s*\**\s*(?:final\s+)?(?:emotion|sentiment|label)\s*\**\s*[:：]\s*\**\s*(?P<x>[^\n]+)$", re.MULTILINE),
]


@dataclass
class Finding:
    """What a text says about emotion. ``emotion`` is canonical (or a sentiment for sentiment findings)."""

    emotion: Optional[str]
    raw: Optional[str]  # the word or phrase it came from
    method: str  # conclusion | dominant_words | none
    phrase: Optional[str] = None  # the concluding statement, when there is one
    counts: dict[str, int] = field(default_factory=dict)

    def as_details(self) -> dict:
        d = {"predicted_raw": self.raw, "predicted": self.emotion, "method": self.method}
        if self.phrase:
            d["phrase"] = self.phrase
        if self.counts:
            d["counts"] = dict(self.counts)
        return d


def _lexicon(extra: Optional[dict[str, str]] = None, cues: bool = False) -> dict[str, str]:
    lex = {k: v for k, v in EMOTION_SYNONYMS.items() if k not in AMBIGUOUS}
    lex.update(ZH_EMOTIONS)
    if cues:
        lex.update(EXPRESSION_CUES)
    for k, v in (extra or {}).items():
        canon = canonical_emotion(v) or v.lower()
        lex[k.lower()] = canon
    return lex


_RX_CACHE: dict[tuple, re.Pattern] = {}


def _regex(lex: dict[str, str]) -> re.Pattern:
    key = tuple(sorted(lex))
    rx = _RX_CACHE.get(key)
    if rx is None:
        alts = sorted((re.escape(k) for k in lex), key=len, reverse=True)
        rx = re.compile(r"(?<![a-z])(" + "|".join(alts) + r")(?![a-z])")
        _RX_CACHE[key] = rx
    return rx


def emotion_mentions(text: Optional[str], extra: Optional[dict[str, str]] = None,
                     cues: bool = False) -> list[tuple[str, str, int]]:
    """``[(canonical, word, offset), ...]`` of the non-negated emotion words in ``text``."""
    if not text:
        return []
    low = text.lower()
    lex = _lexicon(extra, cues)
    out = []
    for m in _regex(lex).finditer(low):
        before = _WORD.findall(low[max(0, m.start() - 40): m.start()])[-3:]
        if any(w in NEGATIONS for w in before):
            continue
        if m.group(1) in ZH_EMOTIONS and low[max(0, m.start() - 2): m.start()].endswith(ZH_NEGATIONS) \
                and not m.group(1).startswith("不"):
            continue  # 不高兴 / 没(有)生气
        out.append((lex[m.group(1)], m.group(1), m.start()))
    return out


def emotion_counts(text: Optional[str], extra: Optional[dict[str, str]] = None, cues: bool = False) -> Counter:
    return Counter(c for c, _, _ in emotion_mentions(text, extra, cues))


def dominant_emotions(text: Optional[str], extra: Optional[dict[str, str]] = None,
                      cues: bool = False) -> tuple[list[str], Counter]:
    """The emotions mentioned most often (all of them on a tie), and the counts."""
    counts = emotion_counts(text, extra, cues)
    if not counts:
        return [], counts
    top = max(counts.values())
    return sorted(e for e, n in counts.items() if n == top), counts


def _conclusion_phrase(text: str) -> Optional[str]:
    low = text.lower().replace("*", "")
    best: Optional[tuple[int, str]] = None
    for rx in _CONCLUSION_PATTERNS:
        for m in rx.finditer(low):
            x = m.group("x").strip()
            if rx is not _CONCLUSION_PATTERNS[3]:
                cut = _STOP.search(x)
                if cut:
                    x = x[: cut.start()]
            x = x.strip(" '\"[]()")
            if x and (best is None or m.start() >= best[0]):
                best = (m.start(), x)
    return best[1] if best else None


def _first_emotion(phrase: str, extra: Optional[dict[str, str]]) -> Optional[tuple[str, str]]:
    ms = emotion_mentions(phrase, extra)
    if ms:
        return ms[0][0], ms[0][1]
    emo = canonical_emotion(phrase, extra)
    return (emo, phrase) if emo else None


def concluded_emotion(text: Optional[str], extra: Optional[dict[str, str]] = None) -> Finding:
    """The emotion a summary concludes (see the module docstring for the rules)."""
    if not text:
        return Finding(None, None, "none")
    phrase = _conclusion_phrase(text)
    if phrase is not None:
        hit = _first_emotion(phrase, extra)
        if hit:
            return Finding(hit[0], hit[1], "conclusion", phrase=phrase)
        return Finding(None, phrase, "conclusion", phrase=phrase)
    mentions = emotion_mentions(text, extra)
    if not mentions:
        return Finding(None, None, "none")
    counts = Counter(c for c, _, _ in mentions)
    top = max(counts.values())
    tied = {e for e, n in counts.items() if n == top}
    for canon, word, _ in reversed(mentions):  # tie -> mentioned last
        if canon in tied:
            return Finding(canon, word, "dominant_words", counts=dict(counts))
    return Finding(None, None, "none")  # unreachable: tied is never empty


ZH_SENTIMENTS = {"积极": "positive", "正面": "positive", "消极": "negative", "负面": "negative", "中性": "neutral"}
_SENT_RX = re.compile(r"(?<![a-z])(positive|negative|neutral|mixed)(?![a-z])")


def concluded_sentiment(text: Optional[str], extra: Optional[dict[str, str]] = None) -> Finding:
    """Positive / negative / neutral a summary concludes: a sentiment word in the concluding statement, else
    the valence of the emotion it concludes (:data:`mer_eval.facs.EMOTION_TO_SENTIMENT`)."""
    if not text:
        return Finding(None, None, "none")
    phrase = _conclusion_phrase(text)
    if phrase is not None:
        m = _SENT_RX.search(phrase)
        if m:
            return Finding(SENTIMENT_SYNONYMS[m.group(1)], m.group(1), "conclusion", phrase=phrase)
        for word, pol in ZH_SENTIMENTS.items():
            if word in phrase:
                return Finding(pol, word, "conclusion", phrase=phrase)
    f = concluded_emotion(text, extra)
    if f.emotion is None:
        return f
    return Finding(EMOTION_TO_SENTIMENT.get(f.emotion), f.raw, f.method, phrase=f.phrase, counts=f.counts)


def valence(emotion: Optional[str]) -> Optional[str]:
    return EMOTION_TO_SENTIMENT.get(emotion) if emotion else None
