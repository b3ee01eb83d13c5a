"""Scored runs for the compare / gate / regress / report tests, built from real data in ../shared/data.

A run folder is MER-Factory's layout: the real MER-Factory outputs of
``annotations-mer-factory/`` (one sample each, copied to ``<id>/<id>_merr_data.json``) plus the five
LibriVox utterances as audio samples whose ``audio_analysis`` first line is the reference transcript
(a perfect annotator: WER 0 by construction) and the wav itself. A *degraded* copy truncates every
final summary to its first 12 words repeated three times and shuffles / truncates the transcripts.

Scores come from mer-eval's own scorer (:func:`mer_eval.scoring.score_run`) with the metric families
that need no downloaded weights (text quality, label agreement, ASR WER against the LibriVox references)
and, by default, mer-v1's weights and anchors restricted to those metrics as the composite. Nothing here
is a guessed number; the tests assert relations that follow from the construction (a truncated, repeated
text has fewer distinct bigrams; a shuffled transcript has a higher WER) or recompute figures from
``scores.parquet`` independently.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Optional

MF_FILES = {
    "default_merr_data_MER": "default_merr_data_MER.json",
    "gemini_merr": "gemini_merr.json",
    "llava_merr": "llava-llama3_llama3.2_merr_data.json",
    "bakllava_merr": "bakllava_llama3.2_merr.json",
    "default_merr_sentiment": "default_merr_data_sentiment.json",
}
# real face photos used as peak-frame images (to exercise thumbnails; not the clips' own frames)
FACES = ["0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg", "astronaut.png"]
INJECTION = "<script>window.__pwned=1;alert(1)</script>"


_FULL = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SHARED_DATA = _FULL if _FULL.is_dir() else Path(__file__).resolve().parent / "data" / "real"


def shared_or_skip() -> Path:
    """``../shared/data`` for module-scoped fixtures (the ``shared_data`` fixture is per test)."""
    import pytest

    if not SHARED_DATA.is_dir():
        pytest.skip("neither ../shared/data nor tests/data/real is present")
    return SHARED_DATA


def copy_run(src: Path, dest: Path) -> Path:
    """A private copy of a scored run (tests that write into a run work on their own copy)."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


def librivox_refs(shared: Path) -> dict[str, str]:
    from mer_eval.discovery import read_transcripts

    return read_transcripts(shared / "speech-librivox" / "transcription")


def _lv_id(stem: str) -> str:
    return "lv" + stem.rsplit("-", 1)[-1]


def degrade_text(text: str, n_words: int = 12, times: int = 3) -> str:
    w = text.split()[:n_words]
    return " ".join(w * times)


def build_run(shared: Path, dest: Path, *, degraded: bool = False, inject: bool = False,
              peak_frames: bool = True, seed: int = 0) -> Path:
    """Write a MER-Factory-layout run folder at ``dest`` (unscored)."""
    from PIL import Image

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    src = shared / "annotations-mer-factory"
    for i, (sid, fn) in enumerate(MF_FILES.items()):
        data = json.loads((src / fn).read_text(encoding="utf-8"))
        if degraded and isinstance(data.get("final_summary"), str):
            data["final_summary"] = degrade_text(data["final_summary"])
        if inject and i == 0:
            data["final_summary"] = data["final_summary"] + "\n" + INJECTION
        d = dest / sid
        d.mkdir(exist_ok=True)
        (d / f"{sid}_merr_data.json").write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
        if peak_frames:
            with Image.open(shared / "faces" / FACES[i % len(FACES)]) as im:
                im.convert("RGB").save(d / f"{sid}_peak_frame.png")
    refs = librivox_refs(shared)
    stems = sorted(refs)
    texts = [refs[s] for s in stems]
    if degraded:
        rng = random.Random(seed)
        order = list(range(len(texts)))
        while order == sorted(order):
            rng.shuffle(order)
        texts = [" ".join(texts[j].split()[: max(2, len(texts[j].split()) // 2)]) for j in order]
    for stem, text in zip(stems, texts):
        sid = _lv_id(stem)
        d = dest / sid
        d.mkdir(exist_ok=True)
        shutil.copy2(shared / "speech-librivox" / f"{stem}.wav", d / f"{sid}.wav")
        payload = {"source_path": f"{stem}.wav", "audio_analysis": text}
        (d / f"{sid}_audio_analysis.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return dest


def references(shared: Path) -> dict[str, str]:
    return {_lv_id(k): v for k, v in librivox_refs(shared).items()}


# ---- scoring with mer-eval's own scorer ----------------------------------------------------------------

TEXT_METRICS = ["text_quality", "label_agreement", "asr_wer"]  # the families that need no downloaded weights
TEXT_COMPOSITE_METRICS = ("distinct2", "repetition_rate", "asr_wer", "asr_cer")


def write_references(shared: Path, path: Path) -> Path:
    """The LibriVox references under the run's sample ids, in the sphinx ``transcription`` format."""
    path.write_text("".join(f"<s> {v} </s> ({k})\n" for k, v in references(shared).items()), encoding="utf-8")
    return path


def text_composite(path: Path, version: str = "mer-v1-text") -> Path:
    """mer-v1 restricted to the text metrics scored here (same weights and anchors, read from mer-v1.yaml)."""
    import yaml

    from mer_eval.config import read_bundled_yaml

    spec = read_bundled_yaml("composite/mer-v1.yaml")
    spec["version"] = version
    spec["metrics"] = {k: v for k, v in spec["metrics"].items() if k in TEXT_COMPOSITE_METRICS}
    spec["substitutes"] = {k: v for k, v in (spec.get("substitutes") or {}).items()
                           if k in TEXT_COMPOSITE_METRICS and v in TEXT_COMPOSITE_METRICS}
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def score(run: Path, shared: Path, composite: Optional[str] = "text", sets: Optional[list[str]] = None) -> Path:
    """Score ``run`` in place with :func:`mer_eval.scoring.score_run` (text metric families only).

    ``composite="text"``: :func:`text_composite` (written next to the run); ``None``: the bundled mer-v1
    (whose min coverage the text metrics alone do not reach: composite ``not_applicable``).
    """
    from mer_eval.config import load_config
    from mer_eval.scoring import score_run

    run = Path(run)
    refs = write_references(shared, run.parent / f"{run.name}.references.txt")
    extra = ["cache.enabled=false"] + list(sets or [])  # module-scoped fixtures: no per-test cache dir yet
    if composite == "text":
        extra.append(f"score.composite={text_composite(run.parent / f'{run.name}.composite.yaml')}")
    elif composite:
        extra.append(f"score.composite={composite}")
    score_run(run, load_config(None, extra), metrics=TEXT_METRICS, transcripts=refs)
    return run


def scored_run(shared: Path, dest: Path, *, composite: Optional[str] = "text", **kw) -> Path:
    return score(build_run(shared, dest, **kw), shared, composite=composite)
