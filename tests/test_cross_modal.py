"""CrossModalAgreement on real MER-Factory outputs, the OpenFace-CSV AU path, FER, VADER, and the
unavailable path of the sentence-embedding model."""

from __future__ import annotations

import pytest

from mer_eval.config import Config
from mer_eval.metric import ScoreContext
from mer_eval.metrics.cross_modal import CrossModalAgreement, au_pseudo_labels
from mer_eval.schema import Annotation, Sample, Status


def _metric(config: Config | None = None, **params) -> CrossModalAgreement:
    config = config or Config()
    p = {**config.metric_params("cross_modal"), **params}
    return CrossModalAgreement(p, ScoreContext(device="cpu", config=config))


def _by_name(results):
    return {r.metric: r for r in results}


def _real(shared_data):
    from mer_eval.discovery import discover

    return discover(shared_data / "annotations-mer-factory").by_id()


def test_gemini_merr(shared_data):
    s = _real(shared_data)["gemini_merr"]
    m = _metric()
    r = _by_name(m.score([s])[s.id])
    assert set(r) == set(CrossModalAgreement.output_names())
    # summary: "the core emotional state is frustration" -> angry
    assert r["cross_modal_agreement"].details["concluded"] == "angry"
    # tone "exasperated, slightly annoyed" -> angry family: agrees
    assert r["cm_audio"].status == Status.ok and r["cm_audio"].value == 1.0
    assert r["cm_audio"].details["source"]["emotions"] == ["angry"]
    # AUs 06 07 10 12 14 25: MER-Factory happy (06 12 14) and contempt (10 12 14 of 10 12 14 17), MERR happy
    assert r["cm_au"].value == 0.0 and r["cm_au"].details["source"]["emotions"] == ["contempt", "happy"]
    assert r["cm_au"].details["valence_agrees"] is True  # contempt is negative like anger
    # "He is smiling and talking" -> happy
    assert r["cm_visual"].value == 0.0 and r["cm_visual"].details["source"]["emotions"] == ["happy"]
    # the transcript is Chinese: no English-lexicon evidence; no FER in MER-Factory outputs
    assert r["cm_transcript"].status == Status.not_applicable and r["cm_transcript"].value is None
    assert r["cm_fer"].status == Status.not_applicable
    assert r["cross_modal_agreement"].value == pytest.approx(1 / 3)
    assert r["cross_modal_valence_agreement"].value == pytest.approx(2 / 3)
    sem = r["cm_semantic"]
    assert sem.status == Status.ok and 0.0 < sem.value < 1.0
    assert set(sem.details["cosine"]) == {"visual_expression", "visual_objective", "video_content",
                                          "audio_description"}
    assert sem.value == pytest.approx(sum(sem.details["cosine"].values()) / 4)
    assert sem.model is not None and sem.model.sha256 and "MiniLM" in sem.model.id
    assert r["cm_audio"].model is None  # lexicon outputs use no model
    assert m.ctx.model_seconds.get("cross_modal", 0) > 0


def test_openface_csv_peak_frame_gives_au_evidence(shared_data):
    """default_merr_data_MER comes from MER-Factory's default.wmv, whose OpenFace CSV is in openface/."""
    s = _real(shared_data)["default_merr_data_MER"]
    m = _metric(embedding_model=None)
    # top_aus_intensities alone (AU25 1.94, AU26 2.08): no rule has enough of its AUs
    r = _by_name(m.score([s])[s.id])
    assert r["cm_au"].status == Status.not_applicable
    assert r["cm_audio"].value == 0.0 and r["cm_audio"].details["source"]["emotions"] == ["neutral"]
    assert r["cm_audio"].details["valence_agrees"] is True  # surprise and neutral share the neutral valence
    with_csv = s.model_copy(update={"openface_csv": shared_data / "openface" / "openface_default_wmv_aus.csv"})
    r = _by_name(m.score([with_csv])[s.id])
    au = r["cm_au"]
    assert au.status == Status.ok and au.value == 1.0  # peak frame 222: AU05 + AU26 present -> surprise
    assert "surprise" in au.details["source"]["merr"]
    assert "frame 222" in au.details["source"]["from"]
    assert r["cm_semantic"].status == Status.unavailable and "switched off" in r["cm_semantic"].reason


def test_au_rules_by_hand():
    inten = {"06": 1.45, "07": 2.78, "10": 2.62, "12": 1.74, "14": 1.54, "25": 2.69}
    pl = au_pseudo_labels(inten, {k: v > 0.8 for k, v in inten.items()}, 0.8)
    got = {e["emotion"]: e["score"] for e in pl["mer_factory"]}
    assert got == {"happy": pytest.approx((1.45 + 1.74 + 1.54) / 3, abs=1e-4),
                   "contempt": pytest.approx((1.74 + 2.62 + 1.54) / 4, abs=1e-4)}
    assert pl["merr"] == ["happy"]


def test_fer_and_vader_sources():
    summary = "The face and voice point one way. In conclusion, the core emotional state is happiness."
    s = Sample(id="f", annotation=Annotation(
        final_summary=summary, fer_probabilities={"happy": 0.71, "sad": 0.2, "neutral": 0.09},
        transcript="This is wonderful, I love it so much!"))
    r = _by_name(_metric(embedding_model=None).score([s])["f"])
    assert r["cm_fer"].value == 1.0
    # the transcript names no emotion word: VADER polarity only, counted at valence level
    assert r["cm_transcript"].status == Status.not_applicable and "VADER" in r["cm_transcript"].reason
    assert r["cross_modal_agreement"].value == 1.0
    assert r["cross_modal_valence_agreement"].value == 1.0
    assert r["cross_modal_valence_agreement"].details["agree_valence"] == {"fer": True, "transcript": True}
    assert r["cm_semantic"].status == Status.unavailable  # switched off in this test


def test_minilm_unavailable(shared_data, tmp_path):
    s = _real(shared_data)["gemini_merr"]
    cfg = Config.model_validate({"models": {"paths": {"minilm": str(tmp_path / "no-such-model")}}})
    r = _by_name(_metric(cfg).score([s])[s.id])
    assert r["cm_semantic"].status == Status.unavailable and r["cm_semantic"].value is None
    assert "no-such-model" in r["cm_semantic"].reason
    assert r["cm_audio"].value == 1.0  # the lexicon outputs do not need the model


def test_no_summary_abstains_where_promised_no_evidence_is_not_applicable(shared_data):
    out = _metric().score([
        Sample(id="nosum", annotation=Annotation(transcript="hello", audio_description="calm tone")),
        Sample(id="noev", annotation=Annotation(final_summary="The core emotional state is joy.")),
        _real(shared_data)["default"],  # an AU-only result: no summary to give
    ])
    for sid in ("nosum", "noev", "default"):
        assert len(out[sid]) == len(CrossModalAgreement.outputs), sid
    # a mer annotation promises a final summary: an empty one is not answering, on every output (a gate rule on
    # cross_modal_agreement fails on it as the worst value instead of skipping it)
    assert all(x.status == Status.abstained and x.value is None for x in out["nosum"])
    assert out["nosum"][0].reason == "a mer annotation promises a final summary; it is empty"
    for sid in ("noev", "default"):
        assert all(x.status == Status.not_applicable and x.value is None for x in out[sid]), sid
    assert "no modality evidence" in out["noev"][0].reason
    assert "au annotations carry no final summary" in out["default"][0].reason


def test_batch_of_real_samples(shared_data):
    ds = _real(shared_data)
    m = _metric()
    out = m.score(list(ds.values()))
    for rs in out.values():
        assert len(rs) == len(CrossModalAgreement.outputs)
        for x in rs:
            assert (x.value is not None) == (x.status == Status.ok)
    # the sentiment summary concludes "Positive": no emotion, but semantic similarity is still measured
    r = _by_name(out["default_merr_data_sentiment"])
    assert r["cross_modal_agreement"].status == Status.not_applicable and "'positive'" in r["cross_modal_agreement"].reason
    assert r["cm_semantic"].status == Status.ok
    # llava: "irritation or annoyance" (angry) vs AUs {contempt, happy} and "laughter" (happy)
    r = _by_name(out["llava-llama3_llama3.2"])
    assert r["cross_modal_agreement"].details["concluded"] == "angry"
    assert r["cm_visual"].value == 0.0 and r["cross_modal_agreement"].value == 0.0


def test_au_rules_match_mer_factory_on_real_rows_and_worried(shared_data, tmp_path):
    """The AU evidence fires what MER-Factory's rule (the peaks stage) fires, row by row of a real OpenFace
    CSV, and on that CSV with one row edited to show AU20 + AU28 (worried: AU28 has no _r column, so its
    mean is over AU20_r alone, never (0 + AU20_r) / 2)."""
    import csv

    from mer_eval.domain.facs import au_code
    from mer_eval.generators.stages.peaks import emotions_at
    from mer_eval.domain.openface import read_openface_csv

    src = shared_data / "openface" / "OpenFace_Test.csv"
    rows = list(csv.reader(src.open(encoding="utf-8")))
    head = [h.strip() for h in rows[0]]
    edited = list(rows[5])
    for col, v in (("AU20_r", "1.2"), ("AU20_c", "1"), ("AU28_c", "1")):
        edited[head.index(col)] = v
    p = tmp_path / "edited.csv"
    with p.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([rows[0], *rows[1:5], edited, *rows[6:]])
    for path in (src, p):
        of = read_openface_csv(path)
        for i in range(of.n):
            inten = {au_code(k): v for k, v in of.intensities(i).items() if au_code(k)}
            pres = {au_code(k): v >= 0.5 for k, v in of.presences(i).items() if au_code(k)}
            ours = {e["emotion"] for e in au_pseudo_labels(inten, pres, 0.8)["mer_factory"]}
            assert ours == {e["emotion"] for e in emotions_at(of, i, 0.8)}, (path.name, i)
    of = read_openface_csv(p)
    inten = {au_code(k): v for k, v in of.intensities(4).items() if au_code(k)}
    pres = {au_code(k): v >= 0.5 for k, v in of.presences(4).items() if au_code(k)}
    assert "worried" in au_pseudo_labels(inten, pres, 0.8)["emotions"]
