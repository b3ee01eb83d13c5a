"""``score.batch_size: auto``: on CUDA each family starts at 128 and halves its batch on a CUDA out-of-memory error,
retrying the same samples, keeping the size that worked; 16 on the CPU; a number never changes.

No GPU is needed: the family below raises torch's own ``OutOfMemoryError`` (or a RuntimeError saying "CUDA out
of memory") when handed more than ``limit`` samples, and the context says ``device="cuda"``. The samples are the
real MER-Factory outputs (``../shared/data/annotations-mer-factory``), copied under new ids to make a long run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

from mer_eval.metric import AUTO_BATCH_CPU, AUTO_BATCH_START, Metric, OutputSpec, ScoreContext
from mer_eval.schema import MetricResult, Sample, Status

torch = pytest.importorskip("torch")
OOM = getattr(torch.cuda, "OutOfMemoryError", None)


def _oom(n: int) -> Exception:
    msg = f"CUDA out of memory. Tried to allocate {n * 64} MiB (simulated)"
    return OOM(msg) if OOM is not None else RuntimeError(msg)


def _words(s: Sample) -> float:
    return float(len((s.annotation.final_summary or "").split()))


class OOMAbove(Metric):
    """A test-only family: the final summary's word count; a CUDA out-of-memory error for a batch over ``limit``."""

    name = "test_oom_above"
    version = "1.0"
    requires = "annotation.final_summary"
    outputs = (OutputSpec("test_summary_words", True, (0.0, None), "words in the final summary"),)

    def __init__(self, limit: int, ctx: ScoreContext, error: Optional[Any] = None):
        super().__init__({}, ctx)
        self.limit = limit
        self.error = error or _oom
        self.calls: list[int] = []  # len(samples) of every compute call, in order
        self.inner: list[int] = []  # self.batch_size() as compute sees it (what a model's mini-batches would use)

    def missing_inputs(self, sample: Sample) -> Optional[str]:
        return None if (sample.annotation.final_summary or "").strip() else "no final summary"

    def compute(self, samples: list[Sample]) -> dict[str, list[MetricResult]]:
        self.calls.append(len(samples))
        self.inner.append(self.batch_size())
        if len(samples) > self.limit:
            raise self.error(len(samples))
        return {s.id: [self.ok(s.id, "test_summary_words", _words(s))] for s in samples}


def real_samples(shared_data: Path, n: int) -> list[Sample]:
    """``n`` samples: the real MER-Factory outputs that have a final summary, cycled under new ids."""
    from mer_eval.discovery import discover

    base = [s for s in discover(Path(shared_data) / "annotations-mer-factory").samples
            if (s.annotation.final_summary or "").strip()]
    assert base, "no real MER-Factory sample with a final summary"
    return [base[i % len(base)].model_copy(update={"id": f"{base[i % len(base)].id}-{i:04d}"}) for i in range(n)]


def _halvings(start: int, limit: int) -> list[int]:
    sizes = [start]
    while sizes[-1] > limit:
        sizes.append(sizes[-1] // 2)
    return sizes


def _assert_all_ok(samples: list[Sample], out: dict[str, list[MetricResult]]) -> None:
    assert set(out) == {s.id for s in samples}
    for s in samples:
        (r,) = out[s.id]
        assert r.status == Status.ok, r.reason
        assert r.value == _words(s) and r.value > 0


@pytest.mark.parametrize("error", [None, lambda n: RuntimeError(f"CUDA out of memory. Tried to allocate {n} MiB")],
                         ids=["torch-OutOfMemoryError", "RuntimeError-message"])
def test_auto_on_cuda_halves_until_it_fits_and_keeps_the_size(shared_data, error):
    samples = real_samples(shared_data, 300)
    ctx = ScoreContext(device="cuda", batch_size="auto")
    m = OOMAbove(40, ctx, error=error)
    first, second = samples[:200], samples[200:]  # two chunks, as ChunkScorer hands them to one family
    out = m.score(first)
    _assert_all_ok(first, out)
    assert _halvings(AUTO_BATCH_START, 40) == [128, 64, 32]
    assert m.calls[:3] == [128, 64, 32]  # 128 and 64 ran out of memory; 32 (the largest <= 40 by halving) fit
    assert m.calls[3:] == [32] * 5 + [200 - 6 * 32]  # the rest of the chunk at 32: no second OOM
    assert ctx.batch_sizes == {m.name: 32}
    assert "32" in ctx.batch_size_notes[m.name] and "cuda" in ctx.batch_size_notes[m.name]
    # the next chunk starts at the kept size: never 128 again, no out-of-memory error
    m.calls.clear()
    m.inner.clear()
    out2 = m.score(second)
    _assert_all_ok(second, out2)
    assert m.calls == [32, 32, 32, 4]
    # a family that mini-batches inside compute reads the halved size through self.batch_size()
    assert m.inner == [32] * 4


def test_a_short_batch_halves_from_its_own_length(shared_data):
    """Fewer samples than 128: the retry halves what was tried (no useless retries of the same batch)."""
    samples = real_samples(shared_data, 50)
    ctx = ScoreContext(device="cuda:0", batch_size="auto")
    m = OOMAbove(20, ctx)
    out = m.score(samples)
    _assert_all_ok(samples, out)
    assert m.calls == [50, 25, 12, 12, 12, 12, 2]
    assert ctx.batch_sizes == {m.name: 12}


def test_oom_at_batch_size_one_is_an_error_result(shared_data):
    samples = real_samples(shared_data, 10)
    ctx = ScoreContext(device="cuda", batch_size="auto")
    m = OOMAbove(0, ctx)  # even one sample runs out of memory
    out = m.score(samples)
    assert set(out) == {s.id for s in samples}  # none dropped
    for s in samples:
        (r,) = out[s.id]
        assert r.status == Status.error and r.value is None
        assert "CUDA out of memory" in r.reason and "Tried to allocate 64 MiB" in r.reason
    assert m.calls == [10, 5, 2, 1] + [1] * 9  # halved down to 1, then one sample at a time
    assert ctx.batch_sizes == {m.name: 1}


def test_other_errors_are_not_retried(shared_data):
    samples = real_samples(shared_data, 150)
    ctx = ScoreContext(device="cuda", batch_size="auto")
    m = OOMAbove(40, ctx, error=lambda n: RuntimeError(f"shape mismatch at {n}"))
    out = m.score(samples)
    assert m.calls == [128, 22]
    assert sum(out[s.id][0].status == Status.error for s in samples) == 128
    assert all("shape mismatch" in out[s.id][0].reason for s in samples[:128])
    assert ctx.batch_sizes == {m.name: 128}


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_a_number_never_changes(shared_data, device):
    """A number: an out-of-memory batch is that batch's error results, as before; the size is never halved."""
    samples = real_samples(shared_data, 100)
    ctx = ScoreContext(device=device, batch_size=64)
    m = OOMAbove(40, ctx)
    out = m.score(samples)
    assert m.calls == [64, 36] and m.inner == [64, 64]
    statuses = [out[s.id][0].status for s in samples]
    assert statuses == [Status.error] * 64 + [Status.ok] * 36
    assert "CUDA out of memory" in out[samples[0].id][0].reason
    assert ctx.batch_sizes == {m.name: 64} and ctx.batch_size_notes == {}


def test_auto_on_the_cpu_uses_16(shared_data):
    samples = real_samples(shared_data, 40)
    ctx = ScoreContext(device="cpu", batch_size="auto")
    m = OOMAbove(1000, ctx)
    _assert_all_ok(samples, m.score(samples))
    assert AUTO_BATCH_CPU == 16 and m.calls == [16, 16, 8]
    assert ctx.batch_sizes == {m.name: 16}
    assert ctx.batch_size_notes[m.name].startswith("auto on cpu: the default 16")
    # no autotuning on the CPU: an out-of-memory-like error is an error, never a smaller retry
    m2 = OOMAbove(10, ScoreContext(device="cpu", batch_size="auto"))
    out = m2.score(samples)
    assert m2.calls == [16, 16, 8] and all(out[s.id][0].status == Status.error for s in samples[:32])


def test_empty_cache_only_when_cuda_is_available(shared_data, monkeypatch):
    samples = real_samples(shared_data, 130)
    freed: list[int] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: freed.append(1))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    m = OOMAbove(40, ScoreContext(device="cuda", batch_size="auto"))
    _assert_all_ok(samples, m.score(samples))
    assert freed == []  # no CUDA here: never called (on a CPU build it would raise)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    m = OOMAbove(40, ScoreContext(device="cuda", batch_size="auto"))
    _assert_all_ok(samples, m.score(samples))
    assert freed == [1, 1]  # once per halving: 128 -> 64 -> 32
    # torch not imported: nothing to empty; a RuntimeError saying "out of memory" still halves the batch
    monkeypatch.delitem(sys.modules, "torch")
    m = OOMAbove(40, ScoreContext(device="cuda", batch_size="auto"),
                 error=lambda n: RuntimeError("CUDA error: out of memory"))
    _assert_all_ok(samples, m.score(samples))
    assert m.calls[:3] == [128, 64, 32] and freed == [1, 1]


def test_config_accepts_auto_and_numbers_as_before():
    from mer_eval.config import Config, ConfigError, load_config

    assert load_config(None, ["score.batch_size=auto"]).score.batch_size == "auto"
    assert load_config(None, ["score.batch_size=AUTO"]).score.batch_size == "auto"
    eight = load_config(None, ["score.batch_size=8"]).score.batch_size
    assert eight == 8 and type(eight) is int
    assert load_config(None).score.batch_size == 16
    # a number hashes as it did (an int in the dump); auto is a different config
    assert Config.model_validate({"score": {"batch_size": 16}}).hash() == Config().hash()
    assert Config.model_validate({"score": {"batch_size": "auto"}}).hash() != Config().hash()
    for bad in ("0", "many", "2.5", "-1"):
        with pytest.raises(ConfigError) as e:
            load_config(None, [f"score.batch_size={bad}"])
        lines = str(e.value).splitlines()
        assert len(lines) == 2 and "score.batch_size" in lines[1] and "or auto" in lines[1], lines


def _runner():
    from click.testing import CliRunner

    try:
        return CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 keeps stderr apart by default
        return CliRunner()


@pytest.mark.parametrize("how", [["--batch-size", "auto"], ["--set", "score.batch_size=auto"]])
def test_cli_score_batch_size_auto(shared_data, tmp_path, how):
    from mer_eval.cli import main

    run = Path(shared_data) / "annotations-mer-factory"
    r = _runner().invoke(main, ["score", str(run), "--out", str(tmp_path / "out"), "--metrics", "text_quality",
                                "--device", "cpu", "--no-cache", "--limit", "3", "--json", *how])
    assert r.exit_code == 0, r.output + (r.stderr or "")
    data = json.loads(r.stdout)
    assert data["n_samples"] == 3
    assert data["batch_sizes"] == {"text_quality": 16}
    assert data["batch_size_notes"]["text_quality"].startswith("auto on cpu: the default 16")
    assert any(m["ok"] for m in data["metrics"])


@pytest.mark.parametrize("engine", ["local", "process"])
def test_run_json_records_the_batch_size_each_family_ran_with(shared_data, tmp_path, engine):
    """run.json's score section names each family's batch size, also when worker processes scored the chunks
    (their sizes travel back with the chunks); a number is recorded as it is, auto with its reason."""
    from mer_eval.cli import main

    run = Path(shared_data) / "annotations-mer-factory"
    for how, want in ((["--batch-size", "auto"], 16), (["--batch-size", "5"], 5)):
        out = tmp_path / f"out-{want}"
        r = _runner().invoke(main, ["score", str(run), "--out", str(out), "--metrics", "text_quality,abstention",
                                    "--device", "cpu", "--no-cache", "--engine", engine, "--workers", "2", *how])
        assert r.exit_code == 0, r.output + (r.stderr or "")
        section = json.loads((out / "run.json").read_text())["score"]
        assert section["batch_sizes"] == {"text_quality": want, "abstention": want}
        if want == 16:
            assert section["batch_size_notes"]["abstention"].startswith("auto on cpu: the default 16")
        else:
            assert section["batch_size_notes"] == {}


@pytest.mark.parametrize("bad", ["0", "many", "-2"])
def test_cli_rejects_a_bad_batch_size_in_one_line(shared_data, tmp_path, bad):
    from mer_eval.cli import main

    out = tmp_path / "out"
    r = _runner().invoke(main, ["score", str(Path(shared_data) / "annotations-mer-factory"), "--out", str(out),
                                "--metrics", "text_quality", f"--batch-size={bad}"])
    assert r.exit_code == 2
    err = r.stderr.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert "--batch-size" in err and repr(bad) in err and "auto" in err
    assert not out.exists()
