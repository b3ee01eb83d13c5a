"""A local transformers causal LM as a provider (text only).

``providers.hf.model`` is a model key known to :mod:`mer_eval.models` (default ``smollm2``: the packaged
SmolLM2-135M-Instruct GGUF), a local ``.gguf`` file, or a local Hugging Face model folder (config.json +
weights). The chat template is applied when the tokenizer has one; decoding is greedy (deterministic) at
temperature 0, seeded sampling otherwise; ``max_tokens`` bounds the new tokens.

The model loads once per process (:func:`mer_eval.models.load_once`) and generation runs in a worker
thread (``asyncio.to_thread``) under a lock, so the event loop stays responsive.

Reading a GGUF file through transformers is slow (its tokenizer vocabulary is parsed token by token, and
twice), so the first load converts it once into a plain transformers folder (float32 safetensors +
tokenizer; the same de-quantised weights) under the assembled-models folder, keyed by the GGUF sha256;
later processes load that folder. The provider's revision stays the GGUF file's sha256.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

from mer_eval.generators.providers.base import Capability, Provider, ProviderError, ProviderRequest

from mer_eval import models as model_registry

log = logging.getLogger("mer_eval.providers.hf")

_LOAD_LOCK = threading.Lock()
_GEN_LOCKS: dict[tuple, threading.Lock] = {}
CONVERTED_MARK = "mer_eval_converted_from.txt"


def converted_dir(gguf_sha256: str) -> Path:
    return model_registry.assembled_models_dir() / f"gguf-hf-{gguf_sha256[:16]}"


def _load_gguf(gguf: Path, sha: str | None) -> tuple[Any, Any, str]:
    """(tokenizer, model, where it loaded from); converts to a transformers folder on first use."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    conv = converted_dir(sha) if sha else None
    if conv is not None and (conv / CONVERTED_MARK).is_file():
        try:
            tok = AutoTokenizer.from_pretrained(str(conv))
            model = AutoModelForCausalLM.from_pretrained(str(conv), dtype="float32")
            return tok, model, f"{conv} (converted from {gguf})"
        except (OSError, ValueError) as e:
            log.warning("converted copy %s is unusable (%s); reading the GGUF file again", conv, e)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    where = str(gguf)
    if conv is not None:
        tmp = conv.parent / f".{conv.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            tmp.mkdir(parents=True, exist_ok=False)
            tok.save_pretrained(str(tmp))
            _save_dequantized(model, tmp)
            (tmp / CONVERTED_MARK).write_text(f"{gguf}\nsha256 {sha}\n")
            try:
                os.replace(tmp, conv)
            except OSError:  # another process won the race: its copy is the same
                shutil.rmtree(tmp, ignore_errors=True)
        except (OSError, ValueError, RuntimeError) as e:  # the model in memory is fine; only the copy failed
            shutil.rmtree(tmp, ignore_errors=True)
            log.warning("could not keep a converted copy of %s in %s: %s", gguf, conv, e)
    return tok, model, where


def _save_dequantized(model: Any, folder: Path) -> None:
    """Save a GGUF-loaded model as a plain float32 transformers folder.

    transformers de-quantises GGUF tensors on load but marks the model with a GGUF "quantizer" that refuses
    ``save_pretrained``; the weights in memory are ordinary tensors, so the marker is lifted for the save.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    had_qc = hasattr(model.config, "quantization_config")
    qc = getattr(model.config, "quantization_config", None)
    try:
        model.hf_quantizer = None
        if had_qc:
            delattr(model.config, "quantization_config")
        model.save_pretrained(str(folder))
    finally:
        model.hf_quantizer = quantizer
        if had_qc:
            model.config.quantization_config = qc


def _load_folder(folder: Path) -> tuple[Any, Any, str]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    return tok, model, str(folder)


class HFProvider(Provider):
    config_defaults: ClassVar[dict] = {"model": "smollm2", "max_tokens": 256, "threads": 1}
    name: ClassVar[str] = "hf"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.text})
    default_model: ClassVar[str | None] = "smollm2"

    def __init__(self, config, cache=None, name=None, models: Any = None):
        """``models``: the ``models`` section of the full config (paths, dir) for the resolver."""
        super().__init__(config, cache, name)
        self.models_config = models
        self._res: model_registry.Resolution | None = None
        self.loaded_from: str | None = None

    # -- which weights -----------------------------------------------------------------------------
    def resolution(self) -> model_registry.Resolution:
        if self._res is not None:
            return self._res
        want = self.config.model or self.default_model
        m = self.models_config
        kw = {
            "paths": m.paths if m else None,
            "models_dir_cfg": m.dir if m else None,
            "allow_download": m.allow_download if m else False,
        }
        if want in model_registry.KNOWN_MODELS:
            if m is not None and m.ids.get(want):
                kw["hf_id"] = m.ids[want]
            res = model_registry.resolve(want, **kw)
        else:
            p = Path(want).expanduser()
            if p.exists():
                kind = "file" if p.is_file() else "hf"
                res = model_registry.resolve(
                    "hf-provider", paths={"hf-provider": str(p)}, hf_id=str(p), kind=kind
                )
            else:  # a hub id: only the local HF cache (or an allowed download) can provide it
                res = model_registry.resolve(want, hf_id=want, kind="hf", **kw)
        self._res = res
        return res

    @property
    def model_id(self) -> str:
        res = self.resolution()
        if res.available and res.weights_file is not None and res.weights_file.suffix == ".gguf":
            return f"{res.id} ({res.weights_file.name})"
        return res.id if res.available else (self.config.model or self.default_model)

    @property
    def revision(self) -> str | None:
        res = self.resolution()
        return res.sha256 if res.available else None

    def _load(self) -> tuple[Any, Any]:
        res = self.resolution()
        if not res.available:
            raise ProviderError(f"hf provider: {res.reason or 'model not found'}", retryable=False)
        if res.path is None:  # "download": let transformers fetch the hub id
            target, gguf = Path(res.id), None
        elif res.path.is_file():
            if res.path.suffix != ".gguf":
                raise ProviderError(
                    f"hf provider: {res.path} is a file but not a .gguf; give a model folder", retryable=False
                )
            target, gguf = res.path, res.path
        else:
            target, gguf = res.path, None
        key = ("hf-provider", str(target), res.sha256)

        def loader():
            t0 = time.perf_counter()
            tok, model, where = _load_gguf(gguf, res.sha256) if gguf else _load_folder(target)
            model.eval()
            log.info("hf provider: loaded %s from %s in %.1f s", res.id, where, time.perf_counter() - t0)
            return tok, model, where

        try:
            with _LOAD_LOCK:
                tok, model, where = model_registry.load_once(key, loader)
        except ImportError as e:
            raise ProviderError(
                f"hf provider: a package needed to load {target} is missing: {e}", retryable=False
            ) from None
        except (OSError, ValueError) as e:
            raise ProviderError(
                f"hf provider: could not load {res.id} from {target}: {type(e).__name__}: {e}",
                retryable=False,
            ) from None
        self.loaded_from = where
        with _LOAD_LOCK:
            self._gen_lock = _GEN_LOCKS.setdefault(key, threading.Lock())
        return tok, model

    # -- generation --------------------------------------------------------------------------------
    def _generate_sync(self, req: ProviderRequest) -> tuple[str, dict]:
        import torch

        tok, model = self._load()
        p = self.params(req)
        msgs = ([{"role": "system", "content": req.system}] if req.system else []) + [
            {"role": "user", "content": req.prompt}
        ]
        if getattr(tok, "chat_template", None):
            enc = tok.apply_chat_template(
                msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            templated = True
        else:
            enc = tok(((req.system + "\n\n") if req.system else "") + req.prompt, return_tensors="pt")
            templated = False
        n_in = int(enc["input_ids"].shape[1])
        temperature = float(p["temperature"] or 0.0)
        gen_kw: dict = {"max_new_tokens": int(p["max_tokens"])}
        if temperature > 0:
            gen_kw.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
        else:
            gen_kw.update(do_sample=False, temperature=None, top_k=None, top_p=None)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        t0 = time.perf_counter()
        threads = getattr(self.config, "threads", None)
        try:
            with self._gen_lock, torch.inference_mode():
                prev = torch.get_num_threads()
                if threads:
                    torch.set_num_threads(threads)
                try:
                    if temperature > 0:
                        torch.manual_seed(0)
                    out = model.generate(**enc, pad_token_id=pad, **gen_kw)
                finally:
                    if threads:
                        torch.set_num_threads(prev)
        except RuntimeError as e:
            raise ProviderError(
                f"hf provider: generation failed: {type(e).__name__}: {e}", retryable=False
            ) from None
        new = out[0, n_in:]
        text = tok.decode(new, skip_special_tokens=True).strip()
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        finish = (
            "stop"
            if (len(new) and int(new[-1]) in eos_ids) or len(new) < gen_kw["max_new_tokens"]
            else "length"
        )
        usage = {
            "prompt_tokens": n_in,
            "completion_tokens": len(new),
            "finish_reason": finish,
            "decoding": "greedy" if temperature <= 0 else f"sampling(t={temperature:g}, seed=0)",
            "chat_template": templated,
            "threads": threads or torch.get_num_threads(),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        return text, usage

    async def _call(self, req: ProviderRequest) -> tuple[str, dict]:
        return await asyncio.to_thread(self._generate_sync, req)

    def describe(self) -> dict:
        d = super().describe()
        res = self.resolution()
        d.update(
            weights=str(res.weights_file) if res.weights_file else None,
            source=res.source,
            loaded_from=self.loaded_from,
            available=res.available,
            reason=res.reason,
        )
        return d
