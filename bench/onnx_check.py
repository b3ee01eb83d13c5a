"""Would an ONNX Runtime backend make CLIP / NLI faster on this CPU? (issue #12 item 1: "int8 dynamic
quantisation and/or ONNX Runtime backends"; mer-eval has the int8 one, ``--precision int8``.)

Not a test and not a backend: it measures, in one run and on the same machine, the encoders mer-eval's CLIP and
NLI metrics run, as real-size architectures with random weights (no CLIP or NLI weights exist offline here; speed
does not depend on the weights' values): CLIP ViT-B/32's image tower (a batch of 224x224 images) and text tower
(a batch of 40-token texts), and a BERT-base cross-encoder (a batch of 96-token pairs). For each it times

* torch fp32 (what ``score`` runs by default),
* torch int8 (``torch.ao.quantization.quantize_dynamic`` of every ``nn.Linear``: ``--precision int8``),
* ONNX Runtime fp32 (``torch.onnx.export``, TorchScript exporter, opset 17, dynamic batch and length),
* ONNX Runtime int8 (``onnxruntime.quantization.quantize_dynamic`` of that file after ``quant_pre_process``,
  QInt8 weights),

best of ``--repeat`` passes after one warm-up, every runtime held to the same number of threads, and prints the
speed-ups over torch fp32, the export seconds and the largest difference of the fp32 outputs (ONNX Runtime against
torch). ``--json PATH`` writes the figures (default bench/results/onnx_check.json).

Needs ``onnx`` besides ``onnxruntime`` (faster-whisper already installs onnxruntime): ``pip install onnx``.

Usage: python bench/onnx_check.py [--batch 16] [--repeat 3] [--threads N] [--json PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _best(fn, repeat: int) -> float:
    fn()  # warm-up: first-call allocations and kernel choices out of the timing
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _towers(batch: int):
    """(name, module, its forward, inputs, dynamic axes) of each encoder, random real-size weights, seeded."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, CLIPConfig, CLIPModel

    torch.manual_seed(0)
    clip = CLIPModel(CLIPConfig()).eval()  # the defaults are ViT-B/32 (openai/clip-vit-base-patch32's shapes)
    nli = BertForSequenceClassification(BertConfig(num_labels=3)).eval()  # BERT-base, 3 NLI labels
    ids = torch.randint(0, clip.config.text_config.vocab_size, (batch, 40))
    pairs = torch.randint(0, nli.config.vocab_size, (batch, 96))
    seq = {0: "batch", 1: "tokens"}
    return [
        ("CLIP ViT-B/32 image tower", clip, clip.get_image_features,
         {"pixel_values": torch.randn(batch, 3, 224, 224)}, {"pixel_values": {0: "batch"}}),
        ("CLIP ViT-B/32 text tower", clip, clip.get_text_features,
         {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, {"input_ids": seq, "attention_mask": seq}),
        ("NLI cross-encoder BERT-base", nli, nli.forward,
         {"input_ids": pairs, "attention_mask": torch.ones_like(pairs), "token_type_ids": torch.zeros_like(pairs)},
         {"input_ids": seq, "attention_mask": seq, "token_type_ids": seq}),
    ]


def _tensor_out(out):
    """The tensor mer-eval reads: projected features (transformers 5 wraps them) or the logits."""
    if hasattr(out, "logits"):
        return out.logits
    if hasattr(out, "pooler_output") and not hasattr(out, "shape"):
        return out.pooler_output
    return out


def measure(batch: int, repeat: int, threads: int, tmp: Path) -> list[dict]:
    import numpy as np
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    torch.set_num_threads(threads)

    class Wrapped(torch.nn.Module):  # keyword forward -> positional, one tensor out (what export needs)
        def __init__(self, fn, names):
            super().__init__()
            self.fn, self.names = fn, names

        def forward(self, *args):
            return _tensor_out(self.fn(**dict(zip(self.names, args))))

    def session(path: Path):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    rows = []
    for name, module, fn, inputs, dyn in _towers(batch):
        for p in module.parameters():
            p.requires_grad_(False)
        names = list(inputs)
        feed = {k: v.numpy() for k, v in inputs.items()}
        f32 = tmp / f"{len(rows)}.onnx"
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(Wrapped(fn, names), tuple(inputs.values()), str(f32), input_names=names,
                              output_names=["out"], dynamic_axes={**dyn, "out": {0: "batch"}}, dynamo=False,
                              opset_version=17)
        export_s = time.perf_counter() - t0
        i8, pre = tmp / f"{len(rows)}.int8.onnx", tmp / f"{len(rows)}.pre.onnx"
        quant_pre_process(str(f32), str(pre), skip_symbolic_shape=True)  # ONNX shape inference + graph optimisation, as
        # ONNX Runtime advises (its symbolic shape inference does not finish on these graphs)
        quantize_dynamic(str(pre), str(i8), weight_type=QuantType.QInt8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qmod = torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)
        qfn = getattr(qmod, fn.__name__)
        s32, s8 = session(f32), session(i8)
        with torch.inference_mode():
            ref = _tensor_out(fn(**inputs)).numpy()
            t_torch = _best(lambda: fn(**inputs), repeat)
            t_torch8 = _best(lambda: qfn(**inputs), repeat)
        got = s32.run(None, feed)[0]
        t_ort = _best(lambda: s32.run(None, feed), repeat)
        t_ort8 = _best(lambda: s8.run(None, feed), repeat)
        rows.append({"encoder": name, "batch": batch, "inputs": {k: list(v.shape) for k, v in inputs.items()},
                     "seconds": {"torch_fp32": t_torch, "torch_int8": t_torch8, "onnxruntime_fp32": t_ort,
                                 "onnxruntime_int8": t_ort8},
                     "speedup_over_torch_fp32": {"torch_int8": t_torch / t_torch8, "onnxruntime_fp32": t_torch / t_ort,
                                                 "onnxruntime_int8": t_torch / t_ort8},
                     "export_seconds": export_s, "max_abs_diff_fp32": float(np.abs(got - ref).max())})
        r = rows[-1]["speedup_over_torch_fp32"]
        print(f"{name:<30} torch fp32 {t_torch:6.3f} s | torch int8 {r['torch_int8']:.2f}x | ONNX Runtime fp32 "
              f"{r['onnxruntime_fp32']:.2f}x | ONNX Runtime int8 {r['onnxruntime_int8']:.2f}x | export "
              f"{export_s:.1f} s | max |fp32 diff| {rows[-1]['max_abs_diff_fp32']:.1e}", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="threads of every runtime (0: the CPUs)")
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "onnx_check.json")
    a = ap.parse_args(argv)
    missing = [m for m in ("torch", "transformers", "onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"onnx_check needs the python package(s) {', '.join(missing)} (pip install {' '.join(missing)}); "
              "nothing was measured", file=sys.stderr)
        return 2
    threads = a.threads or os.cpu_count() or 1
    import onnxruntime
    import torch

    with tempfile.TemporaryDirectory(prefix="mer-onnx-check-") as td:
        rows = measure(a.batch, a.repeat, threads, Path(td))
    res = {"bench": "onnx_check", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"cpus": os.cpu_count(), "threads": threads, "python": platform.python_version(),
                       "platform": platform.platform(), "torch": torch.__version__,
                       "onnxruntime": onnxruntime.__version__, "loadavg_1_5_15": list(os.getloadavg())},
           "settings": {"batch": a.batch, "repeat": a.repeat, "weights": "random, real-size architectures"},
           "rows": rows}
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
