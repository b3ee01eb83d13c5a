"""The signal-measuring stages of ``mer-eval generate``.

Shape shared by every stage
---------------------------
A stage is a plain function::

    run_<stage>(sample: Sample, sample_dir: Path, config: Config) -> StageResult

* It reads the sample's media and the files earlier stages wrote into ``sample_dir`` (``<id>.wav``,
  ``<id>.csv``, ``<id>_au.json`` ...), and writes its own files there.
* Its structured result goes to ``sample_dir/<id>_<stage>.json`` (written atomically with
  :func:`mer_eval.store.atomic_write_json`) holding ``stage``, ``stage_version``, ``inputs_sha256`` (hash
  of the input files' contents), ``config`` (the config values the stage used) and ``outputs``. A rerun
  whose inputs and config fingerprint match reuses that JSON instead of recomputing (see
  :func:`load_fresh`); a stale one is recomputed.
* It returns a :class:`StageResult`: ``outputs`` (the same JSON-serialisable dict), ``files`` written,
  ``notes`` (things worth telling the user that are not errors, e.g. "silent video: no wav").
* A per-sample failure raises :class:`StageError` ``(stage, reason)`` with a reason a user can act on; the
  pipeline writes it to ``OUT/error_logs/<id>.json`` and goes on with the next sample.

Stages: ``media`` (probe, ``<id>.wav``), ``au`` (``<id>.csv`` from OpenFace / MediaPipe / py-feat),
``peaks`` (MER-Factory's and MERR's peak rules, ``<id>_peak_frame.png``), ``au_text`` (FACS text and
rule-table pseudo-labels), ``audio_features`` (Whisper transcript + measured prosody), ``visual`` (FER
probabilities on the peak frame, sampled frames).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mer_eval.cache import file_sha256
from mer_eval.domain.records import stage_record_name
from mer_eval.store import atomic_write_json

__all__ = [
    "STAGE_FUNCTIONS",
    "STAGE_ORDER",
    "StageError",
    "StageResult",
    "fingerprint",
    "finish",
    "get_stage",
    "load_fresh",
    "read_stage_outputs",
    "reuse",
    "stage_json_path",
    "write_stage_json",
]

STAGE_ORDER = ("media", "au", "peaks", "au_text", "audio_features", "visual")

# stage name -> "module:function" (imported on demand, so importing this package stays light)
STAGE_FUNCTIONS = {
    "media": "mer_eval.generators.stages.media:run_media",
    "au": "mer_eval.generators.stages.au:run_au",
    "peaks": "mer_eval.generators.stages.peaks:run_peaks",
    "au_text": "mer_eval.generators.stages.au_text:run_au_text",
    "audio_features": "mer_eval.generators.stages.audio:run_audio",
    "visual": "mer_eval.generators.stages.visual:run_visual",
}


def get_stage(name: str):
    """The ``run_<stage>`` function of stage ``name``."""
    import importlib

    if name not in STAGE_FUNCTIONS:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGE_ORDER)}")
    mod, _, fn = STAGE_FUNCTIONS[name].partition(":")
    return getattr(importlib.import_module(mod), fn)


class StageError(RuntimeError):
    """A stage could not produce its output for one sample; ``reason`` says why."""

    def __init__(self, stage: str, reason: str):
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


@dataclass
class StageResult:
    outputs: dict[str, Any] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reused: bool = False  # True when a fresh earlier result was read back instead of recomputed


def stage_json_path(sample_id: str, sample_dir: Path, stage: str) -> Path:
    return Path(sample_dir) / stage_record_name(sample_id, stage)


def fingerprint(inputs: Iterable[Path | str | None], config: dict[str, Any]) -> dict[str, Any]:
    """``inputs_sha256``: sha256 over the inputs' content hashes (strings hashed as text), in order."""
    h = hashlib.sha256()
    for item in inputs:
        if item is None:
            h.update(b"<none>")
        elif isinstance(item, Path):
            h.update(file_sha256(item).encode() if item.is_file() else f"<missing {item.name}>".encode())
        else:
            h.update(hashlib.sha256(str(item).encode("utf-8")).hexdigest().encode())
        h.update(b"\0")
    return {"inputs_sha256": h.hexdigest(), "config": json.loads(json.dumps(config, default=str))}


def load_fresh(path: Path, stage: str, version: str, fp: dict[str, Any]) -> dict[str, Any] | None:
    """The saved stage JSON when its version, inputs and config match ``fp`` and its files exist."""
    try:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if (saved.get("stage") != stage or saved.get("stage_version") != version
            or saved.get("inputs_sha256") != fp["inputs_sha256"] or saved.get("config") != fp["config"]):
        return None
    for f in saved.get("files", []):
        if not Path(f).is_file():
            return None
    return saved


def write_stage_json(path: Path, stage: str, version: str, fp: dict[str, Any], outputs: dict[str, Any],
                     files: list[Path], notes: list[str]) -> Path:
    atomic_write_json(path, {"stage": stage, "stage_version": version, **fp, "outputs": outputs,
                             "files": [str(f) for f in files], "notes": notes})
    return path


def finish(sample_id: str, sample_dir: Path, stage: str, version: str, fp: dict[str, Any],
           outputs: dict[str, Any], files: list[Path], notes: list[str]) -> StageResult:
    """Write ``<id>_<stage>.json`` and return the result (the JSON file is listed in ``files``)."""
    p = stage_json_path(sample_id, sample_dir, stage)
    write_stage_json(p, stage, version, fp, outputs, files, notes)
    return StageResult(outputs=outputs, files=[*files, p], notes=notes)


def reuse(saved: dict[str, Any], sample_id: str, sample_dir: Path, stage: str) -> StageResult:
    return StageResult(outputs=saved["outputs"],
                       files=[*(Path(f) for f in saved.get("files", [])),
                              stage_json_path(sample_id, sample_dir, stage)],
                       notes=list(saved.get("notes", [])), reused=True)


def read_stage_outputs(sample_id: str, sample_dir: Path, stage: str) -> dict[str, Any] | None:
    """``outputs`` of an earlier stage's JSON in ``sample_dir``, or None when it has not run."""
    p = stage_json_path(sample_id, sample_dir, stage)
    try:
        return json.loads(p.read_text(encoding="utf-8")).get("outputs")
    except (OSError, json.JSONDecodeError):
        return None
