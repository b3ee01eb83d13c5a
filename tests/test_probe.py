"""Corrupted twins (generators/corrupt.py) and `mer-eval probe` on real MER-Factory outputs."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mer_eval.cli import main
from mer_eval.discovery import discover
from mer_eval.generators import corrupt
from mer_eval.metrics.au_faithfulness import AUFaithfulness
from mer_eval.domain.emotion_text import concluded_emotion
from mer_eval.reports.probe import auroc, bootstrap_ci

TEXT_METRICS = "text_quality,label_agreement,conclusion,grounding,au_faithfulness,abstention"


@pytest.fixture
def mf(examples):
    """The bundled real MER-Factory outputs (default with its OpenFace CSV, Gemini, LLaVA)."""
    return {s.id: s for s in discover(examples / "mer-factory").samples}


def _tree_hash(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---- corruptions ------------------------------------------------------------------------------------

def test_flip_replaces_the_concluded_family_only(mf):
    s = mf["gemini"]
    assert concluded_emotion(s.annotation.final_summary).emotion == "angry"  # "frustration"
    tw, why = corrupt.make_flip(s, seed=0)
    assert tw is not None, why
    new = tw.sample.annotation.final_summary
    after = concluded_emotion(new).emotion
    assert after not in (None, "angry")
    for w in ("frustration", "annoyed", "exasperated", "anger"):
        assert w not in new.lower()
    assert "cheek raiser" in new.lower() and "stethoscope" in new.lower()  # the reasoning stays
    assert tw.sample.id == "gemini.twin-flip" and s.annotation.final_summary != new  # original untouched


def test_flip_handles_short_words():
    text, n = corrupt.flip_summary("She feels joy. In conclusion, the core emotional state is joy.", "happy", "sad")
    assert n == 2 and "joy" not in text and text.endswith("is sadness.")


def test_swap_takes_another_clip_not_the_same_clip(mf, shared_data):
    ds = discover(shared_data / "annotations-mer-factory").samples
    by = {s.id: s for s in ds}
    tw, why = corrupt.make_swap(by["gemini_merr"], ds, seed=0)
    assert tw is not None, why
    donor = tw.what.split()[2]
    # llava's output is of the same clip (same AU peak): swapping with it would be no corruption
    assert donor != "llava-llama3_llama3.2" and not corrupt.same_clip(by["gemini_merr"], by[donor])
    assert corrupt.same_clip(by["gemini_merr"], by["llava-llama3_llama3.2"])
    assert tw.sample.annotation.final_summary == by[donor].annotation.final_summary
    solo, why = corrupt.make_swap(by["gemini_merr"], [by["gemini_merr"], by["llava-llama3_llama3.2"]], 0)
    assert solo is None and "no other clip" in why


def test_au_twin_claims_undetected_movements_and_faithfulness_sees_it(mf):
    m = AUFaithfulness({})
    for sid in ("gemini", "default", "llava-llama3_llama3.2"):
        s = mf[sid]
        tw, why = corrupt.make_au(s, seed=0)
        assert tw is not None, why
        orig = m.score([s])[sid][0]
        twin = m.score([tw.sample])[tw.sample.id][0]
        assert orig.status.value == "ok" and twin.status.value == "ok"
        assert twin.value < orig.value and twin.details["hallucinated"]
        assert set(twin.details["hallucinated"]).isdisjoint(corrupt.reported_aus(s))


def test_degen_generic_transcript_drop(mf):
    s = mf["gemini"]
    from mer_eval.domain.text import split_sentences

    d, _ = corrupt.make_degen(s, 0)
    sents = split_sentences(d.sample.annotation.final_summary)
    assert len(set(sents)) == 1 and len(sents) >= 4
    g, _ = corrupt.make_generic(s, 0)
    assert g.sample.annotation.final_summary.count(".") == 1 and "conclusion" in g.what
    t, _ = corrupt.make_transcript(s, list(mf.values()), 0)
    assert t.sample.annotation.transcript != s.annotation.transcript
    assert sorted(t.sample.annotation.transcript.replace(" ", "")) != sorted(s.annotation.transcript)
    dr, _ = corrupt.make_drop(s, 0)
    assert dr.sample.annotation.transcript is None and dr.sample.annotation.audio_description is None
    assert s.annotation.transcript  # the original keeps its audio analysis


def test_au_twin_claims_an_au_no_evidence_shows(mf):
    """The real default clip's output: its video description says the person smiles (AU12 seen), though AU12 is
    not among the reported AUs. A twin that renames a reported AU to AU12 claims what the clip shows, which
    au_faithfulness rightly accepts: no corruption at all. The twin's AU is one no evidence shows, at any seed."""
    import re

    s = mf["default"]
    assert "12" in corrupt.visible_aus(s) and "12" not in corrupt.reported_aus(s)
    fakes = set()
    for seed in range(60):
        t, why = corrupt.make_au(s, seed)
        assert t is not None, why
        fakes |= set(re.findall(r"AU(\d\d)", t.what.split("renamed to")[-1].split("added a claim of")[-1]))
    assert fakes and not fakes & (corrupt.visible_aus(s) | corrupt.reported_aus(s)), fakes

def test_transcript_twin_takes_donor_words_of_its_own_script(mf):
    """A wrong transcript, not a second language spliced in. The real Gemini output (Chinese speech) next to a
    copy of it whose transcript is a real LibriVox reference sentence (English): before, the English twin took
    whole Chinese sentences from the Chinese donors (split on spaces), and a transcript that is a third CJK reads
    as a possible translation to quote_fidelity, which then checked nothing and the composite rose (2 of 64
    transcript twins of bench/devset)."""
    from mer_eval.domain.text import cjk_ratio
    from score_fixtures import librivox_refs, shared_or_skip

    english = next(iter(librivox_refs(shared_or_skip()).values()))
    en = mf["gemini"].model_copy(deep=True)
    en.id, en.annotation.transcript = "gemini_en", english
    pool = list(mf.values()) + [en]
    t, why = corrupt.make_transcript(en, pool, 0)
    assert t is not None, why
    assert cjk_ratio(t.sample.annotation.transcript) == 0.0, t.sample.annotation.transcript
    assert t.sample.annotation.transcript != english
    assert set(t.sample.annotation.transcript.split()) <= set(english.split())  # its own words: no English donor
    zh, _ = corrupt.make_transcript(mf["gemini"], pool, 0)
    assert zh.sample.annotation.transcript.isascii() is False
    assert not any(w in zh.sample.annotation.transcript for w in english.split() if len(w) > 3)

def test_twins_are_reproducible_and_order_free(mf):
    a, _ = corrupt.make_twins(list(mf.values()), seed=3)
    b, _ = corrupt.make_twins(list(reversed(list(mf.values()))), seed=3)
    key = lambda tw: (tw.sample.id, tw.sample.annotation.model_dump_json())  # noqa: E731
    assert sorted(map(key, a)) == sorted(map(key, b))
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt.make_twins(list(mf.values()), kinds=("flip", "nonsense"))


# ---- AUROC ----------------------------------------------------------------------------------------

def test_auroc_equals_sklearn_and_ranks_unmeasured_last():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 40).round(1), rng.normal(0, 1, 30).round(1)  # rounding makes ties
    ref = roc_auc_score([1] * 40 + [0] * 30, np.concatenate([pos, neg]))
    assert auroc(pos, neg) == pytest.approx(ref)
    # an unmeasured value ranks last: a twin nothing measured is never "better" than a measured original
    assert auroc(np.array([0.1]), np.array([-np.inf])) == 1.0
    assert auroc(np.array([-np.inf]), np.array([-np.inf])) == 0.5  # the rank statistic; analyse() reports
    # a cell with nothing measured on either side as not measured instead (test_probe_on_bundled_...)
    lo, hi = bootstrap_ci(list(zip(pos[:30], neg)), 300, 0)
    assert lo <= auroc(pos[:30], neg) <= hi


# ---- the command ----------------------------------------------------------------------------------

def test_probe_on_bundled_mer_factory_outputs(examples, tmp_path):
    run = tmp_path / "mf"
    shutil.copytree(examples / "mer-factory", run)
    before = _tree_hash(run)
    r = CliRunner().invoke(main, ["probe", str(run), "--metrics", TEXT_METRICS, "--bootstrap", "200"],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    after = {k: v for k, v in _tree_hash(run).items() if not k.startswith("mer-eval-probe/")}
    assert after == before  # twins never touch the run's own files
    pj = json.loads((run / "mer-eval-probe" / "probe.json").read_text())
    assert pj["n_originals"] == 3 and set(pj["kinds"]) == set(corrupt.KINDS)
    comp = pj["auroc"]["composite_score"]
    for kind in ("flip", "au", "degen", "generic"):
        c = comp[kind]
        assert c["n_pairs"] >= 2 and c["auroc"] is not None and 0.0 <= c["auroc"] <= 1.0
        assert c["ci95"][0] <= c["auroc"] <= c["ci95"][1]
    # on these real annotations the defects the composite is built for are all caught
    assert comp["degen"]["auroc"] == 1.0 and comp["generic"]["auroc"] == 1.0 and comp["au"]["auroc"] == 1.0
    swaps = {t["original"]: t["what"] for t in pj["twins"] if t["kind"] == "swap"}
    # llava and gemini are one clip: each swaps with the other clip (default), never with each other
    assert swaps["gemini"].startswith("summary of default") and swaps["llava-llama3_llama3.2"].startswith(
        "summary of default")
    assert "composite_score" in r.output and "probe.json" in r.output
    # these outputs carry no label: label_match measured no sample, so it has no AUROC (not the 0.5 two
    # unmeasured values would tie at), in the file and on the screen, with the results' own reason
    for k, c in pj["auroc"]["label_match"].items():
        assert c["measured_original"] == c["measured_twin"] == 0 and c["n_pairs"] > 0, k
        assert c["auroc"] is None and c["ci95"] is None and c["win_rate"] is None, k
        assert c["not_measured"].startswith("not_applicable: sample has no ground-truth label ("), k
    assert "label_match: not measured on any sample (no AUROC): not_applicable: sample has no ground-truth" \
        in " ".join(r.output.split())
    assert all(c["not_measured"] is None and c["auroc"] is not None for c in comp.values())
    # the twins' scores are there to inspect
    ev = json.loads((run / "mer-eval-probe" / "gemini.twin-au" / "mer_eval_scores.json").read_text())
    assert any(x["metric"] == "au_faithfulness" and x["status"] == "ok" for x in ev["results"])


def test_probe_on_shared_mer_factory_outputs(shared_data, tmp_path):
    run = tmp_path / "shared"
    run.mkdir()
    for f in (shared_data / "annotations-mer-factory").glob("*.json"):
        shutil.copy(f, run / f.name)
    r = CliRunner().invoke(main, ["probe", str(run), "--metrics", TEXT_METRICS, "--bootstrap", "100"])
    assert r.exit_code == 0, r.output
    pj = json.loads((run / "mer-eval-probe" / "probe.json").read_text())
    comp = pj["auroc"]["composite_score"]
    assert comp["swap"]["n_pairs"] >= 3 and comp["swap"]["auroc"] >= 0.75
    # "all" pools every twin against every original (the AU-only output, which no summary metric can score,
    # ranks last); its interval resamples originals with their twins, so it brackets the value
    assert comp["all"]["ci95"][0] <= comp["all"]["auroc"] <= comp["all"]["ci95"][1]
    # the AU-only output has no summary: every kind says so instead of inventing a twin
    assert pj["skipped"]["flip"]["default"] == "no final summary"
    # beside the pooled AUROC, the paired count: each original against its own twin only
    au = comp["au"]
    assert au["win_rate"] == 1.0 and au["auroc"] < 1.0  # every AU twin scores below its own original ...
    flat = " ".join(r.output.split())  # the console may wrap the line
    line = flat[flat.index("each original against its own twin"):].split("(a tie counts half)")[0]
    assert f"au {au['n_pairs']}/{au['n_pairs']}" in line  # ... which the pooled AUROC, across samples, hides
    for k in ("flip", "swap", "drop"):
        wins = comp[k]["win_rate"] * comp[k]["n_pairs"]
        assert f"{k} {wins:.0f}/{comp[k]['n_pairs']}" in line


def test_a_sample_generation_failed_on_is_left_out_of_the_probe(examples, tmp_path):
    """The real MER-Factory outputs plus a MER-Factory error log for a clip it failed on. That sample has no
    annotation: nothing to corrupt, and it is no good annotation to set against the twins. Counted as an original
    (composite 0, ranking last) it pulled the pooled AUROC of composite_score from 1.0 to 0.76."""
    run = tmp_path / "run"
    shutil.copytree(examples / "mer-factory", run)
    (run / "error_logs").mkdir()
    (run / "error_logs" / "clipX_error.log").write_text("Error processing clipX: timeout\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["probe", str(run), "--metrics", TEXT_METRICS, "--bootstrap", "0",
                                  "--kinds", "flip,swap,degen"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "1 sample(s) left out, generation failed on them (no annotation to probe): clipX" in r.output
    d = json.loads((run / "mer-eval-probe" / "probe.json").read_text(encoding="utf-8"))
    assert d["n_originals"] == 3 and list(d["left_out"]) == ["clipX"]
    assert d["auroc"]["composite_score"]["all"]["auroc"] == 1.0
