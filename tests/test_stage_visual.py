"""Visual stage: the packaged FER2013 model on real photos and face videos (numbers printed; asserts only
what the model really does)."""

from __future__ import annotations

import json

import pytest
from mer_eval.generators.stages import StageError
from mer_eval.generators.stages.au import run_au
from mer_eval.generators.stages.peaks import run_peaks
from mer_eval.generators.stages.visual import FER_LABELS, run_visual

from mer_eval.config import load_config
from mer_eval.models import resolve
from mer_eval.schema import Sample


@pytest.fixture(autouse=True)
def _need_models():
    for key in ("fer", "face-landmarker"):
        if not resolve(key, with_sha=False).available:
            pytest.skip(f"{key} weights are not installed")


def _img(shared_data, tmp_path, name, cfg=None):
    s = Sample(id=name.split(".")[0].replace("-", "_"), type="image", image=shared_data / "faces" / name)
    out = run_visual(s, tmp_path / s.id, cfg or load_config()).outputs
    print(name, out.get("fer_top"), out.get("fer_probabilities"))
    return out


def test_fer_label_order_matches_fer_package():
    import importlib.util
    import re
    from pathlib import Path

    spec = importlib.util.find_spec("fer")
    if spec is None:
        pytest.skip("fer package not installed")
    src = (Path(next(iter(spec.submodule_search_locations))) / "fer.py").read_text()
    body = src[src.index("def _get_labels"):]
    labels = re.findall(r'\d+: "(\w+)"', body[: body.index("}")])
    assert tuple(labels) == FER_LABELS


def test_posed_photos(shared_data, tmp_path):
    hao = _img(shared_data, tmp_path, "0-f15-hao-ph.jpg")
    anc = _img(shared_data, tmp_path, "15-f13-anc-ph.jpg")
    su = _img(shared_data, tmp_path, "0-f1-su-ph.jpg")
    di = _img(shared_data, tmp_path, "45-m7-di-ph.jpg")
    for o in (hao, anc, su, di):
        assert o["face_detected"] and set(o["fer_probabilities"]) == set(FER_LABELS)
        assert abs(sum(o["fer_probabilities"].values()) - 1) < 1e-3
    assert hao["fer_top"] == "happy" and hao["fer_probabilities"]["happy"] > 0.9
    assert hao["fer_probabilities"]["happy"] > anc["fer_probabilities"]["happy"]
    top2 = sorted(anc["fer_probabilities"], key=anc["fer_probabilities"].get, reverse=True)[:2]
    assert {"angry", "disgust"} & set(top2)  # the model puts sad first here, angry second
    su_top2 = sorted(su["fer_probabilities"], key=su["fer_probabilities"].get, reverse=True)[:2]
    assert "surprise" in su_top2
    # the disgust photo: the model says neutral/sad (printed above); nothing asserted about disgust


def test_no_face_image_skips_fer(shared_data, tmp_path):
    o = _img(shared_data, tmp_path, "free-mountain-vector-01.jpg")
    assert o["face_detected"] is False and o["fer_probabilities"] is None and "no face" in o["reason"]


def test_video_peak_frame_and_sampled_frames(shared_data, tmp_path):
    s = Sample(id="sf", video=shared_data / "faces" / "single_face.mp4")
    cfg = load_config(sets=["generate.au_max_frames=6", "generate.video_frames=3"])
    run_au(s, tmp_path, cfg)
    pk = run_peaks(s, tmp_path, cfg).outputs
    r = run_visual(s, tmp_path, cfg)
    o = r.outputs
    print(o["fer_top"], o["fer_probabilities"])
    assert o["frame_source"] == "peak_frame" and o["frame_image"] == pk["peak_frame_image"]
    assert o["fer_top"] == "happy"  # a smiling face
    assert [f["frame_number"] for f in o["sampled_frames"]] == [13, 37, 61]  # centres of 3 thirds of 72
    for f in o["sampled_frames"]:
        assert f["path"] and (tmp_path / f"sf_frame_{f['frame_number']:05d}.png").is_file()
    saved = json.loads((tmp_path / "sf_visual.json").read_text())
    assert saved["outputs"]["fer_model"]["sha256"] and saved["config"]["video_frames"] == 3
    assert run_visual(s, tmp_path, cfg).reused


def test_no_face_video(shared_data, tmp_path):
    s = Sample(id="nf", video=shared_data / "faces" / "no_face.mp4")
    cfg = load_config(sets=["generate.au_max_frames=5", "generate.video_frames=2"])
    run_au(s, tmp_path, cfg)
    run_peaks(s, tmp_path, cfg)
    o = run_visual(s, tmp_path, cfg).outputs
    assert o["face_detected"] is False and o["fer_probabilities"] is None
    assert len(o["sampled_frames"]) == 2  # frames are still saved for image-taking providers


def test_nothing_to_look_at(tmp_path):
    with pytest.raises(StageError, match="no video or image"):
        run_visual(Sample(id="a", audio=tmp_path / "a.wav"), tmp_path, load_config())
