"""The offline provider: deterministic templates over measured signals, never invented scene text."""

from __future__ import annotations

import asyncio

import pytest
from mer_eval.generators.providers.base import Capability, ProviderError, ProviderRequest

from mer_eval.config import load_config
from mer_eval.domain.merfactory import split_audio_analysis
from mer_eval.registry import get_provider


def _provider():
    cfg = load_config()
    return get_provider("offline")(cfg.provider_config("offline"), cache=None)


def _ev(shared_data):
    from mer_eval.generators.stages.peaks import analyse

    from mer_eval.domain.facs import au_text
    from mer_eval.domain.openface import read_openface_csv

    of = read_openface_csv(shared_data / "openface" / "OpenFace_Test.csv")
    res = analyse(of, 0.8, 15, "mer-factory")
    info = res["overall_peak_frame_info"]
    ref = (shared_data / "speech-jfk" / "jfk.txt").read_text().strip()
    return {"task": "emotion", "peaks": res["chronological_emotion_peaks"],
            "au_text": au_text(info["top_aus_intensities"]), "au_pseudo_label": None,
            "fer": {"happy": 0.61, "neutral": 0.22, "sad": 0.05}, "transcript": ref,
            "tone": "mean pitch 121 Hz, loudness -23 dBFS, 2.6 words per second",
            "peak_frame": info["frame_number"], "peak_time": info["timestamp"]}


def test_identity_and_capabilities():
    p = _provider()
    assert p.name == "offline" and p.model_id.startswith("offline-templates")
    for cap in Capability:
        assert p.supports(cap)
    assert p.describe()["provider"] == "offline"


def test_tone_round_trips_through_mer_factory_reader(shared_data):
    p = _provider()
    ev = _ev(shared_data)
    r = p.generate(ProviderRequest(prompt="x", purpose="tone", context=ev,
                                   audio=shared_data / "speech-jfk" / "jfk.flac"))
    tr, tone = split_audio_analysis(r.text)
    assert tr == ev["transcript"]
    assert tone == ev["tone"]
    # no transcript: MER-Factory's "Speech:" first line, read back as no transcript
    r2 = p.generate(ProviderRequest(prompt="x", purpose="tone", context={**ev, "transcript": None}))
    assert r2.text.splitlines()[0] == "Speech:"
    assert split_audio_analysis(r2.text)[0] is None


def test_synthesis_is_deterministic_and_parseable(shared_data):
    from mer_eval.generators.synthesis import parse_conclusion

    p = _provider()
    ev = _ev(shared_data)
    a = p.generate(ProviderRequest(prompt="a", purpose="synthesis", context=ev)).text
    b = p.generate(ProviderRequest(prompt="b", purpose="synthesis", context=dict(ev))).text
    assert a == b
    assert parse_conclusion(a) == "happy"  # FER is the only cue that votes here (no AU rule fired)
    assert "happy 0.61" in a and ev["transcript"] in a


def test_never_describes_pixels(shared_data):
    p = _provider()
    assert p.absent_reason("visual_description") and "no vision model" in p.absent_reason("visual_description")
    assert p.absent_reason("video_description")
    assert p.absent_reason("synthesis") is None
    req = ProviderRequest(prompt="describe", purpose="visual_description",
                          images=[shared_data / "faces" / "single_face.jpg"], context={})
    with pytest.raises(ProviderError, match="no vision model"):
        asyncio.run(p.agenerate(req))
    with pytest.raises(ProviderError, match="unknown purpose"):
        asyncio.run(p.agenerate(ProviderRequest(prompt="x", purpose="poem", context={})))


def test_cached_texts_follow_the_template_code(tmp_path, monkeypatch):
    """The provider cache key carries the sha256 of the template code: edited templates (or another
    mer-eval version) never get texts cached from the old code."""
    import shutil

    from mer_eval.generators.providers import offline

    p = _provider()
    req = ProviderRequest(prompt="x", purpose="synthesis", context={"task": "emotion"})
    copies = []
    for f in offline.TEMPLATE_FILES:
        copies.append(tmp_path / f.name)
        shutil.copy(f, copies[-1])
    monkeypatch.setattr(offline, "TEMPLATE_FILES", tuple(copies))
    rev, key = p.revision, p.cache_key(req)
    assert len(rev) == 64 and rev == offline.template_revision(copies)
    copies[0].write_text(copies[0].read_text() + "\n# a changed template\n")
    assert p.revision != rev and p.cache_key(req) != key
