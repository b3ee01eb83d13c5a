"""ASR word / character error rate of the annotation's transcript.

* Hypothesis: ``annotation.transcript`` (a wrapper such as ``The audio transcript is: '...'`` is removed,
  :func:`mer_eval.domain.text.unwrap_transcript`). No transcript, or an empty one (MER-Factory's
  ``"Speech:\\nAudio Characteristics: ..."`` and ``"N/A"`` read as absent): when the sample's type promises an
  audio analysis (``TRANSCRIPT_TYPES``: MER-Factory's ``mer`` and ``audio``) and it has a reference (human, or
  a Whisper baseline of its audio) with words, the annotation *abstained*: status ``abstained``,
  ``details.transcript_absent = true``, no value. It counts as the worst WER (gates fail it, the composite
  takes its worst, compare counts it a loss, and ``run.json`` has no WER mean beside it, WER having no upper
  bound). Scoring it as the empty hypothesis (WER 1.0, as 1.1 did) ranked it above a wrong transcript with
  insertions (a hallucinated loop of 20 words over 8 reference words is WER 2.5), and not transcribing must not
  score better than transcribing wrongly. A reference without words (Whisper heard no speech) leaves nothing
  to transcribe: ``not_applicable``. Other types (``video``, ``au``, ``image``) promise no transcript:
  ``not_applicable``.
* Reference: ``sample.reference_transcript`` when present (``details.reference = "ground_truth"``), else a
  baseline transcript of ``sample.audio`` (or the video's audio track) by faster-whisper with the model
  ``metrics.asr_wer.model`` (default ``whisper-base``, resolved offline by :mod:`mer_eval.models`; loaded once
  per process; ``details.reference = "whisper:<model id>"``, the baseline text in ``details.reference_text``).
  Baseline transcripts are cached by audio content hash, model and decoding options. A cut-off file is not
  transcribed: before the baseline the file is checked with :mod:`mer_eval.domain.media`'s own checks (a
  RIFF/WAVE ``data`` chunk that declares more bytes than the file holds, ``_wav_shortfall``: a header / size
  read, no decoding; or a part-way decoder failure an earlier ``load_audio`` of the file recorded,
  ``partial_decode``), and such a sample is an ``error`` ("audio cut off: N of M samples decoded"): a baseline
  of part of the clip would be compared with a transcript of all of it.
  ``metrics.asr_wer.batch_files`` (default 1: file by file) > 1 transcribes the baseline files of a batch
  together: files of at most 30 s are laid end to end (1 s of silence between) and go through faster-whisper's
  ``BatchedInferencePipeline`` with one ``clip_timestamps`` clip per file, ``batch_files`` clips per encoder /
  decoder batch; the language is detected per file (``WhisperModel.detect_language``) when not set, and files
  are batched per language. Longer files stay file by file. The batched pipeline decodes without timestamp
  tokens, so its text can differ from the file-by-file text (on the LibriVox and JFK speech: punctuation only,
  2 of 6 files; on short German clips decoded as English, words too); it is a decoding option, so it is in the
  cache key and the fingerprint (``details.whisper_batched``).
* Error rates are jiwer's with the *reference first*: ``jiwer.wer(reference, hypothesis)`` (MER-Factory's
  evaluator passes them the other way round, which swaps insertions and deletions and changes the
  denominator). ``details`` carries hits / substitutions / deletions / insertions.
* Normalisation, applied to both sides before scoring (``metrics.asr_wer.normaliser``):
  ``basic``: lower-case, a hyphen / dash / slash between two word characters becomes a space ("ill-disposed"
  and "ill disposed" are the same two words), remove punctuation (every Unicode ``P*`` character), collapse
  and strip spaces (jiwer transforms); ``whisper``: the ``whisper-normalizer`` package's
  ``EnglishTextNormalizer`` (spelling,
  numbers, contractions), or its ``BasicTextNormalizer`` for CJK text; ``unavailable`` when not installed.
* CJK (Chinese / Japanese / Korean script is at least ``cjk_threshold`` of the reference's characters): word
  boundaries are not written, so ``asr_wer`` is ``not_applicable`` and ``asr_cer`` is an error rate over units
  where every CJK character is one unit and every run of Latin letters / digits (a Latin word) is one unit
  (:func:`mer_eval.domain.text.mixed_tokens`). For other text ``asr_cer`` is jiwer's character error rate (spaces
  count as characters, as in jiwer).
* Independence: when mer-eval's audio stage recorded (``sample.provenance.asr``, read by discovery from
  ``<id>_audio_features.json``: :mod:`mer_eval.domain.records`) that this very transcript was made by the
  same Whisper model (same sha256, else same id) the baseline uses, the WER
  compares the model with itself: the value is still reported, with ``details.independent = false`` and
  ``details.dependence`` saying so (composites leave such results out). A ground-truth reference is always
  independent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Any, Callable, Optional

from pydantic import Field

from mer_eval.metric import Metric, MetricParams, ModelUnavailable, OutputSpec
from mer_eval.domain.records import asr_of
from mer_eval.schema import ASRRecord, MetricResult, ModelRef, Sample, Status, clean_text
from mer_eval.domain.emotion_text import AUDIO_TYPES
from mer_eval.domain.text import _TRANSCRIPT_WRAPPER, cjk_ratio, mixed_tokens, unwrap_transcript


def basic_normaliser() -> Callable[[str], str]:
    import jiwer

    t = jiwer.Compose([jiwer.ToLowerCase(), jiwer.SubstituteRegexes({r"(?<=\w)[-\u2010-\u2015/](?=\w)": " "}),
                       jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip()])
    return lambda s: t(s)


def whisper_normaliser(cjk: bool) -> Callable[[str], str]:
    try:
        if cjk:
            from whisper_normalizer.basic import BasicTextNormalizer as N
        else:
            from whisper_normalizer.english import EnglishTextNormalizer as N
    except ImportError:
        raise ModelUnavailable("normaliser 'whisper' needs the whisper-normalizer package "
                               "(pip install whisper-normalizer)") from None
    n = N()
    return lambda s: " ".join(n(s).split())


def same_model(recorded: Optional[ASRRecord], res: Any) -> bool:
    """Whether the recorded ASR model (sha256, else id) is the resolved model ``res``."""
    if recorded is None:
        return False
    if recorded.model_sha256 and res.sha256:
        return recorded.model_sha256 == res.sha256
    return bool(recorded.model_id) and recorded.model_id == res.id


def _wav_frames(p: Path) -> Optional[tuple[int, int]]:
    """(frames the file holds, frames its ``data`` chunk declares) of a RIFF/WAVE file, from the header and the
    file size; None when it is not one or the header cannot be read."""
    import struct

    try:
        size = p.stat().st_size
        with p.open("rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            pos, align = 12, 0
            while pos + 8 <= size:
                f.seek(pos)
                cid, clen = struct.unpack("<4sI", f.read(8))
                if cid == b"fmt ":
                    fmt = f.read(min(clen, 16))
                    if len(fmt) >= 14:
                        align = struct.unpack("<H", fmt[12:14])[0]
                elif cid == b"data":
                    if not align:
                        return None
                    return (size - (pos + 8)) // align, clen // align
                pos += 8 + clen + (clen & 1)
    except (OSError, struct.error):
        return None
    return None


def cut_off(audio: Path) -> Optional[str]:
    """Why ``audio`` holds only part of the clip its header declares, or None: :mod:`mer_eval.domain.media`'s own
    checks, without decoding (a wav whose ``data`` chunk declares more than the file holds; a part-way decoder
    failure that an earlier ``load_audio`` of this file recorded)."""
    from mer_eval.domain.media import _wav_shortfall, partial_decode

    p = Path(audio)
    short = _wav_shortfall(p)
    if short:
        n = _wav_frames(p)
        if n is not None:
            return f"audio cut off: {n[0]} of {n[1]} samples decoded ({p.name}: {short})"
        return f"audio cut off ({p.name}: {short})"
    broke = partial_decode(p)
    if broke:
        return f"audio cut off: {p.name} decoded only in part ({broke})"
    return None


def error_rates(reference: str, hypothesis: str, cjk: bool) -> dict[str, Any]:
    """jiwer figures for already-normalised texts; ``reference`` first."""
    import jiwer

    if cjk:
        ref_u, hyp_u = " ".join(mixed_tokens(reference)), " ".join(mixed_tokens(hypothesis))
        o = jiwer.process_words(ref_u, hyp_u)
        return {"cer": o.wer, "units": "cjk_characters+latin_words", "hits": o.hits,
                "substitutions": o.substitutions, "deletions": o.deletions, "insertions": o.insertions,
                "reference_units": len(ref_u.split())}
    w = jiwer.process_words(reference, hypothesis)
    c = jiwer.process_characters(reference, hypothesis)
    return {"wer": w.wer, "cer": c.cer, "units": "words", "hits": w.hits, "substitutions": w.substitutions,
            "deletions": w.deletions, "insertions": w.insertions, "reference_words": len(reference.split())}



# MER-Factory types whose annotation carries an audio analysis (transcript first): an absent transcript there is
# an unanswered part, abstained (the same types CLAP and abstained_score hold to it)
TRANSCRIPT_TYPES = AUDIO_TYPES

ABSENT_NOTE = ("the annotation has no transcript although its type ({type}) promises an audio analysis and the "
               "reference has {n} words: abstained (counts as the worst error rate, never better than a wrong "
               "transcript)")


CJK_NO_WER = ("WER needs written word boundaries; CJK text has none (see asr_cer, over characters with Latin words "
              "as units)")


class ASRParams(MetricParams):
    backend: Literal["faster-whisper"] = "faster-whisper"  # openai-whisper: not supported yet
    model: str = "whisper-base"
    language: Optional[str] = None  # None: detect
    normaliser: Literal["basic", "whisper"] = "basic"
    beam_size: int = Field(1, ge=1)
    cjk_threshold: float = Field(0.3, ge=0, le=1)  # CJK share of the reference above which CER is over characters
    batch_files: int = Field(1, ge=1, le=64)  # >1: Whisper baselines of up to this many files per batch


class ASRWER(Metric):
    Params = ASRParams
    model_uses = "whisper-base (only without reference transcript)"
    name = "asr_wer"
    order = 90
    version = "1.2"  # 1.1: an absent transcript of a mer / audio sample scores as empty (was not_applicable);
    # a cut-off audio file gives no Whisper baseline (error). 1.2: an absent transcript is abstained (the worst
    # value: empty's 1.0 ranked above a wrong transcript's insertions)
    requires = "annotation.transcript and (sample.reference_transcript or audio/video for a Whisper baseline)"
    description = "WER / CER of the annotation's transcript against the ground truth or a Whisper baseline."
    outputs = (
        OutputSpec("asr_wer", False, (0.0, None), "(S + D + I) / N words of the reference (jiwer.wer(ref, hyp))"),
        OutputSpec("asr_cer", False, (0.0, None),
                   "(S + D + I) / N characters of the reference (CJK: characters + Latin words as units)"),
    )

    def __init__(self, params: Optional[dict[str, Any]] = None, ctx: Any = None):
        super().__init__(params, ctx)
        self._res: Any = None

    # ---- inputs -----------------------------------------------------------------------------------
    @staticmethod
    def hypothesis(sample: Sample) -> Optional[str]:
        """The transcript, unwrapped; None when absent, empty, MER-Factory's "N/A" (:func:`clean_text`) or an
        empty wrapper (``The audio transcript is: ''``)."""
        t = clean_text(sample.annotation.transcript)
        if t is None:
            return None
        m = _TRANSCRIPT_WRAPPER.match(t)
        if m and not m.group("t").strip(" '\"“”‘’「」"):
            return None
        return clean_text(unwrap_transcript(t))

    @staticmethod
    def audio_source(sample: Sample) -> Optional[Path]:
        return sample.audio or sample.video

    @staticmethod
    def promises_transcript(sample: Sample) -> bool:
        return getattr(sample.type, "value", sample.type) in TRANSCRIPT_TYPES

    def missing_inputs(self, sample: Sample) -> Optional[str]:
        if self.hypothesis(sample) is None and not self.promises_transcript(sample):
            return (f"annotation has no transcript ({getattr(sample.type, 'value', sample.type)} annotations "
                    "promise none)")
        if not (sample.reference_transcript or "").strip() and self.audio_source(sample) is None:
            return ("no reference transcript (sample.reference_transcript) and no audio or video to "
                    "transcribe a Whisper baseline from")
        return None

    def cache_key_inputs(self, sample: Sample) -> Optional[dict[str, Any]]:
        ref = (sample.reference_transcript or "").strip()
        rec = None if ref else asr_of(sample)
        return {"hypothesis": self.hypothesis(sample), "type": getattr(sample.type, "value", sample.type),
                "reference": ref or None,
                "audio": None if ref else self.audio_source(sample), "asr_record": rec.file if rec else None}

    # ---- model ------------------------------------------------------------------------------------
    def _resolution(self) -> Any:
        if self._res is None:
            from mer_eval.models import resolve_from_config

            self._res = resolve_from_config(str(self.params["model"]), self.ctx.config)
        return self._res

    def model_ref(self) -> Optional[ModelRef]:
        res = self._resolution()
        if not res.available:
            return None
        return res.model_ref()

    def _whisper(self) -> Any:
        res = self._resolution()
        if not res.available or res.path is None:
            raise ModelUnavailable(f"Whisper baseline model {self.params['model']}: "
                                   f"{res.reason}")
        try:
            import faster_whisper  # noqa: F401
        except ImportError:
            raise ModelUnavailable("faster-whisper is not installed (pip install faster-whisper)") from None
        from mer_eval.models import load_once

        dev = self.ctx.device if self.ctx.device in ("cpu", "cuda") else "auto"
        compute_type = "int8" if dev == "cpu" else "default"

        def _load() -> Any:
            from faster_whisper import WhisperModel

            return WhisperModel(str(res.path), device=dev, compute_type=compute_type)

        return load_once(("faster-whisper", str(res.path), dev, compute_type), _load)

    def _baseline_key(self, audio: Path, batched: bool) -> Optional[str]:
        cache = self.ctx.cache
        if cache is None:
            return None
        res = self._resolution()
        opts: dict[str, Any] = {"language": self.params["language"], "beam_size": int(self.params["beam_size"])}
        if batched:
            opts["batched_pipeline"] = True
        return cache.key(namespace="asr_wer:baseline", version=self.version, model=(res.id, res.sha256),
                         params=opts, inputs={"audio": Path(audio)})

    def _baselines_batched(self, model: Any, audios: list[Path]) -> dict[Path, dict[str, Any]]:
        """Whisper transcripts of several files through ``BatchedInferencePipeline`` (module docstring); files
        that are longer than 30 s or do not decode are left out (they go file by file)."""
        import numpy as np
        from faster_whisper import BatchedInferencePipeline
        from faster_whisper.audio import decode_audio

        sr = 16000
        out: dict[Path, dict[str, Any]] = {}
        todo: dict[Optional[str], list[tuple[Path, np.ndarray, float]]] = {}
        for a in dict.fromkeys(audios):
            key = self._baseline_key(a, True)
            hit = self.ctx.cache.get(key) if key is not None else None
            if hit is not None:
                out[a] = {**hit, "cached": True}
                continue
            try:
                x = decode_audio(str(a), sampling_rate=sr)
            except (OSError, ValueError, RuntimeError):
                continue  # the file-by-file path reports the error
            if not 0 < len(x) <= 30 * sr:
                continue
            lang, prob = self.params["language"], 1.0
            if lang is None:
                lang, prob, _ = self.timed(model.detect_language, x)
            todo.setdefault(lang, []).append((a, x, float(prob)))
        pipe = BatchedInferencePipeline(model)
        gap = np.zeros(sr, dtype=np.float32)
        bs = int(self.params["batch_files"])
        for lang, items in todo.items():
            for i in range(0, len(items), bs):
                group = items[i: i + bs]
                clips, parts, pos = [], [], 0
                for _a, x, _p in group:
                    clips.append({"start": pos / sr, "end": (pos + len(x)) / sr})
                    parts += [x, gap]
                    pos += len(x) + len(gap)

                def _run() -> list[Any]:
                    segs, _info = pipe.transcribe(np.concatenate(parts), language=lang,
                                                  beam_size=int(self.params["beam_size"]), clip_timestamps=clips,
                                                  batch_size=len(clips), without_timestamps=True)
                    return list(segs)

                texts: list[list[str]] = [[] for _ in clips]
                for seg in self.timed(_run):
                    j = max(k for k, c in enumerate(clips) if c["start"] <= seg.start + 1e-3)
                    texts[j].append(seg.text.strip())
                for (a, x, prob), t in zip(group, texts):
                    base = {"text": " ".join(t).strip(), "language": lang, "language_probability": round(prob, 4),
                            "duration_s": round(len(x) / sr, 3), "batched": True}
                    key = self._baseline_key(a, True)
                    if key is not None:
                        self.ctx.cache.put(key, base)
                    out[a] = base
        return out

    def _baseline(self, model: Any, audio: Path) -> dict[str, Any]:
        """Whisper's transcript of ``audio`` (cached by content hash, model and decoding options)."""
        cache = self.ctx.cache
        opts = {"language": self.params["language"], "beam_size": int(self.params["beam_size"])}
        key = self._baseline_key(audio, False)
        if key is not None:
            hit = cache.get(key)
            if hit is not None:
                return {**hit, "cached": True}

        def _run() -> tuple[list[Any], Any]:
            segments, info = model.transcribe(str(audio), language=opts["language"], beam_size=opts["beam_size"])
            return list(segments), info

        segs, info = self.timed(_run)
        out = {"text": " ".join(s.text.strip() for s in segs).strip(), "language": info.language,
               "language_probability": round(float(info.language_probability), 4),
               "duration_s": round(float(info.duration), 3)}
        if key is not None:
            cache.put(key, out)
        return out

    def _self_reference(self, sample: Sample) -> Optional[str]:
        """Why the Whisper baseline is not independent of the hypothesis, or None."""
        rec = asr_of(sample)
        if rec is None:
            return None
        res = self._resolution()
        if rec.transcript is None or not same_model(rec, res):
            return None
        norm = basic_normaliser()
        if norm(rec.transcript) != norm(self.hypothesis(sample) or ""):
            return None
        return (f"{rec.file.name} records that this transcript was made by {res.id}, the model the Whisper baseline "
                "uses: the WER compares the model with itself")

    # ---- scoring ----------------------------------------------------------------------------------
    def compute(self, samples: list[Sample]) -> dict[str, list[MetricResult]]:
        out: dict[str, list[MetricResult]] = {}
        model: Any = None
        model_error: Optional[str] = None
        thr = float(self.params["cjk_threshold"])
        batched: dict[Path, dict[str, Any]] = {}
        need = [self.audio_source(s) for s in samples if not (s.reference_transcript or "").strip()]
        # header / size checks only (no decoding): a cut-off file gets no baseline
        cut = {a: cut_off(a) for a in dict.fromkeys(need) if a is not None}
        whole = [a for a in need if a is not None and not cut.get(a)]
        if int(self.params["batch_files"]) > 1 and len(whole) > 1:
            try:
                model = self._whisper()
            except ModelUnavailable as e:
                model_error = str(e)
            if model is not None:
                batched = self._baselines_batched(model, whole)
        for s in samples:
            hyp = self.hypothesis(s) or ""
            ref = (s.reference_transcript or "").strip()
            details: dict[str, Any] = {}
            if not hyp:  # missing_inputs let it through: its type promises a transcript
                details["transcript_absent"] = True
            ref_model: Optional[ModelRef] = None
            if ref:
                details["reference"] = "ground_truth"
            else:
                audio = self.audio_source(s)
                if cut.get(audio):
                    out[s.id] = self.not_ok(s.id, Status.error, str(cut[audio]), details=details)
                    continue
                if model is None and model_error is None:
                    try:
                        model = self._whisper()
                    except ModelUnavailable as e:
                        model_error = str(e)
                if model_error is not None:
                    out[s.id] = self.not_ok(s.id, Status.unavailable, model_error)
                    continue
                try:
                    base = batched.get(audio) or self._baseline(model, audio)
                except Exception as e:  # noqa: BLE001 (one unreadable file is that sample's error, not the batch's)
                    out[s.id] = self.not_ok(s.id, Status.error,
                                            f"Whisper baseline of {audio} failed: {type(e).__name__}: {e}")
                    continue
                ref = base["text"]
                ref_model = self.model_ref()
                details.update({"reference": f"whisper:{self._resolution().id}", "reference_text": ref,
                                "whisper_language": base["language"],
                                "whisper_language_probability": base["language_probability"],
                                "audio_duration_s": base["duration_s"], "whisper_batched": bool(base.get("batched"))})
                if not ref:
                    out[s.id] = self.not_ok(s.id, Status.not_applicable,
                                            f"the Whisper baseline found no speech in {audio}", details=details)
                    continue
                dep = self._self_reference(s)
                if dep is not None:
                    details.update(independent=False, dependence=dep)
            cjk = cjk_ratio(ref) >= thr
            norm_name = str(self.params["normaliser"])
            try:
                norm = whisper_normaliser(cjk) if norm_name == "whisper" else basic_normaliser()
            except ModelUnavailable as e:
                out[s.id] = self.not_ok(s.id, Status.unavailable, str(e), details=details)
                continue
            ref_n, hyp_n = norm(ref), norm(hyp)
            details.update({"normaliser": norm_name, "reference_normalised": ref_n, "hypothesis_normalised": hyp_n,
                            "script": "cjk" if cjk else "latin"})
            if not ref_n.strip():
                out[s.id] = self.not_ok(s.id, Status.not_applicable, "reference transcript is empty after "
                                        f"{norm_name} normalisation", details=details)
                continue
            if not hyp:  # a reference with words and no transcript: the annotation did not answer
                why = ABSENT_NOTE.format(type=getattr(s.type, "value", s.type), n=len(ref_n.split()))
                if cjk:
                    out[s.id] = self.not_ok(s.id, Status.not_applicable, CJK_NO_WER, ["asr_wer"], details=details) \
                        + self.not_ok(s.id, Status.abstained, why, ["asr_cer"], details=details, model=ref_model)
                else:  # the model is the Whisper that heard the words (None: a human reference)
                    out[s.id] = self.not_ok(s.id, Status.abstained, why, details=details, model=ref_model)
                continue
            er = error_rates(ref_n, hyp_n, cjk)
            details.update({k: v for k, v in er.items() if k not in ("wer", "cer")})
            from mer_eval.schema import Evidence, InputRef, Relation

            refs = [InputRef(name="transcript", producer="asr" if s.annotation.provider else "llm"),
                    InputRef(name="reference_transcript" if s.reference_transcript else "audio",
                             producer="human" if s.reference_transcript else "asr", model=details.get("reference"))]
            if details.get("independent") is False:
                ev = Evidence(relation=Relation.self_check, independent=False, compared=refs,
                              reason=str(details.get("dependence")))
            else:
                ev = Evidence(relation=Relation.independent, independent=True, compared=refs,
                              reason="a human reference transcript" if s.reference_transcript else
                              "a Whisper baseline other than the model that wrote the transcript")
            res: list[MetricResult] = []
            if cjk:
                res.extend(self.not_ok(s.id, Status.not_applicable, CJK_NO_WER, ["asr_wer"], details=details))
            else:
                res.append(self.ok(s.id, "asr_wer", er["wer"], details=details, model=ref_model, evidence=ev))
            res.append(self.ok(s.id, "asr_cer", er["cer"], details=details, model=ref_model, evidence=ev))
            out[s.id] = res
        return out
