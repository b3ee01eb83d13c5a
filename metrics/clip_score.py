"""CLIP image-text score: does the visual description match what is seen?

Text: the sample's visual description (``Annotation.visual_text()``: ``visual_objective``, else
``image_description``, else ``video_content``). Image: the still it is about (``Sample.frame_image()``:
the peak-frame image, else the image). A video sample without such a still uses the frame of
``annotation.peak_frame`` decoded from the video (OpenFace frames are 1-based), else the video's middle
frame; ``details.frame_source`` says which. No visual description where the sample's type promises one
(``mer``, ``video``, ``image``: :func:`mer_eval.domain.emotion_text.visual_or_abstention`) and there is an
image or video is ``abstained``, the worst value: not describing never scores better than describing wrongly.
Other types, or no image / video, are ``not_applicable``.

Outputs

* ``clip_image_score`` = CLIPScore = 2.5 · max(cos(E_image, E_text), 0) (Hessel et al. 2021,
  "CLIPScore: A Reference-free Evaluation Metric for Image Captioning"), range 0..2.5.
* ``clip_image_cosine`` = the raw cosine cos(E_image, E_text), range -1..1.
* ``clip_video_score`` (only with ``video_frames: k > 0`` and a video): the mean CLIPScore of the text
  against ``k`` evenly spaced frames (centres of k equal segments, :func:`mer_eval.domain.media.evenly_spaced`);
  ``not_applicable`` otherwise, with the reason.

Long text: CLIP's text window is 77 tokens (75 without the start/end tokens). A description that does
not fit is never silently truncated: it is split into sentences (:func:`mer_eval.domain.text.split_sentences`),
a sentence still longer than the window is cut into consecutive windows of tokens, every chunk is
embedded, and the text embedding is the mean of the L2-normalised chunk embeddings (re-normalised).
``details.text_chunks`` gives the number of chunks and ``details.text_chunk_tokens`` their lengths.

Backends: ``open_clip`` (default; model key ``clip``: a folder with ``open_clip_config.json`` loads as
``local-dir:``, otherwise ``open_clip.create_model_and_transforms(<model>, pretrained=<weights file>)``)
and ``transformers`` (model key ``clip-hf``: ``CLIPModel`` + ``CLIPProcessor``). All texts of a batch go
through one text forward and all images through one image forward.

Precision (``metrics.clip.precision`` / ``score --precision``, shared with CLAP and NLI; see
:func:`apply_precision`): ``fp32`` (default); ``int8`` = torch dynamic quantisation of every ``nn.Linear``
(int8 weights, activations quantised per batch; convolutions, embeddings and attention input projections
stay fp32), CPU only; ``fp16`` on CUDA only; ``bf16`` on CUDA (where the GPU supports it) or CPU. A
precision the device cannot run is ``unavailable`` with the reason, never silently fp32. The precision is a
parameter, so it is in every result's ``params``, the cache key and the comparability fingerprint
(``params_hash``), and ``details.precision`` says what ran.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal, Any, Callable, Optional

import numpy as np

from pydantic import Field

from mer_eval.models import ModelSpec
from mer_eval.metric import Metric, MetricParams, ModelUnavailable, OutputSpec
from mer_eval.schema import MetricResult, ModelRef, Sample, Status
from mer_eval.domain.emotion_text import visual_or_abstention
from mer_eval.domain.text import split_sentences

CLIPSCORE_W = 2.5


# ---- helpers shared with the CLAP metric --------------------------------------------------------

Precision = Literal["fp32", "int8", "fp16", "bf16"]
PRECISIONS = ("fp32", "int8", "fp16", "bf16")


def resolve_device(device: Optional[str], precision: str = "fp32") -> str:
    """``auto``: CUDA when there is one, except for ``int8`` (dynamic quantisation runs on the CPU only)."""
    if device in (None, "", "auto"):
        import torch  # noqa: PLC0415

        return "cuda" if torch.cuda.is_available() and precision != "int8" else "cpu"
    return str(device)


def precision_problem(precision: str, device: str) -> Optional[str]:
    """Why ``precision`` cannot run on ``device`` (the metric is then ``unavailable``), or None."""
    try:
        import torch  # noqa: PLC0415
    except ImportError:  # load_backend names the missing package
        return None

    cuda = str(device).startswith("cuda")
    if precision not in PRECISIONS:
        return f"precision {precision!r} is not one of {', '.join(PRECISIONS)}"
    if precision == "int8":
        if cuda:
            return ("precision int8 (torch dynamic quantisation) runs on the CPU only; use --device cpu, or "
                    "--precision fp16/bf16 on CUDA")
        if not torch.backends.quantized.supported_engines or \
                torch.backends.quantized.engine in (None, "none"):
            return "precision int8: this torch build has no quantized CPU engine (torch.backends.quantized)"
    if precision == "fp16" and not cuda:
        return "precision fp16 runs on CUDA only (--device cuda); on the CPU use fp32, int8 or bf16"
    if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        return f"precision bf16: the GPU {torch.cuda.get_device_name()} does not support bfloat16"
    return None


def apply_precision(model: Any, precision: str, device: str) -> tuple[Any, Any, dict[str, Any]]:
    """``(model, float input dtype, details)`` for ``precision`` on ``device`` (checked first with
    :func:`precision_problem`; a problem raises :class:`ModelUnavailable`).

    ``int8``: ``torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)``; exact-type
    match, so ``nn.MultiheadAttention``'s output projection (a Linear subclass) stays fp32. ``fp16`` /
    ``bf16``: every parameter and buffer cast; float inputs (pixels, spectrograms) are cast to match and
    outputs read back as fp32.
    """
    import torch  # noqa: PLC0415

    why = precision_problem(precision, device)
    if why:
        raise ModelUnavailable(why)
    if precision == "int8":
        n = sum(1 for m in model.modules() if type(m) is torch.nn.Linear)
        if n == 0:
            raise ModelUnavailable("precision int8: the model has no nn.Linear layer to quantise")
        with warnings.catch_warnings():  # torch >= 2.10 deprecates torch.ao.quantization in favour of torchao
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        for m in model.modules():  # open_clip reads the compute dtype from an MLP weight unless told (int8 hook)
            if isinstance(m, torch.ao.nn.quantized.dynamic.Linear):
                m.int8_original_dtype = torch.float32
        return model, torch.float32, {"precision": "int8", "quantised_linear_layers": n,
                                      "quantised_engine": torch.backends.quantized.engine}
    if precision in ("fp16", "bf16"):
        dtype = torch.float16 if precision == "fp16" else torch.bfloat16
        return model.to(dtype), dtype, {"precision": precision}
    return model, torch.float32, {"precision": "fp32"}


def text_chunks(text: str, encode: Callable[[str], list[int]], window: int) -> list[tuple[str, list[int]]]:
    """``(chunk text, token ids without special tokens)`` pieces that each fit ``window`` tokens.

    The whole text when it fits; else its sentences, and sentences still too long cut into windows.
    """
    ids = encode(text)
    if len(ids) <= window:
        return [(text, ids)]
    out: list[tuple[str, list[int]]] = []
    for sent in split_sentences(text) or [text]:
        sids = encode(sent)
        if not sids:
            continue
        if len(sids) <= window:
            out.append((sent, sids))
        else:
            for i in range(0, len(sids), window):
                out.append((f"{sent} [tokens {i}-{min(i + window, len(sids)) - 1}]", sids[i: i + window]))
    return out


def special_tokens(tok) -> tuple[list[int], list[int]]:
    """The special token ids a transformers tokenizer puts before and after a text."""
    plain = tok("a", add_special_tokens=False)["input_ids"]
    full = tok("a", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i: i + len(plain)] == plain:
            return list(full[:i]), list(full[i + len(plain):])
    raise ModelUnavailable(f"cannot tell the special tokens of tokenizer {type(tok).__name__}")


def hf_text_window(tok, max_positions: Optional[int], n_special: int, position_offset: int = 0) -> int:
    limits = [int(max_positions) - position_offset] if max_positions else []
    mml = getattr(tok, "model_max_length", None)
    if mml and mml < 1_000_000:
        limits.append(int(mml))
    if not limits:
        raise ModelUnavailable(f"tokenizer {type(tok).__name__} states no maximum length")
    return min(limits) - n_special


def pad_ids(seqs: list[list[int]], pad_id: int):
    import torch  # noqa: PLC0415

    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def as_features(out: Any):
    """transformers 5 returns a model output whose ``pooler_output`` is the projected embedding."""
    if hasattr(out, "pooler_output") and not hasattr(out, "shape"):
        return out.pooler_output
    return out


def encoder_forward(be: Any, fn: Callable[..., Any], **inputs: Any) -> Any:
    """One encoder pass ``fn(**inputs)`` of a backend (CLIP, CLAP, NLI), in inference mode, on inputs already
    prepared and on the device. A backend whose ``recorder`` is a list (set by ``bench/score_bench.py
    --encoder-efficiency``, never in a score run) also keeps ``(fn, inputs)``, so that the very same passes can be
    replayed and timed alone: the encoder's raw throughput at the pipeline's own batches."""
    rec = getattr(be, "recorder", None)
    if rec is not None:
        rec.append((fn, inputs))
    with be.torch.inference_mode():
        return fn(**inputs)


def normalise(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def mean_direction(rows: np.ndarray) -> np.ndarray:
    """Mean of L2-normalised rows, re-normalised."""
    return normalise(normalise(rows).mean(axis=0))


def load_backend(key: str, config: Any, modules: tuple[str, ...], what: str,
                 make: Callable[[Any], Any], extra_key: tuple = ()) -> tuple[Any, ModelRef]:
    """Resolve model ``key``, load it once per process with ``make(resolution)``, and say exactly why not.

    Shared by CLIP, CLAP and NLI: missing packages, missing weights and weights that fail to load all
    become :class:`ModelUnavailable` with the model id, path and source.
    """
    import importlib.util  # noqa: PLC0415

    from mer_eval.models import load_once, resolve_from_config  # noqa: PLC0415

    for mod in modules:
        if importlib.util.find_spec(mod) is None:
            raise ModelUnavailable(f"{what} needs the python package {mod}")
    res = resolve_from_config(key, config)
    if not res.available:
        raise ModelUnavailable(res.reason or f"{res.id} not found")
    try:
        backend = load_once((key, str(res.path), res.sha256) + tuple(extra_key), lambda: make(res))
    except ModelUnavailable:
        raise
    except (OSError, RuntimeError, ValueError) as e:
        raise ModelUnavailable(f"{res.id} at {res.path} ({res.source}) did not load: {type(e).__name__}: {e}") from e
    return backend, res.model_ref()


class HFTextTower:
    """Text side shared by the transformers CLIP and CLAP backends (``self.tok``, ``self.model``, ``self.pre``,
    ``self.post``, ``self.pad_id``, ``self.device``, ``self.torch`` set by the subclass)."""

    def encode(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def text_features(self, chunks: list[list[int]]) -> np.ndarray:
        ids, mask = pad_ids([self.pre + c + self.post for c in chunks], self.pad_id)
        out = encoder_forward(self, self.model.get_text_features, input_ids=ids.to(self.device),
                              attention_mask=mask.to(self.device))
        return as_features(out).float().cpu().numpy()


# ---- backends -----------------------------------------------------------------------------------

class _OpenClip:
    def __init__(self, res, model_name: str, pretrained: str, device: str, precision: str = "fp32"):
        import open_clip  # noqa: PLC0415
        import torch  # noqa: PLC0415

        p = res.path
        if p is not None and p.is_dir() and (p / "open_clip_config.json").is_file():
            ident = f"local-dir:{p}"
            model, _, preprocess = open_clip.create_model_and_transforms(ident, device=device)
            tok = open_clip.get_tokenizer(ident)
            self.how = ident
        else:
            weights = str(res.weights_file) if res.weights_file else pretrained  # download source: the tag
            model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=weights,
                                                                         device=device)
            tok = open_clip.get_tokenizer(model_name)
            self.how = f"{model_name} pretrained={weights}"
        if not (hasattr(tok, "encode") and hasattr(tok, "sot_token_id")):
            raise ModelUnavailable(f"open_clip tokenizer {type(tok).__name__} is not supported (needs the "
                                   "BPE SimpleTokenizer to split long text into windows)")
        self.model, self.dtype, self.precision = apply_precision(model.eval(), precision, device)
        self.preprocess = preprocess
        self.tok = tok
        self.device = device
        self.ctx_len = int(getattr(tok, "context_length", 77) or 77)
        self.window = self.ctx_len - 2
        self.torch = torch

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text))

    def text_features(self, chunks: list[list[int]]) -> np.ndarray:
        torch = self.torch
        ids = torch.zeros((len(chunks), self.ctx_len), dtype=torch.long)
        for i, c in enumerate(chunks):
            seq = [self.tok.sot_token_id] + c + [self.tok.eot_token_id]
            ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        return encoder_forward(self, self.model.encode_text, text=ids.to(self.device)).float().cpu().numpy()

    def image_features(self, images: list) -> np.ndarray:
        torch = self.torch
        x = torch.stack([self.preprocess(im) for im in images]).to(self.device, self.dtype)
        return encoder_forward(self, self.model.encode_image, image=x).float().cpu().numpy()


class _HFClip(HFTextTower):
    def __init__(self, res, device: str, precision: str = "fp32"):
        import torch  # noqa: PLC0415
        from transformers import CLIPModel, CLIPProcessor  # noqa: PLC0415

        src = str(res.path) if res.path is not None else res.id
        self.model, self.dtype, self.precision = apply_precision(CLIPModel.from_pretrained(src).to(device).eval(),
                                                                 precision, device)
        self.proc = CLIPProcessor.from_pretrained(src)
        self.tok = self.proc.tokenizer
        self.pre, self.post = special_tokens(self.tok)
        self.window = hf_text_window(self.tok, self.model.config.text_config.max_position_embeddings,
                                     len(self.pre) + len(self.post))
        pad = self.tok.pad_token_id
        self.pad_id = pad if pad is not None else (self.post[-1] if self.post else 0)
        self.device = device
        self.torch = torch
        self.how = src

    def image_features(self, images: list) -> np.ndarray:
        px = self.proc.image_processor(images=images, return_tensors="pt")["pixel_values"].to(self.device, self.dtype)
        out = encoder_forward(self, self.model.get_image_features, pixel_values=px)
        return as_features(out).float().cpu().numpy()


# ---- the metric ---------------------------------------------------------------------------------


class ClipParams(MetricParams):
    backend: Literal["open_clip", "transformers"] = "open_clip"
    model: str = "ViT-B-32"
    pretrained: str = "laion2b_s34b_b79k"
    video_frames: int = Field(0, ge=0, le=64)  # 0: peak frame only; k: also the mean over k frames
    precision: Precision = "fp32"  # int8 (CPU), fp16 (CUDA), bf16; see the module docstring


class ClipImageText(Metric):
    Params = ClipParams
    models = (
        ModelSpec("clip", "CLIP image-text score", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "open_clip",
                  license="MIT", note="open_clip ViT-B-32 laion2b_s34b_b79k; no offline wheel exists"),
        ModelSpec("clip-hf", "CLIP image-text score (transformers backend)", "openai/clip-vit-base-patch32", "hf",
                  license="MIT", note="transformers CLIPModel"),
    )
    model_uses = "clip (open_clip; clip-hf with backend transformers)"
    """CLIPScore of the visual description against the peak frame / image (see the module docstring).

    Text longer than CLIP's 77-token window is split into sentences, over-long sentences into token
    windows; the text embedding is the mean of the normalised chunk embeddings
    (``details.text_chunks``). No silent truncation.
    """

    name = "clip"
    order = 100
    version = "1.1"  # 1.1: no visual description where the sample's type promises one is abstained (was
    # not_applicable, which a gate skipped and the composite multiplied by 1: not describing beat describing wrongly)
    requires = ("a visual description (visual_objective / image_description / video_content) and a peak-frame "
                "image, image or video")
    description = "CLIPScore (Hessel et al. 2021) of the visual description against the peak frame or image"
    outputs = (
        OutputSpec("clip_image_score", True, (0.0, 2.5),
                   "CLIPScore = 2.5 * max(cos(E_image, E_text), 0) (Hessel et al. 2021); E = CLIP embeddings"),
        OutputSpec("clip_image_cosine", True, (-1.0, 1.0),
                   "raw cosine cos(E_image, E_text) of the CLIP image and text embeddings", primary=False),
        OutputSpec("clip_video_score", True, (0.0, 2.5),
                   "mean over k evenly spaced video frames of CLIPScore = 2.5 * max(cos(E_frame, E_text), 0)",
                   primary=False),
    )

    def __init__(self, params: Optional[dict[str, Any]] = None, ctx=None):
        super().__init__(params, ctx)
        self._backend: Any = None
        self._ref: Optional[ModelRef] = None

    # -- inputs --
    def _video_frames_k(self) -> int:
        return int(self.params["video_frames"] or 0)

    def missing_inputs(self, sample: Sample) -> Optional[str]:
        if sample.frame_image() is None and sample.video is None:
            return "no peak-frame image, image or video to compare the visual description with"
        _, status, why = visual_or_abstention(sample)
        if status == "not_applicable":
            return f"no visual description (visual_objective, image_description and video_content): {why}"
        return None

    def abstention(self, sample: Sample) -> Optional[str]:
        _, status, why = visual_or_abstention(sample)
        return why if status == "abstained" else None

    def cache_key_inputs(self, sample: Sample) -> Optional[dict[str, Any]]:
        img = sample.frame_image()
        return {
            "text": sample.annotation.visual_text(),
            "image": img,
            "video": sample.video if (img is None or self._video_frames_k() > 0) else None,
            "peak_frame": sample.annotation.peak_frame if img is None else None,
        }

    # -- model --
    def load(self) -> None:
        backend = self.params["backend"]
        key = "clip" if backend == "open_clip" else "clip-hf"
        module = "open_clip" if backend == "open_clip" else "transformers"
        precision = str(self.params["precision"])
        device = resolve_device(self.ctx.device, precision)
        why = precision_problem(precision, device)
        if why:
            raise ModelUnavailable(why)
        model_name = str(self.params["model"])
        pretrained = str(self.params["pretrained"])
        if backend == "open_clip":
            make = lambda res: _OpenClip(res, model_name, pretrained, device, precision)  # noqa: E731
        else:
            make = lambda res: _HFClip(res, device, precision)  # noqa: E731
        self._backend, self._ref = load_backend(key, self.ctx.config, (module, "torch"), f"CLIP backend {backend}",
                                                make, (backend, model_name, device, precision))

    def model_ref(self) -> Optional[ModelRef]:
        return self._ref

    # -- scoring --
    def _still(self, s: Sample) -> tuple[Any, dict[str, Any]]:
        from mer_eval.domain import media  # noqa: PLC0415

        img = s.frame_image()
        if img is not None:
            src = "peak_frame_image" if s.peak_frame_image is not None else "image"
            return media.load_image(img), {"frame_source": src, "image": str(img)}
        pf = s.annotation.peak_frame
        if pf is not None and pf >= 1:
            return media.frame_at(s.video, pf - 1), {
                "frame_source": f"video frame {pf - 1} (0-based) = annotation.peak_frame {pf} (no peak-frame image)",
                "video": str(s.video)}
        idx, ts, im = media.middle_frame(s.video)
        return im, {"frame_source": f"video middle frame {idx} at {ts:.3f}s (no peak frame)",
                    "video": str(s.video)}

    def compute(self, samples: list[Sample]) -> dict[str, list[MetricResult]]:
        from mer_eval.domain.media import MediaError  # noqa: PLC0415

        be = self._backend
        k = self._video_frames_k()
        out: dict[str, list[MetricResult]] = {}
        prepared = []  # (sample, chunks, still image, frames, details, video_reason)
        for s in samples:
            text = s.annotation.visual_text() or ""
            try:
                still, det = self._still(s)
                frames: list = []
                vreason = None
                if k <= 0:
                    vreason = "video_frames is 0 (metrics.clip.video_frames); only the still is scored"
                elif s.video is None:
                    vreason = "no video for the frame-sampled score"
                else:
                    frames = media_frames(s.video, k)
            except MediaError as e:
                out[s.id] = self.not_ok(s.id, Status.error, f"cannot read the image/video: {e}")
                continue
            chunks = text_chunks(text, be.encode, be.window)
            if not chunks:
                out[s.id] = self.not_ok(s.id, Status.not_applicable, "the visual description has no tokens")
                continue
            det.update(text_chunks=len(chunks), text_chunk_tokens=[len(c[1]) for c in chunks],
                       text_window=be.window, **be.precision, device=be.device)
            prepared.append((s, chunks, still, frames, det, vreason))
        if not prepared:
            return out
        all_chunks = [c[1] for p in prepared for c in p[1]]
        all_images = [im for p in prepared for im in [p[2]] + [f[2] for f in p[3]]]
        tfeat = self.timed(be.text_features, all_chunks)
        ifeat = normalise(self.timed(be.image_features, all_images))
        ti = ii = 0
        for s, chunks, _still, frames, det, vreason in prepared:
            t = mean_direction(tfeat[ti: ti + len(chunks)])
            ti += len(chunks)
            cos = float(np.dot(ifeat[ii], t))
            ii += 1
            from mer_eval.evidence import by_model

            ref = self.model_ref()
            ev = by_model(s, [f for f in ("visual_objective", "image_description", "video_content")
                              if getattr(s.annotation, f)], "image", ref.id if ref else None)
            res = [
                self.ok(s.id, "clip_image_score", CLIPSCORE_W * max(cos, 0.0), details=dict(det), evidence=ev),
                self.ok(s.id, "clip_image_cosine", cos, details=dict(det), evidence=ev),
            ]
            if frames:
                fcos = [float(np.dot(ifeat[ii + j], t)) for j in range(len(frames))]
                ii += len(frames)
                vdet = {**det, "frames": [f[0] for f in frames], "frame_times": [round(f[1], 3) for f in frames],
                        "frame_cosines": fcos, "video": str(s.video)}
                res.append(self.ok(s.id, "clip_video_score",
                                   float(np.mean([CLIPSCORE_W * max(c, 0.0) for c in fcos])), details=vdet,
                                   evidence=ev))
            else:
                res += self.not_ok(s.id, Status.not_applicable, vreason or "no frames", ["clip_video_score"])
            out[s.id] = res
        return out


def media_frames(video: Path, k: int) -> list:
    from mer_eval.domain import media  # noqa: PLC0415

    return media.read_video_frames(video, k=k)
