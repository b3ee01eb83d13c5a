"""AU stage backends on the real face videos (few frames, to stay fast)."""

from __future__ import annotations

import json

import pytest
from mer_eval.generators.stages import StageError
from mer_eval.generators.stages.au import pyfeat_unavailable, run_au
from mer_eval.generators.stages.peaks import run_peaks

from mer_eval.config import load_config
from mer_eval.domain.openface import read_openface_csv
from mer_eval.schema import Sample

FAST = ["generate.au_max_frames=8"]


def test_mediapipe_single_face_video(shared_data, tmp_path):
    s = Sample(id="single_face", video=shared_data / "faces" / "single_face.mp4")
    cfg = load_config(sets=FAST)
    r = run_au(s, tmp_path, cfg)
    assert r.outputs["au_source"] == "mediapipe"  # auto: no CSV, no openface_bin
    of = read_openface_csv(tmp_path / "single_face.csv")
    assert of.n == 8 and r.outputs["face_frames"] == 8
    assert of.data["frame"][0] == 1  # OpenFace numbering, from 1
    assert all(0 <= of.data[c].min() and of.data[c].max() <= 5 for c in of.au_r)
    saved = json.loads((tmp_path / "single_face_au.json").read_text())
    assert saved["outputs"]["au_source"] == "mediapipe" and saved["outputs"]["model"]["sha256"]
    assert saved["outputs"]["confidence_column"].startswith("not measured")  # the 1.0 is a flag, said so
    p = run_peaks(s, tmp_path, cfg)
    info = p.outputs["overall_peak_frame_info"]
    print(p.outputs["chronological_emotion_peaks"], info)
    png = tmp_path / "single_face_peak_frame.png"
    assert png.is_file() and png in p.files
    import numpy as np
    from PIL import Image

    from mer_eval.domain.media import frame_at

    # the png is decode index frame_number - 1
    a = np.asarray(Image.open(png).convert("RGB"), dtype=float)
    b = np.asarray(frame_at(s.video, info["frame_number"] - 1), dtype=float)
    assert a.shape == b.shape and np.abs(a - b).mean() < 1.0


def test_silent_face_video(shared_data, tmp_path):
    s = Sample(id="wl", video=shared_data / "faces" / "WolfgangLanger_Pexels.mp4")
    r = run_au(s, tmp_path, load_config(sets=FAST))
    assert r.outputs["face_frames"] == r.outputs["frames"] == 8
    assert r.outputs["every_n"] == 59  # 472 frames / 8, evenly spread over the whole 19.7 s


def test_no_face_video(shared_data, tmp_path):
    s = Sample(id="nf", video=shared_data / "faces" / "no_face.mp4")
    cfg = load_config(sets=FAST)
    r = run_au(s, tmp_path, cfg)
    of = read_openface_csv(tmp_path / "nf.csv")
    assert of.n > 0 and (of.data["success"] == 0).all() and r.outputs["face_frames"] == 0
    assert all((of.data[c] == 0).all() for c in of.au_r)  # written as 0 with success 0, never NaN
    p = run_peaks(s, tmp_path, cfg)
    assert p.outputs["face_detected"] is False and p.outputs["overall_peak_frame_info"] is None
    assert not (tmp_path / "nf_peak_frame.png").exists()


def test_image_one_row(shared_data, tmp_path):
    s = Sample(id="img", type="image", image=shared_data / "faces" / "single_face.jpg")
    run_au(s, tmp_path, load_config())
    of = read_openface_csv(tmp_path / "img.csv")
    assert of.n == 1 and of.data["success"][0] == 1


def test_precomputed_openface_csv(shared_data, tmp_path):
    csv = shared_data / "openface" / "OpenFace_Test.csv"
    s = Sample(id="v", video=shared_data / "faces" / "single_face.mp4", openface_csv=csv)
    r = run_au(s, tmp_path, load_config())
    assert r.outputs["au_source"] == "openface" and "precomputed" in r.outputs["au_origin"]
    assert (tmp_path / "v.csv").read_bytes() == csv.read_bytes()


def test_openface_and_pyfeat_unavailable_reasons(shared_data, tmp_path):
    s = Sample(id="v", video=shared_data / "faces" / "single_face.mp4")
    with pytest.raises(StageError, match="openface_bin is not set"):
        run_au(s, tmp_path, load_config(sets=["generate.au_backend=openface"]))
    with pytest.raises(StageError, match="does not exist"):
        run_au(s, tmp_path, load_config(sets=["generate.au_backend=openface",
                                              f"generate.openface_bin={tmp_path}/FeatureExtraction"]))
    why = pyfeat_unavailable()
    if why is None:
        pytest.skip("py-feat with weights is installed here")
    with pytest.raises(StageError, match="py-feat"):
        run_au(s, tmp_path, load_config(sets=["generate.au_backend=pyfeat"]))


def test_face_then_no_face_video(shared_data, tmp_path):
    """face_noface.mov: frames without a face are success 0 and never chosen as a peak."""
    s = Sample(id="fnf", video=shared_data / "faces" / "face_noface.mov")
    cfg = load_config(sets=["generate.au_max_frames=12"])
    r = run_au(s, tmp_path, cfg)
    of = read_openface_csv(tmp_path / "fnf.csv")
    ok = of.data["success"] == 1
    print("face frames", int(ok.sum()), "of", of.n)
    assert 0 < r.outputs["face_frames"] < r.outputs["frames"]
    p = run_peaks(s, tmp_path, cfg).outputs
    peak_row = of.row_index_of_frame(p["overall_peak_frame_info"]["frame_number"])
    assert ok[peak_row]
    assert all(ok[of.row_index_of_frame(pk["frame_number"])] for pk in p["peaks"])


def test_openface_binary_contract(shared_data, tmp_path):
    """The FeatureExtraction call: -f <video> -out_dir <dir> -aus, then <stem>.csv is picked up.

    The executable here is a stand-in script that records its arguments and writes a real OpenFace CSV
    (OpenFace itself is not installed); it checks our side of the command-line contract only.
    """
    import os
    import stat

    csv = shared_data / "openface" / "OpenFace_Test.csv"
    exe = tmp_path / "bin" / "FeatureExtraction"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n"
                   f'echo "$@" > {tmp_path}/args.txt\n'
                   'while [ $# -gt 0 ]; do case "$1" in -f) f="$2"; shift;; -out_dir) o="$2"; shift;; esac; shift; done\n'
                   f'stem=$(basename "$f"); stem="${{stem%.*}}"; cp {csv} "$o/$stem.csv"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    video = shared_data / "faces" / "single_face.mp4"
    s = Sample(id="of", video=video)
    r = run_au(s, tmp_path / "out", load_config(sets=[f"generate.openface_bin={exe}"]))
    args = (tmp_path / "args.txt").read_text().split()
    assert args[:2] == ["-f", str(video)] and args[2] == "-out_dir" and args[4] == "-aus"
    assert r.outputs["au_source"] == "openface" and "FeatureExtraction run" in r.outputs["au_origin"]
    assert (tmp_path / "out" / "of.csv").read_bytes() == csv.read_bytes()
    assert os.path.isfile(tmp_path / "out" / "of_au.json")


def test_corrupt_video_is_stage_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x01 not a video" * 100)
    with pytest.raises(StageError) as e:
        run_au(Sample(id="bad", video=bad), tmp_path / "out", load_config(sets=["generate.au_backend=mediapipe"]))
    assert e.value.stage == "au" and "bad.mp4" in e.value.reason
