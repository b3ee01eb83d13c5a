"""encoder_forward: every CLIP / CLAP / NLI encoder pass goes through it; a backend with a ``recorder`` list keeps
each pass's prepared inputs, and replaying them gives the outputs the backend returned (what
``bench/score_bench.py --encoder-efficiency`` times as the encoder alone). Tiny random-weight models built on disk,
real faces, speech and MER-Factory texts."""

from __future__ import annotations

import numpy as np
import pytest

from mer_eval.config import load_config
from mer_eval.metric import ScoreContext
from mer_eval.registry import get_metric

from tiny_models import build_clap, build_hf_clip, build_nli, build_open_clip, one_torch_thread

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The four tiny models, on disk; torch on one thread while this module's tests run (every test uses them)."""
    root = tmp_path_factory.mktemp("tiny-encoders")
    for _ in one_torch_thread():
        yield {"open_clip": build_open_clip(root), "hf": build_hf_clip(root), "clap": build_clap(root),
               "nli": build_nli(root)}


def backend(fam: str, sets: list[str]):
    cfg = load_config(sets=sets)
    m = get_metric(fam)(cfg.metric_params(fam), ScoreContext(device="cpu", batch_size=4, config=cfg))
    assert m.ensure_loaded() is None
    return m._backend


def replay(passes) -> list[np.ndarray]:
    """Each recorded pass run again: its features (or an NLI model's logits) as the backend reads them."""
    from mer_eval.metrics.clip_score import as_features

    out = []
    with torch.inference_mode():
        for fn, inputs in passes:
            y = fn(**inputs)
            out.append((y.logits if hasattr(y, "logits") else as_features(y)).float().numpy())
    return out


def _texts(shared_data) -> list[str]:
    from mer_eval.discovery import discover

    s = discover(shared_data / "annotations-mer-factory" / "gemini_merr.json").samples[0]
    return [t for t in (s.annotation.visual_objective, s.annotation.audio_description, s.annotation.final_summary)
            if t]


@pytest.mark.parametrize("which", ["open_clip", "hf"])
def test_clip_passes_are_recorded_and_replay_to_the_same_features(models, shared_data, which):
    from mer_eval.domain.media import load_image
    from mer_eval.metrics.clip_score import text_chunks

    sets = ([f"models.paths.clip={models['open_clip']}"] if which == "open_clip"
            else ["metrics.clip.backend=transformers", f"models.paths.clip-hf={models['hf']}"])
    be = backend("clip", sets)
    images = [load_image(shared_data / "faces" / n) for n in ("0-f1-su-ph.jpg", "astronaut.png")]
    chunks = [c[1] for t in _texts(shared_data) for c in text_chunks(t, be.encode, be.window)]
    assert getattr(be, "recorder", None) is None
    be.image_features(images[:1])  # not recorded: no recorder
    be.recorder = []
    img = be.image_features(images)
    txt = be.text_features(chunks)
    passes, be.recorder = be.recorder, None
    assert len(passes) == 2
    assert next(iter(passes[0][1].values())).shape[0] == 2 and next(iter(passes[1][1].values())).shape[0] == len(chunks)
    got = replay(passes)
    np.testing.assert_allclose(got[0], img, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], txt, rtol=1e-5, atol=1e-6)
    be.text_features(chunks[:1])
    assert be.recorder is None  # taken off again: nothing kept


def test_clap_audio_and_text_passes_replay(models, shared_data):
    from mer_eval.domain.media import load_audio
    from mer_eval.metrics.clip_score import text_chunks

    be = backend("clap", [f"models.paths.clap={models['clap']}"])
    x = load_audio(shared_data / "speech-jfk" / "jfk.flac", sr=be.sr)
    windows = [x[: be.max_samples], x[be.max_samples // 2: be.max_samples // 2 + be.max_samples]]
    chunks = [c[1] for t in _texts(shared_data) for c in text_chunks(t, be.encode, be.window)]
    be.recorder = []
    aud = be.audio_features(windows)
    txt = be.text_features(chunks)
    passes, be.recorder = be.recorder, None
    assert [sorted(p[1]) for p in passes] == [["input_features", "is_longer"], ["attention_mask", "input_ids"]]
    got = replay(passes)
    np.testing.assert_allclose(got[0], aud, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], txt, rtol=1e-5, atol=1e-6)


def test_nli_batches_are_recorded_in_length_order_and_replay_to_the_logits(models, shared_data):
    be = backend("nli", [f"models.paths.nli={models['nli']}"])
    texts = _texts(shared_data)
    premise = texts[-1]
    # hypotheses of strictly growing length: the length order is the given order, so batch k is pairs 3k..3k+2
    hyps = [" ".join(premise.split()[: 2 + 3 * i]) for i in range(7)]
    pairs = [(premise, h) for h in hyps]
    be.recorder = []
    logits = be.logits(pairs, 3)
    passes, be.recorder = be.recorder, None
    assert [next(iter(p[1].values())).shape[0] for p in passes] == [3, 3, 1]
    got = np.concatenate(replay(passes))
    np.testing.assert_allclose(got, logits, rtol=1e-5, atol=1e-5)
