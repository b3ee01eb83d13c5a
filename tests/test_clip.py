"""ClipImageText with tiny random-weight open_clip and transformers CLIP models built on disk."""

from __future__ import annotations

import numpy as np
import pytest

from mer_eval.config import load_config
from mer_eval.metric import ScoreContext
from mer_eval.schema import Annotation, Sample, SampleType, Status

from tiny_models import one_torch_thread, TINY_OPEN_CLIP_NAME, build_hf_clip, build_open_clip

pytest.importorskip("open_clip")
pytest.importorskip("transformers")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()

LONG = (
    "A young woman sits in front of a plain grey wall and looks straight into the camera. "
    "Her mouth corners are pulled upwards into a broad smile that shows her upper teeth. "
    "The cheeks are raised and small wrinkles appear at the outer corners of both eyes. "
    "She wears a dark sweater, her hair is tied back, and the light comes softly from the left side. "
    "Behind her, out of focus, a window lets in the pale daylight of an overcast afternoon in late autumn."
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-clip")
    return {"open_clip": build_open_clip(root), "hf": build_hf_clip(root), "root": root}


def metric(sets, batch_size=4):
    from mer_eval.metrics.clip_score import ClipImageText

    cfg = load_config(sets=sets)
    return ClipImageText(cfg.metric_params("clip"),
                         ScoreContext(device="cpu", batch_size=batch_size, config=cfg))


def samples(data):
    f = data / "faces"
    return [
        Sample(id="su", type=SampleType.image, image=f / "0-f1-su-ph.jpg",
               annotation=Annotation(image_description="A surprised woman with raised eyebrows and an open mouth.")),
        Sample(id="hap", type=SampleType.image, image=f / "0-f15-hao-ph.jpg",
               annotation=Annotation(image_description="A happy woman smiling.")),
        Sample(id="ang", type=SampleType.image, peak_frame_image=f / "15-f13-anc-ph.jpg",
               annotation=Annotation(visual_objective="An angry face with lowered brows.")),
        Sample(id="long", type=SampleType.image, image=f / "astronaut.png",
               annotation=Annotation(image_description=LONG)),
    ]


def by_metric(results):
    return {r.metric: r for r in results}


def reference_open_clip(path, image_path, texts):
    """Cosine recomputed here straight from open_clip (not through the metric)."""
    import open_clip
    import torch

    from mer_eval.domain.media import load_image

    model, _, pre = open_clip.create_model_and_transforms(f"local-dir:{path}")
    tok = open_clip.get_tokenizer(f"local-dir:{path}")
    with torch.no_grad():
        im = model.encode_image(pre(load_image(image_path))[None])[0].numpy()
        tx = model.encode_text(tok(texts)).numpy()
    tx = tx / np.linalg.norm(tx, axis=1, keepdims=True)
    t = tx.mean(axis=0)
    t /= np.linalg.norm(t)
    return float(np.dot(im / np.linalg.norm(im), t))


def test_clipscore_formula_open_clip(tiny, shared_data):
    m = metric([f"models.paths.clip={tiny['open_clip']}"])
    ss = samples(shared_data)
    res = m.score(ss)
    for s in ss:
        r = by_metric(res[s.id])
        assert r["clip_image_score"].status == Status.ok, r["clip_image_score"].reason
        cos = r["clip_image_cosine"].value
        assert -1.0 <= cos <= 1.0
        assert r["clip_image_score"].value == pytest.approx(2.5 * max(cos, 0.0), abs=1e-9)
        assert r["clip_video_score"].status == Status.not_applicable
        ref = r["clip_image_score"].model
        assert ref.sha256 and len(ref.sha256) == 64 and ref.source == "config" and ref.path == str(tiny["open_clip"])
    # independent recomputation from the loaded weights
    for s in ss[:3]:
        text = s.annotation.visual_text()
        want = reference_open_clip(tiny["open_clip"], s.frame_image(), [text])
        assert by_metric(res[s.id])["clip_image_cosine"].value == pytest.approx(want, abs=1e-5)


def test_long_text_is_chunked_not_truncated(tiny, shared_data):
    from mer_eval.domain.text import split_sentences

    m = metric([f"models.paths.clip={tiny['open_clip']}"])
    s = samples(shared_data)[3]
    r = by_metric(m.score([s])[s.id])
    det = r["clip_image_score"].details
    assert det["text_chunks"] == len(split_sentences(LONG)) == 5
    assert sum(det["text_chunk_tokens"]) > 75 and max(det["text_chunk_tokens"]) <= 75
    # the text embedding is the mean of the normalised per-sentence embeddings
    want = reference_open_clip(tiny["open_clip"], s.image, split_sentences(LONG))
    assert r["clip_image_cosine"].value == pytest.approx(want, abs=1e-5)


def test_sentence_longer_than_window_is_cut_into_token_windows():
    from mer_eval.metrics.clip_score import text_chunks

    enc = lambda t: [ord(c) for c in t]  # noqa: E731 - one token per character
    text = "x" * 180 + ". short one."
    chunks = text_chunks(text, enc, 75)
    assert [len(c[1]) for c in chunks] == [75, 75, 31, 10]
    assert text_chunks("fits.", enc, 75) == [("fits.", enc("fits."))]


def test_batched_equals_one_at_a_time(tiny, shared_data):
    ss = samples(shared_data)
    a = metric([f"models.paths.clip={tiny['open_clip']}"], batch_size=4).score(ss)
    b = metric([f"models.paths.clip={tiny['open_clip']}"], batch_size=1).score(ss)
    for s in ss:
        for ra, rb in zip(a[s.id], b[s.id]):
            assert ra.status == rb.status
            if ra.status == Status.ok:
                assert ra.value == pytest.approx(rb.value, abs=1e-5)


def test_model_name_plus_weights_file_route(tiny, shared_data):
    """models.paths.clip = a weights file: create_model_and_transforms(model, pretrained=file)."""
    ss = samples(shared_data)[:2]
    a = metric([f"models.paths.clip={tiny['open_clip']}"]).score(ss)
    b = metric([f"models.paths.clip={tiny['open_clip'] / 'open_clip_pytorch_model.bin'}",
                f"metrics.clip.model={TINY_OPEN_CLIP_NAME}"]).score(ss)
    for s in ss:
        assert by_metric(b[s.id])["clip_image_cosine"].value == pytest.approx(
            by_metric(a[s.id])["clip_image_cosine"].value, abs=1e-6)


def test_transformers_backend(tiny, shared_data):
    import torch
    from transformers import CLIPModel, CLIPProcessor

    from mer_eval.domain.media import load_image

    ss = samples(shared_data)
    m = metric(["metrics.clip.backend=transformers", f"models.paths.clip-hf={tiny['hf']}"])
    res = m.score(ss)
    model = CLIPModel.from_pretrained(tiny["hf"]).eval()
    proc = CLIPProcessor.from_pretrained(tiny["hf"])
    for s in ss[:3]:
        r = by_metric(res[s.id])
        assert r["clip_image_score"].status == Status.ok, r["clip_image_score"].reason
        x = proc(text=[s.annotation.visual_text()], images=[load_image(s.frame_image())], return_tensors="pt",
                 padding=True)
        with torch.no_grad():
            out = model(**x)
        cos = torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds).item()
        assert r["clip_image_cosine"].value == pytest.approx(cos, abs=1e-5)
        assert r["clip_image_score"].value == pytest.approx(2.5 * max(cos, 0.0), abs=1e-6)
    # the byte-level tiny tokenizer: one token per character, so the long text needs many chunks
    assert by_metric(res["long"])["clip_image_score"].details["text_chunks"] > 5
    b = metric(["metrics.clip.backend=transformers", f"models.paths.clip-hf={tiny['hf']}"], batch_size=1).score(ss)
    for s in ss:
        assert by_metric(b[s.id])["clip_image_cosine"].value == pytest.approx(
            by_metric(res[s.id])["clip_image_cosine"].value, abs=1e-5)


def test_video_without_peak_frame_uses_middle_frame(tiny, shared_data):
    video = shared_data / "faces" / "single_face.mp4"
    s = Sample(id="vid", type=SampleType.video, video=video,
               annotation=Annotation(video_content="A woman talks to the camera."))
    m = metric([f"models.paths.clip={tiny['open_clip']}", "metrics.clip.video_frames=3"])
    r = by_metric(m.score([s])["vid"])
    assert r["clip_image_score"].status == Status.ok
    assert "middle frame 36" in r["clip_image_score"].details["frame_source"]
    v = r["clip_video_score"]
    assert v.status == Status.ok and v.details["frames"] == [12, 36, 60]
    assert v.value == pytest.approx(np.mean([2.5 * max(c, 0) for c in v.details["frame_cosines"]]))
    # the middle-frame cosine is the middle sampled frame's cosine
    assert r["clip_image_cosine"].value == pytest.approx(v.details["frame_cosines"][1], abs=1e-6)
    s2 = Sample(id="vid2", type=SampleType.mer, video=video,
                annotation=Annotation(video_content="A woman talks.", peak_frame=13))
    r2 = by_metric(m.score([s2])["vid2"])
    assert "video frame 12" in r2["clip_image_score"].details["frame_source"]


def test_missing_inputs_not_applicable_and_no_description_abstained(tiny, shared_data, tmp_path):
    """An image annotation promises a description of the image (MER-Factory's image_visual_description): none
    there is an abstention, which a gate fails and the composite counts as worst, never a skipped rule that
    let it beat a wrong description. Types that promise none (au) and samples without an image stay
    not_applicable."""
    from mer_eval.discovery import Dataset
    from mer_eval.gates import evaluate, parse_rule, read_scores
    from mer_eval.scoring import score_dataset

    sets = [f"models.paths.clip={tiny['open_clip']}", "cache.enabled=false"]
    face = shared_data / "faces" / "single_face.jpg"
    no_text = Sample(id="a", type=SampleType.image, image=face, annotation=Annotation(final_summary="happy"))
    no_img = Sample(id="b", type=SampleType.audio, audio=shared_data / "speech-jfk" / "jfk.flac",
                    annotation=Annotation(visual_objective="A smiling man."))
    au = Sample(id="c", type=SampleType.au, image=face, annotation=Annotation(visual_expression="AU12 (smile)."))
    wrong = Sample(id="d", type=SampleType.image, image=face,
                   annotation=Annotation(image_description="A red car parked on an empty street at night.",
                                         final_summary="happy"))
    res = metric(sets).score([no_text, no_img, au, wrong])
    assert all(r.status == Status.abstained and r.value is None for r in res["a"])
    assert res["a"][0].reason == "a image annotation promises a visual description; it is empty"
    assert all(r.status == Status.not_applicable for r in res["b"]) and "image" in res["b"][0].reason
    assert all(r.status == Status.not_applicable for r in res["c"]) and "au annotations carry no" in res["c"][0].reason
    assert by_metric(res["d"])["clip_image_score"].status == Status.ok
    ds = Dataset(kind="manifest", root=tmp_path, samples=[no_text, wrong])
    score_dataset(ds, tmp_path / "run", load_config(sets=sets), metrics=["clip"])
    df = read_scores(tmp_path / "run")
    floor = float(df[(df.sample_id == "d") & (df.metric == "clip_image_score")].value.iloc[0])
    dec = {d.sample_id: d.decision for d in evaluate(df, [parse_rule(f"clip_image_score >= {floor}")]).decisions}
    assert dec == {"a": "exclude", "d": "include"}  # the wrong description passes a rule the silent one fails


def test_missing_weights_unavailable_lists_places(tiny, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    s = samples(shared_data)[:1]
    r = metric([]).score(s)["su"]
    assert all(x.status == Status.unavailable for x in r)
    assert "laion/CLIP-ViT-B-32" in r[0].reason and "looked in" in r[0].reason and str(tmp_path / "hf") in r[0].reason
    r = metric([f"models.paths.clip={tmp_path / 'nothing'}"]).score(s)["su"]
    assert r[0].status == Status.unavailable and str(tmp_path / "nothing") in r[0].reason
    r = metric(["metrics.clip.backend=transformers"]).score(s)["su"]
    assert r[0].status == Status.unavailable and "openai/clip-vit-base-patch32" in r[0].reason


def test_unreadable_image_is_an_error_for_that_sample_only(tiny, shared_data, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    ss = samples(shared_data)[:1] + [Sample(id="bad", type=SampleType.image, image=bad,
                                            annotation=Annotation(image_description="A face."))]
    res = metric([f"models.paths.clip={tiny['open_clip']}"]).score(ss)
    assert res["su"][0].status == Status.ok
    assert res["bad"][0].status == Status.error and "bad.jpg" in res["bad"][0].reason


def test_results_cache_by_content(tiny, shared_data, tmp_path):
    """A second run reads every result from the cache; a changed description is recomputed."""
    from mer_eval.cache import Cache
    from mer_eval.metrics.clip_score import ClipImageText

    cfg = load_config(sets=[f"models.paths.clip={tiny['open_clip']}"])
    ss = samples(shared_data)[:2]

    def run(sams):
        ctx = ScoreContext(device="cpu", batch_size=4, config=cfg, cache=Cache(tmp_path / "cache"))
        return ClipImageText(cfg.metric_params("clip"), ctx).score(sams)

    first = run(ss)
    second = run(ss)
    for s in ss:
        assert not any(r.cached for r in first[s.id]) and all(r.cached for r in second[s.id])
        assert [r.value for r in first[s.id]] == [r.value for r in second[s.id]]
    changed = ss[0].model_copy(update={"annotation": Annotation(image_description="Something else entirely.")})
    third = run([changed])
    assert not any(r.cached for r in third[changed.id])
