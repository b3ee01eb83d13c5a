"""ClapAudioText with a tiny random-weight transformers ClapModel built on disk, real audio."""

from __future__ import annotations

import numpy as np
import pytest

from mer_eval.config import load_config
from mer_eval.metric import ScoreContext
from mer_eval.schema import Annotation, Sample, SampleType, Status

from tiny_models import one_torch_thread, build_clap

pytest.importorskip("transformers")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()

LIBRI = "speech-librivox/sense_and_sensibility_01_austen_64kb-0870.wav"


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    return build_clap(tmp_path_factory.mktemp("tiny-clap"))


def metric(sets, batch_size=4):
    from mer_eval.metrics.clap_score import ClapAudioText

    cfg = load_config(sets=sets)
    return ClapAudioText(cfg.metric_params("clap"),
                         ScoreContext(device="cpu", batch_size=batch_size, config=cfg))


def samples(d):
    return [
        Sample(id="jfk", type=SampleType.audio, audio=d / "speech-jfk" / "jfk.flac",
               annotation=Annotation(audio_description="A calm, firm male voice speaking in a formal tone.",
                                     transcript="And so my fellow Americans")),
        Sample(id="libri", type=SampleType.audio, audio=d / LIBRI,
               annotation=Annotation(audio_description="A quiet, even reading voice.")),
        Sample(id="emo", type=SampleType.audio, audio=d / "speech-emotion" / "05.wav",
               annotation=Annotation(audio_description="An agitated voice, loud and fast.")),
        Sample(id="vid", type=SampleType.video, video=d / "faces" / "single_face.mp4",
               annotation=Annotation(audio_description="Soft speech with some background noise.")),
    ]


def reference(clap_dir, audio_windows, text):
    """cos recomputed here with ClapModel/ClapProcessor directly (not through the metric)."""
    import torch
    from transformers import ClapModel, ClapProcessor

    model = ClapModel.from_pretrained(clap_dir).eval()
    proc = ClapProcessor.from_pretrained(clap_dir)
    f = proc.feature_extractor(audio_windows, sampling_rate=48000, return_tensors="pt")
    t = proc.tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        a = model.get_audio_features(input_features=f["input_features"], is_longer=f["is_longer"]).pooler_output
        e = model.get_text_features(**t).pooler_output
    a = torch.nn.functional.normalize(a, dim=-1).mean(0)
    return torch.nn.functional.cosine_similarity(a[None], e).item()


def test_score_matches_independent_recomputation(clap_dir, shared_data):
    from mer_eval.domain.media import load_audio

    ss = samples(shared_data)
    res = metric([f"models.paths.clap={clap_dir}"]).score(ss)
    for s in ss:
        r = res[s.id][0]
        assert r.metric == "clap_audio_score" and r.status == Status.ok, r.reason
        assert -1.0 <= r.value <= 1.0
        assert r.model.sha256 and r.model.source == "config"
        assert r.details["sampling_rate"] == 48000
    # 7.1 s: one window, the whole clip
    libri = res["libri"][0]
    assert libri.details["windows"] == 1
    x = load_audio(shared_data / LIBRI, sr=48000)
    assert libri.value == pytest.approx(reference(clap_dir, [x], ss[1].annotation.audio_description), abs=1e-5)
    # 11 s with 10 s windows, hop 10 s: [0, 10) and the tail window [1, 11)
    jfk = res["jfk"][0]
    assert jfk.details["window_starts_s"] == [0.0, 1.0]
    y = load_audio(shared_data / "speech-jfk" / "jfk.flac", sr=48000)
    want = reference(clap_dir, [y[:480000], y[48000:528000]], ss[0].annotation.audio_description)
    assert jfk.value == pytest.approx(want, abs=1e-5)
    # the video's audio track is used
    assert res["vid"][0].details["audio_source"] == "video"


def test_transcript_is_not_glued_on(clap_dir, shared_data):
    s = samples(shared_data)[0]
    r1 = metric([f"models.paths.clap={clap_dir}"]).score([s])["jfk"][0]
    s2 = s.model_copy(update={"annotation": Annotation(audio_description=s.annotation.audio_description)})
    r2 = metric([f"models.paths.clap={clap_dir}"]).score([s2])["jfk"][0]
    assert r1.value == r2.value


def test_deterministic_and_batched_equals_single(clap_dir, shared_data):
    ss = samples(shared_data)
    np.random.seed(1)
    a = metric([f"models.paths.clap={clap_dir}"], batch_size=4).score(ss)
    np.random.seed(2)
    b = metric([f"models.paths.clap={clap_dir}"], batch_size=1).score(ss)
    np.random.seed(3)
    c = metric([f"models.paths.clap={clap_dir}"], batch_size=4).score(ss)
    for s in ss:
        assert a[s.id][0].value == c[s.id][0].value  # same batch: bit-identical
        assert a[s.id][0].value == pytest.approx(b[s.id][0].value, abs=1e-5)


def test_window_scheme():
    from mer_eval.metrics.clap_score import window_starts

    assert window_starts(20, 30, 30, 6) == [0]
    assert window_starts(100, 30, 30, 6) == [0, 30, 60, 70]
    assert window_starts(100, 30, 30, 2) == [0, 70]
    assert window_starts(1000, 10, 10, 3) == [0, 500, 990]
    assert window_starts(1000, 10, 10, 1) == [490]


def test_windows_limited_and_window_clamped(clap_dir, shared_data):
    s = samples(shared_data)[0]
    r = metric([f"models.paths.clap={clap_dir}", "metrics.clap.window_s=2", "metrics.clap.hop_s=1",
                "metrics.clap.max_windows=3"]).score([s])["jfk"][0]
    assert r.details["window_starts_s"] == [0.0, 4.0, 9.0] and r.details["window_s"] == 2.0
    r = metric([f"models.paths.clap={clap_dir}", "metrics.clap.window_s=30"]).score([s])["jfk"][0]
    assert r.status == Status.ok and r.details["window_s"] == 10.0 and "clamped" in r.details["note"]


def test_silent_video_and_missing_inputs(clap_dir, shared_data):
    d = shared_data
    ss = [
        Sample(id="silent", type=SampleType.video, video=d / "faces" / "WolfgangLanger_Pexels.mp4",
               annotation=Annotation(audio_description="Quiet.")),
        Sample(id="notext", type=SampleType.audio, audio=d / "speech-jfk" / "jfk.flac",
               annotation=Annotation(transcript="And so my fellow Americans")),
        Sample(id="nomedia", type=SampleType.image, image=d / "faces" / "single_face.jpg",
               annotation=Annotation(audio_description="Quiet.")),
        Sample(id="ok", type=SampleType.audio, audio=d / LIBRI, annotation=Annotation(audio_description="Calm.")),
    ]
    res = metric([f"models.paths.clap={clap_dir}"]).score(ss)
    assert res["silent"][0].status == Status.not_applicable and "digital silence" in res["silent"][0].reason
    assert res["notext"][0].status == Status.not_applicable and "audio_description" in res["notext"][0].reason
    assert "transcript only" in res["notext"][0].reason  # the analysis answered: no tone to compare
    assert res["nomedia"][0].status == Status.not_applicable
    assert res["ok"][0].status == Status.ok


def test_no_audio_analysis_over_sound_is_abstained(clap_dir, shared_data):
    """A MER / audio annotation promises an audio analysis: none at all over audio with sound is an abstention (a
    gate fails it, the composite counts its worst), never not_applicable (a skipped rule, a composite factor of 1,
    which let not describing beat describing wrongly). Over the silent track of a real video there is nothing to
    describe: not_applicable still. Real MER-Factory output (default_merr_data_MER) with its analysis removed."""
    from mer_eval.discovery import discover

    d = shared_data
    mer = discover(d / "annotations-mer-factory" / "default_merr_data_MER.json").samples[0]
    assert mer.type == SampleType.mer
    blank = mer.annotation.model_copy(update={"transcript": None, "audio_description": None})
    ss = [
        Sample(id="speech", type=SampleType.audio, audio=d / LIBRI, annotation=Annotation(final_summary="calm")),
        mer.model_copy(update={"id": "mer", "audio": d / LIBRI, "annotation": blank}),
        mer.model_copy(update={"id": "mer_silent", "audio": None,
                               "video": d / "faces" / "WolfgangLanger_Pexels.mp4", "annotation": blank}),
        Sample(id="video", type=SampleType.video, audio=d / LIBRI, annotation=Annotation(video_content="A man.")),
    ]
    res = metric([f"models.paths.clap={clap_dir}"]).score(ss)
    for sid, kind in (("speech", "audio"), ("mer", "mer")):
        r = res[sid][0]
        assert r.status == Status.abstained and r.value is None, (sid, r.status, r.reason)
        assert r.reason == f"a {kind} annotation promises an audio analysis; it is empty (no transcript, no tone)"
    assert res["mer_silent"][0].status == Status.not_applicable and "digital silence" in res["mer_silent"][0].reason
    assert res["video"][0].status == Status.not_applicable and "video annotations carry no" in res["video"][0].reason


def test_unavailable(clap_dir, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    s = samples(shared_data)[:1]
    r = metric([]).score(s)["jfk"][0]
    assert r.status == Status.unavailable
    assert "laion/clap-htsat-unfused" in r.reason and "looked in" in r.reason and str(tmp_path / "hf") in r.reason
    from mer_eval.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="metrics.clap.backend.*'transformers'"):
        load_config(sets=["metrics.clap.backend=laion_clap"])
