"""AU claims in text: which facial Action Units a description says are present, or absent.

Read by AU-F1 and AU faithfulness (metrics) and by the probe's AU corruptions (generators), so all three
read a text the same way.

FACS names (:data:`mer_eval.domain.facs.AU_NAMES`), everyday synonyms (:data:`mer_eval.domain.facs.AU_SYNONYMS`),
and explicit codes (``AU6``, ``AU06``, ``AU 6``, ``AU06_r``, ``AU6+12``). Phrases are matched longest first on
word boundaries (the last word may take s/es/d/ed, and "is/are/was/were" or a degree word such as "slightly"
may sit between the words, so "lips are slightly parted" is "lips parted"), and a shorter phrase inside a
longer match does not count again ("inner brow raiser" is AU01 only, not also AU02's "brow raise").
A mention is *negated* when a negation cue ("no", "not", "n't", "never", "without", "absence", "absent",
"lack(ing)", "none", "neither", "nor", "cannot", "free of", "devoid of") is among the :data:`NEG_WINDOW` words
before it within the same clause (a clause ends at ``. , ; : ! ? ( ) newline`` or at "and", "but", "however",
"although", "though", "while", "whereas", "yet"; "or" keeps the scope so "without smiling or frowning" negates
both), or when it is followed by "is/are absent" / "(is) not present|visible|detected|observed|evident|seen".
Negated AUs are *claimed absent*, not present; an AU with both a plain and a negated mention counts as
claimed present and is listed in ``conflicting``. Claims of AUs OpenFace does not measure (e.g. AU24) are
listed in ``outside_universe``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Sequence

from mer_eval.domain.facs import AU_NAMES, AU_SYNONYMS, OPENFACE_C_AUS, OPENFACE_R_AUS
from mer_eval.domain.text import LETTERS_ONLY, find_all

UNIVERSE: tuple[str, ...] = tuple(sorted(set(OPENFACE_R_AUS) | set(OPENFACE_C_AUS)))  # the 18 AUs OpenFace measures
NEG_WINDOW = 5  # words before a mention searched for a negation cue

# ---- claims ---------------------------------------------------------------------------------------

_NEG_WORDS = {"no", "not", "never", "without", "absence", "absent", "lack", "lacks", "lacking", "none",
              "neither", "nor", "cannot", "nothing"}
_NEG_BIGRAMS = {("free", "of"), ("devoid", "of")}
# [.,;:!?()\[\]\n] or \b(?:and|but|however|although|though|while|whereas|yet)\b, written so that every
# alternative opens with a literal (the engine then skips other characters at once): the left \b of a word is
# the look-behind after its first letter
_CLAUSE_END = re.compile("|".join(
    [re.escape(c) for c in ".,;:!?()[]\n"]
    + [re.escape(w[0]) + r"(?<!\w" + re.escape(w[0]) + ")" + re.escape(w[1:]) + r"\b"
       for w in ("and", "but", "however", "although", "though", "while", "whereas", "yet")]))
_POST_NEG = re.compile(
    r"^\s*(?:(?:is|are|was|were|remains?|stays?)\s+)?(?:absent|missing|lacking|not\s+(?:present|visible|detected|observed|"
    r"evident|seen|shown|active))\b"
)
# \bau..., written "au(?<!\wau)" so that the pattern opens with a literal (found at once, as _CLAUSE_END)
_CODE = re.compile(r"au(?<!\wau)\s*[-_]?\s*0*(\d{1,2})(?:_[rc])?\b((?:\s*\+\s*(?:au\s*)?0*\d{1,2}(?:_[rc])?\b)*)")
_CODE_MORE = re.compile(r"\+\s*(?:au\s*)?0*(\d{1,2})")


_FILLER = r"\s+(?:(?:is|are|was|were|being|slightly|widely|fully|partly|partially|somewhat|very)\s+)*"
_INFLECTIONS = ("s", "es", "d", "ed")


def _phrases() -> list[tuple[str, str, re.Pattern]]:
    out: dict[str, str] = {}
    for au in UNIVERSE:
        names = set(AU_SYNONYMS.get(au, ()))
        if au in AU_NAMES:
            names.add(re.sub(r"\s*\(.*?\)", "", AU_NAMES[au]).strip().lower())
        for n in names:
            out.setdefault(n.lower(), au)
    pats = []
    for phrase, au in sorted(out.items(), key=lambda kv: (-len(kv[0]), kv[0])):
        # copulas and degree words may sit between a phrase's words: "lips are slightly parted"
        body = _FILLER.join(re.escape(w) for w in phrase.split())
        # light inflection on the last word: "jaw drops", "frowned", "smiled"
        pats.append((phrase, au, re.compile(r"(?<![\w])" + body + "(?:" + "|".join(_INFLECTIONS) + r")?(?![\w])")))
    return pats


_PHRASES = _phrases()
_PHRASE_FIRST: dict[str, str] = {phrase: phrase.split()[0] for phrase, _, _ in _PHRASES}
# the longest later word of each phrase ("" for one word): a match holds it literally, so a text without it is
# not tried
_PHRASE_NEEDS: tuple[str, ...] = tuple(max(phrase.split()[1:], key=len, default="") for phrase, _, _ in _PHRASES)

# Which phrases can match a text at all is read from its letter runs (maximal runs of a-z), found at once in C
# (encoded to ASCII, any other character a "?"; then bytes.translate + split). A match of a phrase starts at a
# word start (the look-behind: no word character, so no letter, before it) with its first word, and the run of
# letters there is exactly: the first word, when more words follow (whitespace after it: _FILLER); the word and
# its inflection, for a one-word phrase (no word character after it); the word's leading letters, for a word such
# as "crow's" or "wide-eyed". A phrase none of whose runs is in the text is not tried; the others are tried as
# before, at every occurrence of their first word.


def _phrase_gate() -> dict[bytes, tuple[int, ...]]:
    """The phrases (indices in _PHRASES) that a letter run can open."""
    gate: dict[bytes, set[int]] = {}
    for i, (phrase, _, _) in enumerate(_PHRASES):
        words = phrase.split()
        lead = re.match("[a-z]*", words[0]).group(0)  # the first word, or "crow" of "crow's"
        assert lead, phrase  # a phrase opens with a letter
        runs = [lead]
        if len(words) == 1 and lead == words[0]:  # one word of letters only: its inflection ends the run too
            runs += [lead + e for e in _INFLECTIONS]
        for r in runs:
            gate.setdefault(r.encode(), set()).add(i)
    return {r: tuple(sorted(ix)) for r, ix in gate.items()}


_PHRASE_GATE = _phrase_gate()
_GATE_RUNS = frozenset(_PHRASE_GATE)


def _phrases_to_try(t: str) -> Sequence[int]:
    """The indices in _PHRASES (longest phrase first) of the phrases that can match ``t`` (see above)."""
    hits = _GATE_RUNS.intersection(t.encode("ascii", "replace").translate(LETTERS_ONLY).split())
    if len(hits) == 1:
        for r in hits:
            return _PHRASE_GATE[r]
    return sorted({i for r in hits for i in _PHRASE_GATE[r]})




def _phrase_matches(pat: re.Pattern, t: str, offsets: list[int]):
    """``pat.finditer(t)`` when every match of ``pat`` starts at one of ``offsets`` (ascending)."""
    last = 0
    match = pat.match
    for i in offsets:
        if i < last:
            continue
        m = match(t, i)  # the look-behind sees the text before i, as in a scan
        if m is not None:
            yield m
            last = m.end()


@dataclass
class Mention:
    au: str
    text: str
    start: int
    negated: bool
    field: str = ""
    end: int = -1  # end offset of the matched span in the text


@dataclass
class Claims:
    present: set[str] = field(default_factory=set)
    absent: set[str] = field(default_factory=set)  # negated and never claimed plainly
    conflicting: set[str] = field(default_factory=set)  # plain and negated mentions both
    outside_universe: set[str] = field(default_factory=set)
    mentions: list[Mention] = field(default_factory=list)

    def merge(self, other: Claims) -> None:
        self.mentions += other.mentions
        self.outside_universe |= other.outside_universe
        self._finish()

    def _finish(self) -> None:
        plain = {m.au for m in self.mentions if not m.negated}
        neg = {m.au for m in self.mentions if m.negated}
        self.present = plain
        self.absent = neg - plain
        self.conflicting = neg & plain


_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def _words(s: str) -> list[str]:
    return _WORD.findall(s)


_LISTISH = re.compile(r"^(?:\s|,|\(|\)|/|\+|\bor\b|\bnor\b|\bau\s*\d{1,2}(?:_[rc])?\b|"
                     r"\b(?:inner|outer|brow|raiser|lowerer|upper|lid|cheek|tightener|nose|wrinkler|lip|lips|"
                     r"corner|puller|dimpler|depressor|chin|stretcher|part|jaw|drop|blink|suck)\b)*$")


_CODE_AT_END = re.compile(r"au\s*\d{1,2}(?:_[rc])?\s*$")
_LIST_WORDS = {"au", "or", "nor", "inner", "outer", "brow", "raiser", "lowerer", "upper", "lid", "cheek", "tightener",
               "nose", "wrinkler", "lip", "lips", "corner", "puller", "dimpler", "depressor", "chin", "stretcher",
               "part", "jaw", "drop", "blink", "suck"}


# Every cue contains one of these: a window before a mention without any of them cannot hold a cue (most do not)
_CUE_PARTS = ("no", "never", "neither", "without", "absen", "lack", "cannot", "n't", "free", "devoid")
assert all(any(p in w for p in _CUE_PARTS) for w in _NEG_WORDS | {b[0] for b in _NEG_BIGRAMS})


def _negated(text: str, start: int, end: int) -> bool:
    before = text[max(0, start - 160):start]
    # the words read below are words of ``before``: with no cue part in it, only a cue after the mention counts
    for p in _CUE_PARTS:
        if p in before:
            break
    else:
        return bool(_POST_NEG.match(text[end:end + 60]))
    in_list = False
    # a list of AUs keeps the scope of the negation before it: "no AU04, AU07 or AU23",
    # "none of the companion units (AU07 lid tightener, AU23 lip tightener)"
    while True:
        cut = None
        for m in _CLAUSE_END.finditer(before):
            cut = m
        if cut is None:
            break
        tail = before[cut.end():]
        sep = cut.group(0)
        prev = _words(before[:cut.start()])[-1:] if sep in ",)/" else []  # only read after one of these
        list_sep = sep == "(" or (sep in ",)/" and bool(prev) and (
            prev[0] in _LIST_WORDS or _CODE_AT_END.search(before[:cut.start()]) is not None))
        if list_sep and _LISTISH.match(tail):
            in_list = True
            before = before[:cut.start()] + " " + tail
            if not _CLAUSE_END.search(before):
                break
            # only the list's own separators are skipped: stop at the first real clause end before it
            inner = None
            for m in _CLAUSE_END.finditer(before):
                inner = m
            if inner is not None and (inner.group(0) not in ",()/" or not _LISTISH.match(before[inner.end():])
                                      or not _words(before[:inner.start()])[-1:]):
                before = before[inner.end():]
                break
            continue
        before = tail
        break
    ws = [w for w in _words(before) if not (in_list and w in _LIST_WORDS)][-NEG_WINDOW:]
    for i, w in enumerate(ws):
        if w in _NEG_WORDS or w.endswith("n't"):
            return True
        if i + 1 < len(ws) and (w, ws[i + 1]) in _NEG_BIGRAMS:
            return True
    return bool(_POST_NEG.match(text[end:end + 60]))


def extract_claims(text: str | None, field_name: str = "") -> Claims:
    """AUs a text claims present / absent (see the module docstring for the rules)."""
    if not text:
        return Claims()
    c = _claims_cached(text, field_name)  # one text is read several times per sample (inputs check, metrics)
    return Claims(set(c.present), set(c.absent), set(c.conflicting), set(c.outside_universe), list(c.mentions))


@functools.lru_cache(maxsize=8192)
def _claims_cached(text: str, field_name: str) -> Claims:
    """The claims of one text; callers get a copy (:func:`extract_claims`), never this object."""
    c = Claims()
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    taken: list[tuple[int, int]] = []  # spans already read (a code, a longer phrase): never counted again
    for m in (_CODE.finditer(t) if "au" in t else ()):
        codes = [m.group(1)] + _CODE_MORE.findall(m.group(2) or "")
        neg = _negated(t, m.start(), m.end())
        for num in codes:
            au = f"{int(num):02d}"
            if au in UNIVERSE:
                c.mentions.append(Mention(au, m.group(0), m.start(), neg, field_name, m.end()))
            else:
                c.outside_universe.add(au)
        taken.append((m.start(), m.end()))
    firsts: dict[str, list[int]] = {}  # offsets of the first words read so far
    for i in _phrases_to_try(t):  # still longest first: a longer match takes its span first
        if _PHRASE_NEEDS[i] not in t:
            continue
        phrase, au, pat = _PHRASES[i]
        first = _PHRASE_FIRST[phrase]
        offsets = firsts.get(first)
        if offsets is None:
            # a match starts where its first word occurs (the pattern opens with a look-behind, then that word):
            # the pattern is tried only there, in order, non-overlapping (what pat.finditer yields)
            offsets = firsts[first] = find_all(t, first)
        for m in _phrase_matches(pat, t, offsets):
            a, b = m.span()
            for s, e in taken:
                if a < e and s < b:
                    break  # inside a span already read
            else:
                taken.append((a, b))
                c.mentions.append(Mention(au, phrase, a, _negated(t, a, b), field_name, b))
    c.mentions.sort(key=lambda x: x.start)
    c._finish()
    return c


def claims_of(texts: dict[str, str]) -> tuple[Claims, dict[str, list[str]]]:
    """The AU claims of several annotation fields pooled, and the AUs each field claims present."""
    claims = Claims()
    per_field: dict[str, list[str]] = {}
    for f, t in texts.items():
        c = extract_claims(t, f)
        per_field[f] = sorted(c.present)
        claims.merge(c)
    return claims, per_field
