"""mer_eval.domain.face: MediaPipe FaceLandmarker -> OpenFace-style AUs, on real photos and videos."""

from __future__ import annotations

import numpy as np
import pytest

from mer_eval.domain import face
from mer_eval.domain.facs import OPENFACE_C_AUS, OPENFACE_R_AUS
from mer_eval.metric import ModelUnavailable
from mer_eval.models import resolve
from mer_eval.domain.openface import read_openface_csv

pytestmark = pytest.mark.skipif(not resolve("face-landmarker", with_sha=False).available,
                                reason="face-landmarker .task file not installed")


@pytest.fixture
def faces(shared_data):
    return shared_data / "faces"


def test_blendshape_map_table():
    # hand-computed: smile 0.8/0.6 -> mean 0.7 -> 3.5; browInnerUp 0.1 -> 0.5 (below presence 1.0)
    aus, pres = face.blendshapes_to_aus({"mouthSmileLeft": 0.8, "mouthSmileRight": 0.6, "browInnerUp": 0.1,
                                         "jawOpen": 0.5, "mouthClose": 0.1, "mouthRollLower": 0.3})
    assert set(aus) == {f"AU{a}_r" for a in OPENFACE_R_AUS}
    assert set(pres) == {f"AU{a}_c" for a in OPENFACE_C_AUS}
    assert aus["AU12_r"] == pytest.approx(3.5)
    assert pres["AU12_c"] == 1.0
    assert aus["AU01_r"] == pytest.approx(0.5) and pres["AU01_c"] == 0.0
    assert aus["AU26_r"] == pytest.approx(2.5)
    assert aus["AU25_r"] == pytest.approx(2.0)  # (jawOpen - mouthClose) * 5
    assert pres["AU28_c"] == 1.0 and "AU28_r" not in aus
    assert aus["AU04_r"] == 0.0
    # clipping to 0..5
    aus, _ = face.blendshapes_to_aus({"jawOpen": 1.5})
    assert aus["AU26_r"] == 5.0


def test_happy_vs_anger_and_surprise(faces):
    from PIL import Image

    happy, anger, surprise = face.detect([
        np.asarray(Image.open(faces / "0-f15-hao-ph.jpg").convert("RGB")),  # numpy input
        Image.open(faces / "15-f13-anc-ph.jpg"),  # PIL input
        faces / "0-f1-su-ph.jpg",  # path input
    ])
    assert happy is not None and anger is not None and surprise is not None
    assert happy.n_faces == 1
    assert happy.aus["AU12_r"] > anger.aus["AU12_r"] + 1.0
    assert happy.aus["AU12_r"] + happy.aus["AU06_r"] > anger.aus["AU12_r"] + anger.aus["AU06_r"]
    assert happy.presence["AU12_c"] == 1.0 and anger.presence["AU12_c"] == 0.0
    assert anger.aus["AU04_r"] > happy.aus["AU04_r"]  # brow lowerer in anger
    assert (surprise.aus["AU26_r"] >= 1.0 or surprise.aus["AU05_r"] >= 1.0
            or surprise.aus["AU01_r"] >= 1.0 or surprise.aus["AU02_r"] >= 1.0)
    assert surprise.aus["AU26_r"] > happy.aus["AU26_r"]
    assert surprise.aus["AU01_r"] > anger.aus["AU01_r"]
    # values are on the 0..5 scale and bbox lies inside the 512x512 photo
    for r in (happy, anger, surprise):
        assert all(0.0 <= v <= 5.0 for v in r.aus.values())
        assert len(r.blendshapes) >= 50
        x0, y0, x1, y1 = r.bbox
        assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512
        assert (x1 - x0) > 100  # a face, not a speck


def test_no_face_multi_face_astronaut(faces):
    none, multi, astro = face.detect([faces / "free-mountain-vector-01.jpg", faces / "multi_face.jpg",
                                      faces / "astronaut.png"])
    assert none is None
    assert multi is not None and multi.n_faces > 1
    assert len(multi.extra["all_bboxes"]) == multi.n_faces
    assert astro is not None and astro.presence["AU12_c"] == 1.0 and astro.aus["AU12_r"] >= 2.5


def test_missing_weights_is_unavailable(tmp_path):
    from mer_eval.config import Config

    cfg = Config()
    cfg.models.paths["face-landmarker"] = str(tmp_path / "nope.task")
    with pytest.raises(ModelUnavailable, match="nope.task"):
        face.detect([np.zeros((32, 32, 3), np.uint8)], config=cfg)


def test_video_roundtrip(faces, tmp_path):
    rows = list(face.detect_video(faces / "single_face.mp4", every_n=5, max_frames=3))
    assert [r["frame"] for r in rows] == [1, 6, 11]
    assert all(r["success"] == 1 for r in rows)
    assert rows[1]["timestamp"] > rows[0]["timestamp"]
    out = face.write_openface_csv(rows, tmp_path / "x.csv")
    header = out.read_text().splitlines()[0]
    assert header.startswith("frame, face_id, timestamp, confidence, success, AU01_r")
    of = read_openface_csv(out)
    assert of.n == 3 and not of.notes
    assert list(of.data["frame"].astype(int)) == [1, 6, 11]
    assert of.au_r == list(face.R_COLUMNS) and of.au_c == list(face.C_COLUMNS)
    for i, r in enumerate(rows):
        for c in face.R_COLUMNS:
            assert of.data[c][i] == pytest.approx(r[c], abs=0.006)
        for c in face.C_COLUMNS:
            assert of.data[c][i] == r[c]
    assert of.valid_mask(0.8).all()


def test_no_face_video(faces, tmp_path):
    rows = list(face.detect_video(faces / "no_face.mp4", every_n=10, max_frames=3))
    assert len(rows) == 3
    assert all(r["success"] == 0 and r["confidence"] == 0.0 for r in rows)
    assert all("AU12_r" not in r for r in rows)  # never zero-filled in the rows
    of = read_openface_csv(face.write_openface_csv(rows, tmp_path / "n.csv"))
    assert of.n == 3 and not of.valid_mask().any()


def test_streaming_path_matches_media_path(faces):
    # max_frames=None streams with PyAV; max_frames set goes through mer_eval.domain.media.read_video_frames
    streamed = list(face.detect_video(faces / "single_face.mp4", every_n=30))
    assert [r["frame"] for r in streamed] == [1, 31, 61]  # 72 frames
    listed = list(face.detect_video(faces / "single_face.mp4", every_n=30, max_frames=10))
    assert [r["frame"] for r in listed] == [1, 31, 61]  # indices past the end are not asked for
    for a, b in zip(streamed, listed):
        assert a["timestamp"] == pytest.approx(b["timestamp"], abs=1e-3)
        assert a["AU12_r"] == pytest.approx(b["AU12_r"], abs=1e-3)


def test_face_then_no_face_video(faces):
    rows = list(face.detect_video(faces / "face_noface.mov", every_n=20))
    assert len(rows) == 9  # 169 frames
    ok = [r["success"] for r in rows]
    assert 1 in ok and 0 in ok


def test_threads_share_one_landmarker(faces):
    from concurrent.futures import ThreadPoolExecutor

    paths = [faces / "0-f15-hao-ph.jpg", faces / "astronaut.png"] * 3
    with ThreadPoolExecutor(4) as ex:
        res = list(ex.map(face.detect_one, paths))
    assert all(r is not None for r in res)
    assert res[0].aus == res[2].aus == res[4].aus  # same image, same numbers, whatever the thread
    assert face.get_landmarker() is face.get_landmarker()
