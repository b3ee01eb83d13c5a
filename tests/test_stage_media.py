"""Media stage on real files: wav extraction, silent video, audio file, image, corrupt file."""

from __future__ import annotations

import json
import wave

import pytest
from mer_eval.generators.stages import StageError
from mer_eval.generators.stages.media import run_media

from mer_eval.config import load_config
from mer_eval.schema import Sample


def _wav_facts(p):
    with wave.open(str(p)) as w:
        return w.getframerate(), w.getnchannels(), w.getnframes()


def test_video_with_sound_gives_16k_mono_wav(shared_data, tmp_path):
    s = Sample(id="single_face", video=shared_data / "faces" / "single_face.mp4")
    r = run_media(s, tmp_path, load_config())
    wav = tmp_path / "single_face.wav"
    assert r.outputs["wav"] == str(wav) and wav in r.files
    sr, ch, n = _wav_facts(wav)
    assert (sr, ch) == (16000, 1)
    assert abs(n / sr - r.outputs["media"]["duration"]) < 0.1
    saved = json.loads((tmp_path / "single_face_media.json").read_text())
    assert saved["stage"] == "media" and len(saved["inputs_sha256"]) == 64
    assert run_media(s, tmp_path, load_config()).reused


def test_silent_video_no_wav_noted(shared_data, tmp_path):
    s = Sample(id="wl", video=shared_data / "faces" / "WolfgangLanger_Pexels.mp4")
    r = run_media(s, tmp_path, load_config())
    assert r.outputs["wav"] is None and not (tmp_path / "wl.wav").exists()
    assert r.outputs["media"]["has_video"] and any("silence" in n for n in r.notes)


def test_audio_file(shared_data, tmp_path):
    s = Sample(id="jfk", type="audio", audio=shared_data / "speech-jfk" / "jfk.flac")
    r = run_media(s, tmp_path, load_config())
    sr, ch, n = _wav_facts(tmp_path / "jfk.wav")
    assert (sr, ch) == (16000, 1) and 10.5 < n / sr < 11.5 and r.outputs["kind"] == "audio"


def test_image(shared_data, tmp_path):
    r = run_media(Sample(id="img", type="image", image=shared_data / "faces" / "single_face.jpg"), tmp_path,
                  load_config())
    assert r.outputs["kind"] == "image" and r.outputs["wav"] is None and r.outputs["media"]["width"] == 572


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video at all" * 50)
    with pytest.raises(StageError) as e:
        run_media(Sample(id="bad", video=bad), tmp_path / "out", load_config())
    assert e.value.stage == "media" and "bad.mp4" in e.value.reason
    with pytest.raises(StageError, match="does not exist"):
        run_media(Sample(id="gone", video=tmp_path / "gone.mp4"), tmp_path / "out", load_config())
    with pytest.raises(StageError, match="no video, audio or image"):
        run_media(Sample(id="none"), tmp_path / "out", load_config())


def test_truncated_audio_is_flagged_partial(shared_data, tmp_path):
    """The first half of the real jfk.flac: the decoder fails part-way and the core keeps the decoded part
    silently; the stage sees 5.4 s of the 11 s the stream declares and says so."""
    cut = tmp_path / "jfk_cut.flac"
    data = (shared_data / "speech-jfk" / "jfk.flac").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    r = run_media(Sample(id="cut", type="audio", audio=cut), tmp_path / "cut", load_config())
    assert r.outputs["audio_declared_seconds"] == 11.0
    assert 4.0 < r.outputs["audio_seconds"] < 7.0  # a wav is still written: the decoded part is usable
    why = r.outputs["partial_audio"]
    assert why and f"{r.outputs['audio_seconds']:.2f} s of the 11.00 s" in why
    assert any("11.00 s" in n for n in r.notes)


@pytest.mark.parametrize("rel", ["speech-jfk/jfk.flac", "faces/single_face.mp4", "faces/face_noface.mov",
                                 "speech-emotion/08.wav"])
def test_complete_audio_is_not_partial(shared_data, tmp_path, rel):
    """Whole files are not flagged, including face_noface.mov whose audio track (4.0 s) is shorter than its
    video (6.4 s): the stream's own duration is the reference, not the container's."""
    kind = "video" if rel.endswith((".mp4", ".mov")) else "audio"
    s = Sample(id="x", type="mer" if kind == "video" else "audio", **{kind: shared_data / rel})
    r = run_media(s, tmp_path, load_config())
    assert r.outputs["wav"] and r.outputs["audio_declared_seconds"]
    assert r.outputs["partial_audio"] is None, r.outputs["partial_audio"]
