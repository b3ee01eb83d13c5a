"""Every registered metric family through :class:`metric_tester.MetricTester`, on real data.

Families are found through the registry only (``available("metrics")`` / ``get_metric``). Data: the bundled
MER-Factory outputs in ``examples/mer-factory`` (always here), and the real annotations, face photos, a face
video, an OpenFace CSV and LibriVox utterances with their reference transcripts from ``shared_data``. CLIP, CLAP
and NLI weights are not here offline: those families load tiny random-weight models (``tests/tiny_models.py``)
through their real loading code; MiniLM (cross_modal), Whisper base (asr_wer) and the MediaPipe face landmarker
(au_f1) are the real offline models.

The last tests hand the tester deliberately broken families and check it fails them: its checks can fail.
"""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from metric_tester import MetricTester, changed_texts
from pydantic import ConfigDict, Field
from tiny_models import build_clap, build_nli, build_open_clip, one_torch_thread

from mer_eval.metric import Metric, MetricParams, OutputSpec
from mer_eval.registry import available, get_metric
from mer_eval.schema import Annotation, MetricResult, Sample, SampleType, Status

FAMILIES = sorted(available("metrics"))
MISSING = "/nonexistent/mer-eval-tester"

# A missing model, per family that loads one: --set lines, the outputs that become unavailable (None: all),
# and which samples need the model (None: every scorable one).
UNAVAILABLE: dict[str, dict[str, Any]] = {
    "clip": {"sets": [f"models.paths.clip={MISSING}/clip"]},
    "clap": {"sets": [f"models.paths.clap={MISSING}/clap"]},
    "nli": {"sets": [f"models.paths.nli={MISSING}/nli"]},
    "cross_modal": {"sets": [f"models.paths.minilm={MISSING}/minilm"], "outputs": ["cm_semantic"]},
    "asr_wer": {"sets": [f"models.paths.whisper-base={MISSING}/whisper"],
                "where": lambda s: not s.reference_transcript},  # a ground-truth reference needs no model
    "au_f1": {"sets": ["metrics.au_f1.source=mediapipe", f"models.paths.face-landmarker={MISSING}/face.task"]},
    "reference_reasoning": {"sets": [f"models.paths.minilm={MISSING}/minilm"], "outputs": ["ref_semantic"]},
}
# What an empty annotation gets where it is not `not_applicable` (not answering is an outcome there), and the
# crafted sample that is not_applicable for those families (None: the family has no not_applicable path).
EMPTY_SCORED: dict[str, tuple[set[Status], Sample | None]] = {
    # abstained_score 0; integrity_score not_applicable (no provenance recorded)
    "abstention": ({Status.ok, Status.not_applicable}, None),
    "conclusion": ({Status.abstained}, Sample(id="tester-audio", type=SampleType.audio)),
    "grounding": ({Status.abstained}, Sample(id="tester-audio", type=SampleType.audio)),
    "cross_modal": ({Status.abstained}, Sample(id="tester-audio", type=SampleType.audio)),
    "text_quality": ({Status.abstained}, Sample(id="tester-audio", type=SampleType.audio)),
    "nli": ({Status.abstained}, Sample(id="tester-audio", type=SampleType.audio)),
}
# float32 models give batch-size-dependent rounding (padding, batched matmuls): values agree to this much
BATCH_ATOL = {"clip": 1e-6, "clap": 1e-6, "nli": 1e-6, "cross_modal": 1e-6}
# families none of whose inputs the bundled examples have (no media, no labels, no reference transcript)
BUNDLED_UNSCORABLE = {"asr_wer", "clap", "clip", "label_agreement"}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("open_clip")
    pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("tester-tiny")
    return {"clip": build_open_clip(root), "clap": build_clap(root), "nli": build_nli(root),
            "references": _tester_references(root)}


def _config(tiny: dict[str, Path], extra: list[str] = ()):
    from mer_eval.config import load_config

    return load_config(sets=[f"models.paths.clip={tiny['clip']}", f"models.paths.clap={tiny['clap']}",
                             f"models.paths.nli={tiny['nli']}", "metrics.clip.video_frames=2",
                             f"metrics.reference_reasoning.references={tiny['references']}", *extra])


def _tester_references(root: Path) -> Path:
    """Human reference reasonings (tests/data/references, written by hand for the four posed photos) under the
    ids of the real samples below that show those photos, and under the bundled examples' ids (those clips have
    no human reference: the texts only drive the family's mechanics: batching, cache, statuses)."""
    import csv

    fixture = Path(__file__).resolve().parent / "data" / "references" / "gt-eng.csv"
    rows = {r["names"]: r for r in csv.DictReader(fixture.open(encoding="utf-8"))}
    ids = {"photo-su": "0-f1-su-ph", "photo-hao": "0-f15-hao-ph", "photo-anc": "15-f13-anc-ph",
           "default": "0-f1-su-ph", "gemini": "0-f15-hao-ph", "llava-llama3_llama3.2": "15-f13-anc-ph"}
    out = root / "references.csv"
    with out.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["names", "emotions", "subtitles", "reasons"])
        w.writeheader()
        for sid, photo in ids.items():
            w.writerow({**rows[photo], "names": sid})
    return out


@pytest.fixture(scope="module")
def config(tiny):
    return _config(tiny)


def bundled(examples: Path) -> list[Sample]:
    from mer_eval.discovery import discover

    return discover(examples / "mer-factory").samples


def real(d: Path) -> list[Sample]:
    """Real annotations, and real media paired with real annotation texts (photo labels from the file names).

    Each annotation is used once: two samples with the same texts share cache entries (see
    test_cache_hit_keeps_its_own_sample_id)."""
    from mer_eval.discovery import discover, read_transcripts

    by = {s.id: s for s in discover(d / "annotations-mer-factory").samples}
    refs = read_transcripts(d / "speech-librivox" / "transcription")
    f, lib = d / "faces", d / "speech-librivox"

    def like(base: str, sid: str, **kw: Any) -> Sample:
        return by[base].model_copy(update={"id": sid, **kw})

    u0880, u0930 = "sense_and_sensibility_01_austen_64kb-0880", "sense_and_sensibility_01_austen_64kb-0930"
    return [
        by["default"],  # MER-Factory's AU-only output
        like("default_merr_data_MER", "photo-su", peak_frame_image=f / "0-f1-su-ph.jpg", label="surprise"),
        like("gemini_merr", "photo-hao", peak_frame_image=f / "0-f15-hao-ph.jpg", label="happy"),
        like("llava-llama3_llama3.2", "photo-anc", image=f / "15-f13-anc-ph.jpg", label="angry"),
        like("bakllava_llama3.2_merr", "video", video=f / "single_face.mp4"),
        like("default_merr_data_sentiment", "openface-wmv",
             openface_csv=d / "openface" / "openface_default_wmv_aus.csv"),
        Sample(id="libri-0880", type=SampleType.audio, audio=lib / f"{u0880}.wav", reference_transcript=refs[u0880],
               annotation=Annotation(transcript="He was not an ill-disposed young man.",
                                     audio_description=by["default_merr_data_MER"].annotation.audio_description)),
        # no reference: asr_wer transcribes a Whisper baseline
        Sample(id="libri-0930", type=SampleType.audio, audio=lib / f"{u0930}.wav",
               annotation=Annotation(transcript=refs[u0930].capitalize() + ".",
                                     audio_description="A calm male voice reads slowly and evenly.")),
    ]


def _scorable(cls, samples: list[Sample], config) -> list[Sample]:
    m = cls(MetricTester.params_for(cls, config), MetricTester().make_ctx(config=config))
    return [s for s in samples if m.missing_inputs(s) is None]


# ---- 1. metadata ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_metadata(family):
    cls = get_metric(family)
    MetricTester().check_metadata(cls)
    assert cls.name == family


def test_output_names_unique_across_families():
    seen: dict[str, str] = {}
    for family in FAMILIES:
        for o in get_metric(family).output_names():
            assert o not in seen, f"output {o!r} of {family} is also one of {seen.get(o)}'s"
            seen[o] = family


# ---- 2-4 on the bundled examples ---------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_bundled_examples(family, examples, config, tmp_path):
    cls, t, samples = get_metric(family), MetricTester(atol=BATCH_ATOL.get(family, 0.0)), bundled(examples)
    assert len(samples) == 3
    res = t.check_results(cls, samples, config=config)
    if family in BUNDLED_UNSCORABLE:
        assert not _scorable(cls, samples, config)
        assert all(r.status == Status.not_applicable for rs in res.values() for r in rs)
        return
    assert _scorable(cls, samples, config), f"{family} scores none of the bundled examples"
    assert any(r.status == Status.ok for rs in res.values() for r in rs), f"{family}: no ok result"
    t.check_batch_invariance(cls, samples, config=config)
    t.check_cache(cls, samples, tmp_path / "cache", config=config)


# ---- 2-4 on the shared real data ---------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_real_data(family, shared_data, config, tmp_path):
    cls, t, samples = get_metric(family), MetricTester(atol=BATCH_ATOL.get(family, 0.0)), real(shared_data)
    assert _scorable(cls, samples, config), f"{family} scores none of the real samples"
    res = t.check_results(cls, samples, config=config)
    # the models load here: every family gives real values on real data
    assert any(r.status == Status.ok for rs in res.values() for r in rs), f"{family}: no ok result"
    t.check_batch_invariance(cls, samples, config=config)
    t.check_cache(cls, samples, tmp_path / "cache", config=config,
                  change=_give_transcript if family == "asr_wer" else changed_texts)


def _give_transcript(s: Sample) -> Sample:
    """asr_wer scores a mer / audio sample without a transcript as the empty hypothesis against its audio's
    Whisper baseline: no annotation text keys that result, so the change gives it one."""
    s = changed_texts(s)
    if s.annotation.transcript:
        return s
    return s.model_copy(update={"annotation": s.annotation.model_copy(update={"transcript": "The tester's words."})})


# ---- 5. status paths -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_not_applicable_path(family, config):
    cls, t = get_metric(family), MetricTester()
    empty = Sample(id="tester-empty")
    if family in EMPTY_SCORED:
        statuses, na = EMPTY_SCORED[family]
        res = t.check_results(cls, [empty], config=config, statuses=statuses)
        if family == "abstention":
            assert {r.metric: r.value for r in res[empty.id]}["abstained_score"] == 0.0
        if na is None:
            assert cls(MetricTester.params_for(cls, config)).missing_inputs(empty) is None
            return
        empty = na
    t.check_not_applicable(cls, empty, config=config)


@pytest.mark.parametrize("family", FAMILIES)
def test_unavailable_path(family, tiny, shared_data):
    cls, t, samples = get_metric(family), MetricTester(), real(shared_data)
    loads_model = bool(cls.models or cls.model_uses)
    if family not in UNAVAILABLE:
        assert not loads_model, f"{family} loads a model: add its missing-model case to UNAVAILABLE"
        # a family without a model gives the same results whatever the models section says
        every_model_missing = [f"models.paths.{k}={MISSING}/{k}" for k in
                               ("clip", "clap", "nli", "minilm", "whisper-base", "face-landmarker")]
        _, a = t.score(cls, samples, config=_config(tiny))
        _, b = t.score(cls, samples, config=_config(tiny, every_model_missing))
        assert {k: [r.model_dump(mode="json") for r in v] for k, v in a.items()} == \
               {k: [r.model_dump(mode="json") for r in v] for k, v in b.items()}
        return
    case = UNAVAILABLE[family]
    res = t.check_unavailable(cls, samples, config=_config(tiny, case["sets"]), outputs=case.get("outputs"),
                              where=case.get("where"), mentions=MISSING)
    if family == "asr_wer":  # the ground-truth sample does not need Whisper
        assert all(r.status == Status.ok for r in res["libri-0880"])


@pytest.mark.parametrize("family", FAMILIES)
def test_error_path(family, config, shared_data):
    MetricTester().check_error(get_metric(family), real(shared_data), config=config)


# ---- 6. references where the family's own tests have none on real data --------------------------------------
def _reference_text_quality(s: Sample) -> dict[str, float | None]:
    """distinct-2, MATTR (every window recounted) and the token count, straight from the definitions."""
    text = s.annotation.final_summary or ""
    if not text.strip() or re.search(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]", text):
        return {}
    toks = re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())
    bigrams = list(pairwise(toks))
    w = 50
    windows = [toks[i:i + w] for i in range(len(toks) - w + 1)] if len(toks) >= w else [toks]
    return {"summary_words": float(len(toks)),
            "distinct2": len(set(bigrams)) / len(bigrams) if bigrams else None,
            "mattr": sum(len(set(x)) / len(x) for x in windows) / len(windows)}


def test_reference_text_quality(examples, shared_data, config):
    for samples in (bundled(examples), real(shared_data)):
        MetricTester().check_reference(get_metric("text_quality"), samples, _reference_text_quality, config=config)


def test_reference_label_agreement_dataset_figures(shared_data, config):
    """The dataset figures on real photo labels equal scikit-learn's on the per-sample label / prediction."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    cls, t = get_metric("label_agreement"), MetricTester()
    samples = real(shared_data)
    m, res = t.score(cls, samples, config=config)
    pairs = [(r.details["label"], r.details["predicted"]) for rs in res.values() for r in rs if r.status == Status.ok]
    assert len(pairs) == 3 and {p[0] for p in pairs} == {"surprise", "happy", "angry"}
    yt, yp = [p[0] for p in pairs], [p[1] for p in pairs]
    for rs in res.values():
        for r in rs:
            if r.status == Status.ok:
                assert r.value == float(r.details["label"] == r.details["predicted"])
    agg = m.aggregate(samples, res)
    assert agg["n"] == 3
    assert agg["accuracy"] == pytest.approx(accuracy_score(yt, yp))
    assert agg["uar"] == pytest.approx(balanced_accuracy_score(yt, yp))
    labels = sorted(set(yt) | set(yp))
    assert agg["macro_f1"] == pytest.approx(f1_score(yt, yp, labels=labels, average="macro", zero_division=0))
    assert agg["accuracy"] < 1  # gemini's summary concludes frustration on the happy photo


# ---- the tester fails broken families ------------------------------------------------------------------------
class _WordParams(MetricParams):
    long_word: int = Field(7, ge=1)


class WordShare(Metric):
    """A small third-party-style family: the summary's word count and share of long words."""

    Params = _WordParams
    name = "tester_word_share"
    version = "1.0"
    requires = "annotation.final_summary"
    outputs = (OutputSpec("tester_words", True, (0.0, None), "number of words"),
               OutputSpec("tester_long_share", True, (0.0, 1.0), "share of words of at least long_word letters"))

    def missing_inputs(self, sample: Sample) -> str | None:
        return None if (sample.annotation.final_summary or "").strip() else "no final summary"

    def cache_key_inputs(self, sample: Sample) -> dict[str, Any] | None:
        return {"summary": sample.annotation.final_summary}

    def value(self, s: Sample, batch: list[Sample]) -> float:
        ws = (s.annotation.final_summary or "").split()
        return sum(len(w) >= self.params["long_word"] for w in ws) / len(ws)

    def compute(self, samples: list[Sample]) -> dict[str, list[MetricResult]]:
        return {s.id: [self.ok(s.id, "tester_words", len((s.annotation.final_summary or "").split())),
                       self.ok(s.id, "tester_long_share", self.value(s, samples))] for s in samples}


class OutOfRange(WordShare):
    def value(self, s, batch):
        return 1.5


class BatchDependent(WordShare):
    def value(self, s, batch):
        return 1 / len(batch)


class MissingOutput(WordShare):
    def compute(self, samples):
        return {k: v[:1] for k, v in super().compute(samples).items()}


class StaleCacheKey(WordShare):
    def cache_key_inputs(self, sample):
        return {"id": sample.id}  # the text is not part of the key: a changed summary is served stale


class SwallowsErrors(WordShare):
    def score(self, samples):  # a family that turns its failures into values
        out = super().score(samples)
        return {k: [self.ok(r.sample_id, r.metric, 0.0) if r.status == Status.error else r for r in v]
                for k, v in out.items()}


class _LooseParams(MetricParams):
    model_config = ConfigDict(extra="allow")


class AcceptsAnyParam(WordShare):
    Params = _LooseParams


class DuplicateOutputs(WordShare):
    outputs = WordShare.outputs + (OutputSpec("tester_words", True, (0.0, None), "again"),)


def test_tester_passes_a_sound_third_party_family(shared_data, tmp_path):
    MetricTester().run_all(WordShare, real(shared_data), tmp_path / "cache")


def test_cache_hit_keeps_its_own_sample_id(shared_data, config, tmp_path):
    """Two real samples with the same summary (one annotation, two media files): each keeps its own id."""
    one = real(shared_data)[1]
    twin = one.model_copy(update={"id": "photo-su-twin"})
    MetricTester().check_cache(get_metric("text_quality"), [one, twin], tmp_path / "cache", config=config)


@pytest.mark.parametrize("broken,check,match", [
    (OutOfRange, "check_results", "outside the declared range"),
    (BatchDependent, "check_batch_invariance", "batch size 1 vs"),
    (MissingOutput, "check_results", "expected one each of"),
    (StaleCacheKey, "check_cache", "changed input was served from the cache"),
    (SwallowsErrors, "check_error", "tester_words: ok"),
    (AcceptsAnyParam, "check_metadata", "accepted the unknown parameter"),
    (DuplicateOutputs, "check_metadata", "duplicate output names"),
])
def test_tester_fails_broken_families(broken, check, match, examples, tmp_path):
    samples = bundled(examples)
    t = MetricTester()

    def args(run: str) -> tuple:
        return () if check == "check_metadata" else (
            (samples, tmp_path / run) if check == "check_cache" else (samples,))

    getattr(t, check)(WordShare, *args("sound"))  # the sound family passes the same check
    with pytest.raises(AssertionError, match=match):
        getattr(t, check)(broken, *args("broken"))
