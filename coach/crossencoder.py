"""MiniLM fine-tuned as a cross-encoder, read on onnxruntime: (text, text) pairs in, one logit per pair out.

The grader has two such models (coach.mistakes, coach.credit), both trained once by `make setup` with torch and
exported to ONNX beside MiniLM's own export; here they run with MiniLM's tokenizer, as coach.embedder does, so the
app never imports torch.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from coach.embedder import word_pieces


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
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        encoded = self.tokenizer.encode_batch(pairs)
        feed = {"input_ids": [e.ids for e in encoded], "attention_mask": [e.attention_mask for e in encoded],
                "token_type_ids": [e.type_ids for e in encoded]}
        feed = {name: np.asarray(value, dtype=np.int64) for name, value in feed.items()}  # (n, word pieces)
        return self.session.run(["logits"], feed)[0].reshape(-1)
