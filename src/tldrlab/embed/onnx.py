"""An optimised MiniLM backend: ONNX Runtime on an ONNX export of the local model, partly int8-quantised.

The export is made once from the same offline all-MiniLM-L6-v2 weights the PyTorch embedder uses
(`torch.onnx.export`, TorchScript exporter, so no `onnxscript` is needed), optionally quantised with
`onnxruntime.quantization.quantize_dynamic` (int8 per-channel weights, activations quantised per batch) and
cached under `<home>/cache/embed/`. Tokenisation uses the model's fast tokenizer directly, and sentences are
sorted by length before batching so little time goes into padding. Pooling (attention-masked mean) and
normalisation match the sentence-transformers pipeline.

Which MatMuls are quantised is a trade-off measured in bench/embed.py (docs/stores.md): quantising the
feed-forward layers too (`minilm-onnx-int8`) is fastest but short sentences such as "Yes." drift to cosine
~0.96 from the PyTorch vectors (activation outliers); quantising only the attention projections
(`minilm-onnx`, the default backend) kept every sentence we measured at cosine >= 0.99, with 7-bit weights
(`OnnxExportConfig.reduce_range`) on CPUs without VNNI.

Dynamic quantisation scales activations per batch, so a sentence's vector can differ very slightly with the
sentences sharing its batch; the same input list always gives the same output.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tldrlab.config import get_settings
from tldrlab.embed.base import length_batches
from tldrlab.embed.sentence_transformer import minilm_path, unit_rows
from tldrlab.errors import DependencyMissingError
from tldrlab.threads import current_threads
from tldrlab.tokenizers.plain import text_only

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
QuantizeMode = Literal["none", "attention", "all"]
ATTENTION_PROJECTIONS = (
    "/attention/self/query/",
    "/attention/self/key/",
    "/attention/self/value/",
    "/attention/output/dense/",
)
"""Name fragments of the attention projection MatMuls in the TorchScript export of a BERT encoder."""


@dataclass(frozen=True)
class OnnxExportConfig:
    """How the ONNX model is made; part of the cache key, so changing a field makes a new export."""

    opset: int = 17
    """ONNX opset for torch.onnx.export."""
    quantize: QuantizeMode = "attention"
    """int8 MatMuls: "none" (float32 graph), "attention" (Q/K/V/output projections), "all" (also the FFN)."""
    per_channel: bool = True
    """Per-channel weight scales (more accurate than one scale per tensor)."""
    reduce_range: bool = True
    """7-bit weights (onnxruntime's `reduce_range`). On x86 CPUs without VNNI (AVX2 only) onnxruntime's int8
    kernels add pairs of 8-bit products in 16 bits, which saturate: with 8-bit weights the sentence "ok" came
    out at cosine 0.989 from the PyTorch vector on an AMD EPYC (AVX2), 0.993 at worst with 7-bit (mean 0.9978
    -> 0.9980 over 208 sentences); on CPUs with VNNI, where 8-bit kept every sentence at >= 0.99 before, 7-bit
    was not measured."""


def default_cache_dir() -> Path:

    settings = get_settings()
    return settings.embed_cache_dir or settings.home / "cache" / "embed"


def _cache_key(model_dir: Path, config: OnnxExportConfig) -> str:
    import onnxruntime

    weights = model_dir / "model.safetensors"
    stat = weights.stat() if weights.exists() else None
    parts = [
        str(model_dir.resolve()),
        str(stat.st_size if stat else 0),
        str(stat.st_mtime_ns if stat else 0),
        json.dumps(config.__dict__, sort_keys=True),
        onnxruntime.__version__,
    ]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def export_onnx(model_dir: Path, out_path: Path, config: OnnxExportConfig) -> Path:
    """Export the transformer (token embeddings out) to ONNX, then quantise; written atomically."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Eager attention traces to plain MatMul/Softmax ops, which dynamic quantisation understands.
    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    sample = tokenizer(
        ["an example sentence", "another, somewhat longer example sentence"],
        padding=True,
        return_tensors="pt",
    )

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    axes = {0: "batch", 1: "tokens"}
    # Per-process names: two processes exporting at once (workers starting on a fresh home) must not write
    # into each other's intermediate file; the last atomic replace wins with an identical model.
    float_path = out_path.with_name(out_path.stem + f".float.{os.getpid()}.onnx.tmp")
    # The TorchScript tracer warns about Python-side shape checks in the attention code; the export is
    # checked against the PyTorch vectors instead (tests/embed, bench/embed.py).
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            TokenEmbeddings(model),
            tuple(sample[name] for name in INPUT_NAMES),
            str(float_path),
            input_names=list(INPUT_NAMES),
            output_names=["token_embeddings"],
            dynamic_axes={**{name: axes for name in INPUT_NAMES}, "token_embeddings": axes},
            opset_version=config.opset,
            dynamo=False,
        )
    tmp_path = out_path.with_name(out_path.name + f".{os.getpid()}.tmp")
    try:
        if config.quantize != "none":
            import onnx
            from onnxruntime.quantization import QuantType, quantize_dynamic

            nodes = None
            if config.quantize == "attention":
                graph = onnx.load(str(float_path), load_external_data=False).graph
                nodes = [
                    n.name
                    for n in graph.node
                    if n.op_type == "MatMul" and any(part in n.name for part in ATTENTION_PROJECTIONS)
                ]
            quantize_dynamic(
                str(float_path),
                str(tmp_path),
                weight_type=QuantType.QInt8,
                per_channel=config.per_channel,
                reduce_range=config.reduce_range,
                op_types_to_quantize=["MatMul"],
                nodes_to_quantize=nodes,
            )
        else:
            os.replace(float_path, tmp_path)
        os.replace(tmp_path, out_path)
    finally:
        for leftover in (float_path, tmp_path):
            leftover.unlink(missing_ok=True)
    return out_path


class OnnxEmbedder:
    """Mean-pooled, normalised MiniLM vectors computed by ONNX Runtime."""

    def __init__(
        self,
        name: str = "minilm-onnx",
        model_dir: Path | None = None,
        *,
        cache_dir: Path | None = None,
        config: OnnxExportConfig | None = None,
        threads: int | None = None,
    ) -> None:
        try:
            import onnxruntime

            from tokenizers import Tokenizer
        except ModuleNotFoundError as exc:
            raise DependencyMissingError(
                "the minilm-onnx embedder needs onnxruntime and onnx (pip install onnxruntime onnx)"
            ) from exc
        self.name = name
        self.config = config or OnnxExportConfig()
        model_dir = Path(model_dir) if model_dir is not None else minilm_path()
        cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.onnx_path = cache_dir / f"{name}-{_cache_key(model_dir, self.config)}.onnx"
        if not self.onnx_path.exists():
            export_onnx(model_dir, self.onnx_path, self.config)

        max_length = 256
        st_config = model_dir / "sentence_bert_config.json"
        if st_config.exists():  # match sentence-transformers' truncation, not the tokenizer file's default
            max_length = int(json.loads(st_config.read_text()).get("max_seq_length", max_length))
        # user text: a post's "[SEP]" or "[PAD]" is characters, not a control token (its [CLS] ... [SEP] stay)
        self.tokenizer = text_only(Tokenizer.from_file(str(model_dir / "tokenizer.json")))
        self.tokenizer.enable_truncation(max_length=max_length)
        self.tokenizer.no_padding()

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ONNX Runtime's default is one thread per host core; use the process's thread choice instead
        options.intra_op_num_threads = threads or current_threads().threads
        self.session = onnxruntime.InferenceSession(
            str(self.onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(list(texts))
        # Longest first, so each batch pads to similar lengths; results go back to input order.
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for chunk in length_batches([len(e.ids) for e in encodings], batch_size):
            width = max(len(encodings[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            types = np.zeros((len(chunk), width), dtype=np.int64)
            for row, i in enumerate(chunk):
                enc = encodings[i]
                n = len(enc.ids)
                ids[row, :n] = enc.ids
                mask[row, :n] = enc.attention_mask
                types[row, :n] = enc.type_ids
            (tokens,) = self.session.run(
                ["token_embeddings"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            )
            weights = mask[:, :, None].astype(np.float32)
            pooled = (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            out[chunk] = pooled
        return unit_rows(out)


def build_minilm_onnx(device: str = "cpu") -> OnnxEmbedder:
    """all-MiniLM-L6-v2 through ONNX Runtime, attention projections int8 (CPU)."""
    return OnnxEmbedder("minilm-onnx", config=OnnxExportConfig(quantize="attention"))


def build_minilm_onnx_int8(device: str = "cpu") -> OnnxEmbedder:
    """all-MiniLM-L6-v2 through ONNX Runtime, every weight MatMul int8 (fastest, least exact)."""
    return OnnxEmbedder("minilm-onnx-int8", config=OnnxExportConfig(quantize="all"))
