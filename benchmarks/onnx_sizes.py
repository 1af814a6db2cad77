"""Sizes on disk of exported classifiers: float32, float16 and int8 ONNX files, with and without
vocabulary pruning.

    python benchmarks/onnx_sizes.py dense=TEACHER_FOLDER s25=RUN/compacted s75=RUN/compacted \\
        --full-vocab 250037

Each model folder is exported as it is (``jaxprune.export.to_onnx``: float32 and float16, and the
float32 file quantised by ``jaxprune.export_int8.quantize_int8``, the settings
``experiments/export_onnx.py --quantize int8`` uses) and its files weighed (``FILE.onnx`` with its
``FILE.onnx.data``, if any) in a scratch folder that is then removed. With ``--full-vocab N`` each
model is also exported with its word-embedding table grown back to ``N`` rows (e5-small's
vocabulary before pruning: 250,037), the rows added random: a file's size depends on its shapes,
not on its weights' values. The tokenizer files that serving also needs are listed beside.

Results go to ``benchmarks/results/onnx_sizes_<date>.{json,md}`` (sizes in MB, 10^6 bytes).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a file: the scripts' folders import from the checkout's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.cli_args import Parser, run_script, whole_number

RESULTS = Path(__file__).resolve().parent / "results"
FORMATS = ("float32", "float16", "int8")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", metavar="NAME=FOLDER",
                        help="classifier folders (dense, pruned or compacted), each named for the table")
    parser.add_argument("--full-vocab", type=whole_number(1), default=None,
                        help="also weigh each model with this many word-embedding rows (its vocabulary before "
                             "pruning); default: no")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    for model in args.models:
        if "=" not in model or not model.split("=", 1)[0]:
            parser.error(f"{model!r} is not NAME=FOLDER; pass e.g. s75=results/s75/seed0/compacted")
    return args


def file_megabytes(path: Path) -> float:
    """An ONNX file's size with its external weights (``FILE.onnx.data``), if any, in MB."""
    data = path.with_name(path.name + ".data")
    return (path.stat().st_size + (data.stat().st_size if data.is_file() else 0)) / 1e6


def with_vocabulary(params: dict, config, rows: int, seed: int = 0) -> tuple[dict, Any]:
    """``params`` and ``config`` with ``rows`` word-embedding rows: the model's own first, then random
    ones (for sizes only: a model whose vocabulary was not pruned has the same shapes)."""
    import numpy as np

    from jaxprune.errors import JaxpruneError

    table = np.asarray(params["embeddings"]["word_embeddings"]["embedding"])
    if rows < len(table):
        raise JaxpruneError(f"--full-vocab {rows} is smaller than the model's {len(table)} rows; pass the "
                            f"vocabulary size before pruning")
    extra = np.random.default_rng(seed).normal(0.0, 0.02, (rows - len(table), table.shape[1])).astype(table.dtype)
    embeddings = {**params["embeddings"], "word_embeddings": {"embedding": np.concatenate([table, extra])}}
    return {**params, "embeddings": embeddings}, config.replace(vocab_size=rows)


def weigh(params: dict, config, scratch: Path) -> dict[str, float]:
    """MB of the float32, float16 and int8 files of one model, written in ``scratch`` and removed."""
    import onnx

    from jaxprune.export import to_onnx
    from jaxprune.export_int8 import quantize_int8

    sizes = {}
    for dtype in ("float32", "float16"):
        path = scratch / f"model.{dtype}.onnx"
        onnx.save_model(to_onnx(params, config, dtype=dtype), path)
        sizes[dtype] = file_megabytes(path)
    int8 = quantize_int8(scratch / "model.float32.onnx", scratch / "model.int8.onnx")
    sizes["int8"] = file_megabytes(int8)
    for path in scratch.iterdir():
        path.unlink()
    return sizes


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from benchmarks._common import versions, write_results
    from jaxprune.errors import JaxpruneError
    from jaxprune.models.bert import count_params
    from jaxprune.models.loading import from_pretrained

    args = parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="onnx-sizes-") as scratch:
        for name, folder in (model.split("=", 1) for model in args.models):
            if not (Path(folder) / "config.json").is_file():
                raise JaxpruneError(f"{folder} has no config.json; pass a classifier folder as {name}=FOLDER")
            params, config = from_pretrained(folder)
            tokenizer = Path(folder) / "tokenizer.json"
            shapes = [("pruned" if args.full_vocab else "as saved", params, config)]
            if args.full_vocab:
                shapes.append(("full", *with_vocabulary(params, config, args.full_vocab)))
            for vocabulary, model_params, model_config in shapes:
                print(f"[onnx_sizes] {name}, vocabulary {vocabulary} ({model_config.vocab_size:,} rows)", flush=True)
                rows.append({"model": name, "folder": str(folder), "vocabulary": vocabulary,
                             "vocab_size": model_config.vocab_size, "params": count_params(model_params),
                             "tokenizer_json_mb": (tokenizer.stat().st_size / 1e6
                                                   if vocabulary != "full" and tokenizer.is_file() else None),
                             **weigh(model_params, model_config, Path(scratch))})
    payload = {"command": "python benchmarks/onnx_sizes.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "date": datetime.date.today().isoformat(), "versions": versions(), "rows": rows}
    write_results(args.out, f"onnx_sizes_{payload['date']}", payload, markdown(payload))
    return payload


def markdown(payload: dict[str, Any]) -> str:
    lines = [f"# ONNX file sizes ({payload['date']})", "", f"`{payload['command']}`", "",
             "| model | vocabulary (rows) | parameters | float32 MB | float16 MB | int8 MB | tokenizer.json MB |",
             "|---|---|---|---|---|---|---|"]
    for row in payload["rows"]:
        tokenizer = "-" if row["tokenizer_json_mb"] is None else f"{row['tokenizer_json_mb']:.2f}"
        lines.append(f"| {row['model']} | {row['vocabulary']} ({row['vocab_size']:,}) | {row['params']:,} | "
                     + " | ".join(f"{row[f]:.2f}" for f in FORMATS) + f" | {tokenizer} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(run_script(main))
