"""CLAP audio-text score: does the tone / audio description match the audio?

Text: ``annotation.audio_description`` only (the tone analysis; the transcript is a separate field and
is *not* appended). Audio: ``sample.audio``, else the audio track of ``sample.video``, decoded with
:func:`mer_eval.domain.media.load_audio` at the model's rate (the feature extractor's ``sampling_rate``,
48 kHz for CLAP) with deterministic polyphase resampling.

Deterministic windows (no random crops): the audio is cut into windows of ``window_s`` seconds (at most
the feature extractor's ``max_length_s``) starting every ``hop_s`` seconds, plus one window ending at
the last sample when the hops leave a tail; audio shorter than one window is one window (the extractor
pads it by repetition, ``padding="repeatpad"``). When there are more than ``max_windows`` windows,
``max_windows`` of them are chosen evenly (first and last included). Because no window is longer than
the extractor's maximum length, ``truncation="rand_trunc"`` never crops, and ``is_longer`` is set to
False for every window, so the fusion branch's random choice never runs. The audio embedding is the
mean of the L2-normalised window embeddings; the text embedding is the mean of the normalised chunk
embeddings when the description exceeds the text window (sentences, then token windows; see
:mod:`mer_eval.metrics.clip_score`).

Output ``clap_audio_score`` = cos(E_audio, E_text), range -1..1 (higher: the description fits the audio
better; not rescaled).

A sample whose audio source has no audio stream, or whose audio is digital silence (every sample 0, e.g.
the silent track of ``WolfgangLanger_Pexels.mp4``), is ``not_applicable``: there is no audio to describe.
Over audio with sound, no audio analysis at all (no transcript, no tone) where the sample's type promises one
(``mer``, ``audio``: :func:`mer_eval.domain.emotion_text.tone_or_abstention`) is ``abstained``, the worst value;
a transcript without a tone description is ``not_applicable`` (nothing of the tone to compare).
An unreadable file is an ``error``.

Backend: transformers ``ClapModel`` + ``ClapProcessor`` (model key ``clap``). The laion-clap package is
not supported yet: the config accepts only ``backend: transformers``.

Precision: ``metrics.clap.precision`` (``fp32`` default, ``int8`` on the CPU, ``fp16`` on CUDA, ``bf16``), as
for CLIP (:func:`mer_eval.metrics.clip_score.apply_precision`); ``details.precision`` says what ran.
"""

from __future__ import annotations

from typing import Literal, Any, Optional

import numpy as np

from pydantic import Field

from mer_eval.models import ModelSpec
from mer_eval.metric import Metric, MetricParams, ModelUnavailable, OutputSpec
from mer_eval.metrics.clip_score import (
    HFTextTower,
    Precision,
    apply_precision,
    load_backend,
    precision_problem,
    as_features,
    encoder_forward,
    hf_text_window,
    mean_direction,
    resolve_device,
    special_tokens,
    text_chunks,
)
from mer_eval.domain.emotion_text import tone_or_abstention
from mer_eval.schema import MetricResult, ModelRef, Sample, Status


def window_starts(n: int, win: int, hop: int, max_windows: int) -> list[int]:
    """Start samples of the deterministic windows (see the module docstring)."""
    if n <= win:
        return [0]
    starts = list(range(0, n - win + 1, hop))
    if starts[-1] + win < n:
        starts.append(n - win)
    if len(starts) > max_windows:
        pick = np.linspace(0, len(starts) - 1, max_windows).round().astype(int) if max_windows > 1 else [
            (len(starts) - 1) // 2]
        starts = [starts[i] for i in sorted(set(int(i) for i in pick))]
    return starts


class _HFClap(HFTextTower):
    def __init__(self, res, device: str, precision: str = "fp32"):
        import torch  # noqa: PLC0415
        from transformers import ClapModel, ClapProcessor  # noqa: PLC0415

        src = str(res.path) if res.path is not None else res.id
        self.model, self.dtype, self.precision = apply_precision(ClapModel.from_pretrained(src).to(device).eval(),
                                                                 precision, device)
        self.proc = ClapProcessor.from_pretrained(src)
        self.fe = self.proc.feature_extractor
        self.tok = self.proc.tokenizer
        self.sr = int(self.fe.sampling_rate)
        self.max_samples = int(getattr(self.fe, "nb_max_samples", 0) or self.sr * 10)
        self.pre, self.post = special_tokens(self.tok)
        tc = self.model.config.text_config
        offset = (int(tc.pad_token_id) + 1) if getattr(tc, "pad_token_id", None) is not None else 0
        self.window = hf_text_window(self.tok, tc.max_position_embeddings, len(self.pre) + len(self.post), offset)
        pad = self.tok.pad_token_id
        self.pad_id = pad if pad is not None else 0
        self.device = device
        self.torch = torch

    def audio_features(self, windows: list[np.ndarray]) -> np.ndarray:
        feats = self.fe(windows, sampling_rate=self.sr, return_tensors="pt", truncation="rand_trunc",
                        padding="repeatpad")
        x = feats["input_features"].to(self.device, self.dtype)
        is_longer = self.torch.zeros((x.shape[0], 1), dtype=self.torch.bool, device=self.device)
        out = encoder_forward(self, self.model.get_audio_features, input_features=x, is_longer=is_longer)
        return as_features(out).float().cpu().numpy()



class ClapParams(MetricParams):
    backend: Literal["transformers"] = "transformers"  # laion-clap: not supported yet
    window_s: float = Field(10.0, gt=0)
    hop_s: float = Field(10.0, gt=0)
    max_windows: int = Field(6, ge=1)
    precision: Precision = "fp32"  # int8 (CPU), fp16 (CUDA), bf16; see mer_eval.metrics.clip_score


class ClapAudioText(Metric):
    Params = ClapParams
    models = (ModelSpec("clap", "CLAP audio-text score", "laion/clap-htsat-unfused", "hf", license="Apache-2.0",
                        note="transformers ClapModel; no offline wheel exists"),)
    model_uses = "clap"
    """CLAP cosine of the tone/audio description against the sample's audio (see the module docstring)."""

    name = "clap"
    order = 110
    version = "1.1"  # 1.1: no audio analysis at all (no transcript, no tone) where the sample's type promises one
    # and the audio has sound is abstained (was not_applicable: not describing beat describing wrongly)
    requires = "annotation.audio_description and an audio file (or a video with an audio track)"
    description = "CLAP cosine similarity of the audio description against the audio, deterministic windows"
    outputs = (
        OutputSpec("clap_audio_score", True, (-1.0, 1.0),
                   "cos(E_audio, E_text); E_audio = mean of normalised CLAP embeddings of fixed windows "
                   "(window_s, hop_s, at most max_windows evenly chosen), E_text = CLAP text embedding"),
    )

    def __init__(self, params: Optional[dict[str, Any]] = None, ctx=None):
        super().__init__(params, ctx)
        self._backend: Any = None
        self._ref: Optional[ModelRef] = None

    def missing_inputs(self, sample: Sample) -> Optional[str]:
        if sample.audio is None and sample.video is None:
            return "no audio or video file"
        _, status, why = tone_or_abstention(sample)
        if status == "not_applicable":
            return f"no audio description (annotation.audio_description): {why}"
        return None

    def abstention(self, sample: Sample) -> Optional[str]:
        """No audio analysis where one is promised, over audio with sound (decoded here, without the model; silent
        or unreadable audio goes on to :meth:`compute`, which says not_applicable or error)."""
        from mer_eval.domain.media import MediaError, load_audio  # noqa: PLC0415

        _, status, why = tone_or_abstention(sample)
        if status != "abstained":
            return None
        try:
            load_audio(sample.audio or sample.video, sr=16000)
        except MediaError:  # NoAudioError (no stream, digital silence) is one
            return None
        return why

    def cache_key_inputs(self, sample: Sample) -> Optional[dict[str, Any]]:
        return {"text": sample.annotation.audio_description, "audio": sample.audio or sample.video}

    def load(self) -> None:
        precision = str(self.params["precision"])
        device = resolve_device(self.ctx.device, precision)
        why = precision_problem(precision, device)
        if why:
            raise ModelUnavailable(why)
        self._backend, self._ref = load_backend("clap", self.ctx.config, ("transformers", "torch"),
                                                "CLAP backend transformers",
                                                lambda res: _HFClap(res, device, precision), (device, precision))

    def model_ref(self) -> Optional[ModelRef]:
        return self._ref

    def _params(self, be) -> tuple[int, int, int, bool]:
        window_s = float(self.params["window_s"])
        hop_s = float(self.params["hop_s"])
        win = int(round(window_s * be.sr))
        clamped = win > be.max_samples
        win = min(win, be.max_samples)
        hop = max(1, int(round(hop_s * be.sr)))
        return win, hop, int(self.params["max_windows"]), clamped

    def compute(self, samples: list[Sample]) -> dict[str, list[MetricResult]]:
        from mer_eval.domain.media import MediaError, NoAudioError, load_audio  # noqa: PLC0415

        be = self._backend
        win, hop, max_w, clamped = self._params(be)
        out: dict[str, list[MetricResult]] = {}
        prepared = []
        for s in samples:
            src = s.audio or s.video
            try:
                x = load_audio(src, sr=be.sr)
            except NoAudioError as e:
                out[s.id] = self.not_ok(s.id, Status.not_applicable, f"no audio to compare with: {e}")
                continue
            except MediaError as e:
                out[s.id] = self.not_ok(s.id, Status.error, f"cannot read the audio: {e}")
                continue
            starts = window_starts(len(x), win, hop, max_w)
            windows = [x[a: a + win] for a in starts]
            chunks = text_chunks(s.annotation.audio_description or "", be.encode, be.window)
            if not chunks:
                out[s.id] = self.not_ok(s.id, Status.not_applicable, "the audio description has no tokens")
                continue
            det = {
                "audio_source": "audio" if s.audio is not None else "video", "audio_file": str(src),
                "audio_seconds": round(len(x) / be.sr, 3), "sampling_rate": be.sr,
                "windows": len(windows), "window_starts_s": [round(a / be.sr, 3) for a in starts],
                "window_s": win / be.sr, "text_chunks": len(chunks),
                "text_chunk_tokens": [len(c[1]) for c in chunks], "text_window": be.window,
                **be.precision, "device": be.device,
            }
            if clamped:
                det["note"] = f"window_s clamped to the feature extractor's maximum {be.max_samples / be.sr:g} s"
            prepared.append((s, chunks, windows, det))
        if not prepared:
            return out
        tfeat = self.timed(be.text_features, [c[1] for p in prepared for c in p[1]])
        afeat = self.timed(be.audio_features, [w for p in prepared for w in p[2]])
        ti = ai = 0
        for s, chunks, windows, det in prepared:
            t = mean_direction(tfeat[ti: ti + len(chunks)])
            a = mean_direction(afeat[ai: ai + len(windows)])
            ti += len(chunks)
            ai += len(windows)
            from mer_eval.evidence import by_model

            ref = self.model_ref()
            out[s.id] = [self.ok(s.id, "clap_audio_score", float(np.dot(a, t)), details=det,
                                 evidence=by_model(s, ["audio_description"], "audio", ref.id if ref else None))]
        return out
