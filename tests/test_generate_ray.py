"""Generate engine ray (issue #12 item 3): the samples annotated by Ray actors on a local Ray (num_cpus=2) give the
same per-sample files as the local engine, on real media with the offline provider, bar the run-specific fields
named in RUN_SPECIFIC; the CLI takes --engine ray --workers 2 and a rerun resumes; Ray missing or unreachable is one
line and exit 1, with nothing written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mer_eval.config import load_config
from mer_eval.generators.commands import generate
from mer_eval.generators.pipeline import META_NAME, generate_config_hash, run_generate
from mer_eval.generators.synthesis import prompt_hashes

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'mer-eval[ray]'")

FAST = ["generate.au_max_frames=12", "generate.asr_model=whisper-tiny.en", "generate.asr_language=en",
        "generate.video_frames=2", "generate.concurrency=2", "cache.enabled=false"]
MEDIA = ("faces/single_face.mp4", "faces/0-f15-hao-ph.jpg", "speech-jfk/jfk.flac")
# fields that differ between any two runs, whichever engine: when the meta was written and how long each stage took
# (mer_eval_meta.json), when an error file was written (error_logs/<id>.json)
RUN_SPECIFIC = {META_NAME: ("created", "stages.*.seconds"), "error_logs": ("time",)}
SUMMARY_SAME = ("total", "done", "skipped", "failed", "failures", "notes", "absent", "fallbacks", "flags", "types",
                "provider", "model", "config_hash", "provider_stats")


def _one_failure_line(shared_data, tmp_path) -> str:
    """generate --engine ray on one real photo that cannot run: exit 1, one line (returned), no run.json."""
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(shared_data / "faces" / "0-f15-hao-ph.jpg", inp / "p.jpg")
    r = CliRunner().invoke(generate, [str(inp), str(tmp_path / "o"), "--engine", "ray", "--no-progress"])
    assert r.exit_code == 1
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1, r.output
    assert not (tmp_path / "o" / "run.json").exists()
    return lines[0]


def test_ray_missing_is_one_line_and_nothing_is_written(shared_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    line = _one_failure_line(shared_data, tmp_path)
    assert "Ray is not installed" in line and "mer-eval[ray]" in line, line


def test_unreachable_ray_address_is_one_line(shared_data, tmp_path, monkeypatch):
    if ray.is_initialized():
        pytest.skip("a Ray is initialised in this process: the engine would use it")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")  # discard port: nothing listens
    line = _one_failure_line(shared_data, tmp_path)
    assert "cannot connect" in line and "RAY_ADDRESS=127.0.0.1:9" in line, line


def _input(shared: Path, tmp: Path) -> Path:
    inp = tmp / "in"
    inp.mkdir()
    for rel in MEDIA:
        shutil.copy(shared / rel, inp / Path(rel).name)
    (inp / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not a real video stream" * 40)
    return inp


def _without_run_specific(rel: Path, obj: dict) -> dict:
    if rel.name == META_NAME:
        obj.pop("created")
        for st in obj["stages"].values():
            st.pop("seconds", None)
    elif rel.parts[0] == "error_logs":
        obj.pop("time")
    return obj


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.parent != root)


def _local_in_a_fresh_process(inp: Path, out: Path) -> dict:
    """The local engine in a new Python with OMP_NUM_THREADS=1 (read once, when OpenMP loads): the ASR's numbers
    depend on OpenMP's thread count, Ray gives each 1-CPU actor 1 thread, and this process loaded OpenMP already."""
    code = ("import json, sys\n"
            "from mer_eval.config import load_config\n"
            "from mer_eval.generators.pipeline import run_generate\n"
            "s = run_generate(sys.argv[1], sys.argv[2], load_config(None, json.loads(sys.argv[3])), progress=False)\n"
            "print(json.dumps(s))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code, str(inp), str(out), json.dumps(FAST)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_ray_engine_writes_the_same_files_as_local(local_ray, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what the actors get from Ray anyway; the engine passes it on
    inp = _input(shared_data, tmp_path)
    work = tmp_path / "out"  # both runs write to the same path (the files name it), the local one then moved away
    local = _local_in_a_fresh_process(inp, work)
    work.rename(tmp_path / "local")
    via_ray = run_generate(inp, work, load_config(None, FAST + ["generate.engine=ray", "generate.workers=2"]),
                           progress=False)
    assert local_ray.is_initialized()  # a Ray the caller started is left as it was
    for k in SUMMARY_SAME:
        assert via_ray[k] == local[k], k
    assert (via_ray["done"], via_ray["failed"]) == (3, 1)
    assert set(via_ray["stage_seconds"]) == set(local["stage_seconds"])
    assert {k: len(v) for k, v in via_ray["stage_seconds"].items()} == \
        {k: len(v) for k, v in local["stage_seconds"].items()}
    files = _files(tmp_path / "local")
    assert files == _files(work)
    assert len(files) > 20 and Path("error_logs/corrupt.json") in files
    compared_json = 0
    for rel in files:
        a, b = (tmp_path / "local" / rel).read_bytes(), (work / rel).read_bytes()
        if rel.name == META_NAME or rel.parts[0] == "error_logs":
            ja, jb = json.loads(a), json.loads(b)
            assert _without_run_specific(rel, ja) == _without_run_specific(rel, jb), rel
            compared_json += 1
        else:
            assert a == b, rel  # results, stage JSONs, OpenFace-layout CSVs, wavs, frames: byte for byte
    assert compared_json == 4
    for d in (tmp_path / "local", work):
        m = json.loads((d / "run.json").read_text())
        assert m["counts_by_status"] == {"done": 3, "skipped": 0, "failed": 1}
        assert m["finished"]


def test_engine_and_workers_leave_the_config_hash_alone():
    ph = prompt_hashes()
    assert generate_config_hash(load_config(None, FAST), ph) == \
        generate_config_hash(load_config(None, FAST + ["generate.engine=ray", "generate.workers=7"]), ph)


def _summary(r) -> dict:
    """The --json summary: stdout from its opening brace on (Ray's actor log lines may come before it)."""
    out = r.stdout
    return json.loads(out[out.index("{\n"):])


def test_cli_engine_ray_workers_2_and_rerun_resumes(local_ray, shared_data, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("0-f15-hao-ph.jpg", "0-f1-su-ph.jpg"):
        shutil.copy(shared_data / "faces" / name, inp / name)
    args = [str(inp), str(tmp_path / "o"), "--engine", "ray", "--workers", "2", "--concurrency", "1",
            "--no-progress", "--json", *[x for s in FAST if "concurrency" not in s for x in ("--set", s)]]
    r = CliRunner().invoke(generate, args)
    assert r.exit_code == 0, r.output
    s = _summary(r)
    assert (s["done"], s["failed"], s["total"]) == (2, 0, 2)
    assert s["provider_stats"]["requests"] >= 2  # the actors' requests came back (a synthesis per sample)
    for sid in ("0-f15-hao-ph", "0-f1-su-ph"):
        img = json.loads((tmp_path / "o" / sid / f"{sid}_image_analysis.json").read_text())
        assert "the core emotional state is" in img["final_summary"].lower()
    manifest = json.loads((tmp_path / "o" / "run.json").read_text())
    assert manifest["config"]["generate"]["engine"] == "ray"
    r = CliRunner().invoke(generate, args)
    assert r.exit_code == 0, r.output
    assert (_summary(r)["skipped"], _summary(r)["done"]) == (2, 0)


# ---- an actor killed mid-run -------------------------------------------------------------------------------

def _videos(shared: Path, tmp: Path, n: int = 6) -> Path:
    inp = tmp / "in"
    inp.mkdir()
    for i in range(n):
        shutil.copy(shared / "faces" / "single_face.mp4", inp / f"v{i}.mp4")
    return inp


def _per_sample(out: Path) -> tuple[dict, int]:
    """Every per-sample file of a run (the run-specific fields taken out of the metas, and the stages' ``reused``:
    a sample the killed actor had half done gets its finished stages' saved results back, and its meta says so),
    and how many stages were reused."""
    got, reused = {}, 0
    for rel in _files(out):
        b = (out / rel).read_bytes()
        if rel.name == META_NAME:
            meta = _without_run_specific(rel, json.loads(b))
            for st in meta["stages"].values():
                reused += bool(st.pop("reused", False))
            got[rel] = meta
        else:
            got[rel] = b
    return got, reused


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to find the actor")
def test_a_killed_generate_actor_is_restarted_and_every_sample_is_done(local_ray, shared_data, tmp_path,
                                                                       monkeypatch):
    """One actor, pieces of 2 samples run together: the actor is SIGKILLed once a sample of the run is written, so
    a piece dies with part of it written; Ray restarts the actor and runs the piece again. Every sample is counted
    done once (the one written before the kill too, never 'skipped'), and the files equal an unkilled run's (bar the
    stages a half-done sample reused)."""
    from engine_compare import kill_actor_during

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    inp = _videos(shared_data, tmp_path)
    cfg = load_config(None, FAST + ["generate.engine=ray", "generate.workers=1"])
    work = tmp_path / "out"  # both runs write to the same path (the files name it)
    ref = run_generate(inp, work, cfg, progress=False)
    assert (ref["done"], ref["failed"]) == (6, 0)
    want, reused = _per_sample(work)
    assert reused == 0
    work.rename(tmp_path / "ref")
    s, killed = kill_actor_during(b"GenerateActor", work, f"*/{META_NAME}",
                                  lambda: run_generate(inp, work, cfg, progress=False))
    assert killed, "no actor was found to kill"
    assert (s["done"], s["skipped"], s["failed"], s["total"]) == (6, 0, 0, 6), s
    assert {k: len(v) for k, v in s["stage_seconds"].items()} == {k: len(v) for k, v in ref["stage_seconds"].items()}
    got, _ = _per_sample(work)
    assert sorted(map(str, got)) == sorted(map(str, want))
    assert [str(k) for k in want if got[k] != want[k]] == []
    assert json.loads((work / "run.json").read_text())["counts_by_status"] == {"done": 6, "skipped": 0, "failed": 0}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to find the actor")
def test_past_its_restarts_a_dead_generate_actor_is_one_error_and_a_rerun_resumes(local_ray, shared_data, tmp_path,
                                                                                  monkeypatch):
    from engine_compare import kill_actor_during
    from mer_eval.generators import engine_ray as gen_ray
    from mer_eval.scoring import EngineError

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(gen_ray, "MAX_RESTARTS", 0)
    inp = _videos(shared_data, tmp_path)
    cfg = load_config(None, FAST + ["generate.engine=ray", "generate.workers=1"])
    out = tmp_path / "out"

    def run():
        with pytest.raises(EngineError, match="a Ray actor failed") as err:
            run_generate(inp, out, cfg, progress=False)
        return err

    err, killed = kill_actor_during(b"GenerateActor", out, f"*/{META_NAME}", run)
    assert killed and "\n" not in str(err.value) and "run `mer-eval generate` again" in str(err.value)
    written = {p.parent.name for p in out.glob(f"*/{META_NAME}")}
    assert 1 <= len(written) < 6
    s = run_generate(inp, out, cfg, progress=False)
    assert (s["skipped"], s["done"], s["failed"]) == (len(written), 6 - len(written), 0), s
