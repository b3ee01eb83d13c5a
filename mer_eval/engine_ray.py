"""Score engine ``ray`` (``mer-eval score --engine ray``; ``pip install 'mer-eval[ray]'``): the chunks of
samples computed over Ray Data.

Each chunk is split into contiguous pieces (:func:`mer_eval.scoring.split_even`, one per actor), one Ray Data
block per piece; ``map_batches`` runs them on a fixed pool of actors, one per CPU slot of the cluster (one per
GPU slot when the models run on a GPU), and each actor builds its :class:`~mer_eval.scoring.ChunkScorer` once
(the families and their models, loaded once per actor) and writes its samples' ``mer_eval_scores.json``. The
pieces' :class:`~mer_eval.scoring.ChunkResult` come back pickled (as from the ``process`` engine's workers, so
every value is the same object the local engine would have) and the driver yields the chunks in order: the
summary CSV, ``scores.parquet`` and ``run.json`` are written here exactly as for the local engine.

Where it runs: ``ray.init(address=RAY_ADDRESS)``, so a cluster started with ``ray start --head`` (and
``RAY_ADDRESS`` set, or ``ray start`` on this machine) is used, else a local Ray on this machine; when Ray is
already initialised in this process (a notebook, a test), that is used as it is. On several machines the output
folder, the inputs, the models and the cache dir must be paths every node sees (a shared filesystem).

A dead actor (killed, out of memory) is restarted by Ray and its piece is run again, up to
:data:`MAX_RESTARTS` times; past that the run stops with one :class:`~mer_eval.scoring.EngineError` line, and
the next run resumes: each sample's results written so far are in the cache (when it is on).
"""

from __future__ import annotations

import logging
import os
import pickle
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Optional

from mer_eval.config import Config
from mer_eval.scoring import ChunkResult, ChunkScorer, EngineError, default_workers, merge_chunk_results, \
    split_even
from mer_eval.store import EVAL_FILE, RunStore

MAX_RESTARTS = 3  # times Ray restarts a dead actor (and retries its piece) before the run fails
# environment the actors get from the driver (a local Ray's workers were started before the driver's
# variables changed; a cluster node has its own): what decides where mer-eval and Hugging Face read and write
FORWARD_ENV_PREFIXES = ("MER_EVAL_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_")
INSTALL_HINT = "pip install 'mer-eval[ray]'"


def import_ray():
    try:
        import ray  # noqa: PLC0415 (an extra)
        import ray.data  # noqa: F401, PLC0415
    except ImportError as e:
        raise EngineError(f"engine ray: Ray is not installed ({e}): {INSTALL_HINT}") from None
    return ray


def forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARD_ENV_PREFIXES)}


class ScorerActor:
    """The ``map_batches`` callable class: one per actor, holding one :class:`ChunkScorer` (built once).
    A batch is rows ``chunk, piece, samples`` (a pickled list of :class:`~mer_eval.schema.Sample`, or of a compact
    run's packed samples); it returns rows ``chunk, piece, result``: the pickled :class:`ChunkResult`, summarised
    here (long rows and statistics, as the ``process`` engine's workers do), per-sample results only when kept."""

    def __init__(self, names: list[str], config: Config, use_cache: bool, out_dir: str, env: dict[str, str],
                 keep: bool = True):
        os.environ.update(env)
        self.scorer = ChunkScorer(names, config, use_cache, Path(out_dir))
        self.keep = keep

    def __call__(self, batch):
        import pyarrow as pa  # noqa: PLC0415

        rows = batch.to_pydict()
        results = []
        for blob in rows["samples"]:
            cr = self.scorer(pickle.loads(blob), keep=self.keep)
            results.append(pickle.dumps(cr, protocol=pickle.HIGHEST_PROTOCOL))
        return pa.table({"chunk": pa.array(rows["chunk"], pa.int64()), "piece": pa.array(rows["piece"], pa.int64()),
                         "result": pa.array(results, pa.large_binary())})


def _reachable(address: str, timeout: float = 5.0) -> Optional[str]:
    """Why ``host:port`` cannot be reached by TCP (None when it can, or when ``address`` is not host:port):
    ``ray.init`` waits minutes for a head that is not there before it gives up."""
    import socket  # noqa: PLC0415

    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return None  # "auto", "local", a bare host: Ray's own lookup
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as e:
        return f"{hostport}: {e.strerror or e}"
    return None


def connect(ray) -> bool:
    """Connect (``RAY_ADDRESS``, else the cluster ``ray start`` runs on this machine, else a new local Ray); True
    when this call made the connection (and so closes it)."""
    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS") or None
    where = f"the Ray cluster at RAY_ADDRESS={address}" if address else "a local Ray"
    why = _reachable(address) if address else None
    if why:
        raise EngineError(f"engine ray: cannot connect to {where} ({why}): start it with `ray start --head`, or "
                          f"unset RAY_ADDRESS for a local Ray")
    try:
        # Ray's INFO lines (started, progress every 10 s) would bury score's own output; its warnings still show
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EngineError(f"engine ray: cannot connect to {where}: {first}") from None
    return True


def _slots(ray, config: Config) -> tuple[int, bool]:
    """(slots, on_gpu): the actors the cluster can hold at once, one per GPU when the models go on a GPU
    (``score.device`` cuda, or auto on a cluster with GPUs), else one per CPU."""
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    device = config.score.device
    on_gpu = device == "cuda" or (device == "auto" and gpus > 0)
    if on_gpu and gpus < 1:
        raise EngineError("engine ray: score.device is cuda but the Ray cluster has no GPU")
    return (gpus if on_gpu else max(1, int(res.get("CPU", 1)))), on_gpu


def ray_map(parts: Iterable[list], names: list[str], config: Config, use_cache: bool, out_dir: Path,
            workers: int, keep: bool = True) -> Iterator[tuple[list, ChunkResult]]:
    """Engine ``ray``: ``(part, ChunkResult)`` for each chunk of ``parts``, in order.

    ``workers``: actors; when the run did not ask for a number (``score.workers`` 0), one per slot of the
    cluster, else that many (at most the slots, so none waits for a slot that never frees). ``keep=False``: the
    chunks' per-sample results stay in the actors (their rows and statistics come back)."""
    ray = import_ray()
    started = connect(ray)
    data_log = logging.getLogger("ray.data")
    level = data_log.level
    data_log.setLevel(max(logging.WARNING, level))  # Ray Data's progress lines: score has its own progress bar
    try:
        yield from _run(ray, parts, names, config, use_cache, Path(out_dir), workers, keep)
    finally:
        data_log.setLevel(level)
        if started:
            ray.shutdown()


def _run(ray, parts, names, config, use_cache, out_dir: Path, workers: int, keep: bool):
    import pyarrow as pa  # noqa: PLC0415

    slots, on_gpu = _slots(ray, config)
    asked = config.score.workers or (workers if workers != default_workers(0) else 0)
    n_actors = min(asked, slots) if asked else slots

    chunks: list[list] = []  # every chunk's samples (the dataset's own objects, or packed bytes)
    n_pieces: list[int] = []
    refs = []
    for k, part in enumerate(parts):
        pieces = split_even(part, n_actors)
        chunks.append(part)
        n_pieces.append(len(pieces))
        for p, piece in enumerate(pieces):  # one block per piece: each is one actor call
            refs.append(ray.put(pa.table({
                "chunk": pa.array([k], pa.int64()), "piece": pa.array([p], pa.int64()),
                "samples": pa.array([pickle.dumps(piece, protocol=pickle.HIGHEST_PROTOCOL)], pa.large_binary())})))
    if not refs:
        return
    args = (list(names), config, bool(use_cache), str(out_dir), forwarded_env(), bool(keep))
    # Ray 2.60 takes max_restarts only as a `ray_remote_args` kwarg (deprecated), and copying a DataContext warns
    # of its own deprecated fields: neither is the user's business
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = ray.data.from_arrow_refs(refs).map_batches(
            ScorerActor, fn_constructor_args=args, batch_size=1, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=n_actors), num_cpus=1, num_gpus=1 if on_gpu else None,
            max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)
        ctx = ds.context
        ctx.execution_options.preserve_order = True  # chunks come back in order (reassembled by key anyway)
        ctx.raise_original_map_exception = True  # a metric's own exception, as from the other engines
        ctx.print_on_execution_start = False
    del refs  # the dataset holds them

    got: dict[int, dict[int, ChunkResult]] = {}
    nxt = 0
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            rows = batch.to_pydict()
            for k, p, blob in zip(rows["chunk"], rows["piece"], rows["result"]):
                got.setdefault(k, {})[p] = pickle.loads(blob)
            while nxt < len(chunks) and len(got.get(nxt, ())) == n_pieces[nxt]:
                pieces = got.pop(nxt)
                cr = merge_chunk_results([pieces[p] for p in range(n_pieces[nxt])])
                _check_written(out_dir, cr)
                chunks[nxt], part = None, chunks[nxt]
                nxt += 1
                yield part, cr
    except _died_errors(ray) as e:
        raise EngineError(_died_line(e)) from None
    if nxt != len(chunks):
        raise EngineError(f"engine ray: Ray Data returned {nxt} of {len(chunks)} chunks")


def _died_errors(ray) -> tuple:
    """Ray's errors for a worker, actor, node or object lost (not an exception a metric raised: with
    ``raise_original_map_exception`` that one propagates as it is, as from the other engines)."""
    x = ray.exceptions
    return (x.RayActorError, x.WorkerCrashedError, x.NodeDiedError, x.ObjectLostError, x.OutOfMemoryError,
            x.LocalRayletDiedError, x.RaySystemError)


def _died_line(e: Exception) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return (f"engine ray: a Ray worker died ({type(e).__name__}: {first[:200]}) after {MAX_RESTARTS} restarts; the "
            f"samples scored so far are cached (when the cache is on): run `mer-eval score` again to resume")


def _check_written(out_dir: Path, cr: ChunkResult) -> None:
    """The actors write each sample's file; on a cluster it is here only when OUT is on a shared filesystem."""
    store = RunStore(out_dir)
    ids = dict.fromkeys(cr.rows.columns["sample_id"]) if cr.rows is not None else cr.results
    missing = next((sid for sid in ids if not (store.sample_dir(sid) / EVAL_FILE).is_file()), None)
    if missing is not None:
        raise EngineError(f"engine ray: {out_dir / missing / EVAL_FILE} was not written here: on a Ray cluster the "
                          f"output folder must be on a filesystem every node sees")
