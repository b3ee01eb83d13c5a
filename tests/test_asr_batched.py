"""ASRWER's Whisper baselines batched across files (``metrics.asr_wer.batch_files``) against file by file, on the
real LibriVox and JFK speech of ../shared/data with the offline whisper-base weights.

The batched pipeline decodes without timestamp tokens, so its raw text may differ in punctuation (measured here:
"?" for "." in one LibriVox file, a comma in JFK); after the metric's ``basic`` normalisation the texts and so the
WERs must be identical on this English speech.
"""

from __future__ import annotations

import pytest

from mer_eval.cache import Cache
from mer_eval.config import Config
from mer_eval.metric import ScoreContext
from mer_eval.metrics.asr_wer import ASRWER, basic_normaliser
from mer_eval.schema import Annotation, Sample, Status

pytest.importorskip("faster_whisper")


@pytest.fixture
def speech(shared_data):
    from mer_eval.discovery import read_transcripts
    from mer_eval.models import resolve_from_config

    if not resolve_from_config("whisper-base", Config()).available:
        pytest.skip("whisper-base weights are not here")
    refs = read_transcripts(shared_data / "speech-librivox" / "transcription")
    audio = {k: shared_data / "speech-librivox" / f"{k}.wav" for k in refs}
    audio["jfk"] = shared_data / "speech-jfk" / "jfk.flac"
    refs["jfk"] = (shared_data / "speech-jfk" / "jfk.txt").read_text(encoding="utf-8").strip()
    if not all(p.is_file() for p in audio.values()):
        pytest.skip("speech files missing")
    # the true text is the "annotation transcript"; the Whisper baseline is the reference
    return [Sample(id=k, audio=audio[k], annotation=Annotation(transcript=refs[k])) for k in refs]


def test_batched_baselines_match_file_by_file(speech, tmp_path):
    cache = Cache(tmp_path / "cache")

    def run(**p):
        m = ASRWER({"model": "whisper-base", "beam_size": 1, **p},
                   ScoreContext(device="cpu", config=Config(), cache=cache, batch_size=16))
        return {s: {r.metric: r for r in rs} for s, rs in m.score(speech).items()}

    one = run()
    many = run(batch_files=8)
    norm = basic_normaliser()
    for s in speech:
        a, b = one[s.id]["asr_wer"], many[s.id]["asr_wer"]
        assert a.status == b.status == Status.ok, (a.reason, b.reason)
        assert a.details["whisper_batched"] is False and b.details["whisper_batched"] is True
        assert b.details["whisper_language"] == "en"  # detected per file
        assert norm(b.details["reference_text"]) == norm(a.details["reference_text"])
        assert b.value == a.value and many[s.id]["asr_cer"].value == one[s.id]["asr_cer"].value
        assert b.params["batch_files"] == 8 and a.params["batch_files"] == 1
    # the two decodings are cached apart: a batched re-run is served from the cache, never the file-by-file texts
    again = run(batch_files=8)
    assert all(r.cached for rs in again.values() for r in rs.values())


def test_cut_off_file_is_left_out_of_the_batch(speech, tmp_path):
    """A wav cut off after its header (first half of a LibriVox file, header still full length) gets no batched
    baseline either: that sample is an error, the whole files of the batch are scored."""
    import struct

    src = next(s.audio for s in speech if s.audio.suffix == ".wav")
    b = src.read_bytes()
    i = b.index(b"data")
    n = struct.unpack("<I", b[i + 4: i + 8])[0]
    cut = tmp_path / "cut.wav"
    cut.write_bytes(b[: i + 8 + (n // 2) // 2 * 2])
    samples = speech[:2] + [Sample(id="cut", type="audio", audio=cut, annotation=speech[0].annotation)]
    m = ASRWER({"model": "whisper-base", "beam_size": 1, "batch_files": 8},
               ScoreContext(device="cpu", config=Config(), cache=Cache(tmp_path / "cache")))
    out = {s: {r.metric: r for r in rs} for s, rs in m.score(samples).items()}
    assert all(r.status == Status.error and r.value is None for r in out["cut"].values())
    assert out["cut"]["asr_wer"].reason.startswith(f"audio cut off: {(n // 2) // 2} of {n // 2} samples decoded")
    for s in speech[:2]:
        r = out[s.id]["asr_wer"]
        assert r.status == Status.ok and r.details["whisper_batched"] is True
