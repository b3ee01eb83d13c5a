"""Synthesis: prompt templates and their hashes, the offline voting rule, coarse text, conclusion parsing."""

from __future__ import annotations

import hashlib
import json

import pytest
from mer_eval.generators import synthesis

from mer_eval.domain.openface import read_openface_csv


def _real_evidence(shared_data, **kw):
    """Evidence measured from a real OpenFace CSV with the peaks/au_text code the pipeline uses."""
    from mer_eval.generators.stages.peaks import analyse, emotions_at

    from mer_eval.domain.facs import au_text

    of = read_openface_csv(shared_data / "openface" / "openface_default_wmv_aus.csv")
    res = analyse(of, 0.8, 15, "mer-factory")
    info = res["overall_peak_frame_info"]
    idx = of.row_index_of_frame(info["frame_number"])
    emos = emotions_at(of, idx, 0.8)
    ev = {"task": "emotion", "label": None, "peaks": res["chronological_emotion_peaks"],
          "au_text": au_text(info["top_aus_intensities"]), "top_aus": info["top_aus_intensities"],
          "au_pseudo_label": emos[0]["emotion"] if emos else None, "fer": {}, "transcript": None,
          "tone": None, "prosody": {}, "tone_emotion": None, "peak_frame": info["frame_number"],
          "peak_time": info["timestamp"], "visual_objective": "", "video_content": ""}
    ev.update(kw)
    return ev


def test_prompt_templates_render_and_hash():
    hashes = synthesis.prompt_hashes()
    for name in ("tone", "visual_description", "video_description", "au_description", "synthesis_emotion",
                 "synthesis_emotion_label", "synthesis_sentiment", "synthesis_sentiment_label"):
        key = f"{name}.v1"
        assert key in hashes
        assert hashes[key] == hashlib.sha256(synthesis.prompt_path(name).read_bytes()).hexdigest()
    ev = {"peaks": ["Peak at 1.00s: happy (slight)"], "au_text": "Cheek raiser (intensity: 1.45)",
          "transcript": "hello there", "label": "happy", "fer": {"happy": 0.7, "sad": 0.1}}
    text = synthesis.render_prompt("synthesis_emotion_label", synthesis.prompt_fields(ev))
    assert "${" not in text
    assert "Cheek raiser (intensity: 1.45)" in text and "hello there" in text and '"happy"' in text
    assert "happy 0.70" in text
    assert "Tone of voice: (not available)" in text  # absent evidence is said to be absent
    assert synthesis.synthesis_prompt_name("sentiment", None) == "synthesis_sentiment"
    assert synthesis.synthesis_prompt_name("emotion", "sad") == "synthesis_emotion_label"


def test_vote_rule_majority_and_tie_order():
    assert synthesis.vote({"au_pseudo_label": "happy", "fer": {"sad": 0.6, "happy": 0.3},
                           "tone_emotion": "sad"})[0] == "sad"  # 2 of 3
    # 1-1-1 tie: FER wins; FER absent: the strongest AU rule wins
    assert synthesis.vote({"au_pseudo_label": "angry", "fer": {"sad": 0.9}, "tone_emotion": "happy"})[0] == "sad"
    assert synthesis.vote({"au_pseudo_labels": ["contempt", "happy"], "tone_emotion": "sad"})[0] == "contempt"
    # every fired AU rule supports its emotion: agreement with FER on the second rule wins
    x, votes = synthesis.vote({"au_pseudo_labels": ["contempt", "happy"], "fer": {"happy": 0.9, "sad": 0.1}})
    assert x == "happy" and votes == {"au": "contempt/happy", "fer": "happy"}
    assert synthesis.vote({})[0] == synthesis.UNDETERMINED
    # sentiment: votes mapped first; happy (positive) vs surprise (neutral) tie broken by FER
    x, votes = synthesis.vote({"au_pseudo_label": "happy", "fer": {"surprise": 0.8}}, task="sentiment")
    assert (x, votes) == ("neutral", {"au": "positive", "fer": "neutral"})


def test_offline_summary_on_real_openface(shared_data):
    ev = _real_evidence(shared_data)
    text = synthesis.offline_summary(ev)
    assert text == synthesis.offline_summary(dict(ev))  # deterministic
    # every number it states was measured
    assert ev["au_text"] in text
    assert f"frame {ev['peak_frame']}" in text
    x = synthesis.parse_conclusion(text)
    expected = synthesis.vote(ev)[0]
    assert x == expected
    assert text.rstrip().endswith(f"the most likely cause is {synthesis.UNKNOWN_CAUSE}.")
    # label-aware: X is the label even against the cues, and the disagreement is said
    lab = synthesis.offline_summary({**ev, "label": "sad"})
    assert synthesis.parse_conclusion(lab) == "sad"
    if expected != "sad":
        assert "not supported by" in lab
    sent = synthesis.offline_summary({**ev, "task": "sentiment"})
    assert synthesis.parse_conclusion(sent, "sentiment") in ("positive", "negative", "neutral")
    assert "overall sentiment is" in sent


def test_coarse_description_only_measured_parts(shared_data):
    ev = _real_evidence(shared_data)
    c = synthesis.coarse_description(ev)
    assert ev["au_text"] in c
    assert "subtitle" not in c and "tone of voice" not in c.lower()  # nothing measured there
    c2 = synthesis.coarse_description({**ev, "transcript": "and so my fellow Americans",
                                       "tone": "moderate pitch, steady loudness"})
    assert '"and so my fellow Americans"' in c2 and "moderate pitch" in c2


@pytest.mark.parametrize("name,task,expected", [
    ("default_merr_data_MER.json", "emotion", "surprise"),
    ("gemini_merr.json", "emotion", "angry"),  # "frustration" is in the anger family
    ("llava-llama3_llama3.2_merr_data.json", "emotion", "angry"),  # "mild irritation or annoyance"
    ("default_merr_data_sentiment.json", "sentiment", "positive"),  # "the inferred sentiment is Positive"
])
def test_parse_conclusion_on_real_mer_factory_summaries(shared_data, name, task, expected):
    data = json.loads((shared_data / "annotations-mer-factory" / name).read_text(encoding="utf-8"))
    assert synthesis.parse_conclusion(data["final_summary"], task) == expected


def test_parse_conclusion_absent():
    assert synthesis.parse_conclusion("The person looks at the camera.") is None
    assert synthesis.parse_conclusion(None) is None


def test_conclusion_signals_are_the_cues_that_voted(shared_data):
    """Measured evidence from a real OpenFace CSV: only the AU cue votes (no FER, no voice) -> the AU fields;
    adding a voice emotion adds the tone field; a label decides on its own."""
    ev = _real_evidence(shared_data)
    assert ev["au_pseudo_label"] and ev["peaks"]
    _, votes = synthesis.vote(ev)
    assert set(votes) == {"au"}
    assert synthesis.conclusion_signals(ev) == ["top_aus_intensities", "chronological_emotion_peaks"]
    ev_voice = {**ev, "tone_emotion": "sad", "fer": {"happy": 0.8, "sad": 0.1}}
    assert set(synthesis.vote(ev_voice)[1]) == {"au", "fer", "tone"}
    assert synthesis.conclusion_signals(ev_voice) == ["fer_probabilities", "top_aus_intensities",
                                                      "chronological_emotion_peaks", "audio_description"]
    # an image has no peaks: the AU cue read only the AUs of the image
    assert synthesis.conclusion_signals({**ev, "peaks": [], "is_image": True}) == ["top_aus_intensities"]
    assert synthesis.conclusion_signals({**ev, "label": "happy"}) == ["label"]
    assert synthesis.conclusion_signals({}) == []  # undetermined: no signal decided it
    # the summary template names FER only when it used it, and so does offline_inputs
    assert "fer_probabilities" not in synthesis.offline_inputs("synthesis", ev)
    assert "The facial expression classifier" not in synthesis.offline_summary(ev)
    assert "fer_probabilities" in synthesis.offline_inputs("synthesis", ev_voice)
    assert "The facial expression classifier" in synthesis.offline_summary(ev_voice)
