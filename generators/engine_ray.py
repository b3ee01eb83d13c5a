"""Generate engine ``ray`` (``mer-eval generate INPUT OUT --engine ray [--workers N]``; ``pip install
'mer-eval[ray]'``): the planned samples annotated by a pool of Ray actors.

The plan (samples in discovery order, each with its processing type) is cut into contiguous pieces of
``generate.concurrency`` samples. A fixed pool of actors (``--workers``, default one per CPU slot of the
cluster, never more than the slots) takes the pieces as they free up; each actor builds its provider once
(:func:`~mer_eval.generators.pipeline.make_provider`) and runs the pipeline's own per-sample code
(:meth:`~mer_eval.generators.pipeline._Run.run_sample`, the samples of a piece under a semaphore of
``generate.concurrency``) writing each sample's files into OUT, and returns the piece's per-sample results,
seconds per stage and provider statistics. The driver writes ``run.json`` and the summary as the local engine
does, so the per-sample files are the same whichever engine wrote them (bar the run-specific seconds and
``created`` time of ``mer_eval_meta.json``: ``tests/test_generate_ray.py``).

Where it runs: as the score engine (:mod:`mer_eval.engine_ray`): ``RAY_ADDRESS``, a cluster ``ray start`` runs
on this machine, or a new local Ray; a Ray already initialised in this process is used as it is. OUT, the
media, the models and the cache dir must be paths every node sees (a shared filesystem). The driver's
``MER_EVAL_*`` / ``HF_*`` variables, its ``OMP_NUM_THREADS`` and a ``--prompts-file``'s prompts go to the actors.
Threads: the ASR (CTranslate2 int8) answers with other word timings / probabilities in the last digits under
another OpenMP thread count, and Ray gives a 1-CPU actor ``OMP_NUM_THREADS=1``: set ``OMP_NUM_THREADS`` for the
run (it is passed to the actors) to get the local engine's transcripts byte for byte.

A dead actor is restarted by Ray and its piece run again (its samples written before it died are up to date
and counted done), up to :data:`MAX_RESTARTS` times; past that the run stops with one
:class:`~mer_eval.scoring.EngineError` line, and a rerun resumes (up-to-date samples are skipped).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mer_eval.engine_ray import MAX_RESTARTS, connect, import_ray, forwarded_env
from mer_eval.generators import synthesis
from mer_eval.scoring import EngineError

from mer_eval.config import Config
from mer_eval.store import RunStore

__all__ = ["MAX_RESTARTS", "EngineError", "GenerateActor", "RaySession", "split_pieces"]


def split_pieces(plan: list, size: int) -> list[list]:
    """Contiguous pieces of at most ``size`` entries of ``plan``, in order."""
    size = max(1, int(size))
    return [plan[i:i + size] for i in range(0, len(plan), size)]


class GenerateActor:
    """One per Ray actor: the provider (built once) and the run's settings; :meth:`run_piece` annotates a piece."""

    def __init__(self, config: Config, out_dir: str, prompt_hashes: dict[str, str], config_hash: str,
                 force: bool, prompts: dict[str, str], env: dict[str, str], started: str):
        from mer_eval.generators.pipeline import make_provider  # noqa: PLC0415

        os.environ.update(env)
        synthesis._OVERRIDES.clear()  # the driver's --prompts-file (prompts_override), as it rendered them
        synthesis._OVERRIDES.update(prompts)
        self.config = config
        self.store = RunStore(Path(out_dir))
        self.prompt_hashes = prompt_hashes
        self.config_hash = config_hash
        self.force = force
        self.started = datetime.fromisoformat(started)
        self.provider = make_provider(config)

    def run_piece(self, piece: list) -> dict[str, Any]:
        from mer_eval.generators.pipeline import META_NAME, _Run  # noqa: PLC0415

        run = _Run(self.store, self.config, self.provider, self.prompt_hashes, self.config_hash, self.force,
                   None, {})
        stats_before = dict(getattr(self.provider, "stats", {}))
        run.run_all(piece)
        for sid, r in list(run.results.items()):
            if r["status"] != "skipped":
                continue
            # a piece run again after its actor died: what this run wrote before is this run's work (done)
            try:
                meta = json.loads((self.store.sample_dir(sid) / META_NAME).read_text(encoding="utf-8"))
                created = datetime.fromisoformat(meta["created"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if created >= self.started:
                run.results[sid] = {"status": "done", "type": r["type"], "absent": dict(meta.get("absent") or {}),
                                    "fallbacks": list(meta.get("fallbacks") or []),
                                    "flags": dict(meta.get("flags") or {})}
                for st, v in (meta.get("stages") or {}).items():
                    if isinstance(v, dict) and "seconds" in v:
                        run.stage_seconds.setdefault(st, []).append(float(v["seconds"]))
        stats = {k: v - stats_before.get(k, 0) for k, v in getattr(self.provider, "stats", {}).items()
                 if isinstance(v, (int, float))}
        return {"results": run.results, "stage_seconds": run.stage_seconds, "removed": sorted(run.removed),
                "stats": stats}


class RaySession:
    """Ray imported and connected (:class:`EngineError` when it is not installed or not reachable), made before
    the run takes OUT's lock; :meth:`run` fills a driver-side ``_Run``; :meth:`close` disconnects when this
    session connected."""

    def __init__(self, workers: int = 0):
        self.ray = import_ray()
        self.started_ray = connect(self.ray)
        self.workers = int(workers or 0)

    def close(self) -> None:
        if self.started_ray and self.ray.is_initialized():
            self.ray.shutdown()
        self.started_ray = False

    def n_actors(self, n_pieces: int) -> int:
        slots = max(1, int(self.ray.cluster_resources().get("CPU", 1)))
        n = min(self.workers, slots) if self.workers else slots
        return max(1, min(n, n_pieces))

    def run(self, run: Any, plan: list, config: Config, out: Path, progress: Any = None,
            tasks: dict | None = None) -> None:
        """Annotate ``plan`` on the actors; ``run`` (the driver's ``_Run``) gets every sample's result, the seconds
        per stage and the removed samples, ``run.provider.stats`` the actors' provider statistics."""
        from mer_eval.generators.pipeline import SEQUENCES  # noqa: PLC0415

        ray = self.ray
        pieces = split_pieces(plan, config.generate.concurrency)
        if not pieces:
            return
        started = datetime.now(timezone.utc).isoformat()
        opts: dict[str, Any] = {}
        if os.environ.get("OMP_NUM_THREADS"):  # set before the actor's process starts (its OpenMP reads it once)
            opts["runtime_env"] = {"env_vars": {"OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"]}}
        remote = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS, num_cpus=1,
                            **opts)(GenerateActor)
        args = (config, str(out), run.prompt_hashes, run.config_hash, run.force, dict(synthesis._OVERRIDES),
                forwarded_env(), started)
        actors = [remote.remote(*args) for _ in range(self.n_actors(len(pieces)))]
        got: dict[int, dict] = {}
        todo = list(range(len(pieces)))
        inflight: dict[Any, int] = {}
        try:
            for a in actors:
                if todo:
                    i = todo.pop(0)
                    inflight[a.run_piece.remote(pieces[i])] = i
            owner = {ref: a for ref, a in zip(list(inflight), actors)}
            while inflight:
                ready, _ = ray.wait(list(inflight), num_returns=1)
                ref = ready[0]
                i = inflight.pop(ref)
                a = owner.pop(ref)
                got[i] = ray.get(ref)
                if progress is not None:
                    for _, stype, _ in pieces[i]:
                        for st in SEQUENCES[stype]:
                            if st in (tasks or {}):
                                progress.advance(tasks[st])
                if todo:
                    j = todo.pop(0)
                    nref = a.run_piece.remote(pieces[j])
                    inflight[nref] = j
                    owner[nref] = a
        except ray.exceptions.RayError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EngineError(f"engine ray: a Ray actor failed ({type(e).__name__}: {first[:200]}) after "
                              f"{MAX_RESTARTS} restarts; the samples written so far are kept: run `mer-eval "
                              f"generate` again to resume") from None
        finally:
            for a in actors:
                ray.kill(a)
        stats = getattr(run.provider, "stats", None)
        for i in range(len(pieces)):  # in plan order
            part = got[i]
            run.results.update(part["results"])
            for st, secs in part["stage_seconds"].items():
                run.stage_seconds.setdefault(st, []).extend(secs)
            run.removed.update(part["removed"])
            if isinstance(stats, dict):
                for k, v in part["stats"].items():
                    stats[k] = stats.get(k, 0) + v
