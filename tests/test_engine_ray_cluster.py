"""Score engine ray across several nodes (issue #12 item 3): a Ray cluster of two nodes on this machine (a head
and a second raylet, one CPU each, as ``ray start --head`` + ``ray start --address`` make them), the user's
command (``RAY_ADDRESS=HEAD mer-eval score RUN --engine ray``) run against it in a subprocess: the actor pool
spans both nodes (each actor takes a CPU, so two actors need both nodes; the cluster's actor table says where
each ran) and the files are the local engine's, byte for byte for the weight-free metrics, on real MER-Factory
outputs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mer_eval.config import load_config
from mer_eval.discovery import discover
from mer_eval.scoring import score_dataset
from engine_compare import REPO, WEIGHT_FREE, WEIGHT_FREE_SETS, assert_same_outputs, build_real_run

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'mer-eval[ray]'")
pytest.importorskip("mer_eval.engine_ray")


@pytest.fixture
def two_node_cluster():
    """A head node and one more node, one CPU each; this test process connected as a driver (it takes no CPU)."""
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def _scorer_actor_nodes() -> set[str]:
    """Node ids of the Ray Data actors that ran ScorerActor, from the cluster's actor table (finished ones too)."""
    from ray._private import state

    nodes = set()
    for a in state.actors().values():
        if "ScorerActor" in str(a.get("ActorClassName")):
            nodes.add((a.get("Address") or {}).get("NodeID"))
    return nodes - {None}


def test_score_over_a_two_node_cluster_gives_the_local_files(two_node_cluster, shared_data, tmp_path):
    alive = [n for n in ray.nodes() if n["Alive"]]
    assert len(alive) == 2 and all(n["Resources"].get("CPU") == 1 for n in alive)
    root = build_real_run(shared_data, tmp_path / "run", n=23)
    cfg = load_config(sets=["cache.enabled=false"] + WEIGHT_FREE_SETS)
    local = score_dataset(discover(root), tmp_path / "local", cfg, metrics=WEIGHT_FREE)
    cmd = [sys.executable, "-m", "mer_eval.cli", "-q", "score", str(root), "--out", str(tmp_path / "ray"),
           "--metrics", ",".join(WEIGHT_FREE), "--engine", "ray", "--workers", "2", "--no-cache"]
    for s in WEIGHT_FREE_SETS:
        cmd += ["--set", s]
    env = dict(os.environ, RAY_ADDRESS=two_node_cluster.address, HF_HUB_OFFLINE="1")
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert assert_same_outputs(tmp_path / "local", tmp_path / "ray", list(local.results)) == 23
    assert len(_scorer_actor_nodes()) == 2, "the actor pool did not span both nodes"
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2  # the user's cluster is left up
