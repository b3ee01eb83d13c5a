"""The MERR exports load in Emotion-LLaMA's dataset class.

The checks below redo what its ``FeatureFaceDataset`` (ZebangCheng/Emotion-LLaMA,
``minigpt4/datasets/datasets/first_face.py``) does with an annotation folder, written from reading it (not
imported: it needs its feature files, model code and fixed paths): each ``.txt`` line is split on spaces into
name, frame count and emotion; the emotion is looked up in its 9 classes (a KeyError otherwise); the video is
``<vis_root>/<name>.mp4``, else ``.avi``, and a frame is read from it; the fine JSON gives
``[name]["smp_reason_caption"]``, the coarse one ``[name]["caption"]``; ``transcription_en_all.csv`` read by
pandas gives the row whose ``name`` is the sample's, column ``sentence`` (``.values[0]``: an IndexError when
missing)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from mer_eval.generators.export import EMOTION_LLAMA_CLASSES, emotion_llama_class, export_run
from mer_eval.generators.pipeline import run_generate

from mer_eval.config import load_config

from conftest import SHARED_DATA as SHARED  # noqa: E402 (../shared/data, else tests/data/real)

# its class list, in its order (the loader's emos list)
LOADER_EMOS = ["neutral", "angry", "happy", "sad", "worried", "surprise", "fear", "contempt", "doubt"]


def load_like_emotion_llama(ann_path: Path, vis_root: Path, fine: bool) -> list[dict]:
    """Every item of the dataset, as its __getitem__ builds them (the parts that touch our files)."""
    import cv2

    emo2idx = {e: i for i, e in enumerate(LOADER_EMOS)}
    tmp = [x.strip().split(" ") for x in open(ann_path)]
    captions = json.loads(ann_path.with_suffix(".json").read_text(encoding="utf-8"))
    lines = pd.read_csv(ann_path.parent / "transcription_en_all.csv")
    items = []
    for t in tmp:
        name = t[0]
        video = vis_root / f"{name}.mp4"
        if not video.exists():
            video = vis_root / f"{name}.avi"
        cap = cv2.VideoCapture(str(video))
        ok, frame = cap.read()
        cap.release()
        assert ok and frame is not None, f"no frame from {video}"
        caption = captions[name]["smp_reason_caption" if fine else "caption"]
        sentence = lines.loc[lines["name"] == name, "sentence"].values[0]
        items.append({"name": name, "frames": int(t[1]), "emotion": emo2idx[t[2]], "caption": caption,
                      "says": f"The person in video says: {sentence}. "})
    return items


def _talking_face(video: Path, speech: Path, out: Path) -> None:
    """The face video's picture with the first seconds of a real speech recording as its sound (PyAV)."""
    import av

    vin, ain, o = av.open(str(video)), av.open(str(speech)), av.open(str(out), "w")
    try:
        vs_in = vin.streams.video[0]
        vs = o.add_stream_from_template(vs_in)
        aout = o.add_stream("aac", rate=16000)
        aout.layout = "mono"
        seconds = float(vs_in.duration * vs_in.time_base)
        for pkt in vin.demux(vs_in):
            if pkt.dts is not None:
                pkt.stream = vs
                o.mux(pkt)
        resampler, n = av.AudioResampler(format="fltp", layout="mono", rate=16000), 0
        for frame in ain.decode(audio=0):
            for f in resampler.resample(frame):
                if n / 16000 < seconds:
                    f.pts = n
                    n += f.samples
                    for pk in aout.encode(f):
                        o.mux(pk)
        for pk in aout.encode(None):
            o.mux(pk)
    finally:
        o.close()
        vin.close()
        ain.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    pytest.importorskip("cv2")
    pytest.importorskip("av")
    tmp = tmp_path_factory.mktemp("el")
    inp = tmp / "in"
    inp.mkdir()
    talk = tmp / "talk.mp4"
    _talking_face(SHARED / "faces" / "single_face.mp4", SHARED / "speech-jfk" / "jfk.flac", talk)
    for name in ("happy_clip", "disgust_clip", "x_clip", "anger_clip"):
        shutil.copy(talk, inp / f"{name}.mp4")
    shutil.copy(SHARED / "faces" / "single_face.mp4", inp / "silent_clip.mp4")  # no speech in it
    shutil.copy(SHARED / "faces" / "0-f15-hao-ph.jpg", inp / "photo.jpg")
    (inp / "labels.csv").write_text("name,label\nhappy_clip,Happy\ndisgust_clip,disgust\nx_clip,x\n"
                                    "anger_clip,Anger\nphoto,happy\nsilent_clip,happy\n", encoding="utf-8")
    out = tmp / "out"
    cfg = load_config(None, ["generate.au_max_frames=12", "generate.asr_model=whisper-tiny.en",
                             "generate.asr_language=en", "generate.video_frames=2", f"cache.dir={tmp / 'c'}"])
    s = run_generate(inp, out, cfg, progress=False)
    assert s["done"] == 6, s["failures"]
    return {"out": out, "inp": inp, "tmp": tmp}


@pytest.mark.parametrize("fine", [False, True])
def test_exports_load_in_emotion_llamas_dataset_class(run, tmp_path, fine):
    name = "MERR_fine_grained.json" if fine else "MERR_coarse_grained.json"
    res = export_run(run["out"], "merr-fine" if fine else "merr-coarse", tmp_path / name)
    assert (tmp_path / "transcription_en_all.csv") in res.extra_files
    items = load_like_emotion_llama(tmp_path / name.replace(".json", ".txt"), run["inp"], fine)
    by = {i["name"]: i for i in items}
    assert set(by) == {"happy_clip", "anger_clip", "silent_clip"} and res.written == 3
    assert LOADER_EMOS[by["happy_clip"]["emotion"]] == "happy"  # 'Happy' mapped, not written raw
    assert LOADER_EMOS[by["anger_clip"]["emotion"]] == "angry"  # 'Anger' -> its 'angry'
    for i in items:
        assert i["frames"] > 0 and i["caption"]
    for n in ("happy_clip", "anger_clip"):  # they speak: their transcript is the line
        assert "nan" not in by[n]["says"] and len(by[n]["says"]) > len("The person in video says: . ")
    assert by["silent_clip"]["says"] == "The person in video says: nan. "  # nobody speaks: an empty cell
    # what is not exported, and why (counted)
    assert "'disgust' is none of Emotion-LLaMA's 9 classes" in res.skipped["disgust_clip"]
    assert "'x' is none of Emotion-LLaMA's 9 classes" in res.skipped["x_clip"]
    assert "reads a video" in res.skipped["photo"]
    counts = res.reason_counts()["skipped"]
    assert sum(counts.values()) == 3 and any("an image sample" in k for k in counts)
    # the transcript csv: one row per exported sample, the ASR transcript of the run
    tr = pd.read_csv(tmp_path / "transcription_en_all.csv")
    assert list(tr.columns) == ["name", "sentence"]
    assert sorted(tr["name"]) == ["anger_clip", "happy_clip", "silent_clip"]
    meta = json.loads((run["out"] / "happy_clip" / "happy_clip_merr_data.json").read_text())
    first_line = meta["coarse_descriptions_at_peak"]["audio_analysis"].split("\n")[0]
    assert tr.set_index("name").loc["happy_clip", "sentence"] in first_line


def test_a_video_its_loader_cannot_open_is_skipped(run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(run["out"] / "happy_clip", out / "happy_clip")
    # the sample's video is a .mov (Emotion-LLaMA opens <name>.mp4 / .avi only)
    shutil.copy(run["inp"] / "happy_clip.mp4", out / "happy_clip" / "happy_clip.mov")
    from mer_eval.discovery import discover

    (s,) = discover(out).samples
    if s.video is None or Path(s.video).suffix != ".mov":
        pytest.skip("the copied sample does not resolve to the .mov here")
    res = export_run(out, "merr-coarse", tmp_path / "m.json")
    assert res.written == 0 and ".mov" in res.skipped["happy_clip"]


def test_class_mapping():
    assert EMOTION_LLAMA_CLASSES == tuple(LOADER_EMOS)
    for word, cls in (("Happy", "happy"), ("HAP", "happy"), ("joy", "happy"), ("Sadness", "sad"),
                      ("frustration", "angry"), ("Worried", "worried"), ("anxious", "worried"),
                      ("Surprised", "surprise"), ("Doubt", "doubt"), ("skeptical", "doubt"),
                      ("Contempt", "contempt"), ("calm", "neutral"), ("Fear", "fear")):
        assert emotion_llama_class(word) == cls, word
    for word in ("disgust", "Disgusted", "x", "", None, "positive", "undetermined"):
        assert emotion_llama_class(word) is None, word
