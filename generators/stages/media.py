"""Stage ``media``: probe the sample's media and extract ``<id>.wav`` (16 kHz mono, MER-Factory's name).

* video: probed; its audio is decoded, mixed to mono, resampled to 16 kHz (see :mod:`mer_eval.media`) and
  written as ``sample_dir/<id>.wav``. A video without an audio stream, or whose audio is digital silence
  (e.g. ``WolfgangLanger_Pexels.mp4``), gets no wav and a note; that is not an error for the video part.
* audio: probed and converted to ``<id>.wav`` the same way; an audio file that cannot be decoded, or is
  silent, is an error (there is nothing else in the sample).
* image: probed (size), nothing extracted.
* a missing, corrupt or stream-less file raises :class:`StageError`.

Outputs: ``kind`` (video/audio/image), ``media`` (probe facts), ``wav`` (path or None), ``audio_seconds``,
``has_speech_audio`` (a wav was written).
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
VERSION = "1"
SR = 16000


def primary_media(sample: Sample) -> tuple[str, Path]:
    """(kind, path) of what the sample is about: video, else audio, else image."""
    for kind in ("video", "audio", "image"):
        p = getattr(sample, kind)
        if p is not None:
            return kind, Path(p)
    raise StageError(STAGE, "the sample has no video, audio or image file")


def run_media(sample: Sample, sample_dir: Path, config: Config) -> StageResult:
    from mer_eval.media import MediaError, load_audio, probe, write_wav

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
    if kind == "video" and not info.has_video:
        raise StageError(STAGE, f"{path.name} has no video stream")
    if kind == "image" and not (info.is_image or info.has_video):
        raise StageError(STAGE, f"{path.name} is not a readable image")
    if kind in ("video", "audio"):
        if not info.has_audio:
            if kind == "audio":
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
    out: dict[str, Any] = {"kind": kind, "source": str(path), "media": info.to_dict(),
                           "wav": str(wav) if wav else None, "audio_seconds": seconds,
                           "has_speech_audio": wav is not None}
    return finish(sample.id, sample_dir, STAGE, VERSION, fp, out, files, notes)
