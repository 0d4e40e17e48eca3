"""MiniLM fine-tuned as a cross-encoder, read on onnxruntime: (text, text) pairs in, one logit per pair out.

The grader has two such models (coach.mistakes, coach.credit), both trained once by `make setup` with torch and
exported to ONNX beside MiniLM's own export; here they run with MiniLM's tokenizer, as coach.embedder does, so the
app never imports torch.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from coach.embedder import word_pieces

# Pairs per onnxruntime run, taken in order of length so that a run pads little. Measured on the 335 training pairs
# test_credit reads (tests/test_credit.py; 2 cores): all in one run 19.1 s, runs of 8 in the given order 9.2 s,
# runs of 1/4/8/16 in order of length 9.8/7.1/7.1/7.8 s; the logits were the same to the last bit each way.
BATCH = 8


class CrossEncoder:
    """An exported classifier: pairs cut to `max_pieces` word pieces, as in its training."""

    def __init__(self, path: Path, max_pieces: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = min(2, os.cpu_count() or 1)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = word_pieces(max_pieces)

    def logits(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """(len(pairs),) float: the model's logit for each pair."""
        out = np.zeros(len(pairs), dtype=np.float32)
        if not pairs:
            return out
        encoded = self.tokenizer.encode_batch(pairs)
        feed = {"input_ids": [e.ids for e in encoded], "attention_mask": [e.attention_mask for e in encoded],
                "token_type_ids": [e.type_ids for e in encoded]}
        feed = {name: np.asarray(value, dtype=np.int64) for name, value in feed.items()}  # (n, longest pair)
        lengths = feed["attention_mask"].sum(axis=1)  # (n,) word pieces of each pair, padding aside
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), BATCH):
            chosen = order[start:start + BATCH]
            width = lengths[chosen].max()  # the run is padded to its own longest pair only
            run = {name: value[chosen, :width] for name, value in feed.items()}  # (<= BATCH, width)
            out[chosen] = self.session.run(["logits"], run)[0].reshape(-1)
        return out


def file_md5(path: Path) -> str:
    """The MD5 of a model file, in hex: which training run made it."""
    with path.open("rb") as model:
        return hashlib.file_digest(model, "md5").hexdigest()
