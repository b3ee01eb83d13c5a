"""NLIConsistency with a tiny random-weight BERT NLI classifier built on disk, on real MER-Factory texts."""

from __future__ import annotations

import numpy as np
import pytest

from mer_eval.config import load_config
from mer_eval.metric import ScoreContext
from mer_eval.schema import Annotation, Sample, Status
from mer_eval.domain.text import split_sentences

from tiny_models import one_torch_thread, build_nli

pytest.importorskip("transformers")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def nli_dir(tmp_path_factory):
    return build_nli(tmp_path_factory.mktemp("tiny-nli"))


def metric(sets, batch_size=4):
    from mer_eval.metrics.nli import NLIConsistency

    cfg = load_config(sets=sets)
    return NLIConsistency(cfg.metric_params("nli"),
                          ScoreContext(device="cpu", batch_size=batch_size, config=cfg))


def real_samples(d):
    from mer_eval.discovery import discover

    out = []
    for f in ("gemini_merr.json", "default_merr_data_MER.json", "llava-llama3_llama3.2_merr_data.json"):
        out += discover(d / "annotations-mer-factory" / f).samples
    return out


def small_sample():
    return Sample(id="small", annotation=Annotation(
        visual_objective="The person smiles. The face is relaxed.",
        audio_description="The voice is calm and warm.",
        final_summary="The person is happy. The voice sounds calm. Overall the emotion is happy."))


def by_metric(rs):
    return {r.metric: r for r in rs}


def test_rates_match_independent_recomputation(nli_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    s = small_sample()
    r = by_metric(metric([f"models.paths.nli={nli_dir}"]).score([s])["small"])
    assert all(x.status == Status.ok for x in r.values()), [x.reason for x in r.values()]
    # the pairs, written out by hand
    summ = split_sentences(s.annotation.final_summary)
    pairs = []
    for desc in (s.annotation.visual_objective, s.annotation.audio_description):
        pairs += [(desc, h) for h in summ]  # (a) summary sentences vs the description
        pairs += [(s.annotation.final_summary, h) for h in split_sentences(desc)]  # (b)
    tok = AutoTokenizer.from_pretrained(nli_dir)
    model = AutoModelForSequenceClassification.from_pretrained(nli_dir).eval()
    with torch.no_grad():
        pred = np.array([model(**tok(p, h, return_tensors="pt")).logits.argmax(-1).item() for p, h in pairs])
    ent, con = 1, 0  # tiny model: {0: contradiction, 1: entailment, 2: neutral}
    e, c = float(np.mean(pred == ent)), float(np.mean(pred == con))
    assert r["nli_entail_rate"].details["pairs"] == len(pairs) == (3 + 2) + (3 + 1)
    assert r["nli_entail_rate"].value == pytest.approx(e)
    assert r["nli_contra_rate"].value == pytest.approx(c)
    assert r["nli_consistency_score"].value == pytest.approx((1 + e - c) / 2)
    det = r["nli_consistency_score"].details
    assert set(det["by_field"]) == {"visual_objective", "audio_description"}
    assert sum(det["by_field"]["visual_objective"]["summary_to_desc"].values()) == 3
    assert r["nli_consistency_score"].model.sha256 and r["nli_consistency_score"].model.source == "config"


def test_real_annotations_batched_equals_single(nli_dir, shared_data):
    ss = real_samples(shared_data) + [small_sample()]
    a = metric([f"models.paths.nli={nli_dir}"], batch_size=4).score(ss)
    b = metric([f"models.paths.nli={nli_dir}"], batch_size=1).score(ss)
    for s in ss:
        ra, rb = by_metric(a[s.id]), by_metric(b[s.id])
        for name in ("nli_consistency_score", "nli_entail_rate", "nli_contra_rate"):
            assert ra[name].status == Status.ok, ra[name].reason
            assert ra[name].value == pytest.approx(rb[name].value, abs=1e-9)
            assert 0.0 <= ra[name].value <= 1.0
    g = by_metric(a["gemini_merr"])["nli_consistency_score"].details
    # four description fields present in the Gemini output, both directions each
    assert set(g["by_field"]) == {"visual_expression", "visual_objective", "audio_description", "video_content"}
    assert g["pairs"] > 40
    # the ~2900-character summary as premise cannot fit 128 tokens: truncated, counted
    assert g["premises_truncated"] > 0 and g["max_length"] == 128


def test_max_premise_sentences_and_pairs_config(nli_dir, shared_data):
    s = real_samples(shared_data)[0]
    r = by_metric(metric([f"models.paths.nli={nli_dir}", "metrics.nli.pairs=[audio_description]",
                          "metrics.nli.max_premise_sentences=1"]).score([s])[s.id])
    det = r["nli_consistency_score"].details
    assert set(det["by_field"]) == {"audio_description"}
    n_sum = len(split_sentences(s.annotation.final_summary))
    n_desc = len(split_sentences(s.annotation.audio_description))
    assert det["pairs"] >= n_sum + n_desc


def test_long_hypothesis_is_cut_into_pieces(nli_dir):
    s = Sample(id="long", annotation=Annotation(
        audio_description="calm " * 200, final_summary="The person is happy."))
    r = by_metric(metric([f"models.paths.nli={nli_dir}"]).score([s])["long"])
    assert r["nli_consistency_score"].status == Status.ok
    # 200 words without a full stop, as a hypothesis: cut into pieces of <= 62 tokens, not truncated
    assert r["nli_consistency_score"].details["by_field"]["audio_description"]["desc_to_summary"]
    assert sum(r["nli_consistency_score"].details["by_field"]["audio_description"]["desc_to_summary"].values()) > 1


def test_labels_not_found_is_error(tmp_path):
    d = build_nli(tmp_path, labels={0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}, name="nli_badlabels")
    r = metric([f"models.paths.nli={d}"]).score([small_sample()])["small"]
    assert all(x.status == Status.error for x in r)
    assert "LABEL_0" in r[0].reason and "entailment" in r[0].reason


def test_not_applicable_and_unavailable(nli_dir, tmp_path, monkeypatch):
    no_sum = Sample(id="a", annotation=Annotation(visual_objective="A smile."))  # a mer annotation
    no_desc = Sample(id="b", annotation=Annotation(final_summary="Happy.", transcript="hello"))
    video = Sample(id="c", type="video", annotation=Annotation(video_content="A man smiles."))
    res = metric([f"models.paths.nli={nli_dir}"]).score([no_sum, no_desc, video])
    # a mer annotation promises a final summary: none is an abstention (a gate fails it), not a skipped check
    assert all(r.status == Status.abstained and r.value is None for r in res["a"])
    assert res["a"][0].reason == "a mer annotation promises a final summary; it is empty"
    assert res["b"][0].status == Status.not_applicable and "visual_objective" in res["b"][0].reason
    assert res["c"][0].status == Status.not_applicable
    assert "video annotations carry no final summary" in res["c"][0].reason
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    res = metric([]).score([small_sample(), no_sum])
    r = res["small"]
    assert all(x.status == Status.unavailable for x in r)
    assert all(x.status == Status.abstained for x in res["a"])  # found without the model
    assert "cross-encoder/nli-deberta-v3-base" in r[0].reason and str(tmp_path / "hf") in r[0].reason


def test_template_summary_against_the_texts_it_copied_is_a_self_check(nli_dir):
    """The offline provider's summary copies the descriptions NLI uses as premises: entailment is then
    guaranteed, so it counts nowhere; a model's summary is checked for faithfulness and counts."""
    from mer_eval.evidence import counts, provenance_from_meta

    m = metric([f"models.paths.nli={nli_dir}"])
    tpl = small_sample().model_copy(update={"id": "tpl", "provenance": provenance_from_meta({"provider": "offline"})})
    llm = small_sample().model_copy(update={"id": "llm", "provenance": provenance_from_meta({"provider": "openai"})})
    res = m.score([tpl, llm])
    t, lm = res["tpl"][0], res["llm"][0]
    assert t.status == lm.status == Status.ok
    assert t.evidence.relation.value == "self_check" and counts(t)[0] is False
    assert lm.evidence.relation.value == "faithfulness" and counts(lm) == (True, None)
