"""NLI consistency between the per-modality descriptions and the final summary.

Model: a transformers sequence-classification NLI cross-encoder (``AutoModelForSequenceClassification``,
model key ``nli``; default ``cross-encoder/nli-deberta-v3-base``). The label of each class is read from
``config.id2label`` and matched case-insensitively: the label containing ``entail`` is entailment, the
one containing ``contradict`` is contradiction, one containing ``neutral`` is neutral (optional). A model
whose labels do not name entailment and contradiction gives ``error`` with its labels listed.

Pairs (premise -> hypothesis), for every description field in ``metrics.nli.pairs`` that the sample has
(default: visual_expression, visual_objective, audio_description, video_content):

(a) ``summary_to_desc``: each sentence of ``final_summary`` is a hypothesis, the description is the
    premise: is what the summary claims supported by the modality evidence?
(b) ``desc_to_summary``: each sentence of the description is a hypothesis, the summary is the premise:
    is the evidence reflected in the summary?

Fitting the window: texts are split with :func:`mer_eval.domain.text.split_sentences`; a premise keeps its
first ``max_premise_sentences`` sentences, and the pair is tokenised with ``truncation="only_first"`` at
the model's maximum length, so a premise that still does not fit loses its end, never the hypothesis
(``details.premises_truncated`` counts the pairs where that happened). A hypothesis sentence longer than
half the window is cut into pieces of at most half the window tokens.

No final summary where the sample's type promises one (``mer``, ``image``) is ``abstained``, the worst value
(:func:`mer_eval.domain.emotion_text.summary_or_abstention`); other types are ``not_applicable``, and so is a
summary with no description to check it against.

Outputs, over all pairs of a sample (both directions, all fields):

* ``nli_entail_rate`` = share of pairs whose argmax label is entailment;
* ``nli_contra_rate`` = share of pairs whose argmax label is contradiction (lower is better);
* ``nli_consistency_score`` = (1 + entail_rate − contra_rate) / 2, in 0..1.

All pairs of all samples in a batch go through the model in mini-batches of ``self.batch_size()``
(``score.batch_size``; with ``auto``, the size that fits).

Precision: ``metrics.nli.precision`` (``fp32`` default, ``int8`` on the CPU, ``fp16`` on CUDA, ``bf16``), as
for CLIP (:func:`mer_eval.metrics.clip_score.apply_precision`); ``details.precision`` says what ran. Lower
precision can flip the argmax of a pair whose top two logits are close.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from pydantic import Field

from mer_eval.models import ModelSpec
from mer_eval.metric import Metric, MetricParams, ModelUnavailable, OutputSpec
from mer_eval.metrics.clip_score import (Precision, apply_precision, encoder_forward, load_backend, precision_problem,
                                         resolve_device)
from mer_eval.schema import MetricResult, ModelRef, Sample, Status
from mer_eval.domain.emotion_text import summary_or_abstention
from mer_eval.domain.text import split_sentences

DIRECTIONS = ("summary_to_desc", "desc_to_summary")


def label_indices(id2label: dict) -> tuple[dict[str, int], Optional[str]]:
    """{entailment, contradiction[, neutral]} -> class index from ``config.id2label``, or the problem."""
    found: dict[str, int] = {}
    for i, lab in (id2label or {}).items():
        low = str(lab).lower()
        for key, stem in (("entailment", "entail"), ("contradiction", "contradict"), ("neutral", "neutral")):
            if stem in low and not low.startswith("not") and key not in found:
                found[key] = int(i)
    if "entailment" not in found or "contradiction" not in found:
        return found, (f"the NLI model's labels {dict(id2label or {})} do not name both entailment and "
                       "contradiction (config.id2label)")
    return found, None


class _HFNLI:
    def __init__(self, res, device: str, precision: str = "fp32"):
        import torch  # noqa: PLC0415
        from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: PLC0415

        src = str(res.path) if res.path is not None else res.id
        model = AutoModelForSequenceClassification.from_pretrained(src).to(device).eval()
        self.model, self.dtype, self.precision = apply_precision(model, precision, device)
        self.tok = AutoTokenizer.from_pretrained(src)
        cfg = self.model.config
        limits = []
        mml = getattr(self.tok, "model_max_length", None)
        if mml and mml < 1_000_000:
            limits.append(int(mml))
        mpe = getattr(cfg, "max_position_embeddings", None)
        if mpe and getattr(cfg, "position_embedding_type", "absolute") == "absolute" and \
                getattr(cfg, "relative_attention", False) is False:
            limits.append(int(mpe) - (2 if "roberta" in str(cfg.model_type) else 0))
        if not limits:
            raise ModelUnavailable(f"cannot tell the maximum input length of {src}")
        self.max_length = min(limits)
        self.n_special = len(self.tok("a", "b")["input_ids"]) \
            - len(self.tok("a", add_special_tokens=False)["input_ids"]) \
            - len(self.tok("b", add_special_tokens=False)["input_ids"])
        self.labels, self.label_problem = label_indices(dict(cfg.id2label or {}))
        self.id2label = {int(k): str(v) for k, v in (cfg.id2label or {}).items()}
        self.device = device
        self.torch = torch

    def n_tokens(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False, verbose=False)["input_ids"])

    def split_long(self, sent: str, limit: int) -> list[str]:
        ids = self.tok(sent, add_special_tokens=False, verbose=False)["input_ids"]
        if len(ids) <= limit:
            return [sent]
        return [self.tok.decode(ids[i: i + limit]).strip() for i in range(0, len(ids), limit)]

    def predict(self, pairs: list[tuple[str, str]], batch_size: int) -> np.ndarray:
        """argmax class index per (premise, hypothesis) pair."""
        return self.logits(pairs, batch_size).argmax(axis=-1).astype(int) if pairs else np.zeros(0, dtype=int)

    def logits(self, pairs: list[tuple[str, str]], batch_size: int) -> np.ndarray:
        """fp32 logits (pairs x classes) per (premise, hypothesis) pair.

        Pairs are batched in order of length, so a batch pads to lengths close to its own (a mixed batch
        would pad every short pair to the longest, up to the model window) and results go back in order.
        """
        n_cls = len(self.id2label) or int(self.model.config.num_labels)
        if not pairs:
            return np.zeros((0, n_cls), dtype=np.float32)
        lengths = [self.n_tokens(p) + self.n_tokens(h) for p, h in pairs]
        order = sorted(range(len(pairs)), key=lambda i: lengths[i])
        out = np.zeros((len(pairs), n_cls), dtype=np.float32)
        for i in range(0, len(order), batch_size):
            idx = order[i: i + batch_size]
            enc = self.tok([pairs[j][0] for j in idx], [pairs[j][1] for j in idx], truncation="only_first",
                           max_length=self.max_length, padding=True, return_tensors="pt")
            enc = {k: v.to(self.device) for k, v in enc.items()}
            logits = encoder_forward(self, self.model, **enc).logits
            out[idx] = logits.float().cpu().numpy()
        return out



class NLIParams(MetricParams):
    max_premise_sentences: int = Field(12, ge=1)
    pairs: list[str] = Field(
        default_factory=lambda: ["visual_expression", "visual_objective", "audio_description", "video_content"]
    )
    precision: Precision = "fp32"  # int8 (CPU), fp16 (CUDA), bf16; see mer_eval.metrics.clip_score


class NLIConsistency(Metric):
    Params = NLIParams
    models = (ModelSpec("nli", "NLI consistency", "cross-encoder/nli-deberta-v3-base", "hf", license="Apache-2.0",
                        note="sequence-classification NLI cross-encoder; no offline wheel exists"),)
    model_uses = "nli"
    """Entailment / contradiction rates between modality descriptions and the final summary."""

    name = "nli"
    order = 120
    version = "1.1"  # 1.1: no final summary where the sample's type promises one is abstained (was not_applicable)
    requires = "annotation.final_summary and at least one description field listed in metrics.nli.pairs"
    description = "NLI entailment/contradiction between each modality description and the final summary, both ways"
    outputs = (
        OutputSpec("nli_consistency_score", True, (0.0, 1.0),
                   "(1 + entail_rate - contra_rate) / 2 over all sentence pairs, both directions"),
        OutputSpec("nli_entail_rate", True, (0.0, 1.0),
                   "share of (premise, hypothesis sentence) pairs whose argmax label is entailment", primary=False),
        OutputSpec("nli_contra_rate", False, (0.0, 1.0),
                   "share of (premise, hypothesis sentence) pairs whose argmax label is contradiction",
                   primary=False),
    )

    def __init__(self, params: Optional[dict[str, Any]] = None, ctx=None):
        super().__init__(params, ctx)
        self._backend: Any = None
        self._ref: Optional[ModelRef] = None

    def _fields(self) -> list[str]:
        return list(self.params["pairs"])

    def _present(self, s: Sample) -> dict[str, str]:
        return {f: getattr(s.annotation, f) for f in self._fields() if getattr(s.annotation, f, None)}

    def missing_inputs(self, sample: Sample) -> Optional[str]:
        _, status, why = summary_or_abstention(sample)
        if status == "not_applicable":
            return f"no final_summary: {why}"
        if status == "abstained":
            return None  # abstention() says so, with or without descriptions to check the summary against
        if not self._present(sample):
            return f"none of the description fields {', '.join(self._fields())} is present"
        return None

    def abstention(self, sample: Sample) -> Optional[str]:
        _, status, why = summary_or_abstention(sample)
        return why if status == "abstained" else None

    def cache_key_inputs(self, sample: Sample) -> Optional[dict[str, Any]]:
        return {"summary": sample.annotation.final_summary, "fields": self._present(sample)}

    def load(self) -> None:
        precision = str(self.params["precision"])
        device = resolve_device(self.ctx.device, precision)
        why = precision_problem(precision, device)
        if why:
            raise ModelUnavailable(why)
        self._backend, self._ref = load_backend("nli", self.ctx.config, ("transformers", "torch"), "the NLI metric",
                                                lambda res: _HFNLI(res, device, precision), (device, precision))

    def model_ref(self) -> Optional[ModelRef]:
        return self._ref

    def _pairs(self, s: Sample) -> list[tuple[str, str, str, str, bool]]:
        """(field, direction, premise, hypothesis, premise_truncated) for one sample."""
        be = self._backend
        k = int(self.params["max_premise_sentences"])
        hyp_limit = max(1, (be.max_length - be.n_special) // 2)
        summary = s.annotation.final_summary or ""
        sum_sents = split_sentences(summary) or [summary]
        out = []
        for field, desc in self._present(s).items():
            desc_sents = split_sentences(desc) or [desc]
            for direction, premise_sents, hyp_sents in (("summary_to_desc", desc_sents, sum_sents),
                                                        ("desc_to_summary", sum_sents, desc_sents)):
                premise = " ".join(premise_sents[:k])
                p_len = be.n_tokens(premise)
                for h in hyp_sents:
                    for piece in be.split_long(h, hyp_limit):
                        if not piece:
                            continue
                        trunc = len(premise_sents) > k or p_len + be.n_tokens(piece) + be.n_special > be.max_length
                        out.append((field, direction, premise, piece, trunc))
        return out

    def compute(self, samples: list[Sample]) -> dict[str, list[MetricResult]]:
        be = self._backend
        if be.label_problem:
            raise ValueError(be.label_problem)
        out: dict[str, list[MetricResult]] = {}
        per_sample = [(s, self._pairs(s)) for s in samples]
        flat = [(p[2], p[3]) for _, ps in per_sample for p in ps]
        preds = self.timed(be.predict, flat, self.batch_size())
        ent, con = be.labels["entailment"], be.labels["contradiction"]
        i = 0
        for s, ps in per_sample:
            pr = preds[i: i + len(ps)]
            i += len(ps)
            if not len(ps):
                out[s.id] = self.not_ok(s.id, Status.not_applicable, "no sentence pairs (empty texts)")
                continue
            e_rate = float(np.mean(pr == ent))
            c_rate = float(np.mean(pr == con))
            by: dict[str, dict[str, dict[str, int]]] = {}
            for (field, direction, *_rest), lab in zip(ps, pr):
                cell = by.setdefault(field, {}).setdefault(direction, {})
                name = be.id2label.get(int(lab), str(int(lab)))
                cell[name] = cell.get(name, 0) + 1
            det = {
                "pairs": len(ps),
                "entailment": int(np.sum(pr == ent)), "contradiction": int(np.sum(pr == con)),
                "by_field": by, "premises_truncated": int(sum(1 for p in ps if p[4])),
                "max_length": be.max_length, "labels": be.id2label, **be.precision, "device": be.device,
            }
            from mer_eval.evidence import relate

            # the summary against the descriptions it was written from: faithfulness for a model's summary, a
            # self-check for a template that copied them in (entailment is then guaranteed)
            ev = relate(s, ["final_summary"], sorted(by))
            out[s.id] = [
                self.ok(s.id, "nli_consistency_score", (1.0 + e_rate - c_rate) / 2.0, details=det, evidence=ev),
                self.ok(s.id, "nli_entail_rate", e_rate, details=det, evidence=ev),
                self.ok(s.id, "nli_contra_rate", c_rate, details=det, evidence=ev),
            ]
        return out
