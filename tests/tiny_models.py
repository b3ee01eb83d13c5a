"""Tiny random-weight CLIP / CLAP / NLI models, built offline and saved to disk for tests.

No real CLIP, CLAP or NLI weights exist offline here, so tests build models with the real
architectures but hidden sizes <= 32 and random (seeded) weights, save them the way the hub
stores them, and point ``models.paths.<key>`` at the folders: the metric's real loading code runs.
The numbers these models give are meaningless as quality figures; tests check the arithmetic,
batching, chunking and status handling.

Tokenizers are built from vocabularies written here (byte-level BPE without merges for CLIP/CLAP,
a character WordPiece vocab for BERT); the open_clip model uses open_clip's bundled BPE tokenizer.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

TINY_OPEN_CLIP_NAME = "mer-tiny-clip"
TINY_OPEN_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
NLI_LABELS = {0: "contradiction", 1: "entailment", 2: "neutral"}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def build_open_clip(root: Path, seed: int = 0) -> Path:
    """A tiny open_clip model in the hub layout: open_clip_config.json + open_clip_pytorch_model.bin.

    Also writes ``mer-tiny-clip.json`` (a plain model config) beside the folder, for the
    ``model name + pretrained=<weights file>`` route (register it with ``open_clip.add_model_config``).
    """
    import open_clip
    import torch

    d = Path(root) / "open_clip_tiny"
    if (d / "open_clip_pytorch_model.bin").is_file():
        return d
    d.mkdir(parents=True, exist_ok=True)
    cfg_file = Path(root) / f"{TINY_OPEN_CLIP_NAME}.json"
    cfg_file.write_text(json.dumps(TINY_OPEN_CLIP_CFG))
    open_clip.add_model_config(cfg_file)
    _seed(seed)
    model = open_clip.create_model(TINY_OPEN_CLIP_NAME, pretrained=None)
    torch.save(model.state_dict(), d / "open_clip_pytorch_model.bin")
    (d / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": TINY_OPEN_CLIP_CFG,
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
    }))
    return d


def _clip_tokenizer(d: Path):
    from transformers import CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    toks = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(toks))}
    tok = CLIPTokenizer(vocab=vocab, merges=[])
    tok.model_max_length = 77
    return tok


def build_hf_clip(root: Path, seed: int = 0) -> Path:
    """A tiny transformers CLIPModel + CLIPProcessor (byte-level tokenizer, 77-token window)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    d = Path(root) / "hf_clip_tiny"
    if (d / "config.json").is_file():
        return d
    tok = _clip_tokenizer(d)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16),
        projection_dim=16,
    )
    _seed(seed)
    model = CLIPModel(cfg).eval()
    model.save_pretrained(d)
    proc = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                            crop_size={"height": 32, "width": 32}),
                         tokenizer=tok)
    proc.save_pretrained(d)
    return d


def build_clap(root: Path, seed: int = 0) -> Path:
    """A tiny transformers ClapModel (HTSAT audio tower, RoBERTa text tower) + ClapProcessor at 48 kHz."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    d = Path(root) / "clap_tiny"
    if (d / "config.json").is_file():
        return d
    chars = list(_bytes_to_unicode().values())
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(specials + chars))}
    tok = RobertaTokenizer(vocab=vocab, merges=[])
    tok.model_max_length = 64
    cfg = ClapConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=72, projection_dim=16,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id),
        audio_config=dict(hidden_size=32, patch_embeds_hidden_size=4, depths=[1, 1, 1, 1],
                          num_attention_heads=[1, 1, 1, 1], projection_dim=16, enable_fusion=False),
        projection_dim=16,
    )
    _seed(seed)
    model = ClapModel(cfg).eval()
    model.save_pretrained(d)
    fe = ClapFeatureExtractor(sampling_rate=48000, max_length_s=10, truncation="rand_trunc", padding="repeatpad")
    ClapProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(d)
    return d


def build_nli(root: Path, seed: int = 0, labels: dict[int, str] = NLI_LABELS, name: str = "nli_tiny",
              max_positions: int = 128) -> Path:
    """A tiny BertForSequenceClassification with NLI labels and a character WordPiece tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    d = Path(root) / name
    if (d / "config.json").is_file():
        return d
    d.mkdir(parents=True, exist_ok=True)
    chars = string.ascii_lowercase + string.digits + string.punctuation
    words = ["the", "a", "person", "smiles", "is", "happy", "sad", "angry", "voice", "face", "and", "with"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + list(chars) + [f"##{c}" for c in chars]
    (d / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    tok = BertTokenizer(vocab=str(d / "vocab.txt"))
    tok.model_max_length = max_positions
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                     num_attention_heads=2, max_position_embeddings=max_positions, num_labels=len(labels),
                     id2label={int(k): v for k, v in labels.items()},
                     label2id={v: int(k) for k, v in labels.items()})
    _seed(seed)
    model = BertForSequenceClassification(cfg).eval()
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def one_torch_thread():
    """Generator for a fixture: tiny models run fastest on one thread (the test machine is shared);
    restores the previous setting afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
