"""Stage ``au_text``: FACS text of the overall peak and AU-combination pseudo-labels.

* ``au_text``: MER-Factory's ``Name (intensity: x.xx), ...`` over the peak's ``top_aus_intensities``
  (AUs with ``_r`` > 0.8 that have a name; ``Neutral expression.`` when none), via
  :func:`mer_eval.domain.facs.au_text`. This is MER-Factory's ``visual_expression`` / ``overall_peak_au_description``.
* ``pseudo_labels``: emotions the AUs at the peak frame imply under both rule tables:

  - ``mer-factory`` (:data:`mer_eval.domain.facs.MER_FACTORY_RULES`): at least half of an emotion's AUs present by
    ``_c`` and the mean ``_r`` >= ``generate.threshold`` (with strength slight/moderate/strong);
  - ``merr`` (:data:`mer_eval.domain.facs.MERR_RULES`, Emotion-LLaMA: surprise AU05+AU26, happiness AU06+AU12,
    sadness AU01+AU04+AU15, anger AU04+AU05+AU07+AU23): every AU of the rule present by ``_c``.

  ``pseudo_label`` is the top emotion of the table ``generate.au_rule_table`` chooses (``None`` when no rule
  fires there: the face shows no rule's combination).
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
    read_stage_outputs,
    reuse,
    stage_json_path,
)
from mer_eval.generators.stages.peaks import emotions_at

from mer_eval.config import Config
from mer_eval.domain.facs import RULE_AUS, au_rule_hits, au_text
from mer_eval.domain.openface import OpenFaceError, read_openface_csv
from mer_eval.schema import Sample

STAGE = "au_text"
VERSION = "1"


def merr_labels(presence: dict[str, float]) -> list[str]:
    """MERR emotions whose every AU is present (``AUxx_c`` == 1) in ``presence``
    (:func:`mer_eval.domain.facs.au_rule_hits`)."""
    present = {a: presence.get(f"AU{a}_c") == 1 for a in RULE_AUS}
    return [h.emotion for h in au_rule_hits("merr", present)]


def run_au_text(sample: Sample, sample_dir: Path, config: Config) -> StageResult:
    sample_dir = Path(sample_dir)
    g = config.generate
    peaks = read_stage_outputs(sample.id, sample_dir, "peaks")
    if peaks is None:
        raise StageError(STAGE, f"needs the peaks stage output {sample.id}_peaks.json in {sample_dir}")
    csv_path = Path(peaks["au_csv"])
    cfg = {"threshold": g.threshold, "au_rule_table": g.au_rule_table}
    fp = fingerprint([stage_json_path(sample.id, sample_dir, "peaks"), csv_path], cfg)
    saved = load_fresh(stage_json_path(sample.id, sample_dir, STAGE), STAGE, VERSION, fp)
    if saved is not None:
        return reuse(saved, sample.id, sample_dir, STAGE)
    notes: list[str] = []
    info = peaks.get("overall_peak_frame_info")
    if not peaks.get("face_detected") or info is None:
        out: dict[str, Any] = {"face_detected": False, "au_text": None, "pseudo_labels": {}, "pseudo_label": None,
                               "reason": peaks.get("reason") or "no face in the AU table"}
        notes.append(out["reason"])
        return finish(sample.id, sample_dir, STAGE, VERSION, fp, out, [], notes)
    try:
        of = read_openface_csv(csv_path)
    except (OSError, OpenFaceError) as e:
        raise StageError(STAGE, f"unreadable AU table {csv_path}: {e}") from None
    idx = of.row_index_of_frame(info["frame_number"])
    if idx is None:
        raise StageError(STAGE, f"peak frame {info['frame_number']} is not in {csv_path}")
    mf = emotions_at(of, idx, g.threshold)
    merr = merr_labels(of.presences(idx))
    table = {"mer-factory": [e["emotion"] for e in mf], "merr": merr}
    chosen = table[g.au_rule_table]
    out = {
        "face_detected": True,
        "frame_number": info["frame_number"],
        "au_text": au_text(info.get("top_aus_intensities") or {}),
        "top_aus_intensities": info.get("top_aus_intensities") or {},
        "present_aus": sorted(c[:-2] for c, v in of.presences(idx).items() if v == 1),
        "pseudo_labels": {"mer-factory": mf, "merr": merr},
        "au_rule_table": g.au_rule_table,
        "pseudo_label": chosen[0] if chosen else None,
        "au_source": peaks.get("au_source"),
    }
    if not chosen:
        notes.append(f"no {g.au_rule_table} rule fires at frame {info['frame_number']}")
    return finish(sample.id, sample_dir, STAGE, VERSION, fp, out, [], notes)
