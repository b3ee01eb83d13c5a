"""``--media-dir DIR``: MER-Factory's recorded ``source_path`` / ``audio_path`` (paths on the machine that ran
it) found under DIR -- by relative path or file name, never outside DIR -- so image- and audio-type outputs,
which hold no copy of their input, get media-based scores (CLIP, CLAP, ASR)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from mer_eval.cli import main
from mer_eval.discovery import discover
from mer_eval.media_dir import MediaDir, apply_media_dir
from mer_eval.validate import check_metrics

from conftest import SHARED_DATA as SHARED  # noqa: E402 (../shared/data, else tests/data/real)

PHOTO = "0-f15-hao-ph.jpg"


def _write(p: Path, data: dict) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2), encoding="utf-8")


@pytest.fixture
def mf_run(tmp_path, examples):
    """A MER-Factory output folder as its image and audio types write it (no media inside), its MER-type
    sample from examples/, and a media folder laid out like the machine that ran it."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    run = tmp_path / "mf_out"
    shutil.copytree(examples / "mer-factory" / "default", run / "default")  # source_path /content/OpenFace/...
    _write(run / "photo" / "photo_image_analysis.json", {
        "source_path": f"/home/someone/data/faces/{PHOTO}",
        "au_text_description": "Cheek raiser (intensity: 1.80), Lip corner puller (smile) (intensity: 2.10)",
        "llm_au_description": "The raised cheeks and pulled lip corners form a smile.",
        "image_visual_description": "A person smiling at the camera.",
        "final_summary": "In conclusion, the core emotional state is happy, and the most likely cause is a joke."})
    _write(run / "jfk" / "jfk_audio_analysis.json", {
        "source_path": "C:\\Users\\someone\\speech\\jfk.flac",
        "audio_analysis": "And so my fellow Americans, ask not what your country can do for you, ask what you "
                          "can do for your country.\nAudio Characteristics: a steady, resolute voice."})
    media = tmp_path / "media"
    (media / "data" / "faces").mkdir(parents=True)
    shutil.copy(SHARED / "faces" / PHOTO, media / "data" / "faces" / PHOTO)  # found by relative path
    (media / "deep" / "er").mkdir(parents=True)
    shutil.copy(SHARED / "speech-jfk" / "jfk.flac", media / "deep" / "er" / "jfk.flac")  # found by name only
    return run, media


def test_without_media_dir_the_outputs_have_no_media(mf_run):
    run, _ = mf_run
    by = discover(run).by_id()
    assert by["photo"].image is None and by["jfk"].audio is None and by["default"].video is None


def test_media_found_by_relative_path_and_by_name_under_dir_only(mf_run):
    run, media = mf_run
    by = discover(run, media_dir=media).by_id()
    assert by["photo"].image == media / "data" / "faces" / PHOTO
    assert any("by relative path data/faces/" + PHOTO in n for n in by["photo"].notes), by["photo"].notes
    assert by["jfk"].audio == media / "deep" / "er" / "jfk.flac"  # a Windows path, matched by its file name
    assert any("by file name (in a subfolder)" in n for n in by["jfk"].notes)
    # default.wmv is not under DIR: said so, nothing invented
    assert by["default"].video is None
    assert any("'default.wmv'" in n and "not found" in n for n in by["default"].notes)
    ds = discover(run, media_dir=media)
    assert any("2 recorded media paths found, 1 not found" in n for n in ds.notes), ds.notes


def test_never_outside_the_media_dir(mf_run, tmp_path):
    run, media = mf_run
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(SHARED / "faces" / PHOTO, outside / "elsewhere.jpg")
    md = MediaDir(media)
    # a recorded '..' path is not followed, even where it would reach a real file
    assert md.find("../outside/elsewhere.jpg")[0] is None
    assert "'..'" in md.find("../outside/elsewhere.jpg")[1]
    # a link under DIR that leads out of it is never used, by relative path nor by name
    os.symlink(outside / "elsewhere.jpg", media / "elsewhere.jpg")
    os.symlink(outside, media / "linked")
    assert md.find("/x/elsewhere.jpg") == (None, f"no file named 'elsewhere.jpg' under {media}")
    assert md.find("/x/linked/elsewhere.jpg")[0] is None
    # an absolute recorded path that exists on this machine outside DIR is not taken either
    assert MediaDir(media).find(str(outside / "elsewhere.jpg"))[0] is None


def test_two_files_with_the_name_are_ambiguous(mf_run):
    run, media = mf_run
    (media / "other").mkdir()
    shutil.copy(SHARED / "speech-jfk" / "jfk.flac", media / "other" / "jfk.flac")
    ds = discover(run, media_dir=media)
    jfk = ds.by_id()["jfk"]
    assert jfk.audio is None and any("2 files named 'jfk.flac'" in n and "ambiguous" in n for n in jfk.notes)


def test_a_file_in_the_output_folder_wins(mf_run, examples):
    run, media = mf_run
    shutil.copy(SHARED / "faces" / "0-f1-su-ph.jpg", run / "photo" / "photo.jpg")
    s = discover(run, media_dir=media).by_id()["photo"]
    assert s.image == run / "photo" / "photo.jpg"
    assert counts_of(run, media) == {"found": 1, "not_found": 1}


def counts_of(run, media):
    ds = discover(run)
    return apply_media_dir(ds, media)


def test_legacy_video_id_and_loose_files(tmp_path):
    """The older schema records video_id only; a folder of loose result files works too."""
    src = SHARED / "annotations-mer-factory" / "bakllava_llama3.2_merr.json"
    if not src.is_file():
        pytest.skip("../shared/data/annotations-mer-factory is not present")
    vid = json.loads(src.read_text())["video_id"]
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(src, loose / src.name)
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(SHARED / "faces" / "single_face.mp4", media / f"{vid}.mp4")
    (s,) = discover(loose, media_dir=media).samples  # its source_video names the file
    assert s.video == media / f"{vid}.mp4" and any("source_video" in n and "by file name" in n for n in s.notes)
    data = json.loads(src.read_text())
    del data["source_video"]
    _write(loose / src.name, data)
    (s,) = discover(loose, media_dir=media).samples  # only the id is left
    assert s.video == media / f"{vid}.mp4" and any("by video_id" in n for n in s.notes), s.notes


def test_validate_and_score_use_the_media_dir(mf_run, tmp_path):
    from mer_eval.config import load_config

    run, media = mf_run
    cfg = load_config(None, [])
    ready = {k: set(g.get("", [])) for k, g in check_metrics(discover(run, media_dir=media).samples,
                                                               ["clip", "clap", "asr_wer"], cfg).items()}
    before = {k: set(g.get("", [])) for k, g in check_metrics(discover(run).samples,
                                                                ["clip", "clap", "asr_wer"], cfg).items()}
    assert "photo" in ready["clip"] and "photo" not in before["clip"]
    assert "jfk" in ready["clap"] and "jfk" not in before["clap"]
    assert "jfk" in ready["asr_wer"] and "jfk" not in before["asr_wer"]
    r = CliRunner().invoke(main, ["validate", str(run), "--media-dir", str(media), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert any("--media-dir" in n for d in out["datasets"] for n in d["notes"])
    # score: the audio-type output gets its ASR WER against a Whisper baseline of the found file
    r = CliRunner().invoke(main, ["score", str(run), "--media-dir", str(media), "--metrics", "asr_wer",
                                  "--set", "metrics.asr_wer.model=whisper-tiny.en",
                                  "--set", "metrics.asr_wer.language=en"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(run / "scores.parquet")
    row = df[(df.sample_id == "jfk") & (df.metric == "asr_wer")].iloc[0]
    assert row["status"] == "ok" and row["value"] < 0.2, row.to_dict()


def test_probe_uses_the_media_dir(mf_run, tmp_path):
    """probe --media-dir: the originals it scores have their media (the audio-type output gets its ASR WER),
    without it they have none."""
    run, media = mf_run
    args = ["probe", str(run), "--metrics", "asr_wer", "--kinds", "transcript", "--bootstrap", "0", "--no-cache",
            "--set", "metrics.asr_wer.model=whisper-tiny.en", "--set", "metrics.asr_wer.language=en"]
    r = CliRunner().invoke(main, args + ["--out", str(tmp_path / "p1"), "--media-dir", str(media)],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(tmp_path / "p1" / "scores.parquet")
    row = df[(df.sample_id == "jfk") & (df.metric == "asr_wer")].iloc[0]
    assert row["status"] == "ok" and row["value"] < 0.2, row.to_dict()
    r = CliRunner().invoke(main, args + ["--out", str(tmp_path / "p2")], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(tmp_path / "p2" / "scores.parquet")
    assert df[(df.sample_id == "jfk") & (df.metric == "asr_wer")].iloc[0]["status"] != "ok"
