"""AU-F1 on real OpenFace CSVs, real MER-Factory output and real face photos.

Hand computations: ``openface_default_wmv_aus.csv`` frames 219-223 (224 is absent, 225 is the cut-off row)
around the MER-Factory peak 222 all have success 1, confidence 0.98, and ``_c`` = 1 for AU05, AU25, AU26
only; mean ``_r`` of AU25 = 1.83 and AU26 = 1.91 are the only ones >= 1.0 (AU02: 0.84). So detected =
{05, 25, 26} with ``use_presence`` and {25, 26} without.
"""

from __future__ import annotations

import json
import shutil

import pytest
from mer_eval.domain.au_claims import UNIVERSE, extract_claims
from mer_eval.metrics.au_f1 import AUF1

from mer_eval.cache import Cache
from mer_eval.config import Config
from mer_eval.metric import ScoreContext
from mer_eval.models import resolve
from mer_eval.schema import Annotation, Sample, Status

needs_face_model = pytest.mark.skipif(not resolve("face-landmarker", with_sha=False).available,
                                      reason="face-landmarker .task file not installed")


def _by(results):
    return {r.metric: r for r in results}


def _score(sample, cfg=None, **params):
    m = AUF1(params, ScoreContext(config=cfg or Config()))
    return _by(m.score([sample])[sample.id])


@pytest.fixture
def wmv(shared_data):
    return shared_data / "openface" / "openface_default_wmv_aus.csv"


@pytest.fixture
def mer_json(shared_data):
    return shared_data / "annotations-mer-factory" / "default_merr_data_MER.json"


def _wmv_sample(csv, text, peak=222, **ann):
    return Sample(id="wmv", openface_csv=csv,
                  annotation=Annotation(visual_expression=text, peak_frame=peak, **ann))


# ---- claims ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,present,absent", [
    ("Lips part (intensity: 1.94), Jaw drop (intensity: 2.08)", {"25", "26"}, set()),
    ("no smile, jaw drop", {"26"}, {"12"}),
    ("without smiling or frowning", set(), {"12", "04"}),
    ("The person is not frowning and is smiling.", {"12"}, {"04"}),
    ("There is an absence of any cheek raise. Eyes wide.", {"05"}, {"06"}),
    ("AU12 is absent", set(), {"12"}),
    ("He doesn't smile but raises his eyebrows", {"02"}, {"12"}),
    ("Inner brow raiser", {"01"}, set()),  # not also AU02's "brow raise"
    ("AU6+12, AU 25, AU04_r and AU05", {"06", "12", "25", "04", "05"}, set()),
    ("the jaw drops and he frowned", {"26", "04"}, set()),
    ("her lips are slightly parted; the brows were lowered", {"25", "04"}, set()),
    ("the corners of the mouth are turned down", {"15"}, set()),
    ("Neutral expression.", set(), set()),
])
def test_claims(text, present, absent):
    c = extract_claims(text)
    assert c.present == present
    assert c.absent == absent


def test_claims_outside_universe_and_conflict():
    c = extract_claims("AU24 and a smile; later no smile")
    assert c.outside_universe == {"24"}
    assert c.present == {"12"} and c.conflicting == {"12"} and c.absent == set()


# ---- OpenFace source ---------------------------------------------------------------------------

def test_correct_description_openface(wmv):
    r = _score(_wmv_sample(wmv, "Lips part (intensity: 1.94), Jaw drop (intensity: 2.08)"))
    assert r["au_pr"].value == 1.0
    assert r["au_re"].value == pytest.approx(2 / 3)
    assert r["au_f1"].value == pytest.approx(0.8)
    d = r["au_f1"].details
    assert d["au_source"] == "openface" and d["independent"] is True
    assert r["au_f1"].params["au_source"] == "openface"
    assert d["detected"] == ["05", "25", "26"]
    assert d["frames"] == [219, 220, 221, 222, 223]
    assert d["peak_frame"] == 222 and d["peak_from"] == "annotation.peak_frame"
    assert d["intensities"]["25"] == pytest.approx(1.828, abs=0.001)
    assert d["texts"] == ["visual_expression"]
    # intensity rule only: detected {25, 26} -> perfect
    r = _score(_wmv_sample(wmv, "Lips part, Jaw drop"), use_presence=False)
    assert r["au_f1"].details["detected"] == ["25", "26"]
    assert r["au_f1"].value == 1.0 and r["au_pr"].value == 1.0 and r["au_re"].value == 1.0


def test_peak_fallbacks(wmv):
    # a peak frame the CSV lacks: nearest timestamp (14.733 s is frame 222), else max overall intensity
    r = _score(_wmv_sample(wmv, "Jaw drop", peak=999, peak_timestamp=14.733))
    d = r["au_f1"].details
    assert d["peak_frame"] == 222 and "not in the CSV" in d["peak_from"] and "timestamp" in d["peak_from"]
    r = _score(_wmv_sample(wmv, "Jaw drop", peak=None))
    assert r["au_f1"].details["peak_frame"] == 222  # MER-Factory's overall peak is the max-intensity frame
    assert "max overall intensity" in r["au_f1"].details["peak_from"]
    r = _score(_wmv_sample(wmv, "Jaw drop", peak=20), window_frames=0)
    assert r["au_f1"].details["frames"] == [20]


def test_hallucinated_negated_and_codes(wmv):
    r = _score(_wmv_sample(wmv, "A broad smile with raised cheeks and furrowed brows"))
    assert r["au_f1"].details["claimed"] == ["04", "06", "12"]
    assert r["au_pr"].value == 0.0 and r["au_re"].value == 0.0 and r["au_f1"].value == 0.0
    r = _score(_wmv_sample(wmv, "no smile, jaw drop"))
    assert r["au_f1"].details["claimed"] == ["26"] and r["au_f1"].details["negated"] == ["12"]
    assert r["au_pr"].value == 1.0
    assert r["au_re"].value == pytest.approx(1 / 3)
    assert r["au_f1"].value == pytest.approx(0.5)  # 2*1 / (1 + 3)
    r = _score(_wmv_sample(wmv, "AU25 and AU 26 present, AU05_r elevated"))
    assert r["au_f1"].value == 1.0
    # a claim on top of a correct pair: P = 2/3, R = 2/3
    r = _score(_wmv_sample(wmv, "AU25, AU26, AU12"))
    assert r["au_pr"].value == pytest.approx(2 / 3) and r["au_f1"].value == pytest.approx(2 / 3)


def test_no_claims_and_nothing_detected(wmv):
    r = _score(_wmv_sample(wmv, "The background is a plain room."))
    assert r["au_pr"].status == Status.not_applicable and "claims no AU" in r["au_pr"].reason
    assert r["au_re"].value == 0.0 and r["au_f1"].value == 0.0
    # threshold 5 and no presence: nothing detected; claims -> precision 0, recall undefined
    r = _score(_wmv_sample(wmv, "jaw drop"), use_presence=False, intensity_threshold=5.0)
    assert r["au_pr"].value == 0.0 and r["au_f1"].value == 0.0
    assert r["au_re"].status == Status.not_applicable and "recall undefined" in r["au_re"].reason
    r = _score(_wmv_sample(wmv, "Neutral expression."), use_presence=False, intensity_threshold=5.0)
    assert all(x.status == Status.not_applicable for x in r.values())
    assert "F1 undefined" in r["au_f1"].reason


def test_openface_test_csv_max_intensity_peak(shared_data):
    csv = shared_data / "openface" / "OpenFace_Test.csv"
    s = Sample(id="t", openface_csv=csv, annotation=Annotation(visual_expression="Upper lid raiser, lip tightener"))
    r = _score(s)
    d = r["au_f1"].details
    assert d["peak_frame"] == 13 and "max overall intensity" in d["peak_from"]
    assert d["frames"] == list(range(10, 17))
    assert d["detected"] == ["05", "23"]
    assert r["au_f1"].value == 1.0
    # 99 frames have confidence 0.883, frame 35 has 0.983: at 0.9 only frame 35 is valid, at 0.99 none
    r = _score(s, confidence=0.9)
    assert r["au_f1"].details["peak_frame"] == 35 and r["au_f1"].details["frames"] == [35]
    r = _score(s, confidence=0.99)
    assert r["au_f1"].status == Status.not_applicable and "confidence >= 0.99" in r["au_f1"].reason


# ---- self / independence -----------------------------------------------------------------------

def test_self_flag_mer_factory_layout(tmp_path, wmv, mer_json):
    from mer_eval.discovery import discover

    d = tmp_path / "out" / "default"
    d.mkdir(parents=True)
    shutil.copy(wmv, d / "default.csv")
    shutil.copy(mer_json, d / "default_merr_data.json")
    ds = discover(tmp_path / "out")
    (s,) = ds.samples
    assert s.openface_csv is not None and s.annotation.peak_frame == 222
    r = _score(s)
    for out in ("au_pr", "au_re", "au_f1"):
        assert r[out].details["au_source"] == "self"
        assert r[out].params["au_source"] == "self"
    d = r["au_f1"].details
    assert d["independent"] is False and "MER-Factory layout" in d["self_reason"]
    assert d["texts"] == ["visual_expression", "final_summary"]
    # final_summary also says "smiles" (from the video overview): claims {12, 25, 26} vs {05, 25, 26}
    assert d["claimed"] == ["12", "25", "26"] and d["claimed_by_text"]["visual_expression"] == ["25", "26"]
    assert r["au_f1"].value == pytest.approx(2 / 3)
    r = _score(s, texts=["visual_expression"])
    assert r["au_f1"].value == pytest.approx(0.8)
    assert r["au_f1"].details["texts"] == ["visual_expression"]


def test_self_by_content_and_top_aus(wmv, mer_json):
    # a sample not in MER-Factory's layout whose top_aus_intensities equal the CSV's frame 222 -> self
    s = _wmv_sample(wmv, "Lips part, Jaw drop", top_aus_intensities={"AU25_r": 1.94, "AU26_r": 2.08})
    r = _score(s)
    assert r["au_f1"].details["au_source"] == "self"
    assert "top_aus_intensities equal" in r["au_f1"].details["self_reason"]
    # numbers that differ from the CSV: independent
    s = _wmv_sample(wmv, "Lips part, Jaw drop", top_aus_intensities={"AU25_r": 3.0})
    assert _score(s)["au_f1"].details["au_source"] == "openface"
    # no CSV at all: top_aus_intensities are the only source -> self, every listed AU detected
    s = Sample(id="x", annotation=Annotation(visual_expression="Lips part, Jaw drop, smile",
                                             top_aus_intensities={"AU25_r": 1.94, "AU26_r": 2.08}))
    r = _score(s)
    assert r["au_f1"].details["au_source"] == "self" and r["au_f1"].details["source"] == "top_aus_intensities"
    assert r["au_pr"].value == pytest.approx(2 / 3) and r["au_re"].value == 1.0
    # listed values below intensity_threshold are not detected (bakllava's older output lists 0.06 and up)
    s = Sample(id="x", annotation=Annotation(visual_expression="Brow lowerer, jaw drop",
                                             top_aus_intensities={"AU04_r": 0.58, "AU26_r": 1.33}))
    r = _score(s)
    assert r["au_f1"].details["detected"] == ["26"] and r["au_pr"].value == 0.5
    assert r["au_f1"].value == pytest.approx(2 / 3)
    # source=openface forced on a self CSV still says self
    s = _wmv_sample(wmv, "Lips part, Jaw drop", top_aus_intensities={"AU25_r": 1.94, "AU26_r": 2.08})
    assert _score(s, source="openface")["au_f1"].details["au_source"] == "self"


def test_meta_json_decides_independence(tmp_path, shared_data, wmv):
    # a mer-eval run folder: <id>/<id>.csv is the AU CSV the generator wrote (here: OpenFace_Test.csv's
    # bytes) and the AU text was written from; an OpenFace CSV run on the clip elsewhere is independent
    d = tmp_path / "run" / "s1"
    d.mkdir(parents=True)
    generated = d / "s1.csv"
    shutil.copy(shared_data / "openface" / "OpenFace_Test.csv", generated)
    external = tmp_path / "openface" / "s1_openface.csv"
    external.parent.mkdir()
    shutil.copy(wmv, external)
    ann = Annotation(visual_expression="Lips part, Jaw drop", peak_frame=222)
    (d / "mer_eval_meta.json").write_text(json.dumps({"au_source": "mediapipe"}))
    s_gen = Sample(id="s1", source="mer-factory", folder=d, openface_csv=generated, annotation=ann)
    s_ext = Sample(id="s1", source="mer-factory", folder=d, openface_csv=external, annotation=ann)
    r = _score(s_gen)["au_f1"]
    assert r.details["au_source"] == "self" and "came from mediapipe" in r.details["self_reason"]
    r = _score(s_ext)["au_f1"]
    assert r.details["au_source"] == "openface" and r.value == pytest.approx(0.8)
    # the au stage file names the CSV (an absolute path of a run since moved: matched by name)
    (d / "s1_au.json").write_text(json.dumps({"au_source": "mediapipe", "csv": "/elsewhere/run/s1/s1.csv"}))
    assert _score(s_gen)["au_f1"].details["au_source"] == "self"
    r = _score(s_ext)["au_f1"]
    assert r.details["au_source"] == "openface" and "s1_openface.csv is another file" in r.details["independence"]
    # a named path with the same bytes as the scored CSV is self
    (d / "s1_au.json").unlink()
    (d / "mer_eval_meta.json").write_text(json.dumps({"au_source": {"backend": "openface",
                                                                    "path": str(external)}}))
    r = _score(s_ext)["au_f1"]
    assert r.details["au_source"] == "self" and "the same file" in r.details["self_reason"]
    # an unreadable meta file is an error, never a guess
    (d / "mer_eval_meta.json").write_text("{not json")
    r = _score(s_ext)["au_f1"]
    assert r.status == Status.error and "mer_eval_meta.json" in r.reason


# ---- MediaPipe source --------------------------------------------------------------------------

@needs_face_model
def test_mediapipe_on_photos(shared_data, tmp_path):
    faces = shared_data / "faces"
    happy = Sample(id="h", image=faces / "0-f15-hao-ph.jpg",
                   annotation=Annotation(visual_expression="smiling, cheeks raised"))
    r = _score(happy)
    d = r["au_f1"].details
    assert d["au_source"] == "mediapipe" and d["independent"] is True
    assert "12" in d["detected"]
    assert r["au_re"].value > 0 and r["au_pr"].value >= 0.5
    assert r["au_f1"].model is not None and r["au_f1"].model.sha256
    # when our generator's AU text came from MediaPipe too, MediaPipe on the frame is not independent
    run = tmp_path / "h"
    run.mkdir()
    (run / "mer_eval_meta.json").write_text(json.dumps({"au_source": "mediapipe"}))
    r = _score(happy.model_copy(update={"folder": run}))
    assert r["au_f1"].details["au_source"] == "self" and r["au_f1"].details["skipped_sources"]["mediapipe"]
    anger = Sample(id="a", image=faces / "15-f13-anc-ph.jpg",
                   annotation=Annotation(visual_expression="a broad smile"))
    r = _score(anger, source="mediapipe")
    assert r["au_pr"].value == 0.0
    mountain = Sample(id="m", image=faces / "free-mountain-vector-01.jpg",
                      annotation=Annotation(visual_expression="smiling"))
    r = _score(mountain)
    assert r["au_f1"].status == Status.not_applicable
    assert "no face detected in free-mountain-vector-01.jpg" in r["au_f1"].reason


def test_missing_weights_unavailable(tmp_path, shared_data):
    cfg = Config()
    cfg.models.paths["face-landmarker"] = str(tmp_path / "missing.task")
    s = Sample(id="h", image=shared_data / "faces" / "0-f15-hao-ph.jpg",
               annotation=Annotation(visual_expression="smiling"))
    for source in ("mediapipe", "auto"):
        r = _score(s, cfg, source=source)
        assert r["au_f1"].status == Status.unavailable, source
        assert "missing.task" in r["au_f1"].reason


def test_missing_everything_not_applicable(wmv):
    r = _score(Sample(id="e", type="video"))  # a type that promises no AU text
    assert all(x.status == Status.not_applicable for x in r.values())
    assert "no AU-describing text" in r["au_f1"].reason
    r = _score(Sample(id="e"))  # a mer annotation without text, and nothing to detect AUs with
    assert all(x.status == Status.not_applicable for x in r.values())
    assert "no AU source" in r["au_f1"].reason
    r = _score(Sample(id="e", annotation=Annotation(visual_expression="smiling")))
    assert r["au_f1"].status == Status.not_applicable and "no AU source" in r["au_f1"].reason
    r = _score(Sample(id="e", openface_csv=wmv, annotation=Annotation(visual_expression="smiling")),
               source="mediapipe")
    assert r["au_f1"].status == Status.not_applicable and "no peak-frame image" in r["au_f1"].reason


def test_cjk_text_is_skipped_not_scored(wmv):
    s = _wmv_sample(wmv, "嘴唇微张，下巴下垂")  # "lips slightly parted, jaw dropped" in Chinese
    r = _score(s)
    assert r["au_f1"].status == Status.not_applicable and "English text only" in r["au_f1"].reason
    s = _wmv_sample(wmv, "嘴唇微张，下巴下垂", final_summary="His jaw drops.")
    r = _score(s)
    assert r["au_f1"].details["texts"] == ["final_summary"]
    assert "visual_expression" in r["au_f1"].details["skipped_texts"]
    assert r["au_pr"].value == 1.0


def test_cache_roundtrip(tmp_path, wmv):
    cache = Cache(tmp_path / "c")
    m = AUF1({}, ScoreContext(config=Config(), cache=cache))
    s = _wmv_sample(wmv, "Lips part, Jaw drop")
    first = _by(m.score([s])["wmv"])
    second = _by(AUF1({}, ScoreContext(config=Config(), cache=cache)).score([s])["wmv"])
    assert second["au_f1"].cached and second["au_f1"].value == first["au_f1"].value == pytest.approx(0.8)
    # another text is another key
    s2 = _wmv_sample(wmv, "Jaw drop")
    third = _by(AUF1({}, ScoreContext(config=Config(), cache=cache)).score([s2])["wmv"])
    assert not third["au_f1"].cached and third["au_f1"].value == pytest.approx(0.5)


@needs_face_model
def test_auto_prefers_peak_frame_over_self_csv(tmp_path, shared_data, wmv, mer_json):
    from PIL import Image

    from mer_eval.discovery import discover

    d = tmp_path / "out" / "default"
    d.mkdir(parents=True)
    shutil.copy(wmv, d / "default.csv")
    shutil.copy(mer_json, d / "default_merr_data.json")
    # a real open-mouthed (surprise) face stands in for the peak frame MER-Factory saves
    Image.open(shared_data / "faces" / "0-f1-su-ph.jpg").save(d / "default_peak_frame.png")
    (s,) = discover(tmp_path / "out").samples
    assert s.peak_frame_image is not None
    r = _score(s)
    det = r["au_f1"].details
    assert det["au_source"] == "mediapipe" and det["independent"] is True
    assert det["skipped_sources"]["openface"].startswith("not independent: MER-Factory layout")
    assert "26" in det["detected"] and "26" in det["tp"]
    assert r["au_f1"].model is not None and r["au_f1"].model.sha256
    # forcing the CSV gives the self check again
    assert _score(s, source="openface")["au_f1"].details["au_source"] == "self"


# ---- claims the source did not measure ---------------------------------------------------------

def _drop_columns(src, dst, drop):
    """A copy of the real CSV ``src`` without the columns whose (stripped) name is in ``drop``; the cut-off
    last row stays cut off."""
    lines = src.read_text().splitlines()
    header = [h.strip() for h in lines[0].split(",")]
    keep = [i for i, h in enumerate(header) if h not in drop]
    out = []
    for line in lines:
        f = line.split(",")
        out.append(",".join(f[i] for i in keep if i < len(f)) if len(f) == len(header) else line)
    dst.write_text("\n".join(out) + "\n")
    return dst


def test_unmeasured_claims_are_not_false_positives(tmp_path, wmv):
    # the real CSV without its AU06 and AU12 columns: a claimed smile / cheek raiser was never measured
    csv = _drop_columns(wmv, tmp_path / "no0612.csv", {"AU06_r", "AU06_c", "AU12_r", "AU12_c"})
    r = _score(_wmv_sample(csv, "A smile with raised cheeks; lips part, jaw drop"))
    assert r["au_pr"].value == 1.0  # 2 / 2 measured claims, not 2 / 4
    d = r["au_f1"].details
    assert d["claimed"] == ["06", "12", "25", "26"] and d["detected"] == ["05", "25", "26"]
    assert d["unmeasured_claims"] == ["06", "12"]
    assert "no AU06_r or AU06_c column in no0612.csv" in d["unmeasured_reasons"]["06"]
    assert d["fp"] == [] and d["tp"] == ["25", "26"] and d["fn"] == ["05"]
    assert "06" not in d["measured"] and "25" in d["measured"]
    assert r["au_re"].value == pytest.approx(2 / 3)
    assert r["au_f1"].value == pytest.approx(0.8)  # 2*2 / (2 + 3)
    assert r["au_f1"].metric_version == AUF1.version != "1.1"
    # only unmeasured claims: precision undefined (says why); the text still names none of what was detected
    r = _score(_wmv_sample(csv, "A broad smile with raised cheeks"))
    assert r["au_pr"].status == Status.not_applicable
    assert "did not measure" in r["au_pr"].reason and "06" in r["au_pr"].reason and "12" in r["au_pr"].reason
    assert r["au_re"].value == 0.0 and r["au_f1"].value == 0.0
    # ... and nothing detected either: all three undefined, with the reason
    r = _score(_wmv_sample(csv, "A broad smile with raised cheeks"), use_presence=False, intensity_threshold=5.0)
    assert all(x.status == Status.not_applicable for x in r.values())
    assert "did not measure" in r["au_f1"].reason and "F1 undefined" in r["au_f1"].reason
    assert r["au_f1"].details["unmeasured_claims"] == ["06", "12"]


def test_au28_needs_presence_columns(tmp_path, wmv):
    # AU28 has a _c column only: a CSV without _c columns (or use_presence off) does not measure it
    no_c = _drop_columns(wmv, tmp_path / "no_c.csv", {f"AU{a}_c" for a in UNIVERSE})
    r = _score(_wmv_sample(no_c, "Lip suck; lips part, jaw drop"))
    assert r["au_pr"].value == 1.0 and r["au_f1"].value == 1.0  # not 2/3, 0.8: AU28 was never measured
    d = r["au_f1"].details
    assert d["claimed"] == ["25", "26", "28"] and d["unmeasured_claims"] == ["28"]
    assert "no AU28_r or AU28_c column in no_c.csv" in d["unmeasured_reasons"]["28"]
    assert d["detected"] == ["25", "26"] and d["fp"] == []
    r = _score(_wmv_sample(wmv, "Lip suck; lips part, jaw drop"), use_presence=False)
    d = r["au_f1"].details
    assert d["unmeasured_claims"] == ["28"] and "use_presence" in d["unmeasured_reasons"]["28"]
    assert r["au_f1"].value == 1.0
    # with presence the original CSV measures AU28 (absent at the peak): a real false positive
    r = _score(_wmv_sample(wmv, "Lip suck; lips part, jaw drop"))
    assert r["au_f1"].details["unmeasured_claims"] == [] and r["au_f1"].details["fp"] == ["28"]
    assert r["au_pr"].value == pytest.approx(2 / 3)
    # top_aus_intensities are _r values: AU28 cannot be listed, so a claim of it is not scored
    s = Sample(id="x", annotation=Annotation(visual_expression="Lip suck, jaw drop",
                                             top_aus_intensities={"AU26_r": 1.33}))
    r = _score(s)
    assert r["au_f1"].details["unmeasured_claims"] == ["28"] and r["au_pr"].value == 1.0


# ---- multi-face CSVs ---------------------------------------------------------------------------

def _add_face(src, dst, edit):
    """The real CSV ``src`` with a second face (``face_id`` 1) after each complete row: a copy of the row
    changed by ``edit(frame, {column: value})``. The cut-off last row stays, face 0's, cut off."""
    lines = src.read_text().splitlines()
    header = [h.strip() for h in lines[0].split(",")]
    out = [lines[0]]
    for line in lines[1:]:
        out.append(line)
        f = line.split(",")
        if len(f) != len(header):
            continue
        row = dict(zip(header, f))
        row["face_id"] = "1"
        edit(int(row["frame"]), row)
        out.append(",".join(row[h] for h in header))
    dst.write_text("\n".join(out) + "\n")
    return dst


def _smiler(enters_at=None):
    def edit(frame, row):
        for c in ("AU06_r", "AU12_r"):
            row[c] = "3.00"
        for c in ("AU06_c", "AU12_c"):
            row[c] = "1.0"
        if enters_at is not None and frame < enters_at:
            row["success"], row["confidence"] = "0", "0.00"
    return edit


def test_multiface_csv_uses_one_face(tmp_path, wmv):
    from mer_eval.domain.openface import read_openface_csv

    # a second person, smiling, tracked from frame 200 on (the peak window too): face 0 has the most
    csv = _add_face(wmv, tmp_path / "two.csv", _smiler(enters_at=200))
    r = _score(_wmv_sample(csv, "A smile with raised cheeks"))
    assert r["au_pr"].value == 0.0 and r["au_f1"].value == 0.0  # face 0 alone: no smile (faces mixed: 1.0 and 4/7)
    of = read_openface_csv(csv)
    assert of.face_id == 0 and of.face_ids == [0, 1]
    assert (of.data["face_id"] == 0).all() and of.n == read_openface_csv(wmv).n
    assert any("kept face 0" in n and "most frames" in n for n in of.notes)
    assert read_openface_csv(csv, face="all").n == 2 * of.n
    d = r["au_f1"].details
    assert d["face_choice"]["face_id"] == 0 and d["face_choice"]["frames"] == {"0": 223, "1": 24}
    assert "most frames" in d["face_choice"]["reason"]
    assert d["frames"] == [219, 220, 221, 222, 223] and d["detected"] == ["05", "25", "26"]
    # the smiling person is the one tracked throughout: face 1 is kept
    csv = _add_face(wmv, tmp_path / "two_b.csv", _smiler())
    lines = csv.read_text().splitlines()
    for i, line in enumerate(lines[1:], start=1):  # face 0 lost (success 0) after frame 100
        f = line.split(",")
        if len(f) > 4 and f[1] == "0" and int(f[0]) > 100:
            f[4] = "0"
            lines[i] = ",".join(f)
    csv.write_text("\n".join(lines) + "\n")
    r = _score(_wmv_sample(csv, "A smile with raised cheeks"))
    assert r["au_f1"].details["face_choice"]["face_id"] == 1
    assert r["au_f1"].details["detected"] == ["05", "06", "12", "25", "26"]
    assert r["au_pr"].value == 1.0


def test_multiface_tie_is_an_error(tmp_path, wmv):
    from mer_eval.domain.openface import OpenFaceError, read_openface_csv

    csv = _add_face(wmv, tmp_path / "tie.csv", _smiler())  # both tracked in every frame
    with pytest.raises(OpenFaceError, match="cannot tell which face"):
        read_openface_csv(csv)
    r = _score(_wmv_sample(csv, "A smile with raised cheeks"))
    assert all(x.status == Status.error for x in r.values())
    assert "cannot tell which face" in r["au_f1"].reason and "tie.csv not scored" in r["au_f1"].reason
    # a face asked for by id is read alone
    of = read_openface_csv(csv, face=1)
    assert of.face_id == 1 and (of.data["AU12_r"] == 3.0).all() and "as asked" in of.notes[-1]
    with pytest.raises(OpenFaceError, match="no face_id 7"):
        read_openface_csv(csv, face=7)
    # validate says the file was read but not used (not "unreadable")
    import io

    from rich.console import Console

    from mer_eval.discovery import Dataset
    from mer_eval.config import load_config
    from mer_eval.validate import render_dataset

    buf = io.StringIO()
    render_dataset(Console(file=buf, width=400), Dataset(kind="manifest", root=tmp_path, samples=[
        _wmv_sample(csv, "A smile with raised cheeks")]), load_config())
    out = " ".join(buf.getvalue().split())
    assert "OpenFace CSV not used:" in out and "cannot tell which face" in out and "unreadable" not in out


def test_single_face_csv_unchanged(wmv, shared_data):
    from mer_eval.domain.openface import read_openface_csv

    for p in (wmv, shared_data / "openface" / "OpenFace_Test.csv"):
        a, b = read_openface_csv(p), read_openface_csv(p, face="all")
        assert a.columns == b.columns and a.notes == b.notes and a.n == b.n
        assert all((a.data[c] == b.data[c]).all() for c in a.columns)
    r = _score(_wmv_sample(wmv, "Lips part, Jaw drop"))
    assert "face_choice" not in r["au_f1"].details


def test_no_au_text_where_aus_are_detected_is_abstained(wmv, tmp_path):
    """A mer / au annotation promises an AU analysis. With no AU-describing text at all while the real OpenFace CSV
    detects AUs at the peak it is abstained (a gate fails it), no longer not_applicable (a skipped rule, so it beat
    a text that claimed the wrong AU). Where nothing is detected, silence is no error: not_applicable."""
    from mer_eval.config import load_config
    from mer_eval.discovery import Dataset
    from mer_eval.gates import evaluate, parse_rule, read_scores
    from mer_eval.scoring import score_dataset

    silent = {t: Sample(id=f"silent_{t}", type=t, openface_csv=wmv, annotation=Annotation(peak_frame=222))
              for t in ("mer", "au")}
    for t, s in silent.items():
        r = _score(s)
        assert all(x.status == Status.abstained and x.value is None for x in r.values()), (t, r)
        assert r["au_f1"].reason == (f"a {t} annotation promises an AU analysis; visual_expression, llm_au_description, "
                                     "final_summary are all empty while openface-csv detected AU05, AU25, AU26")
        assert r["au_f1"].details["detected"] == ["05", "25", "26"]
    # nothing detected (no presence rule, intensity threshold 5): no AU claimed and none detected
    r = _score(silent["mer"], use_presence=False, intensity_threshold=5.0)
    assert all(x.status == Status.not_applicable for x in r.values())
    wrong = _wmv_sample(wmv, "Brow lowerer (intensity: 2.10)")
    ds = Dataset(kind="manifest", root=tmp_path, samples=[silent["mer"], wrong])
    score_dataset(ds, tmp_path / "run", load_config(sets=["cache.enabled=false"]), metrics=["au_f1"])
    df = read_scores(tmp_path / "run")
    assert float(df[(df.sample_id == "wmv") & (df.metric == "au_f1")].value.iloc[0]) == 0.0
    dec = {d.sample_id: d.decision for d in evaluate(df, [parse_rule("au_f1 >= 0")]).decisions}
    assert dec == {"silent_mer": "exclude", "wmv": "include"}
