"""mer_eval.domain.media on real files from ../shared/data."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from mer_eval.domain import media
from mer_eval.domain.media import MediaError


def test_probe_videos(shared_data):
    f = shared_data / "faces"
    i = media.probe(f / "single_face.mp4")
    assert i.has_video and i.has_audio and not i.is_image
    assert i.fps == pytest.approx(30.0)
    assert i.n_frames == 72
    assert (i.width, i.height) == (640, 360)
    assert i.audio_sr == 44100
    assert i.duration == pytest.approx(2.419, abs=0.01)
    mov = media.probe(f / "face_noface.mov")  # hevc in a .mov, audio stream listed first
    assert mov.has_video and mov.n_frames == 169 and mov.video_codec == "hevc"
    silent = media.probe(f / "WolfgangLanger_Pexels.mp4")
    assert silent.duration == pytest.approx(19.69, abs=0.01) and silent.n_frames == 472


def test_probe_audio_and_images(shared_data):
    flac = media.probe(shared_data / "speech-jfk" / "jfk.flac")
    assert flac.has_audio and not flac.has_video and flac.duration == pytest.approx(11.0, abs=0.01)
    wav = media.probe(shared_data / "speech-librivox" / "sense_and_sensibility_01_austen_64kb-0870.wav")
    assert wav.audio_sr == 16000 and wav.audio_channels == 1
    img = media.probe(shared_data / "faces" / "single_face.jpg")
    assert img.is_image and not img.has_video and not img.has_audio and (img.width, img.height) == (572, 562)


def test_probe_errors(shared_data, tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        media.probe(tmp_path / "nope.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        media.probe(empty)
    # a text file is no media
    with pytest.raises(MediaError, match="jfk.txt"):
        media.probe(shared_data / "speech-jfk" / "jfk.txt")
    # a corrupt video: the first 20 KB of a real mp4 whose moov atom is at the end
    data = (shared_data / "faces" / "single_face.mp4").read_bytes()
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00" * 64 + data[5000:25000])
    with pytest.raises(MediaError, match="corrupt.mp4"):
        media.probe(bad)


def test_load_audio_from_audio_and_video(shared_data):
    x = media.load_audio(shared_data / "speech-jfk" / "jfk.flac", sr=16000)
    assert x.dtype == np.float32 and x.ndim == 1
    assert len(x) == 176000  # 11.0 s at 16 kHz
    assert 0.5 < np.abs(x).max() <= 1.0
    v = media.load_audio(shared_data / "faces" / "single_face.mp4", sr=16000)
    assert abs(len(v) - 2.419 * 16000) < 200 and np.abs(v).max() > 0
    # deterministic: the same samples twice
    assert np.array_equal(v, media.load_audio(shared_data / "faces" / "single_face.mp4", sr=16000))
    w48 = media.load_audio(shared_data / "speech-jfk" / "jfk.flac", sr=48000)
    assert len(w48) == 528000


def test_load_audio_no_audio(shared_data):
    with pytest.raises(media.NoAudioError, match="digital silence"):
        media.load_audio(shared_data / "faces" / "WolfgangLanger_Pexels.mp4")
    silent = media.load_audio(shared_data / "faces" / "WolfgangLanger_Pexels.mp4", allow_silent=True)
    assert not np.any(silent)
    with pytest.raises(media.NoAudioError, match="no audio stream"):
        media.load_audio(shared_data / "faces" / "single_face.jpg")
    with pytest.raises(MediaError) as e:  # unreadable is not "no audio"
        media.load_audio(shared_data / "speech-jfk" / "jfk.txt")
    assert not isinstance(e.value, media.NoAudioError)


def test_resample_matches_native_rate(shared_data):
    """A 16 kHz file loaded at 16 kHz is untouched; at 8 kHz it halves in length."""
    p = shared_data / "speech-librivox" / "sense_and_sensibility_01_austen_64kb-0870.wav"
    x16 = media.load_audio(p, sr=16000)
    assert len(x16) == 113600
    x8 = media.load_audio(p, sr=8000)
    assert len(x8) == len(x16) // 2


def test_write_wav_roundtrip(shared_data, tmp_path):
    x = media.load_audio(shared_data / "speech-jfk" / "jfk.flac", sr=16000)
    out = media.write_wav(tmp_path / "sub" / "a.wav", x, 16000)
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 16000, len(x))
    y = media.load_audio(out, sr=16000)
    assert np.max(np.abs(y - x)) < 1e-4  # 16-bit quantisation only
    assert not list((tmp_path / "sub").glob("*.tmp"))


def test_read_video_frames(shared_data):
    p = shared_data / "faces" / "face_noface.mov"
    frames = media.read_video_frames(p, k=4)
    assert [i for i, _, _ in frames] == [21, 63, 105, 147]
    assert all(im.mode == "RGB" and im.size == (960, 540) for _, _, im in frames)
    ts = [t for _, t, _ in frames]
    assert ts == sorted(ts) and 0.5 < ts[0] < 1.0 and ts[-1] < 6.43  # presentation times (variable rate)
    one = media.read_video_frames(p, indices=[63])
    assert one[0][0] == 63 and np.array_equal(np.asarray(one[0][2]), np.asarray(frames[1][2]))
    assert np.array_equal(np.asarray(media.frame_at(p, 63)), np.asarray(frames[1][2]))
    idx, t, im = media.middle_frame(shared_data / "faces" / "single_face.mp4")
    assert idx == 36 and t == pytest.approx(1.2) and im.size == (640, 360)
    with pytest.raises(MediaError, match="beyond the last frame"):
        media.read_video_frames(p, indices=[500])
    with pytest.raises(MediaError, match="no video stream"):
        media.read_video_frames(shared_data / "speech-jfk" / "jfk.flac", k=2)


def test_load_image(shared_data, tmp_path):
    im = media.load_image(shared_data / "faces" / "astronaut.png")
    assert im.mode == "RGB" and im.size == (512, 512)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(MediaError, match="cannot read image"):
        media.load_image(bad)


def test_evenly_spaced():
    assert media.evenly_spaced(10, 1) == [5]
    assert media.evenly_spaced(10, 5) == [1, 3, 5, 7, 9]
    assert media.evenly_spaced(3, 10) == [0, 1, 2]
    assert media.evenly_spaced(0, 3) == []


def test_partial_decode_is_reported_not_kept_silently(shared_data, tmp_path):
    """A file cut in half decodes as far as it goes; load_audio now says so (it used to keep the part)."""
    from mer_eval.domain.media import load_audio, partial_decode

    flac = shared_data / "speech-jfk" / "jfk.flac"
    cut = tmp_path / "cut.flac"
    cut.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    x = load_audio(cut)
    assert 0 < len(x) / 16000 < 8 and "decoder stopped" in partial_decode(cut)
    load_audio(flac)
    assert partial_decode(flac) is None
    wav = shared_data / "speech-librivox" / "sense_and_sensibility_01_austen_64kb-0870.wav"
    cw = tmp_path / "cut.wav"
    cw.write_bytes(wav.read_bytes()[: wav.stat().st_size // 2 + 1])
    load_audio(cw)
    assert "data chunk declares" in partial_decode(cw)
    load_audio(wav)
    assert partial_decode(wav) is None
