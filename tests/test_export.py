"""``mer-eval export``: csv, ShareGPT (+ dataset_info.json), MERR coarse/fine (+ .txt), AU instructions."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from mer_eval.generators.export import ExportError, au_list, export_run
from mer_eval.generators.pipeline import run_generate

from mer_eval.config import load_config
from mer_eval.domain.openface import read_openface_csv

from conftest import SHARED_DATA as SHARED  # noqa: E402 (../shared/data, else tests/data/real)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    tmp = tmp_path_factory.mktemp("export")
    inp = tmp / "in"
    inp.mkdir()
    shutil.copy(SHARED / "faces" / "single_face.mp4", inp / "clip.mp4")
    shutil.copy(SHARED / "faces" / "0-f15-hao-ph.jpg", inp / "photo.jpg")
    shutil.copy(SHARED / "speech-jfk" / "jfk.flac", inp / "jfk.flac")
    (inp / "labels.csv").write_text("name,label\nphoto,happy\n")
    out = tmp / "out"
    cfg = load_config(None, ["generate.au_max_frames=12", "generate.asr_model=whisper-tiny.en",
                             "generate.asr_language=en", "generate.video_frames=2", f"cache.dir={tmp / 'c'}"])
    s = run_generate(inp, out, cfg, progress=False)
    assert s["done"] == 3, s["failures"]
    return out


def test_csv(run_dir, tmp_path):
    res = export_run(run_dir, "csv", tmp_path / "x.csv")
    rows = {r["sample_id"]: r for r in csv.DictReader((tmp_path / "x.csv").open(encoding="utf-8"))}
    assert set(rows) == {"clip", "photo", "jfk"} and res.written == 3
    assert rows["photo"]["label"] == "happy" and rows["photo"]["conclusion"] == "happy"
    assert "americans" in rows["jfk"]["transcript"].lower()
    assert rows["clip"]["provider"] == "offline" and rows["clip"]["peak_frame"]


def test_sharegpt_and_dataset_info(run_dir, tmp_path):
    out = tmp_path / "mer_sharegpt.json"
    res = export_run(run_dir, "sharegpt", out)
    recs = json.loads(out.read_text())
    assert res.written == len(recs) == 3
    by_tag = {r["messages"][0]["content"].split("\n")[0]: r for r in recs}
    clip = by_tag["<video><audio>"]
    assert [m["role"] for m in clip["messages"]] == ["user", "gpt"]
    assert Path(clip["videos"][0]).name == "clip.mp4" and Path(clip["audios"][0]).name == "clip.wav"
    assert "core emotional state is" in clip["messages"][1]["content"]
    assert Path(by_tag["<image>"]["images"][0]).is_file()
    assert "americans" in by_tag["<audio>"]["messages"][1]["content"].lower()
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    e = info["mer_sharegpt"]
    assert e["file_name"] == "mer_sharegpt.json" and e["formatting"] == "sharegpt"
    assert e["tags"]["assistant_tag"] == "gpt" and set(e["columns"]) == {"messages", "videos", "audios", "images"}


def test_merr_coarse_and_fine_fill_au_list(run_dir, tmp_path):
    res = export_run(run_dir, "merr-coarse", tmp_path / "MERR_coarse_grained.json")
    coarse = json.loads((tmp_path / "MERR_coarse_grained.json").read_text())
    assert set(coarse) == {"clip"} and res.skipped["jfk"]
    assert "Emotion-LLaMA's dataset reads a video" in res.skipped["photo"]  # an image sample is not exported
    c = coarse["clip"]
    assert set(c) == {"AU_list", "visual_prior_list", "audio_prior_list", "peak_index", "peak_AU_list",
                      "pseu_emotion", "caption", "text"}
    # AU_list really filled from the OpenFace CSV (MER-Factory leaves it empty)
    of = read_openface_csv(run_dir / "clip" / "clip.csv")  # the au stage's OpenFace-format table
    expected = au_list(of)
    assert c["AU_list"] == expected and len(expected) > 0
    assert isinstance(c["peak_index"], str) and c["peak_index"].isdigit()
    assert c["caption"] and c["visual_prior_list"]
    assert c["peak_AU_list"] and all(a.startswith("AU") for a in c["peak_AU_list"])
    lines = (tmp_path / "MERR_coarse_grained.txt").read_text().splitlines()
    clip_line = next(ln for ln in lines if ln.startswith("clip "))
    _, frames, _ = clip_line.split(" ")
    assert int(frames) == of.n
    assert not any(ln.startswith("photo ") for ln in lines)
    export_run(run_dir, "merr-fine", tmp_path / "MERR_fine_grained.json")
    fine = json.loads((tmp_path / "MERR_fine_grained.json").read_text())
    assert "smp_reason_caption" in fine["clip"] and "caption" not in fine["clip"]
    assert "core emotional state is" in fine["clip"]["smp_reason_caption"]


def test_au_instruct(run_dir, tmp_path):
    export_run(run_dir, "au-instruct", tmp_path / "au.jsonl")
    recs = [json.loads(ln) for ln in (tmp_path / "au.jsonl").read_text().splitlines()]
    assert len(recs) == 2  # the clip and the photo (the image's peak AUs come from the run's meta)
    assert all(set(r) == {"instruction", "input", "output"} for r in recs)
    for r in recs:
        for part in r["input"].split(", "):
            code, val = part.split(": ")
            assert code.startswith("AU") and 0 <= float(val) <= 5


def test_only_included_needs_a_gate(run_dir, tmp_path):
    with pytest.raises(ExportError, match="gate"):
        export_run(run_dir, "csv", tmp_path / "x.csv", only_included=True)
    gated = tmp_path / "run"
    shutil.copytree(run_dir, gated)
    (gated / "gate.csv").write_text("sample_id,decision\nclip,include\nphoto,exclude\njfk,include\n")
    res = export_run(gated, "csv", tmp_path / "y.csv", only_included=True)
    assert res.written == 2 and res.skipped == {"photo": "excluded by the gate"}


def test_cli_export_and_generate_commands(run_dir, tmp_path):
    from mer_eval.generators.commands import COMMANDS, export

    assert {c.name for c in COMMANDS} == {"generate", "export"}
    r = CliRunner().invoke(export, [str(run_dir), "--format", "merr-coarse", "-o", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    assert "merr-coarse: 1 samples" in r.output and "skipped jfk" in r.output and "skipped photo" in r.output


def test_export_real_mer_factory_outputs(shared_data, tmp_path):
    """MER-Factory's own JSON files export too (no OpenFace CSV beside them: AU_list stays empty)."""
    res = export_run(shared_data / "annotations-mer-factory", "merr-fine", tmp_path / "f.json")
    data = json.loads((tmp_path / "f.json").read_text())
    assert res.written == len(data) >= 3
    for entry in data.values():
        assert entry["AU_list"] == []
        assert entry["smp_reason_caption"]


def test_au_list_from_real_openface_csv(shared_data):
    of = read_openface_csv(shared_data / "openface" / "OpenFace_Test.csv")
    lst = au_list(of)
    assert lst and len(set(lst)) == len(lst)
    valid = of.valid_mask(0.0)
    shares = {a: float(((of.column(f"{a}_c") >= 0.5) & valid).sum()) / valid.sum() for a in lst}
    assert all(v >= 0.10 for v in shares.values())
    assert list(shares.values()) == sorted(shares.values(), reverse=True)  # most frequent first
    absent = [c[:4] for c in of.au_c if c[:4] not in lst]
    for a in absent:
        assert float(((of.column(f"{a}_c") >= 0.5) & valid).sum()) / valid.sum() < 0.10


def test_real_mer_factory_outputs_claim_no_unevaluated_rule(shared_data, tmp_path):
    """MER-Factory's JSON has top AUs but no OpenFace table beside it: the AU rules cannot be evaluated, so
    au-instruct must not say "match no emotion rule ... neutral", and MERR's .txt must not write 0 frames."""
    res = export_run(shared_data / "annotations-mer-factory", "au-instruct", tmp_path / "au.jsonl")
    recs = [json.loads(ln) for ln in (tmp_path / "au.jsonl").read_text().splitlines() if ln.strip()]
    assert not any("neutral" in r["output"] or "match no emotion rule" in r["output"] for r in recs)
    assert res.written == len(recs) and any("not evaluated" in why for why in res.skipped.values())
    export_run(shared_data / "annotations-mer-factory", "merr-fine", tmp_path / "f.json")
    for line in (tmp_path / "f.txt").read_text().splitlines():
        assert int(line.split()[1]) > 0, line


@pytest.fixture(scope="module")
def no_rule_run(tmp_path_factory):
    """45-m7-di-ph.jpg: a face on which no AU emotion rule fires (both tables empty); the mountain drawing:
    no face at all (the offline vote concludes ``undetermined``)."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    tmp = tmp_path_factory.mktemp("norule")
    inp = tmp / "in"
    inp.mkdir()
    shutil.copy(SHARED / "faces" / "45-m7-di-ph.jpg", inp / "di.jpg")
    shutil.copy(SHARED / "faces" / "free-mountain-vector-01.jpg", inp / "mountain.jpg")
    out = tmp / "out"
    cfg = load_config(None, ["generate.au_max_frames=12", f"cache.dir={tmp / 'c'}"])
    s = run_generate(inp, out, cfg, progress=False)
    assert s["done"] == 2, s["failures"]
    meta = json.loads((out / "di" / "mer_eval_meta.json").read_text())
    assert meta["pseudo_labels"] == {"mer-factory": [], "merr": []} and meta["evidence"]["top_aus"]
    return out


def test_no_rule_fired_is_no_neutral_label(no_rule_run, tmp_path):
    from mer_eval.generators.export import NO_RULE_FIRED

    # au-instruct: its output would state the label -> skipped, reason given
    res = export_run(no_rule_run, "au-instruct", tmp_path / "au.jsonl")
    assert res.written == 0 and (tmp_path / "au.jsonl").read_text() == ""
    assert res.skipped["di"].startswith(NO_RULE_FIRED)
    assert res.reason_counts()["skipped"][res.skipped["di"]] == 1
    # merr-coarse: no label, no pseudo-label -> no emotion for the .txt -> skipped, never "neutral"
    res = export_run(no_rule_run, "merr-coarse", tmp_path / "c.json")
    coarse = json.loads((tmp_path / "c.json").read_text())
    assert "di" not in coarse and "an image sample" in res.skipped["di"]  # and Emotion-LLaMA reads videos
    assert "neutral" not in (tmp_path / "c.txt").read_text()
    # merr-fine: Emotion-LLaMA reads videos, so neither photo is exported (said why), and no line is "neutral"
    res = export_run(no_rule_run, "merr-fine", tmp_path / "f.json")
    assert json.loads((tmp_path / "f.json").read_text()) == {} and (tmp_path / "f.txt").read_text() == ""
    assert all("an image sample" in res.skipped[k] for k in ("di", "mountain"))
    # csv keeps every row, with an empty pseudo_emotion and the reason counted
    res = export_run(no_rule_run, "csv", tmp_path / "x.csv")
    rows = {r["sample_id"]: r for r in csv.DictReader((tmp_path / "x.csv").open(encoding="utf-8"))}
    assert res.written == 2 and rows["di"]["pseudo_emotion"] == ""
    assert res.reason_counts()["no_pseudo_label"][NO_RULE_FIRED] == 1


def test_cli_export_counts_the_reasons(no_rule_run, tmp_path):
    from mer_eval.generators.commands import export

    r = CliRunner().invoke(export, [str(no_rule_run), "--format", "au-instruct", "-o", str(tmp_path / "a.jsonl")])
    assert r.exit_code == 0, r.output
    assert "au-instruct: 0 samples" in r.output and "skipped di: no AU emotion rule fires" in r.output
    assert "1 sample skipped: no AU emotion rule fires" in r.output


# MER-Factory's export.py --input_csv (read at Lum1104/MER-Factory export.py, not imported): every row is read as
# the first row's ``file_type``; the ShareGPT answer is this column of the row, and the media path source_path
MF_FILE_TYPES = ("au", "image", "mer", "audio", "video")
MF_OUTPUT_COLUMN = {"au": "chronological_emotion_peaks", "image": "final_summary", "video": "llm_video_summary",
                    "audio": "audio_analysis", "mer": "final_summary"}


def _mf_input_csv(path: Path) -> list[tuple[str, str, str]]:
    """(file_type, answer, source_path) per row, as MER-Factory's --input_csv conversion takes them."""
    rows = list(csv.DictReader(path.open(newline="", encoding="utf-8")))
    file_type = rows[0].get("file_type") if rows else None
    assert file_type, "MER-Factory refuses a CSV without file_type"
    return [(file_type, r.get(MF_OUTPUT_COLUMN[file_type], ""), r.get("source_path", "")) for r in rows]


def test_csv_has_merfactory_file_type_and_its_columns(run_dir, tmp_path, examples):
    for folder in (run_dir, examples / "mer-factory"):
        out = tmp_path / f"{folder.name}.csv"
        export_run(folder, "csv", out)
        rows = list(csv.DictReader(out.open(encoding="utf-8")))
        assert rows and all(r["file_type"] in MF_FILE_TYPES and r["file_type"] == r["type"] for r in rows)
        for ft in sorted({r["file_type"] for r in rows}):  # one type per CSV, as MER-Factory's export expects
            one = tmp_path / f"{folder.name}_{ft}.csv"
            with one.open("w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(r for r in rows if r["file_type"] == ft)
            got = _mf_input_csv(one)
            assert got and all(t == ft for t, _, _ in got)
            assert all(answer.strip() for _, answer, _ in got), (folder, ft, got)
            assert all(src for _, _, src in got)
    # the audio sample's audio_analysis is MER-Factory's: the transcript on the first line, then the tone
    jfk = next(r for r in csv.DictReader((tmp_path / f"{run_dir.name}.csv").open(encoding="utf-8"))
               if r["sample_id"] == "jfk")
    first, _, rest = jfk["audio_analysis"].partition("\n")
    assert first == jfk["transcript"] and rest.endswith(jfk["audio_description"]) and jfk["audio_description"]
