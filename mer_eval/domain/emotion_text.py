"""Reading emotions out of free text: what a summary *concludes*, and what a description *evidences*.

The emotion lexicon (English via :mod:`mer_eval.domain.facs`, plus Chinese), the cue lexicons (facial, vocal
and speech cues with emotion weights) and the one conclusion parser ("the core emotional state is X").
The metrics (label agreement, cross-modal, conclusion, abstention ...) and the generators (the closing line
of a synthesis, the probe's corruptions) read a summary with these same functions.

* :func:`concluded_emotion` looks for the closing statement MER-Factory's prompt asks for ("the core
  emotional state is X, and the most likely cause is Y") and its common variants ("X is the most likely
  emotion", "the inferred sentiment is X", a line ``Emotion: X``). The last such statement in the text wins;
  the first known emotion word inside it is the prediction (``method="conclusion"``). When the statement
  names nothing we know, the finding keeps the raw phrase and ``emotion=None`` (it is *not* replaced by a
  guess). When the text has no such statement at all, the most frequent emotion in the text is used,
  ties going to the one mentioned last (``method="dominant_words"``).
* :func:`emotion_mentions` scans text with the English lexicon of :mod:`mer_eval.domain.facs` (whole words,
  longest phrase first). A mention preceded within three words by a negation ("not", "no", "without",
  "lack of", ...) is dropped. The word "content" is not read as an emotion ("video content" is everywhere
  in MER-Factory summaries); "contentment" is. A small Chinese lexicon (:data:`ZH_EMOTIONS`, matched as
  substrings; 不/没/无/非 right before a word negates it) and the closing statements "核心情绪是X" /
  "情绪状态是X" cover Chinese summaries and transcripts.
"""

from __future__ import annotations

import functools
import itertools
import operator
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from mer_eval.domain.facs import EMOTION_SYNONYMS, EMOTION_TO_SENTIMENT, SENTIMENT_SYNONYMS, canonical_emotion
from mer_eval.domain.text import LETTERS_ONLY, find_all, has_cjk

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
    re.compile(r"(?P<x>[a-z][a-z ,/-]{0,40}?)\s+(?:is|was|are|seems|seem|appears|appear)\s+(?:to be\s+)?the\s+"
               r"(?:most likely|most probable|predominant|dominant|primary|main|core)\s+"
               r"(?:emotion|emotional state|sentiment)"),
    re.compile(r"(?:核心情绪|情绪状态|主要情绪|最可能的情绪|情感倾向|情绪)(?:是|为|：|:)\s*(?P<x>[^，。；\n,.;]+)"),
    # a closing paraphrase: "Overall, the speaker appears neutral", "Taken together, he is most likely worried"
    re.compile(r"(?:overall|in conclusion|in summary|to sum up|taken together|all in all|ultimately|on balance|"
               r"in short|therefore|thus)\s*,?\s*(?:the\s+)?(?:speaker|person|subject|individual|man|woman|"
               r"character|boy|girl|he|she|they)\s+(?:appears|seems|is|looks|feels|sounds|comes across as)\s+"
               r"(?:to be\s+|to feel\s+)?(?:most likely\s+|mostly\s+|primarily\s+|predominantly\s+|mainly\s+|"
               r"largely\s+|genuinely\s+|clearly\s+|quite\s+|deeply\s+)?(?P<x>[^\n]+)"),
    re.compile(r"^\s*\**\s*(?:final\s+)?(?:emotion|sentiment|label)\s*\**\s*[:：]\s*\**\s*(?P<x>[^\n]+)$",
               re.MULTILINE),
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
# lexicon regex -> (its words' leading runs of a-z as bytes, a class of its other words' first characters or None,
# whether those are all non-ASCII), for :func:`_lexicon_finditer`
_RX_WORDS: dict[re.Pattern, tuple[frozenset, Optional[re.Pattern], bool]] = {}
_RUN = re.compile(r"[a-z]+")


def _by_first_char(words: list[str]) -> str:
    """The regex alternation of ``words`` (non-empty, in this order) grouped by first character, the order within a
    group kept: at a position only the words starting with its character are tried, not every word, and words
    with different first characters never match at the same position, so the same word wins as in the flat
    alternation."""
    groups: dict[str, list[str]] = {}
    for w in words:
        groups.setdefault(w[0], []).append(re.escape(w[1:]))
    return "|".join(re.escape(c) + "(?:" + "|".join(rest) + ")" for c, rest in groups.items())


def _regex(lex: dict[str, str]) -> re.Pattern:
    key = tuple(sorted(lex))
    rx = _RX_CACHE.get(key)
    if rx is None:
        keys = sorted(lex, key=lambda k: len(re.escape(k)), reverse=True)  # longest first
        if all(keys):
            body = _by_first_char(keys)
        else:
            body = "|".join(re.escape(k) for k in keys)
        rx = re.compile(r"(?<![a-z])(" + body + r")(?![a-z])")
        _RX_CACHE[key] = rx
        if all(keys):
            others = sorted({k[0] for k in keys if not "a" <= k[0] <= "z"})
            _RX_WORDS[rx] = (frozenset(_RUN.match(k).group(0).encode("ascii") for k in keys if "a" <= k[0] <= "z"),
                             re.compile("[" + "".join(map(re.escape, others)) + "]") if others else None,
                             all(not c.isascii() for c in others))
    return rx


def _lexicon_finditer(low: str, rx: re.Pattern):
    """``rx.finditer(low)`` for a lexicon regex of :func:`_regex`, without the regex engine trying the whole
    alternation at every position of the text: ``rx.match`` is tried only where a match can start, in order, each
    at or after the last match's end. Exact: a word starting with a-z matches only where a maximal run of a-z
    starts (``(?<![a-z])``) that equals the word's own leading run (the word ends there, ``(?![a-z])``, or goes
    on with a character that is no a-z); any other word (CJK) only at its first character. A text holding more
    than 64 of those first characters is scanned by ``rx`` as before."""
    info = _RX_WORDS.get(rx)
    if info is None:
        return rx.finditer(low)
    lead, others, others_non_ascii = info
    starts: list[int] = []
    if others is not None and not (others_non_ascii and low.isascii()):
        starts = [m.start() for m in itertools.islice(others.finditer(low), 65)]
        if len(starts) > 64:
            return rx.finditer(low)
    # the maximal runs of a-z: the pieces between the other characters (one byte each: a non-ASCII one is
    # encoded as "?"), piece i starting at the length of the pieces before it + i
    pieces = low.encode("ascii", "replace").translate(LETTERS_ONLY).split(b" ")
    hits = list(itertools.compress(range(len(pieces)), map(lead.__contains__, pieces)))
    if hits:
        ends = list(itertools.accumulate(map(len, pieces)))
        starts.extend([(ends[i - 1] if i else 0) + i for i in hits])
    if not starts:
        return []
    starts.sort()
    out = []
    end = 0
    for i in starts:
        if i >= end:
            m = rx.match(low, i)
            if m is not None:
                out.append(m)
                end = m.end()
    return out


_BASE_LEX: dict[tuple, tuple[dict[str, str], re.Pattern]] = {}


def _lexicon_regex(extra: Optional[dict[str, str]], cues: bool) -> tuple[dict[str, str], re.Pattern]:
    """``(_lexicon(extra, cues), its regex)``; without ``extra`` built once (per size of the shared lexicon)."""
    if extra:
        lex = _lexicon(extra, cues)
        return lex, _regex(lex)
    key = (cues, len(EMOTION_SYNONYMS), len(ZH_EMOTIONS), len(EXPRESSION_CUES))
    hit = _BASE_LEX.get(key)
    if hit is None:
        lex = _lexicon(None, cues)
        hit = _BASE_LEX[key] = (lex, _regex(lex))
    return hit


def emotion_mentions(text: Optional[str], extra: Optional[dict[str, str]] = None,
                     cues: bool = False) -> list[tuple[str, str, int]]:
    """``[(canonical, word, offset), ...]`` of the non-negated emotion words in ``text``."""
    if not text:
        return []
    if extra is None:  # the base lexicon: one text is read by several metrics (memoised; callers get a new list)
        return list(_base_mentions(text, cues))
    return _mentions(text, extra, cues)


@functools.lru_cache(maxsize=4096)
def _base_mentions(text: str, cues: bool) -> tuple[tuple[str, str, int], ...]:
    return tuple(_mentions(text, None, cues))


def _mentions(text: str, extra: Optional[dict[str, str]], cues: bool) -> list[tuple[str, str, int]]:
    low = text.lower()
    lex, rx = _lexicon_regex(extra, cues)
    out = []
    for m in _lexicon_finditer(low, rx):
        start, word = m.start(), m.group(1)
        win = low[max(0, start - 40): start]
        # (the words are split out only when a negation is in the window at all)
        if any(map(win.__contains__, NEGATIONS)) and any(w in NEGATIONS for w in _WORD.findall(win)[-3:]):
            continue
        if word in ZH_EMOTIONS and low[max(0, start - 2): start].endswith(ZH_NEGATIONS) \
                and not word.startswith("不"):
            continue  # 不高兴 / 没(有)生气
        out.append((lex[word], word, start))
    return out


_CANONICAL = operator.itemgetter(0)  # (canonical, word, offset) -> canonical


def emotion_counts(text: Optional[str], extra: Optional[dict[str, str]] = None, cues: bool = False) -> Counter:
    return Counter(map(_CANONICAL, emotion_mentions(text, extra, cues)))


def dominant_emotions(text: Optional[str], extra: Optional[dict[str, str]] = None,
                      cues: bool = False) -> tuple[list[str], Counter]:
    """The emotions mentioned most often (all of them on a tie), and the counts."""
    counts = emotion_counts(text, extra, cues)
    if not counts:
        return [], counts
    top = max(counts.values())
    return sorted(e for e, n in counts.items() if n == top), counts


# pattern 3 can start at any letter (a lazy 0-40 char group): only tried when its fixed tail is in the text
_P3_TAIL = re.compile(r"\s+the\s+(?:most likely|most probable|predominant|dominant|primary|main|core)\s+"
                      r"(?:emotion|emotional state|sentiment)")
# the tail without its leading white space: it starts with a literal, which the regex engine finds fast
_P3_THE = re.compile(_P3_TAIL.pattern[3:])


_LONG_SPACE = re.compile(r"\s{100}")
_SPACE_RUN4 = re.compile(r"\s{4}")


def _space_before(low: str, i: int) -> int:
    """Where the run of white space that ends at ``i`` starts (``i`` when ``low[i - 1]`` is no white space)."""
    while i and low[i - 1].isspace():
        i -= 1
    return i


def _p3_tails(low: str) -> list[tuple[int, int]]:
    """``[(m.start(), m.end()) for m in _P3_TAIL.finditer(low)]``, found through :data:`_P3_THE` ("the ..."
    preceded by white space). Exact: a tail starts where the white-space run before its "the" starts, and the
    part after that "the" (a key word, white space, emotion / sentiment) holds no other "the"."""
    out = []
    for m in _P3_THE.finditer(low):
        a = _space_before(low, m.start())
        if a < m.start():
            out.append((a, m.end()))
    return out


_P3_VERBS = ("is", "was", "are", "seems", "seem", "appears", "appear")


def _p3_verb_before(low: str, a: int) -> bool:
    """Whether white space + a verb of pattern 3 (+ white space + "to be") ends at ``a``: what a match ending at
    the tail that starts at ``a`` has before it (its ``\\s+`` before "the" is the tail's whole white-space run)."""
    if low.endswith("to be", 0, a):
        j = _space_before(low, a - 5)
        if j < a - 5 and _p3_verb_at(low, j):
            return True
    return _p3_verb_at(low, a)


def _p3_verb_at(low: str, j: int) -> bool:
    for v in _P3_VERBS:
        if low.endswith(v, 0, j) and j > len(v) and low[j - len(v) - 1].isspace():
            return True
    return False


def _p3_matches(low: str):
    """``_CONCLUSION_PATTERNS[3].finditer(low)``, scanning only the 64 (400) characters before each of its fixed
    tails. Exact: a match ends at a tail and starts at most 53 + 2 * (longest white-space run) characters before
    it (x <= 41, a verb <= 7, "to be"; each ``\\s+`` no longer than that run): < 64 with no run of 4, < 400 with
    no run of 100; any gap between the merged windows holds no match start. The run of 4 is looked for only in
    the 64 characters before each tail: the runs a match holds before its tail end within 15 characters of it
    (a verb and "to be" at most), so with none of 4 there the match is within them."""
    rx = _CONCLUSION_PATTERNS[3]
    tails = [t for t in _p3_tails(low) if _p3_verb_before(low, t[0])]  # the tails a match can end at
    if not tails:
        return
    if any(_SPACE_RUN4.search(low, max(0, a - 64), a) for a, _ in tails):  # a long run near a tail: as before
        if _LONG_SPACE.search(low):
            yield from rx.finditer(low)
            return
        reach = 64 if not _SPACE_RUN4.search(low) else 400  # runs of at most 3: 53 + 6 < 64
    else:
        reach = 64
    spans: list[list[int]] = []
    for ta, tb in tails:
        a = max(0, ta - reach)
        if spans and a <= spans[-1][1]:
            spans[-1][1] = tb
        else:
            spans.append([a, tb])
    for a, b in spans:
        yield from rx.finditer(low, a, b)


# Each conclusion pattern but the first (a literal, found fast) is tried only when the text holds what any of its
# matches must hold (a necessary condition, checked with str.find / startswith / endswith): the regexes start
# with an alternation or a class, which the regex engine tries at every position of the text.
_P1_KEYS = ("most likely", "predominant", "dominant", "primary", "overall", "final", "inferred", "predicted",
            "main", "underlying")
_P1_AFTER = re.compile(r"(?:emotion(?:al state| label)?|sentiment(?: label)?)\s+"
                       r"(?:is|was|would be|appears to be|seems to be)")
_P2_KEYS = ("the", "this", "his", "her", "their")
_P2_AFTER = re.compile(r"(?:sentiment|emotion)\s+(?:is|was)")
_P5_KEYS = ("overall", "in conclusion", "in summary", "to sum up", "taken together", "all in all", "ultimately",
            "on balance", "in short", "therefore", "thus")
_P5_AFTER = re.compile(r"\s*,?\s*(?:the\s+)?(?:speaker|person|subject|individual|man|woman|character|boy|girl|he|"
                       r"she|they)\s+(?:appears|seems|is|looks|feels|sounds|comes across as)")
_P6_KEYS = ("emotion", "sentiment", "label")


def _keyed(low: str, at: list[int], keys: tuple[str, ...], after: re.Pattern) -> bool:
    """Whether at one of the offsets ``at`` ``after`` matches and white space then one of ``keys`` precede it:
    what patterns 1 and 2 (``keys \\s+ emotion/sentiment ... \\s+ verb``) need."""
    for i in at:
        j = _space_before(low, i)
        if j < i and low.endswith(keys, 0, j) and after.match(low, i):
            return True
    return False


def _may_match(k: int, low: str, lits: list[int]) -> bool:
    """False only when conclusion pattern ``k`` has no match in ``low``; ``lits``: the offsets of "emotion" and
    "sentiment" (patterns 1-3 hold one)."""
    if k == 1:
        return _keyed(low, lits, _P1_KEYS, _P1_AFTER)
    if k == 2:
        return _keyed(low, lits, _P2_KEYS, _P2_AFTER)
    if k == 3:
        return bool(lits)
    if k == 4:
        return "情" in low  # every key word of pattern 4 holds it
    if k == 5:  # a key word, then "the speaker appears", ...
        for key in _P5_KEYS:
            i = low.find(key)
            while i >= 0:
                if _P5_AFTER.match(low, i + len(key)):
                    return True
                i = low.find(key, i + 1)
        return False
    if k == 6:  # "emotion" / "sentiment" / "label", then white space and asterisks, then a colon
        for colon in (":", "："):
            i = low.find(colon)
            while i >= 0:
                j = i
                while j and (low[j - 1].isspace() or low[j - 1] == "*"):
                    j -= 1
                if low.endswith(_P6_KEYS, 0, j):
                    return True
                i = low.find(colon, i + 1)
        return False
    return True


@functools.lru_cache(maxsize=4096)  # one summary is read by several metrics
def _conclusion_phrase(text: str) -> Optional[str]:
    low = text.lower().replace("*", "")
    lits = find_all(low, "emotion") + find_all(low, "sentiment")
    best: Optional[tuple[int, str]] = None
    for k, rx in enumerate(_CONCLUSION_PATTERNS):
        if k and not _may_match(k, low, lits):
            continue
        for m in (_p3_matches(low) if k == 3 else rx.finditer(low)):
            x = m.group("x").strip()
            if k != 3:
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
    counts = Counter(map(_CANONICAL, mentions))
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
    the valence of the emotion it concludes (:data:`mer_eval.domain.facs.EMOTION_TO_SENTIMENT`)."""
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


def vader_compound(text: str) -> Optional[float]:
    """VADER's compound polarity of ``text`` (``vaderSentiment``, optional: None when it is not installed)."""
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # noqa: F401
    except ImportError:
        return None
    return _vader_compound(text)


@functools.lru_cache(maxsize=4096)  # one transcript is read by several metrics (VADER is slow: pure Python)
def _vader_compound(text: str) -> float:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from mer_eval.models import load_once

    return float(load_once(("vader",), SentimentIntensityAnalyzer).polarity_scores(text)["compound"])


# ---- emotion *profiles*: what a text's words and cues point to ------------------------------------
#
# A profile is a non-negative score per canonical emotion. Emotion words count 1 each (their family); cue
# phrases that are not emotion words themselves -- facial movements, vocal qualities, interjections --
# count with the weights below, which say how strongly a cue is associated with each emotion (hand-set
# from FACS/EMFACS prototypes and the vocal-affect literature: a smile is happiness, a raised voice anger
# mostly, trembling fear or sadness). A mention preceded within three words by a negation is dropped.

CUES: dict[str, dict[str, float]] = {}


def _cue(words: str, **emo: float) -> None:
    for w in words.split("|"):
        CUES[w.strip()] = emo


# face and body, as image / video models and summaries describe them
_cue("smile|smiles|smiling|smiled|grin|grins|grinning|grinned|beaming|beams|laugh|laughs|laughed|chuckle|"
     "chuckles|chuckling|giggle|giggles|giggling|lit up|lights up|broad smile|wide smile", happy=1.0)
_cue("smirk|smirks|smirking", contempt=0.7, happy=0.3)
_cue("crying|cries|cry|tears|teary|teary-eyed|weeping|weeps|sobbing|sobs|sniffling|wiping her eyes|"
     "wiping his eyes|watery eyes|glistening|eyes glisten|welling|welled|tear-streaked|red-rimmed|puffy eyes|"
     "on the verge of tears|fighting back tears|holding back tears|lip trembles|trembling chin|quivering chin|"
     "puckered chin|chin is puckered|mouth pulled down|corners of his mouth are pulled down|"
     "corners of her mouth are pulled down|downturned mouth|downturned lips", sad=1.0)
_cue("frown|frowns|frowning|frowned|furrowed|furrowing|knitted brows", angry=0.4, sad=0.3, worried=0.4)
_cue("scowl|scowls|scowling|glare|glares|glaring|glared|clenched|gritted|gritting|seething|fuming",
     angry=1.0)
_cue("shouting|shouts|shouted|yelling|yells|yelled|screaming|screams|screamed|raised voice|raises his voice|"
     "raises her voice|raising his voice|raising her voice|snapping|snaps|snapped", angry=0.8, fear=0.2)
_cue("wide eyes|wide-eyed|eyes wide|eyes widened|widened eyes|eyes widen|gasp|gasps|gasped|gasping|agape|"
     "mouth agape|jaw dropped|double take", surprise=0.8, fear=0.3)
_cue("raised eyebrows|eyebrows raised|raises her eyebrows|raises his eyebrows|raised brows",
     surprise=0.6, fear=0.2, contempt=0.1)
_cue("trembling|trembles|shaking|shaky|quivering|quivers|cowering|flinches|flinching|recoils|recoiling",
     fear=0.7, sad=0.3)
_cue("downcast eyes|looking down|looks down|head down|head bowed|slumped|slumping|drooping|hunched|"
     "avoiding eye contact|averted gaze|averts", sad=0.7, worried=0.3)
_cue("blank expression|blank face|expressionless|neutral expression|neutral face|straight face|poker face|"
     "impassive|no visible emotion|no strong emotion|no clear emotion|no obvious emotion|relaxed face|"
     "relaxed expression|composed expression|calm expression|neutral demeanor|calm demeanor", neutral=1.0)
_cue("rolls her eyes|rolls his eyes|rolling her eyes|rolling his eyes|eye roll|eye-roll|eyeroll|scoffs|"
     "scoffing|scoff|sneer|sneers|sneering", contempt=0.8, angry=0.2)
_cue("wrinkled nose|wrinkles her nose|wrinkles his nose|grimace|grimaces|grimacing|recoils in disgust|"
     "gag|gagging|retching", disgust=0.7, angry=0.2)
_cue("biting her lip|biting his lip|bites her lip|bites his lip|fidgeting|fidgets|wringing|pacing|"
     "nervous laugh|nervous smile|shifting uncomfortably|fiddling", worried=0.8)
_cue("pursed lips|lips pursed|pressed lips|lips pressed|tight-lipped|tight lips|set jaw|jaw set",
     angry=0.4, worried=0.3, neutral=0.1)
_cue("high five|high-five|cheering|cheers|celebrating|celebrates|jumping up and down|arms in the air|"
     "fist pump|thumbs up", happy=0.6)
_cue("hug|hugs|hugging|embrace|embraces|embracing", happy=0.3, sad=0.2)
# voice, as tone descriptions put it
_cue("upbeat|lively|bright tone|bubbly|chipper|sing-song|warm tone|warmly|light tone|light-hearted tone|"
     "playful tone|cheery|jolly|excited tone|animated|bouncy|energetic|enthusiastically", happy=0.8)
_cue("subdued|low energy|low-energy|sighing|sigh|sighs|sighed|choked|choking up|voice cracks|voice cracking|"
     "cracking voice|breaking voice|weary|wearily|heavy tone|heavy-hearted|mournful tone|quiet voice|"
     "soft and slow|slow and soft|sniffles|downbeat|deflated|dejectedly|sadly", sad=0.7)
_cue("harsh|sharp tone|sharply|curt|curtly|terse|tersely|clipped|stern|sternly|heated|aggressive|"
     "aggressively|forceful|forcefully|confrontational|biting tone|accusatory|accusing|loud|loudly|"
     "raised tone|raised pitch and volume|emphatic|indignantly|angrily|irritably|snippy|snarky|hostile tone",
     angry=0.7)
_cue("steady|steadily|even tone|even-toned|evenly|measured|matter-of-fact|conversational|flat tone|flat voice|"
     "flatly|monotone|monotonous|level tone|informative|neutral tone|neutral voice|normal tone|casual|"
     "casually|relaxed|calmly|unhurried|plain tone|factual|neutral delivery|moderate pitch|moderate pace|"
     "even pace|no emotional inflection|without emotional", neutral=0.6)
_cue("hesitant|hesitantly|hesitation|hesitates|hesitating|stammering|stammers|stuttering|stutters|faltering|"
     "pleading|pleads|urgent|urgency|rushed|breathless|quavering|wavering|shaky voice|tentative|tentatively|"
     "uncertain tone|nervous tone|anxious tone|worried tone", worried=0.7, fear=0.3)
_cue("whisper|whispers|whispering|whispered|hushed", fear=0.3, worried=0.3, sad=0.2)
_cue("sarcastic tone|sarcastically|mockingly|dismissively|condescendingly|patronizing|patronising|"
     "scornfully|derisively", contempt=0.9)
_cue("exclaims|exclaiming|exclamation|exclaimed|incredulously|in disbelief", surprise=0.6, happy=0.1,
     angry=0.1)
# speech content (transcripts): interjections and formulas
_cue("wow|whoa|woah|oh my god|oh my gosh|no way|are you serious|seriously|what the|really", surprise=0.6,
     happy=0.2)
_cue("haha|hahaha|hehe|yay|hooray|awesome|great|wonderful|fantastic|amazing|congratulations|love it|"
     "i love|thank you|thanks", happy=0.7)
_cue("damn|shut up|hell|how dare|i hate|stupid|idiot|ridiculous|get out|leave me alone|enough",
     angry=0.7, contempt=0.2)
_cue("ugh|gross|ew|eww|yuck|disgusting", disgust=0.8)
_cue("i'm sorry|sorry|i miss|miss you|gonna miss|going to miss|will miss|alone|lost|passed away|died|funeral|"
     "goodbye|can't believe she's gone|can't believe he's gone", sad=0.6)
_cue("what do i do|what should i do|what if|i don't know|i'm not sure|oh no|please|help me", worried=0.6,
     fear=0.2)
# Chinese speech and descriptions (substring match)
ZH_CUES: dict[str, dict[str, float]] = {
    "哈哈": {"happy": 1.0}, "太好了": {"happy": 1.0}, "谢谢": {"happy": 0.4}, "笑": {"happy": 0.8},
    "哭": {"sad": 1.0}, "对不起": {"sad": 0.6}, "可怜": {"sad": 0.6}, "唉": {"sad": 0.6},
    "滚": {"angry": 1.0}, "讨厌": {"angry": 0.6, "disgust": 0.4}, "烦": {"angry": 0.7}, "闭嘴": {"angry": 1.0},
    "凭什么": {"angry": 0.7}, "天哪": {"surprise": 0.8}, "真的吗": {"surprise": 0.7}, "居然": {"surprise": 0.6},
    "竟然": {"surprise": 0.6}, "怎么办": {"worried": 0.8}, "着急": {"worried": 0.8},
    "慌": {"worried": 0.5, "fear": 0.5},
    "怕": {"fear": 0.8}, "吓": {"fear": 0.5, "surprise": 0.5}, "恶心": {"disgust": 1.0},
}

# single-AU association with each emotion (EMFACS prototypes: happiness 6+12, sadness 1+4+15, surprise
# 1+2+5+26, fear 1+2+4+5+7+20+26, anger 4+5+7+23, disgust 9+15+16, contempt 12+14 unilateral). AU25 (lips
# part) and AU45 (blink) are mostly talking and blinking: weak or no association.
AU_EMOTION: dict[str, dict[str, float]] = {
    "01": {"sad": 0.6, "surprise": 0.5, "fear": 0.6, "worried": 0.5},
    "02": {"surprise": 0.8, "fear": 0.5},
    "04": {"angry": 0.7, "sad": 0.5, "fear": 0.4, "worried": 0.5, "disgust": 0.2},
    "05": {"surprise": 0.7, "fear": 0.7, "angry": 0.4},
    "06": {"happy": 0.9, "sad": 0.1},
    "07": {"angry": 0.6, "fear": 0.3, "disgust": 0.3, "contempt": 0.2},
    "09": {"disgust": 1.0},
    "10": {"disgust": 0.7, "contempt": 0.5, "angry": 0.3},
    "12": {"happy": 1.0, "contempt": 0.3},
    "14": {"contempt": 0.8, "happy": 0.3},
    "15": {"sad": 0.8, "disgust": 0.4},
    "17": {"sad": 0.4, "angry": 0.4, "disgust": 0.2, "contempt": 0.2},
    "20": {"fear": 0.8, "worried": 0.4},
    "23": {"angry": 0.8, "contempt": 0.2},
    "25": {"surprise": 0.2, "happy": 0.1, "fear": 0.1},
    "26": {"surprise": 0.7, "fear": 0.3, "happy": 0.1},
    "28": {"worried": 0.5},
}


def _cue_regex() -> re.Pattern:
    words = sorted(CUES, key=lambda k: len(re.escape(k)), reverse=True)  # longest (escaped) first
    return re.compile(r"(?<![a-z'])(" + _by_first_char(words) + r")(?![a-z'])")


_CUE_RX = _cue_regex()


@dataclass
class Profile:
    """Scores per canonical emotion, and what produced them."""

    scores: dict[str, float] = field(default_factory=dict)
    hits: list[tuple[str, str, float]] = field(default_factory=list)  # (emotion, word, weight)

    def add(self, emotion: str, word: str, w: float) -> None:
        if w <= 0:
            return
        self.scores[emotion] = self.scores.get(emotion, 0.0) + w
        self.hits.append((emotion, word, round(w, 3)))

    def merge(self, other: "Profile", scale: float = 1.0) -> None:
        for e, word, w in other.hits:
            self.add(e, word, w * scale)

    @property
    def total(self) -> float:
        return sum(self.scores.values())

    def top(self) -> list[str]:
        if not self.scores:
            return []
        m = max(self.scores.values())
        return sorted(e for e, v in self.scores.items() if v >= m - 1e-9)

    def support(self, emotion: str) -> Optional[float]:
        """How well this profile supports ``emotion``: its score over the best emotion's (1 = top), with
        a small credit (at most 0.25) for emotions of the same valence; None without any evidence."""
        if self.total <= 0:
            return None
        best = max(self.scores.values())
        own = self.scores.get(emotion, 0.0) / best
        val = EMOTION_TO_SENTIMENT.get(emotion)
        same = max((v for e, v in self.scores.items() if e != emotion and EMOTION_TO_SENTIMENT.get(e) == val
                    and val != "neutral"), default=0.0) / best
        return round(min(1.0, max(own, 0.25 * same)), 4)

    def valence_support(self, polarity: str) -> Optional[float]:
        """Support for a sentiment (positive / negative / neutral): its emotions' summed score over the best
        sentiment's; None without evidence."""
        if self.total <= 0:
            return None
        by: dict[str, float] = {}
        for e, v in self.scores.items():
            pol = EMOTION_TO_SENTIMENT.get(e)
            if pol:
                by[pol] = by.get(pol, 0.0) + v
        if not by:
            return None
        return round(by.get(polarity, 0.0) / max(by.values()), 4)

    def as_details(self, limit: int = 12) -> dict:
        return {"scores": {k: round(v, 3) for k, v in sorted(self.scores.items(), key=lambda kv: -kv[1])},
                "hits": [list(h) for h in self.hits[:limit]]}


def _negated_before(low: str, start: int) -> bool:
    win = low[max(0, start - 40): start]
    if "n't" not in win and not any(map(win.__contains__, NEGATIONS)):  # no word of the window can be one
        return False
    before = _WORD.findall(win)[-3:]
    return any(w in NEGATIONS or w.endswith("n't") for w in before)


def emotion_profile(text: Optional[str], *, words: bool = True, cues: bool = True,
                    extra: Optional[dict[str, str]] = None) -> Profile:
    """The emotions ``text`` points to: emotion words (``words``) and cue phrases (``cues``)."""
    p = Profile()
    if not text:
        return p
    low = text.lower().replace("\u2019", "'")
    taken: list[tuple[int, int]] = []
    if words:
        for canon, word, off in emotion_mentions(low, extra):
            p.add(canon, word, 1.0)
            taken.append((off, off + len(word)))
    if cues:
        for m in _CUE_RX.finditer(low):
            if any(a < m.end() and m.start() < b for a, b in taken) or _negated_before(low, m.start()):
                continue
            for emo, w in CUES[m.group(1)].items():
                p.add(emo, m.group(1), w)
        if has_cjk(low):
            for word, emos in ZH_CUES.items():
                i = low.find(word)
                while i >= 0:
                    if not low[max(0, i - 1):i].endswith(ZH_NEGATIONS):
                        for emo, w in emos.items():
                            p.add(emo, word, w)
                    i = low.find(word, i + len(word))
    return p


def au_profile(intensities: dict[str, float], cap: float = 3.0) -> Profile:
    """The emotions a set of active AUs points to (``{"06": 1.45, ...}``; intensity capped at ``cap``)."""
    p = Profile()
    for au, v in intensities.items():
        for emo, w in AU_EMOTION.get(au, {}).items():
            p.add(emo, f"AU{au}", w * min(float(v), cap) / cap)
    return p


def strip_conclusion(text: str) -> str:
    """The summary without its concluding statement (the sentence that holds the last conclusion phrase)."""
    from mer_eval.domain.text import split_sentences

    sents = split_sentences(text)
    if not sents:
        return ""
    for i in range(len(sents) - 1, -1, -1):
        if _conclusion_phrase(sents[i]) is not None:
            return " ".join(sents[:i] + sents[i + 1:])
    return " ".join(sents)


# ---- answering: what the annotation promised and did not give ---------------------------------------

SUMMARY_TYPES = ("mer", "image")  # MER-Factory types whose result carries a final_summary
PLACEHOLDERS = {"x", "[x]", "y", "[y]", "emotion", "[emotion]", "<emotion>", "unknown", "undetermined", "n/a",
                "na", "none", "null", "not determinable", "unclear", "indeterminate", "undefined", "?", "..."}


def summary_or_abstention(sample: Any) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """(summary text, status, reason): status ``abstained`` when the sample's type promises a final summary
    and it is empty, ``not_applicable`` when the type has none to give; (text, None, None) otherwise."""
    return _promised(sample, sample.annotation.final_summary, SUMMARY_TYPES, "final summary")


# MER-Factory types whose result describes what is seen (MER's visual_objective / video_content, the video
# pipeline's llm_video_summary, the image pipeline's image_visual_description), whose result carries an audio
# analysis (MER's and the audio pipeline's audio_analysis: a transcript, then tone) and whose result describes
# the face's action units
VISUAL_TYPES = ("mer", "video", "image")
AUDIO_TYPES = ("mer", "audio")
AU_TYPES = ("mer", "au")  # whose result describes the face's AUs (visual_expression / overall_peak_au_description)


def _stype(sample: Any) -> str:
    return getattr(sample.type, "value", sample.type)


def _promised(sample: Any, text: Optional[str], types: tuple[str, ...],
              what: str) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """(text, status, reason) of one part a MER-Factory result of the sample's type holds (``types``): the text
    when there is one; ``abstained`` when the type promises it and it is empty; ``not_applicable`` otherwise."""
    text = (text or "").strip()
    if text:
        return text, None, None
    stype = _stype(sample)
    if stype in types:
        if sample.annotation.is_empty():
            return None, "abstained", "the annotation is empty (no summary, no description)"
        return None, "abstained", f"a {stype} annotation promises a {what}; it is empty"
    return None, "not_applicable", f"{stype} annotations carry no {what}"


def visual_or_abstention(sample: Any) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """(visual description, status, reason), as :func:`summary_or_abstention`: ``abstained`` when the sample's
    type promises a description of what is seen and it is empty, ``not_applicable`` when the type has none."""
    return _promised(sample, sample.annotation.visual_text(), VISUAL_TYPES, "visual description")


def tone_or_abstention(sample: Any) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """(tone description, status, reason): ``abstained`` when the sample's type promises an audio analysis and it
    is wholly empty (no transcript, no tone); ``not_applicable`` when there is a transcript but no tone (the
    analysis answered; the part this compares is missing: ``abstained_score`` sees no abstention there either)
    or the type has no audio analysis."""
    text = (sample.annotation.audio_description or "").strip()
    if text:
        return text, None, None
    stype = _stype(sample)
    if stype not in AUDIO_TYPES:
        return None, "not_applicable", f"{stype} annotations carry no audio analysis"
    if (sample.annotation.transcript or "").strip():
        return None, "not_applicable", "no tone description (annotation.audio_description is absent; the audio " \
            "analysis has a transcript only)"
    if sample.annotation.is_empty():
        return None, "abstained", "the annotation is empty (no summary, no description)"
    return None, "abstained", f"a {stype} annotation promises an audio analysis; it is empty (no transcript, no tone)"


def conclusion_or_abstention(text: str, extra: Optional[dict[str, str]] = None,
                             sentiment: bool = False) -> tuple[Finding, Optional[str]]:
    """The concluded emotion (or sentiment) and, when there is none to score, why (an abstention): no
    emotion concluded, a placeholder (``[X]``), or a phrase that maps to no known emotion. A summary of the
    sentiment task ("the inferred sentiment is positive") is no abstention: see :func:`sentiment_conclusion`."""
    f = (concluded_sentiment if sentiment else concluded_emotion)(text, extra)
    if f.emotion is not None:
        return f, None
    if f.raw is None:
        return f, "summary concludes no emotion"
    raw = f.raw.strip().lower().strip(" .,:;'\"")
    if raw in PLACEHOLDERS or re.fullmatch(r"[\[<({]?\s*[a-z]\s*[\]>)}]?", raw):
        return f, f"summary concludes the placeholder {f.raw!r}"
    kind = "sentiment" if sentiment else "canonical emotion"
    return f, (f"summary concludes {f.raw!r}, which maps to no {kind} (add it to the metric's emotion_map "
               "if it is one)")


def sentiment_conclusion(text: str) -> Optional[str]:
    """``positive`` / ``negative`` / ``neutral`` when the summary's concluding statement names a sentiment
    rather than an emotion (MER-Factory's sentiment task), else None."""
    if not text:
        return None
    if concluded_emotion(text).emotion is not None:
        return None
    f = concluded_sentiment(text)
    return f.emotion if f.method == "conclusion" and f.emotion else None
