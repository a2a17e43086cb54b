"""Parsing untrusted files in a child process with time and memory limits.

A malicious or broken upload (a PDF decompression bomb, a pathological HTML file) must fail its
own ingestion, not the worker that runs it. :func:`parse_isolated` runs the parsers of
:mod:`retrieval.parsers` in ``python -m retrieval.isolated``, capped in address space
(``RLIMIT_AS``) and in wall-clock time, and hands the documents back one JSON line at a time,
so a collection of tens of thousands of records never sits in memory at once.

Protocol (child to parent, one JSON object per line): ``{"format": name}`` once, then
``{"doc": {...}}`` per document and ``{"error": message}`` per bad record; a fatal problem is an
``{"error": ..., "fatal": true}`` line and exit status 1. The lines go to a temporary file and
are read back once the child has exited, so the time limit covers parsing only.

A parser exploit gets little to work with: the child inherits no secrets (its environment is
built from an allow-list, :func:`child_environment`: no SECRET_KEY, DATABASE_URL, REDIS_URL, API
keys or passwords) and limits itself, before it opens the file, in file size (``RLIMIT_FSIZE``:
what it writes, its output included, so a decompression bomb cannot fill the disk), processes
(``RLIMIT_NPROC`` 0: the parsers need no process or thread) and core dumps (none). The limits
are set by the child itself, not by ``preexec_fn``, which may deadlock a parent that runs
threads (Celery workers do). RLIMIT_NPROC is not enforced for root, nor for a process with
CAP_SYS_RESOURCE: the production image runs as an unprivileged user, where it holds.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from retrieval.errors import DocumentError
from retrieval.types import Document, DocumentMeta, Section

DEFAULT_TIMEOUT_S = 300.0
DEFAULT_MEMORY_MB = 1536
# What the child may write (its JSON output included): at least this, and at least 4x the input
# plus 16 MB (JSON escapes non-ASCII text as \uXXXX, so output can outgrow its input ~3x).
DEFAULT_OUTPUT_MB = 256
_SNIFF_BYTES = 8192
# The child's exit status when it hit RLIMIT_FSIZE (CPython ignores SIGXFSZ, so writes fail
# with EFBIG instead of the process being killed).
_EXIT_OUTPUT_LIMIT = 3
# Passed to the child: enough to run Python and decode text, nothing that could carry a secret.
_ENV_ALLOWED = frozenset(
    {
        "PATH",
        "HOME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TEMP",
        "TMP",
        "PYTHONPATH",
        "PYTHONHASHSEED",
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "PYTHONDONTWRITEBYTECODE",
        "VIRTUAL_ENV",
        "LD_LIBRARY_PATH",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
    }
)
_ENV_ALLOWED_PREFIXES = ("LC_",)


def child_environment(parent: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parser child's environment: the allow-listed variables of ``parent`` (default: this
    process's environment), one OpenMP thread and unbuffered output."""
    source = os.environ if parent is None else parent
    env = {
        name: value
        for name, value in source.items()
        if name in _ENV_ALLOWED or name.startswith(_ENV_ALLOWED_PREFIXES)
    }
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def document_to_json(doc: Document) -> dict[str, Any]:
    return {
        "meta": asdict(doc.meta),
        "sections": [[list(s.path), s.text] for s in doc.sections],
        "source_name": doc.source_name,
        "warnings": list(doc.warnings),
    }


def document_from_json(data: dict[str, Any]) -> Document:
    return Document(
        meta=DocumentMeta(**data["meta"]),
        sections=[Section(path=tuple(path), text=text) for path, text in data["sections"]],
        source_name=data.get("source_name", ""),
        warnings=tuple(data.get("warnings", ())),
    )


def parse_isolated(
    path: Path,
    *,
    source_name: str,
    format: str = "auto",
    meta: DocumentMeta | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    output_mb: int | None = None,
    on_format: Any = None,
) -> Iterator[Document | DocumentError]:
    """Yield the documents of ``path`` (and a :class:`DocumentError` per bad record).

    Raises :class:`DocumentError` when the whole file cannot be parsed: unsupported content, a
    parser error, more than ``timeout_s`` seconds, more than ``memory_mb`` MB, or more than
    ``output_mb`` MB of output (default: see ``DEFAULT_OUTPUT_MB``). ``source_name``
    (the uploader's file name) is only shown in messages and used to tell Markdown from text;
    it is never opened. ``on_format`` is called with the detected format.
    """
    request = {
        "path": str(path),
        "source_name": source_name,
        "format": format,
        "meta": asdict(meta) if meta is not None else None,
        "memory_mb": memory_mb,
        "cpu_s": int(timeout_s) + 5,
    }
    if output_mb is None:
        try:
            size_mb = path.stat().st_size >> 20
        except OSError:  # the child reports a missing file as this file's failure
            size_mb = 0
        output_mb = max(DEFAULT_OUTPUT_MB, 4 * size_mb + 16)
    request["output_mb"] = output_mb

    env = child_environment()
    # The child writes its output to a temporary file and the limit counts its own run only:
    # storing the documents afterwards (minutes for a large collection) never eats into it.
    with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "retrieval.isolated", json.dumps(request)],
            stdout=output,
            stderr=errors,
            cwd=str(Path(__file__).resolve().parent.parent),
            env=env,
        )
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise DocumentError(
                f"{source_name}: parsing took longer than {timeout_s:g} s; stopped"
            ) from None
        errors.seek(0)
        stderr = errors.read(65536).decode("utf-8", "replace")
        if process.returncode == _EXIT_OUTPUT_LIMIT:
            # Its last line is cut short: nothing of this file is trusted.
            raise DocumentError(
                f"{source_name}: parsing produced more than {output_mb} MB of text; stopped"
            )
        output.seek(0)
        fatal: str | None = None
        for raw in output:
            message = json.loads(raw)
            if "doc" in message:
                yield document_from_json(message["doc"])
            elif message.get("fatal"):
                fatal = str(message["error"])
            elif "error" in message:
                yield DocumentError(str(message["error"]))
            elif "format" in message and on_format is not None:
                on_format(message["format"])
    if fatal is not None:
        raise DocumentError(fatal)
    if process.returncode != 0:
        if "MemoryError" in stderr or process.returncode in (-9, 137):
            raise DocumentError(
                f"{source_name}: parsing needed more than {memory_mb} MB of memory; stopped"
            )
        raise DocumentError(f"{source_name}: the parser failed (exit status {process.returncode})")


def _emit(message: dict[str, Any]) -> None:
    # Straight to the file descriptor, looping on short writes: at RLIMIT_FSIZE the write that
    # crosses it is cut short and the next fails with EFBIG, whereas an unbuffered
    # sys.stdout drops the rest of a short write without a word.
    data = memoryview((json.dumps(message) + "\n").encode())
    while data:
        data = data[os.write(1, data) :]


def _child(request: dict[str, Any]) -> int:
    """The child's side: limit itself, parse, stream documents as JSON lines."""
    import resource

    memory = int(request["memory_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (int(request["cpu_s"]), int(request["cpu_s"])))
    output = int(request.get("output_mb", DEFAULT_OUTPUT_MB)) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (output, output))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    from retrieval.parsers import iter_meditron_jsonl, parse_bytes, sniff_format

    path = Path(request["path"])
    name = request["source_name"] or "document"
    meta = DocumentMeta(**request["meta"]) if request.get("meta") else None
    try:
        fmt = request["format"]
        if fmt == "auto":
            with open(path, "rb") as handle:
                fmt = sniff_format(handle.read(_SNIFF_BYTES), source_name=name)
        _emit({"format": fmt})
        if fmt == "meditron-jsonl":
            # Streamed line by line: a 37K-record file never has to fit in memory.
            found = False
            with open(path, "rb") as handle:
                for item in iter_meditron_jsonl(iter(handle), source_name=name):
                    found = True
                    if isinstance(item, DocumentError):
                        _emit({"error": str(item)})
                    else:
                        _emit({"doc": document_to_json(item)})
            if not found:
                raise DocumentError(f"{name}: no records")
            return 0
        result = parse_bytes(path.read_bytes(), format=fmt, meta=meta, source_name=name)
        for error in result.errors:
            _emit({"error": str(error)})
        for doc in result.documents:
            _emit({"doc": document_to_json(doc)})
        return 0
    except DocumentError as exc:
        _emit({"error": str(exc), "fatal": True})
        return 1
    except MemoryError:
        sys.stderr.write("MemoryError\n")
        return 1
    except Exception as exc:  # a parser bug: report it as this file's failure
        _emit({"error": f"{name}: could not be parsed ({type(exc).__name__})", "fatal": True})
        return 1


def _main(request: dict[str, Any]) -> int:
    try:
        return _child(request)
    except OSError as exc:
        if exc.errno == errno.EFBIG:  # RLIMIT_FSIZE, possibly while reporting another error
            return _EXIT_OUTPUT_LIMIT
        raise


if __name__ == "__main__":
    sys.exit(_main(json.loads(sys.argv[1])))
