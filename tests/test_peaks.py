"""Peaks stage on real OpenFace CSVs: MER-Factory's own example must come out exactly as MER-Factory wrote it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mer_eval.generators.stages import StageError
from mer_eval.generators.stages.au_text import merr_labels, run_au_text
from mer_eval.generators.stages.peaks import analyse, run_peaks

from mer_eval.config import load_config
from mer_eval.domain.openface import read_openface_csv
from mer_eval.schema import Sample


def test_mer_factory_example_reproduced(shared_data):
    of = read_openface_csv(shared_data / "openface" / "openface_default_wmv_aus.csv")
    ref = json.loads((shared_data / "annotations-mer-factory" / "default_merr_data_MER.json").read_text())
    r = analyse(of, threshold=0.8, peak_distance=15, rule="mer-factory")
    assert r["chronological_emotion_peaks"] == ref["chronological_emotion_peaks"] == [
        "Peak at 10.20s: disgust (slight)", "Peak at 11.73s: surprise (slight)", "Peak at 14.73s: surprise (slight)"]
    info = r["overall_peak_frame_info"]
    assert info["frame_number"] == ref["overall_peak_frame_info"]["frame_number"] == 222
    assert info["timestamp"] == pytest.approx(14.733)
    assert info["top_aus_intensities"] == ref["overall_peak_frame_info"]["top_aus_intensities"] == {
        "AU25_r": 1.94, "AU26_r": 2.08}
    # 11 intensity peaks, only 3 of which fire an emotion rule (MER-Factory drops the others)
    assert len(r["peaks"]) == 11 and r["row_distance"] == 15


def test_merr_rule_differs_and_is_documented(shared_data):
    of = read_openface_csv(shared_data / "openface" / "openface_default_wmv_aus.csv")
    r = analyse(of, 0.8, 15, rule="merr")
    top = r["rule"]["most_frequent_aus"]
    assert len(top) == 3
    # the three AUs present in the most frames
    valid = of.valid_mask(0.8)
    counts = sorted(((int((of.data[c][valid] == 1).sum()), c[:-2]) for c in of.au_c
                     if c[:-2] + "_r" in of.data), reverse=True)
    assert sorted(c[:-2] for c in top) == sorted(c for _, c in counts[:3])
    series = np.sum([of.data[c] for c in top], axis=0)
    assert r["overall_peak_frame_info"]["frame_number"] == int(of.data["frame"][int(np.argmax(series))])


def test_invalid_frames_excluded(shared_data, tmp_path):
    src = shared_data / "openface" / "openface_default_wmv_aus.csv"
    lines = src.read_text().splitlines()
    cols = lines[0].split(",")
    si = cols.index("success")
    out = [lines[0]]
    for ln in lines[1:]:
        f = ln.split(",")
        if len(f) == len(cols) and f[0] == "222":
            f[si] = "0"  # OpenFace lost the face at the true peak
        out.append(",".join(f))
    p = tmp_path / "x.csv"
    p.write_text("\n".join(out) + "\n")
    r = analyse(read_openface_csv(p), 0.8, 15)
    assert r["overall_peak_frame_info"]["frame_number"] != 222
    assert all(pk["frame_number"] != 222 for pk in r["peaks"])


def test_openface_test_csv_with_leading_spaces(shared_data):
    of = read_openface_csv(shared_data / "openface" / "OpenFace_Test.csv")
    r = analyse(of, 0.8, 15)
    print(r["chronological_emotion_peaks"], r["overall_peak_frame_info"])
    assert r["face_detected"] and r["valid_frames"] == of.n == 100
    intensity = np.sum([of.data[c] for c in of.au_r], axis=0)
    assert r["overall_peak_frame_info"]["frame_number"] == int(of.data["frame"][int(np.argmax(intensity))])
    assert all(v > 0.8 for v in r["overall_peak_frame_info"]["top_aus_intensities"].values())


def test_run_peaks_and_au_text_stage_files(shared_data, tmp_path):
    csv = shared_data / "openface" / "openface_default_wmv_aus.csv"
    s = Sample(id="default", openface_csv=csv)
    cfg = load_config()
    r = run_peaks(s, tmp_path, cfg)
    saved = json.loads((tmp_path / "default_peaks.json").read_text())
    assert saved["outputs"]["overall_peak_frame_info"]["frame_number"] == 222
    assert saved["inputs_sha256"] and saved["config"]["peak_distance"] == 15
    assert not r.reused and run_peaks(s, tmp_path, cfg).reused  # fresh result is read back
    assert not run_peaks(s, tmp_path, load_config(sets=["generate.peak_distance=20"])).reused  # stale: recompute
    run_peaks(s, tmp_path, cfg)
    t = run_au_text(s, tmp_path, cfg).outputs
    assert t["au_text"] == "Lips part (intensity: 1.94), Jaw drop (intensity: 2.08)"
    assert [e["emotion"] for e in t["pseudo_labels"]["mer-factory"]] == ["surprise"]
    assert t["pseudo_label"] == "surprise"
    of = read_openface_csv(csv)
    idx = of.row_index_of_frame(222)
    assert t["pseudo_labels"]["merr"] == merr_labels(of.presences(idx))
    t2 = run_au_text(s, tmp_path, load_config(sets=["generate.au_rule_table=merr"])).outputs
    assert t2["pseudo_label"] == (t2["pseudo_labels"]["merr"] or [None])[0]


def test_merr_table():
    assert merr_labels({"AU05_c": 1, "AU26_c": 1}) == ["surprise"]
    assert merr_labels({"AU06_c": 1, "AU12_c": 1, "AU01_c": 1, "AU04_c": 1}) == ["happy"]
    assert merr_labels({"AU04_c": 1, "AU05_c": 1, "AU07_c": 1, "AU23_c": 1}) == ["angry"]
    assert merr_labels({"AU01_c": 1, "AU04_c": 1, "AU15_c": 1}) == ["sad"]
    assert merr_labels({"AU05_c": 1, "AU26_c": 0}) == []


def test_missing_csv_is_stage_error(tmp_path):
    with pytest.raises(StageError, match="no AU table"):
        run_peaks(Sample(id="x"), tmp_path, load_config())


def test_all_frames_without_face(shared_data, tmp_path):
    src = shared_data / "openface" / "OpenFace_Test.csv"
    lines = src.read_text().splitlines()
    cols = [c.strip() for c in lines[0].split(",")]
    si = cols.index("success")
    rows = [lines[0]]
    for ln in lines[1:]:
        f = ln.split(",")
        f[si] = " 0"
        rows.append(",".join(f))
    p = tmp_path / "noface.csv"
    p.write_text("\n".join(rows) + "\n")
    r = run_peaks(Sample(id="nf", openface_csv=p), tmp_path / "nf", load_config()).outputs
    assert r["face_detected"] is False and r["overall_peak_frame_info"] is None
    assert r["chronological_emotion_peaks"] == [] and "no face" in r["reason"]
    assert run_au_text(Sample(id="nf", openface_csv=p), tmp_path / "nf", load_config()).outputs["au_text"] is None


def test_stage_table_resolves():
    from mer_eval.generators.stages import STAGE_ORDER, get_stage

    for name in STAGE_ORDER:
        assert callable(get_stage(name))
    with pytest.raises(KeyError):
        get_stage("nope")


def test_table_without_timestamps_keeps_its_emotion_peaks(shared_data, tmp_path):
    """A real OpenFace CSV with its timestamp column removed: the same peaks, named by frame, never ["neutral"]."""
    import csv

    src = shared_data / "openface" / "openface_default_wmv_aus.csv"
    rows = list(csv.reader(src.open(encoding="utf-8")))
    i = [h.strip() for h in rows[0]].index("timestamp")
    p = tmp_path / "no_ts.csv"
    with p.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([[c for j, c in enumerate(r) if j != i] for r in rows])
    with_ts = analyse(read_openface_csv(src))
    without = analyse(read_openface_csv(p))
    assert with_ts["chronological_emotion_peaks"] != ["neutral"]
    n = len(with_ts["chronological_emotion_peaks"])
    assert len(without["chronological_emotion_peaks"]) == n
    for a, b, pk in zip(with_ts["chronological_emotion_peaks"], without["chronological_emotion_peaks"],
                        [q for q in with_ts["peaks"] if q["emotions"]]):
        assert b == f"Peak at frame {pk['frame_number']}:" + a.split(":", 1)[1]
