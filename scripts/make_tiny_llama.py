"""Build a tiny random Llama-2-shaped model for vLLM protocol tests (no hub download).

Meditron is a Llama-2 base model: SentencePiece BPE tokenizer with byte fallback, ``<s>``/``</s>``
and no chat template. This script makes a model of the same architecture and tokenizer kind,
small enough to start in seconds on a CPU:

1. write a training text: a generated pseudo-clinical corpus (fixed seed), plus the text of any
   files given as arguments (e.g. guideline markdown);
2. train a SentencePiece BPE tokenizer on it with Llama-2's settings (unk=0, bos=1, eos=2, byte
   fallback, split digits) and convert it to ``tokenizer.json`` with transformers, checking that
   both encode the same ids;
3. build a 2-layer ``LlamaForCausalLM`` (float32) from a fixed seed. The output rows of the
   special and byte-fallback tokens are zeroed so that greedy decoding emits whole word pieces
   and never ends early: tests can rely on getting ``max_tokens`` tokens of valid text;
4. save it as a Hugging Face model folder with a ``tiny-llama.json`` manifest, written into a
   temporary folder that is moved into place last. A run whose manifest matches does nothing.

Run it with the vLLM venv's python (it has sentencepiece and torch)::

    .venv-vllm/bin/python scripts/make_tiny_llama.py [--dest var/models/tiny-llama] [FILE.md ...]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFEST_NAME = "tiny-llama.json"
# Bump when the output of this script changes for the same inputs.
FORMAT = 1
SEED = 1234
VOCAB_SIZE = 1024
ARCH: dict[str, Any] = {
    "hidden_size": 128,
    # head_dim 64: the CPU attention kernels support a fixed set of head sizes that includes 64.
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "intermediate_size": 344,
    "num_hidden_layers": 2,
    # Meditron-7B's context; servers in tests cap it lower with --max-model-len.
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
}
# A larger random model of the same kind, for browser tests against a real vLLM server: on a
# 2-core CPU it streams at a human-watchable pace (tens of tokens per second, not hundreds),
# so a test can reload or cancel mid-answer, and its context holds a full RAG prompt.
SMALL_ARCH: dict[str, Any] = {
    **ARCH,
    "hidden_size": 768,
    "num_attention_heads": 12,
    "num_key_value_heads": 12,
    "intermediate_size": 2048,
    "num_hidden_layers": 8,
    "max_position_embeddings": 4096,
}
ARCHS = {"tiny": ARCH, "small": SMALL_ARCH}

_SUBJECTS = [
    "Adults with atrial fibrillation",
    "Patients with chronic kidney disease",
    "Children with acute asthma",
    "Pregnant women with hypertension",
    "Older adults with heart failure",
    "Patients with type 2 diabetes",
    "People with major burns",
    "Patients with community-acquired pneumonia",
]
_VERBS = ["should receive", "may be offered", "should not receive", "are recommended to start"]
_TREATMENTS = [
    "oral anticoagulation",
    "an ACE inhibitor or ARB",
    "inhaled corticosteroids",
    "a beta-blocker",
    "metformin 500 mg twice daily",
    "fluid resuscitation at 2-4 mL/kg/%TBSA",
    "amoxicillin for 5 days",
    "blood pressure below 130/80 mmHg",
]
_CONDITIONS = [
    "when the CHA2DS2-VASc score is 2 or more",
    "if eGFR is below 60 mL/min/1.73 m2",
    "unless contraindicated",
    "after shared decision-making",
    "within 24 hours of admission",
    "when symptoms persist beyond 48 hours",
]
_STRENGTHS = ["(Class I, Level A)", "(Class IIa, Level B)", "(strong recommendation)", "(1B)"]


def generated_corpus(lines: int = 4000) -> str:
    """Pseudo-clinical sentences in the style of guideline recommendations (fixed seed)."""
    rng = random.Random(SEED)
    out = []
    for i in range(lines):
        sentence = (
            f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_TREATMENTS)} "
            f"{rng.choice(_CONDITIONS)} {rng.choice(_STRENGTHS)}."
        )
        if i % 10 == 0:
            out.append(f"### Recommendation {i // 10 + 1}")
        if i % 25 == 0:
            out.append(f"User: {rng.choice(_SUBJECTS).lower()}? Assistant: see [S{i % 7 + 1}].")
        out.append(sentence)
    return "\n".join(out) + "\n"


def training_text(files: list[Path]) -> str:
    parts = [generated_corpus()]
    for path in sorted(files):
        parts.append(path.read_text(encoding="utf-8"))
    return "\n".join(parts)


def train_tokenizer(text: str, workdir: Path) -> Path:
    """Train a Llama-2-style SentencePiece BPE model on ``text``; return its .model path."""
    import sentencepiece as spm

    # SentencePiece trains on sentences (lines); long markdown lines are fine up to this cap.
    sentences = [line for line in text.splitlines() if line.strip()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        model_type="bpe",
        vocab_size=VOCAB_SIZE,
        # Llama-2's choices: ids 0/1/2 for unk/bos/eos, no pad, bytes for unseen characters.
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        character_coverage=0.9995,
        max_sentence_length=16384,
        # One thread and no sampling keep the trained model byte-identical between runs.
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    path = workdir / "tokenizer.model"
    path.write_bytes(model.getvalue())
    return path


def build(dest: Path, files: list[Path], arch: dict[str, Any] = ARCH) -> dict[str, object]:
    import sentencepiece as spm
    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    text = training_text(files)
    spec = {
        "format": FORMAT,
        "seed": SEED,
        "vocab_size_target": VOCAB_SIZE,
        "arch": arch,
        "corpus_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "sentencepiece": spm.__version__,
    }
    manifest_path = dest / MANIFEST_NAME
    if manifest_path.is_file():
        try:
            old = json.loads(manifest_path.read_text())
        except ValueError:
            old = {}
        if old.get("spec") == spec and (dest / "model.safetensors").is_file():
            print(f"make_tiny_llama: {dest} is up to date")
            return old

    started = time.perf_counter()
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tiny-llama-", dir=dest.parent))
    try:
        # 1-2. Tokenizer: SentencePiece model, converted to tokenizer.json for fast loading.
        sp_path = train_tokenizer(text, work)
        tokenizer = LlamaTokenizer.from_pretrained(
            work, legacy=False, add_bos_token=True, add_eos_token=False
        )
        tokenizer.model_max_length = arch["max_position_embeddings"]
        sp = spm.SentencePieceProcessor(model_file=str(sp_path))
        for sample in ("Adults with AF should receive anticoagulation 2024.", "ÿ naïve 😀 ###"):
            want = [sp.bos_id(), *sp.encode(sample)]
            got = tokenizer(sample)["input_ids"]
            if got != want:
                raise SystemExit(f"tokenizer conversion differs on {sample!r}: {got} != {want}")
        tokenizer.save_pretrained(work)

        # 3. Model: random float32 weights from a fixed seed.
        torch.manual_seed(SEED)
        config = LlamaConfig(
            vocab_size=sp.get_piece_size(),
            bos_token_id=sp.bos_id(),
            eos_token_id=sp.eos_id(),
            pad_token_id=None,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            hidden_act="silu",
            dtype="float32",
            **arch,
        )
        model = LlamaForCausalLM(config).eval()  # float32: torch's default dtype
        silent = [i for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_byte(i)]
        silent += [sp.unk_id()]
        with torch.no_grad():
            model.lm_head.weight[silent] = 0.0
        model.save_pretrained(work, safe_serialization=True)

        # 4. Manifest last, then swap the folder into place.
        manifest: dict[str, object] = {
            "spec": spec,
            "vocab_size": sp.get_piece_size(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "sha256": hashlib.sha256((work / "model.safetensors").read_bytes()).hexdigest(),
            "tokenizer_sha256": hashlib.sha256(sp_path.read_bytes()).hexdigest(),
            "training_files": [str(p) for p in sorted(files)],
        }
        (work / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        # mkdtemp and safetensors create owner-only modes; the server may run as another user.
        work.chmod(0o755)
        for path in work.iterdir():
            path.chmod(0o644)
        if dest.exists():
            shutil.rmtree(dest)
        work.rename(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    print(
        f"make_tiny_llama: wrote {dest} ({manifest['parameters']:,} parameters, "
        f"vocab {manifest['vocab_size']}) in {elapsed:.1f} s"
    )
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dest", type=Path, default=REPO_ROOT / "var" / "models" / "tiny-llama", help="output"
    )
    parser.add_argument(
        "--size", choices=sorted(ARCHS), default="tiny", help="tiny (protocol tests) or small"
    )
    parser.add_argument("files", nargs="*", type=Path, help="extra text files to train on")
    args = parser.parse_args(argv)
    for path in args.files:
        if not path.is_file():
            parser.error(f"not a file: {path}")
    build(args.dest.resolve(), [p.resolve() for p in args.files], ARCHS[args.size])
    return 0


if __name__ == "__main__":
    sys.exit(main())
