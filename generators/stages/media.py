"""Stage ``media``: probe the sample's media and extract ``<id>.wav`` (16 kHz mono, MER-Factory's name).

* video: probed; its audio is decoded, mixed to mono, resampled to 16 kHz (see :mod:`mer_eval.domain.media`) and
  written as ``sample_dir/<id>.wav``. A video without an audio stream, or whose audio is digital silence
  (e.g. ``WolfgangLanger_Pexels.mp4``), gets no wav and a note; that is not an error for the video part.
* audio: probed and converted to ``<id>.wav`` the same way; an audio file that cannot be decoded, or is
  silent, is an error (there is nothing else in the sample).
* image: probed (size), nothing extracted.
* a missing, corrupt or stream-less file raises :class:`StageError`.

* partial audio: :func:`mer_eval.domain.media.load_audio` keeps what decoded when the decoder fails part-way (a
  truncated or damaged file) and says nothing, so the stage compares the decoded length with the duration
  the audio stream declares (its own header duration; for an audio-only file the container's): more than
  :data:`PARTIAL_TOLERANCE_S` (or :data:`PARTIAL_TOLERANCE_SHARE` of it) missing sets ``partial_audio`` to
  the reason and adds a note; the pipeline flags the sample (``mer_eval_meta.json`` ``flags.partial_audio``).
  A video whose audio stream declares no duration is not compared with the container's (a shorter audio
  track than the video is legitimate, e.g. ``face_noface.mov``: 4.0 s of audio in a 6.4 s clip), and a
  truncated WAV is not detected (FFmpeg derives a WAV's duration from the file size).

Outputs: ``kind`` (video/audio/image), ``media`` (probe facts), ``wav`` (path or None), ``audio_seconds``,
``audio_declared_seconds`` (what the stream / container says, None when unknown), ``partial_audio`` (None, or
why the audio is partial), ``has_speech_audio`` (a wav was written).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mer_eval.generators.stages import (
    StageError,
    StageResult,
    fingerprint,
    finish,
    load_fresh,
    reuse,
    stage_json_path,
)

from mer_eval.config import Config
from mer_eval.schema import Sample

STAGE = "media"
VERSION = "2"  # 2: audio_declared_seconds, partial_audio
SR = 16000
# decoded audio shorter than declared by more than this is partial; AAC / MP3 priming and padding lose
# up to ~0.05 s of a complete stream (face_noface.mov: 3.966 s decoded of 3.994 s declared)
PARTIAL_TOLERANCE_S = 0.1
PARTIAL_TOLERANCE_SHARE = 0.01


def primary_media(sample: Sample) -> tuple[str, Path]:
    """(kind, path) of what the sample is about: video, else audio, else image."""
    for kind in ("video", "audio", "image"):
        p = getattr(sample, kind)
        if p is not None:
            return kind, Path(p)
    raise StageError(STAGE, "the sample has no video, audio or image file")


def declared_audio_seconds(path: Path, info: Any) -> float | None:
    """The duration the audio stream's header declares; for a file without video, the container's when the
    stream declares none. None when unknown (or PyAV cannot reopen the file: then nothing is compared)."""
    try:
        import av
    except ImportError:
        av = None
    if av is not None and info.reader == "av":
        try:
            with av.open(str(path)) as c:
                a = c.streams.audio[0] if c.streams.audio else None
                if a is not None and a.duration and a.time_base:
                    return float(a.duration * a.time_base)
        except (av.error.FFmpegError, OSError):
            return None
    if info.has_video:
        return None
    return float(info.duration) if info.duration else None


def partial_audio_reason(decoded_s: float, declared_s: float | None) -> str | None:
    """Why audio of ``decoded_s`` seconds is partial against a declared ``declared_s`` (None: complete, or
    nothing to compare with)."""
    if declared_s is None or declared_s <= 0:
        return None
    missing = declared_s - decoded_s
    if missing <= max(PARTIAL_TOLERANCE_S, PARTIAL_TOLERANCE_SHARE * declared_s):
        return None
    return (f"audio decoded to {decoded_s:.2f} s of the {declared_s:.2f} s its stream declares "
            f"({missing:.2f} s missing: the decoder stopped early on a truncated or damaged file); the "
            "transcript, tone and prosody describe only the decoded part")


def run_media(sample: Sample, sample_dir: Path, config: Config) -> StageResult:
    from mer_eval.domain.media import MediaError, load_audio, probe, write_wav

    sample_dir = Path(sample_dir)
    sample_dir.mkdir(parents=True, exist_ok=True)
    kind, path = primary_media(sample)
    if not path.is_file():
        raise StageError(STAGE, f"{kind} file {path} does not exist")
    fp = fingerprint([path], {"sr": SR})
    saved = load_fresh(stage_json_path(sample.id, sample_dir, STAGE), STAGE, VERSION, fp)
    if saved is not None:
        return reuse(saved, sample.id, sample_dir, STAGE)
    try:
        info = probe(path)
    except MediaError as e:
        raise StageError(STAGE, f"cannot read {kind} {path.name}: {e}") from None
    notes: list[str] = []
    files: list[Path] = []
    wav: Path | None = None
    seconds: float | None = None
    declared: float | None = None
    partial: str | None = None
    if kind == "video" and not info.has_video:
        raise StageError(STAGE, f"{path.name} has no video stream")
    if kind == "image" and not (info.is_image or info.has_video):
        raise StageError(STAGE, f"{path.name} is not a readable image")
    if kind in ("video", "audio"):
        if not info.has_audio:
            if kind == "audio":
                if info.is_image or info.has_video:  # e.g. a photo renamed .wav
                    what = "an image" if info.is_image else f"a video ({info.video_codec})"
                    raise StageError(STAGE, f"{path.name} is not an audio file: it holds {what}, no audio stream")
                raise StageError(STAGE, f"{path.name} has no audio stream")
            notes.append(f"{path.name} has no audio stream: no {sample.id}.wav; audio stages are skipped")
        else:
            try:
                x = load_audio(path, sr=SR)
            except MediaError as e:
                if kind == "audio":
                    raise StageError(STAGE, f"cannot use the audio of {path.name}: {e}") from None
                notes.append(f"no {sample.id}.wav: {e}")
                x = None
            if x is not None:
                wav = write_wav(sample_dir / f"{sample.id}.wav", x, SR)
                files.append(wav)
                seconds = round(len(x) / SR, 3)
                declared = declared_audio_seconds(path, info)
                partial = partial_audio_reason(len(x) / SR, declared)
                from mer_eval.domain.media import partial_decode

                broke = partial_decode(path)
                if broke and not partial:  # a decoder error part-way, whatever the header declares (a cut wav)
                    partial = f"audio decoded only in part: {broke}"
                if partial:
                    notes.append(f"{path.name}: {partial}")
    out: dict[str, Any] = {"kind": kind, "source": str(path), "media": info.to_dict(),
                           "wav": str(wav) if wav else None, "audio_seconds": seconds,
                           "audio_declared_seconds": round(declared, 3) if declared is not None else None,
                           "partial_audio": partial, "has_speech_audio": wav is not None}
    return finish(sample.id, sample_dir, STAGE, VERSION, fp, out, files, notes)
