"""``mer-eval generate``: raw clips -> MER-Factory-layout annotations.

Per sample, the stage sequence of its processing type (MER-Factory's types):

======  ===========================================================================================
type    stages
======  ===========================================================================================
mer     media -> au -> peaks -> au_text -> audio -> visual -> describe -> synthesis
au      au -> peaks -> au_text
audio   media -> audio -> describe (tone)
video   media -> visual -> describe (video description)
image   au -> peaks -> au_text -> visual -> describe (image + AU description) -> synthesis
======  ===========================================================================================

Measuring stages (``generators/stages``) run in threads (``asyncio.to_thread``); ``describe`` and
``synthesis`` ask the provider (async, rate-limited in the provider). Samples run concurrently under a
semaphore of ``generate.concurrency``. A sample whose stage fails gets ``OUT/error_logs/<id>.json`` (stage,
reason) and the run goes on; provider errors are never written as annotation text.

Provenance, in ``mer_eval_meta.json`` (read by :func:`mer_eval.evidence.provenance_from_meta`):

* ``text_origins``: for every annotation field written (mer_eval's annotation names), who produced it
  (``llm`` / ``template`` / ``rule`` / ``asr`` / ``detector``), from which fields or media inputs
  (``made_from``), in which stage, with which provider / model;
* ``conclusion_from``: the signals a deterministic rule decided the concluded emotion from (the offline
  provider's vote, or ``["label"]`` when label-aware), ``null`` when a model decided or nothing concluded;
* ``flags``: ``{flag: reason}``: ``truncated_llm_output`` (an answer cut at the token limit, cached or
  not, naming the fields), ``partial_audio`` (the media stage decoded less audio than the stream declares).

Resume: a sample is skipped when its result JSON and ``mer_eval_meta.json`` exist, the meta's
``config_hash`` equals this run's and its ``inputs_sha256`` equal the inputs' (media content + label);
``force`` redoes it. ``OUT/run.json`` is the :class:`RunManifest`; the run holds ``RunStore.locked()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import json
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mer_eval.generators import output_checks, synthesis

from mer_eval.cache import Cache, file_sha256
from mer_eval.domain import records
from mer_eval.config import Config
from mer_eval.schema import SCHEMA_VERSION, Sample
from mer_eval.store import RunStore, atomic_write_json

META_NAME = records.META_NAME
PIPELINE_VERSION = "1"

SEQUENCES: dict[str, tuple[str, ...]] = {
    "mer": ("media", "au", "peaks", "au_text", "audio", "visual", "describe", "synthesis"),
    "au": ("au", "peaks", "au_text"),
    "audio": ("media", "audio", "describe"),
    "video": ("media", "visual", "describe"),
    "image": ("au", "peaks", "au_text", "visual", "describe", "synthesis"),
}
RESULT_SUFFIX = {
    "mer": "_merr_data.json",
    "au": "_au_analysis.json",
    "audio": "_audio_analysis.json",
    "video": "_video_analysis.json",
    "image": "_image_analysis.json",
}
# stage name here -> candidate module names under generators/stages (the audio stage is audio_features)
STAGE_MODULES = {"audio": ("audio_features", "audio")}
PROVIDER_STAGES = ("describe", "synthesis")
# result-JSON field an ask() wrote -> the annotation field (mer_eval.schema.Annotation) it becomes
# ("audio_analysis" becomes transcript + audio_description, see _audio_origins)
ASK_FIELDS = {"visual_objective": "visual_objective", "image_visual_description": "image_description",
              "video_content": "video_content", "llm_video_summary": "video_content",
              "llm_au_description": "llm_au_description", "final_summary": "final_summary"}
ASK_STAGES = {"tone": "audio", "visual_description": "visual", "video_description": "visual",
              "au_description": "au_text", "synthesis": "synthesis"}


class SampleFailed(Exception):
    def __init__(self, stage: str, reason: str, **extra: Any):
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason
        self.extra = extra


# ---- stage functions -----------------------------------------------------------------------------

def stage_function(stage: str) -> Callable:
    """``run_<stage>`` from ``mer_eval.generators.stages.<module>``."""
    errors = []
    for mod in STAGE_MODULES.get(stage, (stage,)):
        try:
            m = importlib.import_module(f"mer_eval.generators.stages.{mod}")
        except ModuleNotFoundError as e:
            if e.name and e.name.endswith(f"stages.{mod}"):
                errors.append(f"stages.{mod} is not installed")
                continue
            raise
        for fn in (f"run_{stage}", f"run_{mod}"):
            if hasattr(m, fn):
                return getattr(m, fn)
        errors.append(f"stages.{mod} has no run_{stage}")
    raise SampleFailed(stage, "; ".join(errors))


# ---- hashing ----------------------------------------------------------------------------------------

def generate_config_hash(config: Config, prompt_hashes: dict[str, str]) -> str:
    """What decides the outputs: the generate section (less concurrency, engine and workers: how, never what),
    the provider's config, the models section and the prompts."""
    g = config.generate.model_dump(mode="json")
    for k in ("concurrency", "engine", "workers"):
        g.pop(k, None)
    try:
        prov = config.provider_config(config.generate.provider)
    except KeyError:
        prov = None
    blob = json.dumps({"generate": g, "provider": prov.model_dump(mode="json") if prov else None,
                       "models": config.models.model_dump(mode="json"), "prompts": prompt_hashes,
                       "pipeline": PIPELINE_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def input_hashes(sample: Sample) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for k, p in sorted(sample.media().items()):
        out[k] = file_sha256(p) if Path(p).is_file() else None
    out["label"] = hashlib.sha256(sample.label.encode()).hexdigest() if sample.label else None
    return out


def effective_type(sample: Sample, requested: str) -> tuple[str, str | None]:
    """The processing type for this sample: the requested one, unless the sample lacks its media."""
    has_video, has_audio, has_image = sample.video is not None, sample.audio is not None, sample.image is not None
    if requested in ("mer", "au", "video") and not has_video:
        if has_image:
            return "image", f"type {requested} needs a video; {sample.id} is an image, processed as image"
        if has_audio:
            return "audio", f"type {requested} needs a video; {sample.id} is audio only, processed as audio"
    if requested == "image" and not has_image and not has_video and has_audio:
        return "audio", f"type image needs an image; {sample.id} is audio only, processed as audio"
    if requested == "audio" and not has_audio and not has_video and has_image:
        return "image", f"type audio needs audio; {sample.id} is an image, processed as image"
    return requested, None


# ---- evidence -------------------------------------------------------------------------------------

def _first(d: dict | None, *keys: str) -> Any:
    if not d:
        return None
    for k in keys:
        if d.get(k) not in (None, "", [], {}):
            return d[k]
    return None


def build_evidence(sample: Sample, outputs: dict[str, dict], task: str) -> dict:
    """The measured signals of one sample as the dict synthesis and providers read (see synthesis.py)."""
    peaks = outputs.get("peaks") or {}
    au = outputs.get("au_text") or {}
    audio = outputs.get("audio") or {}
    visual = outputs.get("visual") or {}
    info = peaks.get("overall_peak_frame_info") or {}
    fer = _first(visual, "fer_probabilities", "fer", "peak_fer")
    if isinstance(fer, dict) and isinstance(fer.get("probabilities"), dict):
        fer = fer["probabilities"]
    return {
        "task": task,
        "label": sample.label,
        "peaks": [] if (sample.video is None and sample.image is not None)
        else (peaks.get("chronological_emotion_peaks") or []),
        "au_text": au.get("au_text") or "",
        "top_aus": info.get("top_aus_intensities") or {},
        "au_pseudo_label": au.get("pseudo_label"),
        "au_pseudo_labels": [e["emotion"] if isinstance(e, dict) else str(e)
                             for e in (au.get("pseudo_labels") or {}).get(au.get("au_rule_table") or "", [])],
        "is_image": sample.video is None and sample.image is not None,
        "fer": fer if isinstance(fer, dict) else {},
        "transcript": _first(audio, "transcript", "text"),
        "tone": _first(audio, "tone_description", "tone"),
        "prosody": _first(audio, "prosody") or {},
        "tone_emotion": _first(audio, "tone_emotion"),
        "peak_frame": info.get("frame_number"),
        "peak_time": info.get("timestamp"),
        "visual_objective": "",
        "video_content": "",
    }


# ---- the per-sample runner -------------------------------------------------------------------------

class _Run:
    def __init__(self, store: RunStore, config: Config, provider: Any, prompt_hashes: dict[str, str],
                 config_hash: str, force: bool, progress: Any, tasks: dict[str, Any]):
        self.store = store
        self.config = config
        self.provider = provider
        self.prompt_hashes = prompt_hashes
        self.config_hash = config_hash
        self.force = force
        self.progress = progress
        self.tasks = tasks
        self.task = config.generate.task
        self.results: dict[str, dict] = {}
        self.stage_seconds: dict[str, list[float]] = {}
        self.removed: set[str] = set()  # samples whose earlier result this run deleted (they failed now)

    # -- progress ------------------------------------------------------------------------------
    def _advance(self, stage: str) -> None:
        if self.progress is not None and stage in self.tasks:
            self.progress.advance(self.tasks[stage])

    # -- resume --------------------------------------------------------------------------------
    def up_to_date(self, sample: Sample, stype: str, hashes: dict) -> bool:
        meta_p = self.store.sample_dir(sample.id) / META_NAME
        result_p = self.store.sample_file(sample.id, RESULT_SUFFIX[stype])
        if not (meta_p.is_file() and result_p.is_file()) or self.store.error_file(sample.id).exists():
            return False
        try:
            meta = json.loads(meta_p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return False
        return (meta.get("config_hash") == self.config_hash and meta.get("inputs_sha256") == hashes
                and meta.get("type") == stype)

    # -- provider calls ------------------------------------------------------------------------
    async def ask(self, purpose: str, prompt_name: str, ev: dict, meta: dict, field: str,
                  images: list[Path] | None = None, audio: Path | None = None,
                  video: Path | None = None, fallback_images: list[Path] | None = None,
                  image_input: str = "peak_frame_image") -> str:
        """One provider request; returns its text or "" (absent, reason in meta). ProviderError fails
        the sample (its message is never stored as annotation text). What the answer was written from and
        its finish reason go to ``meta["_calls"][field]`` (turned into ``text_origins`` / ``flags``)."""
        from mer_eval.generators.providers.base import (
            FINISH_LENGTH,
            CapabilityMissing,
            ProviderError,
            ProviderRequest,
        )

        reason_fn = getattr(self.provider, "absent_reason", None)
        reason = reason_fn(purpose) if callable(reason_fn) else None
        if reason:
            meta["absent"][field] = reason
            return ""
        prompt = synthesis.render_prompt(prompt_name, synthesis.prompt_fields(ev))
        meta["prompts"][purpose] = prompt_name
        req = ProviderRequest(prompt=prompt, images=list(images or []), audio=audio, video=video,
                              purpose=purpose, context=ev)
        frames_for_video = False
        try:
            self.provider.check(req)
        except CapabilityMissing as e:
            cap = e.capability.value
            if cap == "video" and fallback_images and self.provider.supports("image"):
                req.video, req.images = None, list(fallback_images)
                frames_for_video = True
                meta["fallbacks"].append(f"{field}: {self.provider.name} lacks video input; "
                                         f"sent {len(fallback_images)} sampled frames as images")
            elif cap == "audio" and purpose == "tone":
                req.audio = None
                meta["fallbacks"].append(f"{field}: {self.provider.name} lacks audio input; "
                                         "tone from the transcript and measured prosody as text")
            else:
                meta["absent"][field] = (f"provider {self.provider.name} lacks {cap} input; field left empty "
                                         "rather than described unseen (the measured facial signals are in "
                                         "the AU fields; declare providers."
                                         f"{self.provider.name}.capabilities if its model takes {cap})")
                return ""
            try:
                self.provider.check(req)
            except CapabilityMissing as e2:
                meta["absent"][field] = f"{self.provider.name} lacks {e2.capability.value} input; field left empty"
                return ""
        try:
            resp = await self.provider.agenerate(req)
        except ProviderError as e:
            raise SampleFailed(f"describe:{purpose}" if purpose != "synthesis" else "synthesis",
                               str(e), provider=self.provider.name) from None
        meta["provider_calls"][purpose] = {"model": resp.model, "cached": resp.cached, "attempts": resp.attempts,
                                           "finish_reason": getattr(resp, "finish_reason", None)}
        meta["provider_attempts"] = meta.get("provider_attempts", 0) + int(resp.attempts or 0)
        if self.producer != "template":  # a model's answer is checked before it becomes annotation text
            why = output_checks.reject_reason(resp.text, prompt)
            if why:
                meta["absent"][field] = f"model output rejected: {why}"
                meta.setdefault("defects", {})[field] = {"reason": why, "purpose": purpose,
                                                          "text": resp.text.strip()[:500]}
                return ""
            if purpose == "tone":
                bad = output_checks.audio_contract(resp.text, ev.get("transcript"))
                if bad:
                    meta.setdefault("defects", {})[field] = {"reason": bad, "purpose": purpose, "kept": True}
        # what the answer is written from: the filled prompt fields (the tone prompt's transcript and
        # prosody are both measured from the audio) and the attached media
        shown = ["audio"] if purpose == "tone" else synthesis.prompt_inputs(prompt_name, ev)
        if req.images:
            shown.append("video" if frames_for_video else image_input)
        if req.audio is not None:
            shown.append("audio")
        if req.video is not None:
            shown.append("video")
        shown = list(dict.fromkeys(shown))
        used = getattr(self.provider, "inputs_used", None)
        finish = getattr(resp, "finish_reason", None)
        meta["_calls"][field] = {"purpose": purpose, "model": resp.model, "finish_reason": finish,
                                 "truncated": finish == FINISH_LENGTH, "cached": resp.cached,
                                 "made_from": list(dict.fromkeys(used(req, shown) if callable(used) else shown))}
        return resp.text.strip()

    # -- one sample ----------------------------------------------------------------------------
    async def run_sample(self, sample: Sample, stype: str, sem: asyncio.Semaphore, type_note: str | None) -> None:
        seq = SEQUENCES[stype]
        hashes = input_hashes(sample)
        if not self.force and self.up_to_date(sample, stype, hashes):
            self.results[sample.id] = {"status": "skipped", "type": stype}
            for st in seq:
                self._advance(st)
            return
        async with sem:
            sample_dir = self.store.sample_dir(sample.id)
            sample_dir.mkdir(parents=True, exist_ok=True)
            self.store.remove_orphan_temps(sample.id)  # a killed earlier try of this sample left them
            if self.force:  # --force recomputes: drop the stages' saved results (they would be reused)
                from mer_eval.generators.stages import STAGE_ORDER, stage_json_path

                for name in STAGE_ORDER:
                    p = stage_json_path(sample.id, sample_dir, name)
                    if p.exists():
                        p.unlink()
            outputs: dict[str, dict] = {}
            meta: dict[str, Any] = {
                "schema_version": SCHEMA_VERSION, "sample_id": sample.id, "type": stype,
                "task": self.task, "provider": self.provider.name, "model": self.provider.model_id,
                "provider_info": self.provider.describe(), "config_hash": self.config_hash,
                "inputs_sha256": hashes, "inputs": {k: str(v) for k, v in sample.media().items()},
                "prompt_hashes": {}, "prompts": {}, "stages": {}, "absent": {}, "fallbacks": [],
                "provider_calls": {}, "notes": ([type_note] if type_note else []) + list(sample.notes),
                "_calls": {},  # per written field: what ask() learnt (popped in write_result)
            }
            done: list[str] = []
            try:
                for st in seq:
                    t0 = time.perf_counter()
                    if st == "describe":
                        ev = await self.describe(sample, stype, outputs, meta, sample_dir)
                        outputs["describe"] = ev
                    elif st == "synthesis":
                        outputs["synthesis"] = await self.synthesise(outputs["describe"], meta)
                    elif st == "audio" and "media" in outputs and not outputs["media"].get("has_speech_audio"):
                        meta["stages"][st] = {"skipped": "no audio track with sound (see the media stage notes)"}
                    else:
                        res = await self.measure(st, sample, sample_dir, outputs)
                        meta["stages"][st] = {"reused": bool(getattr(res, "reused", False)),
                                              "notes": list(res.notes)}
                    dt = time.perf_counter() - t0
                    if "skipped" not in meta["stages"].get(st, {}):
                        meta["stages"].setdefault(st, {})["seconds"] = round(dt, 4)
                        self.stage_seconds.setdefault(st, []).append(dt)
                    done.append(st)
                    self._advance(st)
                self.write_result(sample, stype, outputs, meta, sample_dir)
            except SampleFailed as e:
                self.fail(sample, stype, e.stage, e.reason, seq, done, **e.extra)
                return
            except Exception as e:  # noqa: BLE001 - a bug in one sample must not stop the run; recorded
                stage = next((s for s in seq if s not in done), "write")
                self.fail(sample, stype, stage, f"{type(e).__name__}: {e}", seq, done,
                          traceback=traceback.format_exc(limit=6))
                return
            self.store.clear_error(sample.id)
            self.results[sample.id] = {"status": "done", "type": stype,
                                       "absent": dict(meta["absent"]), "fallbacks": list(meta["fallbacks"]),
                                       "flags": dict(meta.get("flags") or {})}

    def run_all(self, plan: list) -> None:
        """Run ``plan``'s samples (``(sample, type, note)``), ``generate.concurrency`` at once, in one event loop;
        the provider's clients of that loop are closed after it."""
        async def main() -> None:
            sem = asyncio.Semaphore(self.config.generate.concurrency)
            try:
                await asyncio.gather(*(self.run_sample(s, t, sem, n) for s, t, n in plan))
            finally:
                await self.provider.aclose()

        asyncio.run(main())

    def fail(self, sample: Sample, stype: str, stage: str, reason: str, seq: tuple, done: list[str],
             **extra: Any) -> None:
        self.store.write_error(sample.id, stage, reason, type=stype, **extra)
        # never leave an earlier result standing next to a failure of this run
        for p in (self.store.sample_file(sample.id, RESULT_SUFFIX[stype]),
                  self.store.sample_dir(sample.id) / META_NAME):
            if p.exists():
                p.unlink()
                self.removed.add(sample.id)
        self.results[sample.id] = {"status": "failed", "type": stype, "stage": stage, "reason": reason}
        for st in seq:
            if st not in done:
                self._advance(st)

    async def measure(self, st: str, sample: Sample, sample_dir: Path, outputs: dict) -> Any:
        from mer_eval.generators.stages import StageError

        fn = stage_function(st)
        try:
            res = await asyncio.to_thread(fn, sample, sample_dir, self.config)
        except StageError as e:
            raise SampleFailed(e.stage, e.reason) from None
        outputs[st] = res.outputs
        return res

    async def describe(self, sample: Sample, stype: str, outputs: dict, meta: dict, sample_dir: Path) -> dict:
        ev = build_evidence(sample, outputs, self.task)
        peaks = outputs.get("peaks") or {}
        au_src = (outputs.get("au") or {}).get("au_source") or peaks.get("au_source")
        if au_src:
            meta["au_source"] = au_src
        if peaks and not peaks.get("face_detected", True):
            meta["absent"]["visual_expression"] = peaks.get("reason") or "no face detected"
        visual = outputs.get("visual") or {}
        frames = []
        for f in _first(visual, "sampled_frames", "frames", "frame_paths") or []:
            fp = f.get("path") if isinstance(f, dict) else f
            if isinstance(fp, str) and Path(fp).is_file():
                frames.append(Path(fp))
        peak_png = peaks.get("peak_frame_image")
        peak_png = Path(peak_png) if peak_png and Path(peak_png).is_file() else None
        wav = sample_dir / f"{sample.id}.wav"
        audio_in = wav if wav.is_file() else (Path(sample.audio) if sample.audio else None)
        has_speech_evidence = bool(outputs.get("audio")) and audio_in is not None
        if stype in ("mer", "audio"):
            if has_speech_evidence:
                ev["audio_analysis"] = await self.ask("tone", "tone", ev, meta, "audio_analysis", audio=audio_in)
            else:
                ev["audio_analysis"] = ""
                why = ((outputs.get("audio") or {}).get("reason")
                       or "; ".join(meta["stages"].get("media", {}).get("notes") or []) or "no audio track")
                meta["absent"]["audio_analysis"] = why
            _, tone = _split_tone(ev["audio_analysis"])
            if tone and self.provider.name != "offline":
                ev["tone"] = tone
        if stype == "mer":
            if peak_png is not None:
                ev["visual_objective"] = await self.ask("visual_description", "visual_description", ev, meta,
                                                        "visual_objective", images=[peak_png])
            else:
                meta["absent"]["visual_objective"] = "no peak frame (no face detected)"
            ev["video_content"] = await self.ask("video_description", "video_description", ev, meta,
                                                 "video_content", video=Path(sample.video),
                                                 fallback_images=frames)
        elif stype == "video":
            ev["video_content"] = await self.ask("video_description", "video_description", ev, meta,
                                                 "llm_video_summary", video=Path(sample.video),
                                                 fallback_images=frames)
        elif stype == "image":
            img = Path(sample.image)
            ev["visual_objective"] = await self.ask("visual_description", "visual_description", ev, meta,
                                                    "image_visual_description", images=[img], image_input="image")
            if ev.get("au_text"):
                ev["llm_au_description"] = await self.ask("au_description", "au_description", ev, meta,
                                                          "llm_au_description")
            else:
                ev["llm_au_description"] = ""
                meta["absent"]["llm_au_description"] = "no face: no action units measured"
        return ev

    async def synthesise(self, ev: dict, meta: dict) -> dict:
        ev = dict(ev)
        name = synthesis.synthesis_prompt_name(self.task, ev.get("label"))
        ev["coarse"] = synthesis.coarse_description(ev)
        summary = await self.ask("synthesis", name, ev, meta, "final_summary")
        conclusion = synthesis.parse_conclusion(summary, self.task)
        meta["conclusion"] = conclusion
        # a rule's vote (offline: the cues it counted, or the label) or None (a model decided)
        decided_by = getattr(self.provider, "conclusion_from", None)
        meta["conclusion_from"] = decided_by(ev) if summary and callable(decided_by) else None
        if conclusion is None and summary and self.producer != "template":
            meta.setdefault("defects", {})["final_summary"] = {
                "reason": "no closing line ('the core emotional state is X, and the most likely cause is Y'): "
                          "nothing concluded", "purpose": "synthesis", "kept": True}
        if conclusion is None:
            meta["notes"].append("final_summary has no parseable closing line "
                                 "('the core emotional state is X, and the most likely cause is Y')")
        return {"final_summary": summary, "coarse": ev["coarse"], "conclusion": conclusion}

    # -- writing -------------------------------------------------------------------------------
    def write_result(self, sample: Sample, stype: str, outputs: dict, meta: dict, sample_dir: Path) -> None:
        ev = outputs.get("describe") or build_evidence(sample, outputs, self.task)
        syn = outputs.get("synthesis") or {}
        peaks = outputs.get("peaks") or {}
        au = outputs.get("au_text") or {}
        src = str(Path(sample.video or sample.image or sample.audio).resolve())
        prov = {"mer_eval_provider": self.provider.name, "mer_eval_model": self.provider.model_id}
        face = bool(peaks.get("face_detected"))
        if stype == "mer":
            info = peaks.get("overall_peak_frame_info") or {}
            wav = sample_dir / f"{sample.id}.wav"
            data: dict[str, Any] = {
                "source_path": src,
                "audio_path": str(wav.resolve()) if wav.is_file() else "",
                "chronological_emotion_peaks": peaks.get("chronological_emotion_peaks") or [],
                "overall_peak_frame_info": {
                    "frame_number": info.get("frame_number"),
                    "timestamp": info.get("timestamp"),
                    "top_aus_intensities": info.get("top_aus_intensities") or {},
                },
                "coarse_descriptions_at_peak": {
                    "visual_expression": (au.get("au_text") or "") if face else "",
                    "visual_objective": ev.get("visual_objective") or "",
                    "audio_analysis": ev.get("audio_analysis") or "",
                    "video_content": ev.get("video_content") or "",
                },
                "final_summary": syn.get("final_summary") or "",
            }
            if sample.label:
                data["ground_truth_label"] = sample.label
        elif stype == "au":
            data = {"source_path": src,
                    "chronological_emotion_peaks": peaks.get("chronological_emotion_peaks") or [],
                    "overall_peak_au_description": (au.get("au_text") or "") if face else ""}
        elif stype == "audio":
            data = {"source_path": src, "audio_analysis": ev.get("audio_analysis") or ""}
        elif stype == "video":
            data = {"source_path": src, "llm_video_summary": ev.get("video_content") or ""}
        else:
            data = {"source_path": src,
                    "au_text_description": (au.get("au_text") or "") if face else "",
                    "llm_au_description": ev.get("llm_au_description") or "",
                    "image_visual_description": ev.get("visual_objective") or "",
                    "final_summary": syn.get("final_summary") or ""}
            if sample.label:
                data["ground_truth_label"] = sample.label
        data.update(prov)
        used = set(meta["prompts"].values())
        meta["prompt_hashes"] = {k: v for k, v in self.prompt_hashes.items() if k.rsplit(".v", 1)[0] in used}
        meta["evidence"] = {k: ev.get(k) for k in ("au_pseudo_label", "au_pseudo_labels", "top_aus", "fer",
                                                    "tone_emotion", "peak_frame",
                                                    "peak_time") if ev.get(k) not in (None, {}, "")}
        if syn.get("coarse"):
            meta["coarse_description"] = syn["coarse"]
        meta["pseudo_labels"] = au.get("pseudo_labels") or {}
        calls = meta.pop("_calls", {})
        meta["text_origins"] = self.text_origins(stype, outputs, ev, data, calls, meta)
        meta.setdefault("conclusion_from", None)
        meta["flags"] = self.flags(stype, outputs, data, calls)
        defects = meta.get("defects") or {}
        if defects:  # model output that failed output_checks: rejected (field empty) or kept with the flag
            meta["flags"]["llm_output_defect"] = "; ".join(
                f"{fld}: {d['reason']}{' (kept)' if d.get('kept') else ' (rejected: field left empty)'}"
                for fld, d in defects.items())
        meta["created"] = datetime.now(timezone.utc).isoformat()
        # the meta goes last: it is what marks the sample complete for resume
        self.store.write_json(sample.id, f"{sample.id}{RESULT_SUFFIX[stype]}", data)
        self.store.write_json(sample.id, META_NAME, meta)

    # -- provenance ----------------------------------------------------------------------------
    def _origin(self, producer: str, made_from: list[str], stage: str, provider: str | None = None,
                model: Any = None) -> dict:
        if isinstance(model, dict):  # a model reference (mer_eval.models.Resolution.ref())
            model = model.get("id")
        return {"producer": producer, "made_from": list(dict.fromkeys(made_from)), "stage": stage,
                "provider": provider, "model": str(model) if model else None}

    @property
    def producer(self) -> str:
        return getattr(self.provider, "producer", "llm")

    def _asked(self, call: dict, stage: str) -> dict:
        return self._origin(self.producer, call["made_from"], stage, self.provider.name, call["model"])

    def text_origins(self, stype: str, outputs: dict, ev: dict, data: dict, calls: dict,
                     meta: dict) -> dict[str, dict]:
        """``{field: origin}`` for every annotation field this sample's result (and meta) holds."""
        o: dict[str, dict] = {}
        peaks = outputs.get("peaks") or {}
        visual = outputs.get("visual") or {}
        au_model = meta.get("au_source") or (outputs.get("au") or {}).get("au_source")
        image = stype == "image"
        if ev.get("top_aus"):
            o["openface_csv"] = self._origin("detector", ["image" if image else "video"], "au", model=au_model)
            o["top_aus_intensities"] = self._origin("detector", ["openface_csv"], "au", model=au_model)
        if data.get("chronological_emotion_peaks"):
            rule = peaks.get("rule") if isinstance(peaks.get("rule"), dict) else {}
            o["chronological_emotion_peaks"] = self._origin("rule", ["openface_csv"], "peaks",
                                                            model=rule.get("rule"))
        au_text = {"mer": (data.get("coarse_descriptions_at_peak") or {}).get("visual_expression"),
                   "au": data.get("overall_peak_au_description"),
                   "image": data.get("au_text_description")}.get(stype)
        if au_text:
            o["visual_expression"] = self._origin("rule", ["top_aus_intensities"], "au_text")
            if image:  # the core reads the image's au_text_description as its visual_expression too
                o["au_text_description"] = dict(o["visual_expression"])
        if stype in ("mer", "image") and ev.get("fer"):
            o["fer_probabilities"] = self._origin("detector", ["image" if image else "peak_frame_image"],
                                                  "visual", model=visual.get("fer_model"))
        audio_text = (data.get("coarse_descriptions_at_peak") or {}).get("audio_analysis") if stype == "mer" \
            else data.get("audio_analysis") if stype == "audio" else None
        if audio_text and "audio_analysis" in calls:
            o.update(self._audio_origins(audio_text, calls["audio_analysis"], outputs))
        for fld, call in calls.items():
            name = ASK_FIELDS.get(fld)
            if name is None or not _written(data, fld):
                continue
            o[name] = self._asked(call, ASK_STAGES.get(call["purpose"], call["purpose"]))
        for name, org in o.items():
            # a summary shows the tone text of audio_description when there is one; otherwise the tone the
            # audio stage measured (prosody in words: from the audio itself)
            if "audio_description" in org["made_from"] and "audio_description" not in o:
                org["made_from"] = list(dict.fromkeys(x if x != "audio_description" else "audio"
                                                      for x in org["made_from"]))
        return o

    def _audio_origins(self, audio_text: str, call: dict, outputs: dict) -> dict[str, dict]:
        transcript, tone = _split_tone(audio_text)
        out: dict[str, dict] = {}
        if self.producer == "template":
            # the template copies ASR's transcript as the first line and restates measured prosody
            asr = (outputs.get("audio") or {}).get("asr") or {}
            if transcript:
                out["transcript"] = self._origin("asr", ["audio"], "audio", model=asr.get("model")
                                                 or self.config.generate.asr_model)
        elif transcript:  # a model wrote the whole audio_analysis, transcript line included
            out["transcript"] = self._asked(call, "audio")
        if tone:
            out["audio_description"] = self._asked(call, "audio")
        return out

    def flags(self, stype: str, outputs: dict, data: dict, calls: dict) -> dict[str, str]:
        flags: dict[str, str] = {}
        cut = []
        for fld, call in calls.items():
            if not call.get("truncated") or not _written(data, fld):
                continue
            if fld == "audio_analysis":
                text = (data.get("coarse_descriptions_at_peak") or {}).get("audio_analysis") \
                    if stype == "mer" else data.get("audio_analysis")
                _, tone = _split_tone(text or "")
                name = "audio_description" if tone else "transcript"  # the end of the answer is missing
            else:
                name = ASK_FIELDS.get(fld, fld)
            cut.append(f"{name} ({call['purpose']}{', from the cache' if call.get('cached') else ''})")
        if cut:
            limit = getattr(getattr(self.provider, "config", None), "max_tokens", None)
            flags["truncated_llm_output"] = (
                f"{', '.join(cut)}: {self.provider.name} ({self.provider.model_id}) stopped at the token limit "
                f"(finish_reason length{f', max_tokens {limit}' if limit else ''}); the text is cut off")
        partial = (outputs.get("media") or {}).get("partial_audio")
        if partial and stype in ("mer", "audio"):
            flags["partial_audio"] = str(partial)
        return flags


def _written(data: dict, fld: str) -> bool:
    """Whether the result JSON holds a non-empty ``fld`` (top level or at the peak)."""
    v = data.get(fld)
    if v in (None, ""):
        v = (data.get("coarse_descriptions_at_peak") or {}).get(fld)
    return bool(v)


def _split_tone(audio_analysis: str) -> tuple[str | None, str | None]:
    from mer_eval.domain.merfactory import split_audio_analysis

    return split_audio_analysis(audio_analysis)


# ---- entry point ---------------------------------------------------------------------------------

def make_provider(config: Config) -> Any:
    from mer_eval.registry import get_provider

    name = config.generate.provider
    try:
        cls = get_provider(name)
    except KeyError as e:
        raise ValueError(str(e).strip("'\"")) from None
    cache = Cache(Path(config.cache.dir) if config.cache.dir else None) if config.cache.enabled else None
    pcfg = config.provider_config(name)
    from mer_eval.generators.providers.base import is_loopback

    if pcfg is not None and getattr(pcfg, "capabilities", None) is None and hasattr(cls, "default_base_url") \
            and is_loopback(pcfg.base_url or cls.default_base_url):
        # a local OpenAI-compatible server may run a text-only model that drops an attached image without
        # a word (and then invents a scene): images go only where they were declared,
        # providers.<name>.capabilities=[text,image]
        pcfg = pcfg.model_copy(update={"capabilities": ["text"]})
    return cls(pcfg, cache=cache)


def run_generate(input_path: Path, out: Path, config: Config, label_file: Path | None = None,
                 force: bool = False, progress: bool = True, provider: Any = None,
                 console: Any = None) -> dict:
    """Run the pipeline; returns the summary (counts, failures with reasons, seconds per stage)."""
    from mer_eval.discovery import discover

    t_start = time.perf_counter()
    input_path = Path(input_path).resolve()
    out = Path(out).resolve()
    from mer_eval.discovery import AUDIO_EXT, IMAGE_EXT, VIDEO_EXT
    from mer_eval.paths import is_within

    single = input_path.is_file() and input_path.suffix.lower() in VIDEO_EXT | AUDIO_EXT | IMAGE_EXT
    ds = discover(input_path.parent if single else input_path, label_file=label_file)
    if single:  # MER-Factory also takes one file
        ds.samples = [s for s in ds.samples if input_path in [Path(p).resolve() for p in s.media().values()]]
    inside = [s for s in ds.samples if any(is_within(Path(p), out) for p in s.media().values())]
    if inside:  # OUT inside INPUT: our own wav/png outputs are not new samples
        ds.samples = [s for s in ds.samples if s not in inside]
        ds.notes.append(f"{len(inside)} media files inside OUT ({out}) ignored")
    if ds.kind not in ("media", "manifest"):  # a manifest names its media (README: JSONL / CSV manifests)
        raise ValueError(f"{input_path} is a {ds.kind} input; generate needs a folder of media files "
                         "(video / audio / image) or a JSONL / CSV manifest of them")
    store = RunStore(out)
    provider = provider or make_provider(config)
    engine = None
    if config.generate.engine == "ray":  # Ray missing or unreachable: EngineError before anything is written
        from mer_eval.generators.engine_ray import RaySession

        engine = RaySession(config.generate.workers)
    try:
        return _run_planned(ds, plan_of(ds, config), input_path, out, store, config, provider, label_file, force,
                            progress, console, engine, t_start)
    finally:
        if engine is not None:
            engine.close()


def plan_of(ds: Any, config: Config) -> list[tuple[Sample, str, str | None]]:
    return [(s, *effective_type(s, config.generate.type)) for s in ds.samples]


def _run_planned(ds: Any, plan: list, input_path: Path, out: Path, store: RunStore, config: Config, provider: Any,
                 label_file: Path | None, force: bool, progress: bool, console: Any, engine: Any,
                 t_start: float) -> dict:
    phashes = synthesis.prompt_hashes()
    chash = generate_config_hash(config, phashes)
    requested = config.generate.type
    notes = list(ds.notes) + [note for _, _, note in plan if note]
    with store.locked():
        try:
            previous = store.read_manifest()
        except (ValueError, OSError):
            previous = None
        manifest = store.new_manifest(
            command="generate", input=str(input_path), config=config.model_dump(mode="json"),
            config_hash=chash, provider=provider.name,
            models={"provider": provider.model_id, "asr": config.generate.asr_model,
                    "au_backend": config.generate.au_backend},
            prompt_hashes=phashes, seed=config.generate.seed,
            extra={"pipeline_version": PIPELINE_VERSION, "type": requested, "task": config.generate.task,
                   "label_file": str(label_file) if label_file else (str(ds.label_file) if ds.label_file else None),
                   "concurrency": config.generate.concurrency, "provider": provider.describe()},
        )
        store.write_manifest(manifest)
        prog, tasks = None, {}
        if progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            prog = Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console, transient=False)
            counts: dict[str, int] = {}
            for _, stype, _ in plan:
                for st in SEQUENCES[stype]:
                    counts[st] = counts.get(st, 0) + 1
            order = [st for st in SEQUENCES["mer"] if st in counts]
            for st in order:
                tasks[st] = prog.add_task(st, total=counts[st])
        run = _Run(store, config, provider, phashes, chash, force, prog, tasks)
        with prog if prog is not None else contextlib.nullcontext():
            if engine is not None:  # the samples on Ray actors (generators/engine_ray.py)
                engine.run(run, plan, config, out, prog, tasks)
            else:
                run.run_all(plan)
        statuses = [r["status"] for r in run.results.values()]
        counts_by_status = {k: statuses.count(k) for k in ("done", "skipped", "failed")}
        manifest.finished = datetime.now(timezone.utc)
        if previous is not None and previous.score is not None and counts_by_status["done"] == 0 \
                and not run.removed:
            manifest.score = previous.score  # no annotation changed: the scores still describe this run
        manifest.counts_by_status = counts_by_status
        failures = {sid: {"stage": r["stage"], "reason": r["reason"]} for sid, r in run.results.items()
                    if r["status"] == "failed"}
        manifest.extra["failures"] = failures
        manifest.extra["notes"] = notes
        manifest.extra["provider_stats"] = dict(getattr(provider, "stats", {}))
        store.write_manifest(manifest)
    summary = {
        "out": str(out), "input": str(input_path), "total": len(plan), **counts_by_status,
        "failures": failures, "notes": notes,
        "absent": {sid: r["absent"] for sid, r in run.results.items() if r.get("absent")},
        "fallbacks": {sid: r["fallbacks"] for sid, r in run.results.items() if r.get("fallbacks")},
        "flags": {sid: r["flags"] for sid, r in run.results.items() if r.get("flags")},
        "types": {sid: r["type"] for sid, r in run.results.items()},
        "stage_seconds": {k: [round(x, 4) for x in v] for k, v in run.stage_seconds.items()},
        "seconds": round(time.perf_counter() - t_start, 3),
        "provider": provider.name, "model": provider.model_id, "config_hash": chash,
        "provider_stats": dict(getattr(provider, "stats", {})),
    }
    return summary


def write_summary(path: Path, summary: dict) -> None:
    atomic_write_json(Path(path), summary)
