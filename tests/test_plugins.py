"""Adding a metric is one file: CONTRIBUTING.md's example and a third-party package registered by entry point
are configured, listed, validated and tested exactly like the built-in families."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, REPO
from metric_tester import MetricTester

PLUGIN = REPO / "tests" / "plugins" / "mer_eval_plugin_similarity"


def _entry_point_dir(root: Path, dist: str, group: str, name: str, target: str) -> None:
    """A minimal installed distribution (``*.dist-info``) declaring one entry point."""
    d = root / f"{dist}-0.0.1.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
    (d / "entry_points.txt").write_text(f"[{group}]\n{name} = {target}\n")


@pytest.fixture
def contributing_metric(tmp_path, monkeypatch):
    """CONTRIBUTING.md's example metric, as a package of its own on sys.path, registered by entry point."""
    text = (REPO / "CONTRIBUTING.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n# metrics/hedging\.py\n(.*?)```", text, re.S).group(1)
    pkg = tmp_path / "site" / "contrib_hedging"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(code, encoding="utf-8")
    _entry_point_dir(tmp_path / "site", "contrib_hedging", "mer_eval.metrics", "hedge_rate",
                     "contrib_hedging:HedgeRate")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    return tmp_path / "site"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """The test package, built and installed as a user would (pip, into a target folder)."""
    site = tmp_path_factory.mktemp("plugin-site")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(site), str(PLUGIN)], capture_output=True, text=True)
    if r.returncode != 0 and "No module named" in r.stderr:
        pytest.skip(f"cannot build the plugin here: {r.stderr[-300:]}")
    assert r.returncode == 0, r.stderr[-2000:]
    return site


def _cli(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "mer_eval.cli", *args], capture_output=True, text=True, env=env,
                          cwd=str(REPO))


def _samples():
    from mer_eval.discovery import discover

    return discover(EXAMPLES / "mer-factory").samples


def test_contributing_example_is_a_metric_like_the_others(contributing_metric, tmp_path):
    from mer_eval.config import ConfigError, load_config
    from mer_eval.registry import available, get_metric

    assert "hedge_rate" in available("metrics")
    cls = get_metric("hedge_rate")
    cfg = load_config(sets=["metrics.hedge_rate.words=[possibly, might]"])
    assert cfg.metric_params("hedge_rate") == {"words": ["possibly", "might"]}
    with pytest.raises(ConfigError, match=r"metrics\.hedge_rate\.wrods'; allowed here: words"):
        load_config(sets=["metrics.hedge_rate.wrods=[x]"])
    res = MetricTester().run_all(cls, _samples(), tmp_path / "cache")
    values = {sid: rs[0].value for sid, rs in res.items()}
    # the real Gemini summary hedges ("perhaps", "possibly", "could", "likely"): a measured share, not 0
    assert 0 < values["gemini"] < 1
    # not run by default (run_by_default = False), run when named
    assert "hedge_rate" not in cfg.score_metrics()
    from mer_eval.discovery import Dataset
    from mer_eval.scoring import score_dataset

    out = score_dataset(Dataset(kind="x", root=tmp_path, samples=_samples()), tmp_path / "run", cfg,
                        metrics=["hedge_rate"])
    assert out.section.fingerprints["hedge_rate"].code_hash


def test_entry_point_package_is_configured_listed_validated_and_tested(plugin_site, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_site))
    importlib.invalidate_caches()
    from mer_eval.config import ConfigError, load_config
    from mer_eval.registry import available, get_metric

    assert available("metrics")["transcript_similarity"] == "mer_eval_plugin_similarity:TranscriptSimilarity"
    cls = get_metric("transcript_similarity")
    cfg = load_config(sets=["metrics.transcript_similarity.min_words=2"])
    assert cfg.metric_params("transcript_similarity") == {"min_words": 2}
    with pytest.raises(ConfigError, match="allowed here: min_words"):
        load_config(sets=["metrics.transcript_similarity.minwords=2"])
    # the plugin's own model resolves through mer-eval's resolver (the MiniLM wheel, offline)
    res = MetricTester(atol=1e-6).run_all(cls, _samples(), tmp_path / "cache", config=cfg)
    ok = {sid: rs[0] for sid, rs in res.items() if rs[0].status.value == "ok"}
    assert ok and all(-1 <= r.value <= 1 for r in ok.values()) and ok["gemini"].model.id
    # the CLI, in a fresh interpreter that sees the installed package
    m = _cli(plugin_site, "metrics", "--json", "--set", "metrics.transcript_similarity.min_words=5")
    assert m.returncode == 0, m.stderr
    row = next(r for r in json.loads(m.stdout) if r["family"] == "transcript_similarity")
    assert row["params"]["min_words"]["value"] == 5 and row["models"] == ["plugin-minilm"]
    mo = _cli(plugin_site, "models", "--json")
    assert mo.returncode == 0, mo.stderr
    assert any(r["key"] == "plugin-minilm" and r["available"] for r in json.loads(mo.stdout))
    v = _cli(plugin_site, "validate", str(EXAMPLES / "mer-factory"),
             "--set", "score.metrics=[text_quality, transcript_similarity]")
    assert v.returncode == 0, v.stderr
    assert "transcript_similarity" in v.stdout and "plugin-minilm" in v.stdout
