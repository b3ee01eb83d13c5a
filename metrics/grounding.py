"""Grounding and specificity of the final summary: is what it says supported by the sample's own evidence,
and does it say anything specific to this sample at all?

Weight-free (word overlap, string matching), so it runs offline on any MER-Factory output.

Evidence: the sample's own texts -- transcript, tone description, ``visual_expression``, ``visual_objective``,
``image_description``, ``video_content``, ``llm_au_description``, ``au_text_description``, the emotion peaks
-- plus the numbers of ``overall_peak_frame_info``.

Content words: lower-cased words, Porter-stemmed (NLTK's stemmer, no data download), without English
function words, without the vocabulary every MER summary uses whatever the clip (:data:`GENERIC`: "facial",
"suggests", "tone", "person", ...) and without emotion words (whether the emotion fits is
:mod:`mer_eval.metrics.conclusion`'s question); CJK text contributes character bigrams.

Outputs:

* ``grounding`` = |S & E| / |S|: the share of the summary's distinct content words S that occur in the
  evidence E (a summary of another clip, or one that invents its clues, scores low);
* ``specificity`` = min(1, |S & E| / ``saturation``) (default 12): how much sample-specific, grounded content
  it carries; a boilerplate sentence carries none, however true;
* ``quote_fidelity``: over the summary's quotations of at least ``min_quote_words`` words
  (``min_quote_chars`` CJK characters), the mean of each quotation's match with the evidence texts of its
  script: the share of its tokens (characters for CJK) found in order in the best window of a text
  (:func:`best_match`; verbatim = 1). Since 1.2 the mean, not the best quotation: one line quoted right no
  longer hides another misquoted. A quotation that only names emotions and their strength (a peak label, in
  any language: ``details.label_quotes``) is not a quotation of what was said and is not scored. A quotation in
  another script than the transcript (an English translation of a Chinese line) that matches nothing is not
  checkable (``details.unchecked_quotes``). ``not_applicable`` without checkable quotations;
* ``number_fidelity``: the share of decimal numbers the summary cites (timestamps, AU intensities) that are
  among the evidence's numbers (peak timestamps, intensities; equal to two decimals, or to one when the
  summary gives one). ``not_applicable`` when it cites none. Since 1.1 a peak's timestamp cited in a sentence
  that speaks of the peak ("peaking at 11.73 and 14.73 seconds") and names emotions, none of them the emotion
  ``chronological_emotion_peaks`` gives at that time, is not supported either: the number is right, what the
  sentence says happened there is not (``details.misattributed``). A sentence that names the peak's emotion
  beside others ("flagged as contempt, but it reads as restrained approval") is no misattribution. Since 1.2
  an intensity cited right after an AU's name that is another reported AU's and not this one's ("Jaw drop
  1.66" where AU04 is 1.66) is not supported either (``details.misattributed_intensities``).

A summary in another script than all its evidence descriptions (a Chinese summary of English descriptions)
gets ``not_applicable`` for ``grounding`` and ``specificity``: word overlap cannot cross languages. A summary
whose type promises one but is empty *abstained* (status ``abstained``).
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from functools import lru_cache
from typing import Any, Optional

from mer_eval.evidence import relate
from mer_eval.domain.facs import EMOTION_SYNONYMS
from pydantic import Field

from mer_eval.metric import Metric, MetricParams, OutputSpec
from mer_eval.domain.emotion_text import emotion_mentions, summary_or_abstention
from mer_eval.schema import MetricResult, Sample, Status
from mer_eval.domain.text import cjk_ratio, unwrap_transcript

EVIDENCE_FIELDS = ("transcript", "audio_description", "visual_expression", "visual_objective", "image_description",
                   "video_content", "llm_au_description", "au_text_description")

FUNCTION_WORDS = frozenset("""
a an the and or but nor so yet if then than that this these those there here which who whom whose what when
where why how while as at by for from in into of off on onto out over per since through to toward towards
under until up upon via with within without about above across after against along among around before behind
below beneath beside besides between beyond during except inside near outside past is are was were be been
being am do does did done doing have has had having will would shall should can could may might must it its
itself he him his himself she her hers herself they them their theirs themselves we us our ours you your
yours i me my mine one ones not no yes all any both each either every few many more most much neither none
other others own same several some such only just also too very quite rather really even still again ever
never always often sometimes perhaps maybe s t d ll re ve m don isn aren wasn weren doesn didn hasn haven
hadn won wouldn couldn shouldn let lets it's that's there's he's she's they're we're i'm you're
""".split())

GENERIC = frozenset("""
emotion emotions emotional emotionally feeling feelings feel feels felt expression expressions expressive
facial face faces action unit units au aus intensity intensities peak peaks peaking overall initial initially
subsequent subsequently clue clues cue cues context contextual visual visually audio auditory vocal voice
voices tone tones tonal speech speaker speakers speaking spoken speak speaks transcript transcription subtitle
subtitles word words video videos clip clips scene scenes image images frame frames content analysis analyze
analyse analyzing analysing dissect dissecting begin beginning reveal reveals revealed revealing indicate
indicates indicated indicating indicator indicators indicative suggest suggests suggested suggesting suggestion
suggestive likely possibly possible probably probable potential potentially core state states cause causes
caused conclusion conclude concluded concluding combination combined combine together taken evidence support
supports supported supporting consistent inconsistent consistency contradict contradicts contradicted
contradiction contradictory interpretation interpret interpreted significant significance important importance
key clear clearly strong strongly slight slightly subtle subtly moderate moderately high higher low lower mild
mildly intense intensely present presence absence absent observe observed observation show shows shown showing
display displays displayed displaying exhibit exhibits exhibited person persons subject subjects individual
individuals someone people appear appears appeared appearing appearance seem seems seemed seeming look looks
looked looking something anything nothing moment moments time times second seconds s sec however further
furthermore additionally moreover therefore thus hence despite although though whereas given based
considering consider considered note noted notably provide provides provided providing information insight
insights detail details detailed description descriptions described describe describes describing mention
mentions mentioned statement offer offers offered lack lacks lacking shift shifts change changes reaction
reactions react reacting response responses respond responding experience experiences experiencing
experienced sense sign signs hint hints degree level levels nature kind type aspect aspects element elements
factor factors feature features characteristic characteristics characterized quality associated association
related relating regarding reflect reflects reflecting reflected reinforce reinforces reinforcing reinforced
emphasize emphasizes emphasizing accompanied underlying genuine masked mask mixed mix complex nuanced contrast
juxtaposition point points behavior behaviour situation environment setting background overall analysis
multimodal modality modalities cross reasoning reason reasons likely main primary primarily dominant
predominant predominantly apparent apparently evident evidently visible visibly noticeable notable overall
interplay signal signals signaling signalling state emotional component components portray portrays
portrayed convey conveys conveyed conveying manner way ways aspect general generally specific specifically
particular particularly certain certainly somewhat relatively fairly highly deeply truly entirely completely
partly partially largely mostly overall whole first second third finally lastly next later earlier then
now currently captured capture captures depicted depicts depict shown presented presents presenting
indicating interpretation clip's person's subject's speaker's man's woman's video's also could would
make makes made making give gives gave giving get gets got take takes took put puts use uses used using
seem one two three well like along rather maybe another other
""".split())

_LATIN_WORD = re.compile(r"[a-z][a-z'\-]*[a-z]|[a-z]")
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_QUOTE = re.compile(r"[\"“”](?P<a>[^\"“”\n]{2,300})[\"“”]|「(?P<b>[^」\n]{1,300})」|『(?P<c>[^』\n]{1,300})』|"
                    r"(?:(?<=^)|(?<=[\s(\[:]))['‘](?P<d>[^'’\n]{2,300}?)['’](?=[\s).,;:!?\]]|$)")
_DECIMAL = re.compile(r"(?<![\d.])(\d{1,3}\.\d{1,3})(?![\d])")
_EMOTION_WORDS = frozenset(w for w in EMOTION_SYNONYMS if " " not in w)


@lru_cache(maxsize=1)
def _porter() -> Any:
    from nltk.stem.porter import PorterStemmer  # pure Python, no NLTK data needed

    return PorterStemmer()


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    return _porter().stem(word)


def content_units(text: Optional[str]) -> set[str]:
    """Distinct content units of a text: stems of non-generic, non-emotion English words; CJK bigrams."""
    if not text:
        return set()
    low = text.lower().replace("\u2019", "'")
    out: set[str] = set()
    for w in _LATIN_WORD.findall(low):
        w = w.strip("'-")
        if w.endswith("'s"):
            w = w[:-2]
        if len(w) < 3 or w in FUNCTION_WORDS or w in GENERIC or w in _EMOTION_WORDS:
            continue
        st = stem(w)
        if st in GENERIC or len(st) < 3:
            continue
        out.add(st)
    for run in _CJK_RUN.findall(text):
        if len(run) == 1:
            continue
        out.update(run[i:i + 2] for i in range(len(run) - 1))
    return out


def evidence_texts(s: Sample) -> dict[str, str]:
    a = s.annotation
    out = {}
    for f in EVIDENCE_FIELDS:
        v = getattr(a, f)
        if isinstance(v, str) and v.strip():
            out[f] = unwrap_transcript(v) if f == "transcript" else v
    if a.chronological_emotion_peaks:
        out["chronological_emotion_peaks"] = "; ".join(a.chronological_emotion_peaks)
    return out


def evidence_numbers(s: Sample, texts: dict[str, str]) -> set[float]:
    a = s.annotation
    nums: set[float] = set()
    for t in texts.values():
        nums.update(float(x) for x in _DECIMAL.findall(t))
    nums.update(float(v) for v in a.top_aus_intensities.values() if v == v)
    if a.peak_timestamp is not None:
        nums.add(float(a.peak_timestamp))
    return nums


def quotes(text: str) -> list[str]:
    out = []
    for m in _QUOTE.finditer(text):
        q = next(g for g in (m.group("a"), m.group("b"), m.group("c"), m.group("d")) if g is not None)
        out.append(q.strip())
    return [q for q in out if q]


def _tokens(text: str, cjk: bool) -> list[str]:
    if cjk:
        return [c for c in text if _CJK_RUN.match(c)]
    return _LATIN_WORD.findall(text.lower())


def best_match(quote: str, texts: list[str]) -> float:
    """How much of the quotation any text holds, in order: the best share of the quote's tokens (characters for
    CJK) that difflib matches in order within a window of a quarter more tokens than the quote, over every text.
    A verbatim quotation is 1.0 wherever it sits (1.1 took difflib's ratio against the longer window, which held
    a verbatim three-word quote at 0.86 unless it ended its text); a shuffled or invented one is low."""
    cjk = cjk_ratio(quote) > 0.3
    q = _tokens(quote, cjk)
    if not q:
        return 0.0
    best = 0.0
    n = len(q)
    step = max(1, n // 4)
    for t in texts:
        toks = _tokens(t, cjk)
        if not toks:
            continue
        starts = range(0, max(1, len(toks) - n + 1), step) if len(toks) > n else [0]
        for i in starts:
            win = toks[i:i + n + step]  # a quote starting anywhere in [i, i + step) lies wholly in the window
            if min(n, len(win)) <= best * n:
                continue  # too short a window to beat the best
            r = sum(b.size for b in SequenceMatcher(None, q, win, autojunk=False).get_matching_blocks()) / n
            if r > best:
                best = r
                if best >= 0.999:
                    return 1.0
    return best


_INTENSITY = frozenset("""slight slightly mild mildly moderate moderately strong strongly high low intense weak very
intensity level peak peaks and or with""".split())
_ZH_INTENSITY = ("轻微", "中等", "强烈", "明显", "轻度", "中度", "重度", "强度", "高峰", "峰值", "和", "与", "或")


def is_label_quote(quote: str) -> bool:
    """A quotation that names emotions and their strength and nothing else ("angry (slight), contempt (slight)",
    "愤怒（中等）、厌恶（轻微）"): a peak label, in any language, not a quotation of what was said or written.
    Whether it is the right label is number_fidelity's and conclusion's question."""
    found = emotion_mentions(quote)
    if not found:
        return False
    rest = quote.lower()
    for _, word, at in sorted(found, key=lambda m: -m[2]):
        rest = rest[:at] + " " + rest[at + len(word):]
    for w in _ZH_INTENSITY:
        rest = rest.replace(w, " ")
    return not _CJK_RUN.search(rest) and all(w in _INTENSITY for w in _LATIN_WORD.findall(rest))


def _numbers_cited(text: str) -> list[tuple[float, int]]:
    return [(float(x), len(x.split(".")[1])) for x in _DECIMAL.findall(text)]


def _same_number(cited: float, decimals: int, x: float) -> bool:
    """A number the summary cites (with ``decimals`` places) is ``x``: equal to two decimals, or to one when the
    summary gives one."""
    return abs(cited - x) <= 0.0051 or (decimals == 1 and round(x, 1) == cited)


_PEAK_LINE = re.compile(r"\s*peak at\s+(\d+(?:\.\d+)?)\s*s\b[^:]*:\s*([A-Za-z]+)", re.I)
_PEAK_TALK = re.compile(r"\b(?:peak(?:s|ed|ing)?|flag(?:s|ged)?|detect(?:s|ed)?|spike[sd]?)\b", re.I)


def misattributed_peaks(summary: str, peaks: list[str]) -> list[dict[str, Any]]:
    """Peak timestamps the summary cites in a sentence that speaks of the peak and names emotions, none of them
    the emotion the peak line gives at that time: ``[{"at", "peak", "named", "sentence"}]``."""
    from mer_eval.domain.emotion_text import emotion_profile
    from mer_eval.domain.facs import canonical_emotion
    from mer_eval.domain.text import split_sentences

    at: dict[float, str] = {}
    for line in peaks:
        m = _PEAK_LINE.match(line)
        emo = canonical_emotion(m.group(2)) if m else None
        if emo:
            at[round(float(m.group(1)), 2)] = emo
    if not at:
        return []
    out = []
    for sent in split_sentences(summary):
        if not _PEAK_TALK.search(sent):
            continue
        hits = [(v, e) for v, dec in _numbers_cited(sent) for t, e in at.items() if _same_number(v, dec, t)]
        if not hits:
            continue
        named = set(emotion_profile(sent, words=True, cues=False).scores)
        for v, e in hits:
            if named and e not in named:
                out.append({"at": v, "peak": e, "named": sorted(named), "sentence": sent[:160]})
    return out


# right after an AU's name: "Brow lowerer 1.66", "AU04 (1.66)", "Brow lowerer (intensity: 1.66)", "Jaw drop at 1.2";
# a number followed by "s" / "sec" is a time, not an intensity, and one followed by another ("Inner and Outer brow
# raisers (1.22 / 0.99)") one of a list that a list of AUs shares
_AU_NUMBER = re.compile(r"[\s()]*(?:(?:intensity|level|at|of|an?|with)\b[\s:=]*)*(\d+\.\d+)"
                        r"(?!\d|\s*(?:s\b|sec)|\s*(?:/|,|;|and|&|to)\s*\d)", re.I)


def misattributed_intensities(summary: str, top_aus: dict[str, float]) -> list[dict[str, Any]]:
    """Intensities the summary gives an AU right after its name that are another reported AU's and not this
    one's ("Jaw drop 1.66" where ``top_aus_intensities`` give AU04 1.66 and no AU26 at 1.66): the number is the
    evidence's, the movement it is cited for is not. ``[{"at", "au", "belongs_to", "text"}]``."""
    from mer_eval.domain.au_claims import extract_claims
    from mer_eval.domain.facs import au_code

    inten: dict[str, list[float]] = {}
    for k, v in top_aus.items():
        code = au_code(k)
        if code and v == v:
            inten.setdefault(code, []).append(float(v))
    if not inten:
        return []
    out = []
    for m in extract_claims(summary).mentions:
        if m.negated or m.end <= m.start:
            continue
        g = _AU_NUMBER.match(summary, m.end)
        if g is None:
            continue
        v, dec = float(g.group(1)), len(g.group(1).split(".")[1])
        if any(_same_number(v, dec, x) for x in inten.get(m.au, ())):
            continue
        others = sorted(a for a, xs in inten.items() if a != m.au and any(_same_number(v, dec, x) for x in xs))
        if others:
            out.append({"at": v, "au": m.au, "belongs_to": others, "text": summary[m.start:g.end()][:80]})
    return out


class GroundingParams(MetricParams):
    saturation: int = Field(12, ge=1)  # grounded content words at which specificity reaches 1
    min_quote_words: int = Field(3, ge=1)  # quotes shorter than this (English words) are not checked
    min_quote_chars: int = Field(4, ge=1)  # ... or CJK characters


class Grounding(Metric):
    Params = GroundingParams
    name = "grounding"
    order = 40
    # 1.2: quote_fidelity is the mean over quotations, verbatim = 1, emotion labels not scored; number_fidelity
    # counts an AU intensity cited for another AU as wrong
    version = "1.2"
    requires = "annotation.final_summary and at least one evidence text"
    description = "How much of the summary is supported by the sample's own evidence, and how specific it is."
    outputs = (
        OutputSpec("grounding", True, (0.0, 1.0), "|summary content words in the evidence| / |summary content words|"),
        OutputSpec("specificity", True, (0.0, 1.0), "min(1, grounded content words / saturation)"),
        OutputSpec("quote_fidelity", True, (0.0, 1.0), "mean best match of the summary's quotations in the evidence"),
        OutputSpec("number_fidelity", True, (0.0, 1.0),
                   "share of the decimals the summary cites that are the evidence's numbers"),
    )

    def missing_inputs(self, sample: Sample) -> Optional[str]:
        _, status, why = summary_or_abstention(sample)
        if status == "not_applicable":
            return why
        if status is None and not evidence_texts(sample):
            return "the sample has no evidence text (transcript, tone, descriptions, AU text, peaks)"
        return None

    def cache_key_inputs(self, sample: Sample) -> Optional[dict[str, Any]]:
        a = sample.annotation
        return {"summary": a.final_summary, "evidence": evidence_texts(sample), "top_aus": a.top_aus_intensities,
                "peak_ts": a.peak_timestamp, "type": sample.type.value, "empty": a.is_empty()}

    def _one(self, s: Sample) -> list[MetricResult]:
        summary, status, why = summary_or_abstention(s)
        texts = evidence_texts(s)
        ev = relate(s, ["final_summary"], list(texts) or ["evidence"])
        if status == "abstained":
            return self.not_ok(s.id, Status.abstained, why, evidence=ev)
        assert summary is not None
        S = content_units(summary)
        E: set[str] = set()
        per_field: dict[str, int] = {}
        for f, t in texts.items():
            u = content_units(t)
            E |= u
            per_field[f] = len(S & u)
        grounded = S & E
        sat = int(self.params["saturation"])
        details = {"summary_units": len(S), "evidence_units": len(E), "grounded_units": len(grounded),
                   "grounded_by_field": per_field, "grounded_sample": sorted(grounded)[:30],
                   "ungrounded_sample": sorted(S - E)[:30]}
        out: list[MetricResult] = []
        non_speech = [t for f, t in texts.items() if f != "transcript"]
        s_cjk = cjk_ratio(summary) > 0.3
        if non_speech and all((cjk_ratio(t) > 0.3) != s_cjk for t in non_speech):
            why_l = (f"the summary is written in {'CJK' if s_cjk else 'Latin'} script, its evidence descriptions in "
                     f"{'Latin' if s_cjk else 'CJK'}: word overlap cannot measure grounding across languages")
            out.extend(self.not_ok(s.id, Status.not_applicable, why_l, ["grounding", "specificity"], details=details,
                                   evidence=ev))
        elif S:
            out.append(self.ok(s.id, "grounding", len(grounded) / len(S), details=details, evidence=ev))
        else:
            out.extend(self.not_ok(s.id, Status.not_applicable,
                                   "the summary has no content words beyond generic and emotion vocabulary",
                                   ["grounding"], details=details, evidence=ev))
        if not any(r.metric == "specificity" for r in out):
            out.append(self.ok(s.id, "specificity", min(1.0, len(grounded) / sat), details=details, evidence=ev))
        # quotations
        min_w = int(self.params["min_quote_words"])
        min_c = int(self.params["min_quote_chars"])
        checked, unchecked, labels = [], [], []
        ev_list = list(texts.values())
        speech = texts.get("transcript")
        for q in quotes(summary):
            cjk = cjk_ratio(q) > 0.3
            n = len(_tokens(q, cjk))
            if n < (min_c if cjk else min_w):
                continue
            if is_label_quote(q):
                labels.append(q[:120])
                continue
            same = [t for t in ev_list if (cjk_ratio(t) > 0.3) == cjk]
            r = best_match(q, same) if same else 0.0
            # a quotation in another script than the transcript (a translation of it), or in a script no
            # evidence text is written in, that matches nothing, cannot be checked
            foreign = (speech is not None and (cjk_ratio(speech) > 0.3) != cjk) or not same
            if r < 0.5 and foreign:
                unchecked.append(q[:120])
                continue
            checked.append({"quote": q[:120], "match": round(r, 4)})
        mean = sum(c["match"] for c in checked) / len(checked) if checked else None
        qd = {"quotes": checked, "unchecked_quotes": unchecked, "label_quotes": labels,
              "mean_match": round(mean, 4) if checked else None}
        if checked:
            # every quotation counts: one quoted right does not make another, misquoted, faithful (1.1 took the
            # best one, and a peak label quoted right hid a transcript quoted wrong)
            out.append(self.ok(s.id, "quote_fidelity", mean, details=qd, evidence=ev))
        else:
            why_q = ("the summary's quotations cannot be checked (another script than the transcript: "
                     "translations?)" if unchecked else "the summary quotes only emotion labels" if labels
                     else "the summary quotes nothing")
            out.extend(self.not_ok(s.id, Status.not_applicable, why_q, ["quote_fidelity"], details=qd,
                                   evidence=ev))
        # numbers
        cited = _numbers_cited(summary)
        nums = evidence_numbers(s, texts)
        wrong = misattributed_peaks(summary, s.annotation.chronological_emotion_peaks)
        wrong_au = misattributed_intensities(summary, s.annotation.top_aus_intensities)
        left = [w["at"] for w in wrong + wrong_au]  # each misattributed citation takes one citation of its number
        hits, misses = [], []
        for v, dec in cited:
            if not any(_same_number(v, dec, x) for x in nums):
                misses.append(v)
            elif v in left:  # the evidence's number, given another emotion than the peak's there
                left.remove(v)
            else:
                hits.append(v)
        nd = {"cited": [v for v, _ in cited][:40], "not_in_evidence": misses[:20], "misattributed": wrong[:10],
              "misattributed_intensities": wrong_au[:10]}
        if cited:
            out.append(self.ok(s.id, "number_fidelity", len(hits) / len(cited), details=nd, evidence=ev))
        else:
            out.extend(self.not_ok(s.id, Status.not_applicable, "the summary cites no decimal number",
                                   ["number_fidelity"], details=nd, evidence=ev))
        return out

    def compute(self, samples: list[Sample]) -> dict[str, list[MetricResult]]:
        return {s.id: self._one(s) for s in samples}

