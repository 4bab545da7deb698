"""A GGUF file through llama.cpp's own kernels (llama-cpp-python's low-level API), for --backend llama.cpp.

The numbers are those of the file as it is deployed: llama.cpp's quantised matmuls (which quantise the
activations too), not the dequantised float32 weights the transformers backend runs. The engine's windows,
BOS and masks are unchanged: this module only turns a window's token ids into float32 logits at the input
positions asked for. Logits stay in llama.cpp's output buffer (read a block at a time by the engine, never
copied whole): a window is decoded a piece at a time, so the buffer holds a piece's rows of the vocabulary
(64 MB for pieces of PIECE = 64 positions of Gemma's 262,144 entries) whatever the window's length.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import GptlossError
from .backend import BorrowedLogits, Head

PIECE = 64  # tokens per llama.cpp step: its output buffer holds this many rows of the vocabulary
MAX_PIECE = 512  # most tokens per llama.cpp step (llama-perplexity's default n_ubatch)
INSTALL = "pip install 'gptloss[llama-cpp]' (builds llama.cpp from source; see the README)"


def import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as error:
        raise GptlossError(f"--backend llama.cpp needs llama-cpp-python: {INSTALL}") from error
    except (OSError, RuntimeError) as error:  # the package is there but its shared library does not load
        raise GptlossError(f"llama-cpp-python is installed but its library does not load: {error}") from error
    return llama_cpp


class LlamaCppBackend:
    """A loaded GGUF model and one llama.cpp context, sized for the longest window seen so far, as a Backend:
    logits at a batch's scored positions, window by window and, within a window, a piece of PIECE tokens at
    a time (llama.cpp steps of the same length from the window's start: where the steps fall changes the
    numbers in the last digits, so they fall the same way in every run and every command). With windows of a
    multiple of PIECE this reproduces llama-perplexity's numbers. Each piece's logits are lent (llama.cpp's
    output buffer), valid until the next."""

    in_pieces = True
    _log_sink: ClassVar[Any] = None  # llama.cpp's log callback: it must outlive every call into llama.cpp

    def __init__(self, path: Path, threads: int) -> None:
        llama_cpp = import_llama_cpp()
        self._quiet(llama_cpp)
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            raise GptlossError(f"{path}: llama.cpp could not load this GGUF file")
        self.lib, self.handle, self.threads = llama_cpp, model, threads
        vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(vocab))
        self.n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(model))
        self.ctx: Any = None
        self.n_ctx = self.piece = 0
        self.batch = llama_cpp.llama_batch_init(MAX_PIECE, 0, 1)

    @classmethod
    def _quiet(cls, llama_cpp: Any) -> None:
        """Send llama.cpp's log lines nowhere (it prints every tensor it loads on stderr), once a process."""
        if cls._log_sink is None:
            cls._log_sink = llama_cpp.llama_log_callback(lambda level, text, data: None)
            llama_cpp.llama_log_set(cls._log_sink, ctypes.c_void_p(0))

    @property
    def context_length(self) -> int:
        return self.n_ctx_train

    @property
    def vocab_size(self) -> int:
        return self.n_vocab

    def heads(
        self, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
    ) -> Iterator[tuple[slice, Head]]:
        """(positions of the batch's M, their borrowed logits) in order; each valid until the next."""
        at_rows, at_cols = rows.cpu().numpy(), cols.cpu().numpy()
        head, done = BorrowedLogits(self.n_vocab), 0
        for b in range(ids.shape[0]):
            real = mask[b].cpu().numpy().astype(bool)  # (T,)
            pad = int(np.argmax(real))  # left padding (0 when padded on the right)
            want = at_cols[at_rows == b] - 1 - pad  # (k,) input positions whose logits predict the targets
            for k, logits in self.logits(ids[b].cpu().numpy()[real], want, PIECE):
                yield slice(done, done + k), Head(torch.from_numpy(logits), head)
                done += k

    def _context(self, length: int, piece: int) -> Any:
        """A context that holds `length` tokens, decoded `piece` at a time (a new one when the last was too
        small or stepped otherwise), its cache emptied."""
        lib = self.lib
        if not 0 < piece <= MAX_PIECE:  # the batch holds MAX_PIECE tokens
            raise ValueError(f"piece {piece}: between 1 and {MAX_PIECE} tokens")
        if self.ctx is None or length > self.n_ctx or piece != self.piece:
            if self.ctx is not None:
                lib.llama_free(self.ctx)
            params = lib.llama_context_default_params()
            params.n_ctx = max(length, self.n_ctx)
            params.n_batch = params.n_ubatch = params.n_outputs_max = piece
            params.n_seq_max = 1
            params.n_threads = params.n_threads_batch = self.threads
            params.no_perf = True
            self.ctx = lib.llama_init_from_model(self.handle, params)
            if not self.ctx:
                raise GptlossError(f"llama.cpp could not make a context of {length} tokens")
            self.n_ctx, self.piece = params.n_ctx, piece
        lib.llama_memory_clear(lib.llama_get_memory(self.ctx), True)
        return self.ctx

    def logits(self, ids: np.ndarray, want: np.ndarray, piece: int) -> Iterator[tuple[int, np.ndarray]]:
        """Decode ids (n,) from an empty cache, `piece` tokens per llama.cpp step, and yield (k, logits (k, V)
        float32) for the increasing input positions `want`, k rows at a time in order. Each array is a view of
        llama.cpp's output buffer, valid until the next step of this iterator.

        Where the steps start changes the numbers (llama.cpp's kernels give a row slightly different values
        in different step layouts, by up to ~1 in a logit on Gemma's Q4_K_M), so the layout is the caller's
        choice: the llama.cpp protocol lays its steps out as llama-perplexity does."""
        ctx, lib, batch = self._context(len(ids), piece), self.lib, self.batch
        need = np.zeros(len(ids), dtype=bool)
        need[want] = True
        for start in range(0, len(ids), piece):
            end = min(start + piece, len(ids))
            batch.n_tokens = end - start
            for i, pos in enumerate(range(start, end)):
                batch.token[i], batch.pos[i] = int(ids[pos]), pos
                batch.n_seq_id[i], batch.seq_id[i][0], batch.logits[i] = 1, 0, int(need[pos])
            if lib.llama_decode(ctx, batch) != 0:
                raise GptlossError(f"llama.cpp could not decode tokens {start}..{end - 1} of a window")
            k = int(need[start:end].sum())
            if k:
                yield k, np.ctypeslib.as_array(lib.llama_get_logits(ctx), shape=(k, self.n_vocab))

    def close(self) -> None:
        if self.ctx is not None:
            self.lib.llama_free(self.ctx)
            self.ctx = None
        if self.handle is not None:
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_model_free(self.handle)
            self.handle = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: the library may be gone already
            pass
