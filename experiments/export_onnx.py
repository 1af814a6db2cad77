"""Export a saved classifier (dense, pruned or compacted) to ONNX, for ONNX Runtime.

    python experiments/export_onnx.py --model runs/e5-small-embedded-s0.25-kd-topk-fp32/compacted \\
        --output onnx/s25/model.onnx

Writes the .onnx file (dynamic batch and length; inputs input_ids and attention_mask,
int64; output logits, float32) and copies the model's config.json (its labels) and
tokenizer files beside it. Then ONNX Runtime and jaxprune classify the same headlines
(the first --check-count texts of --check-file, by default the embedded Marathi corpus)
and the largest logit difference is printed; over --tolerance it is an error.

With --quantize int8 the float32 file is also quantised by ONNX Runtime's dynamic quantisation
(int8 weights, per output channel unless --per-channel off) to model.int8.onnx beside it, and
the check prints, for the int8 file against the float32 one, the largest logit difference and
the share of texts whose predicted class is the same. experiments/evaluate.py --model
FILE.onnx scores either file on a labelled CSV.
docs/library.md shows how to serve the file. Bad input ends with one line on stderr and exit
status 2.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __name__ == "__main__":  # run as a file: the scripts' folders import from the checkout's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.cli_args import Parser, add_column_arguments, positive_number, quiet_libraries, run_script, whole_number


def make_parser() -> Parser:
    p = Parser(description=__doc__)
    p.add_argument("--model", required=True, help="classifier folder (config.json, model.safetensors, tokenizer)")
    p.add_argument("--output", required=True, type=Path, help="the .onnx file to write")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="weights and matmuls (float16 halves the file; the check runs for float32 only)")
    p.add_argument("--quantize", choices=("int8",), default=None,
                   help="also write the dynamically quantised model.int8.onnx beside --output (float32 only); "
                        "default: none")
    p.add_argument("--per-channel", choices=("on", "off"), default="on",
                   help="with --quantize: one int8 scale per output channel of each weight, not one per matrix")
    p.add_argument("--weight-bits", type=int, choices=(7, 8), default=7,
                   help="with --quantize: bits of the int8 weights; 7 is safe on every x86 CPU, 8 is more "
                        "precise and needs VNNI (avx512_vnni or avx_vnni in /proc/cpuinfo) or an ARM CPU, where "
                        "8-bit products cannot overflow ONNX Runtime's 16-bit sums")
    p.add_argument("--ort-fusion", choices=("on", "off"), default="on",
                   help="ONNX Runtime's BERT fusions (one Attention node per layer; the file then runs in ONNX "
                        "Runtime only); off: standard ONNX ops only")
    p.add_argument("--check-file", type=Path, default=None,
                   help="CSV of texts for the logit check (default: the embedded Marathi headline corpus)")
    add_column_arguments(p)
    p.add_argument("--check-count", type=whole_number(0), default=64, help="texts to check (0: no check)")
    p.add_argument("--max-length", type=whole_number(1), default=128, help="tokens per text in the check")
    p.add_argument("--tolerance", type=positive_number, default=1e-4,
                   help="largest |ONNX Runtime - jaxprune| logit difference accepted")
    return p


def main(argv=None) -> int:
    quiet_libraries()
    parser = make_parser()
    args = parser.parse_args(argv)
    return run_script(lambda: _export(args), interrupted="interrupted; nothing was written (the file is renamed "
                                                         "into place only when complete)", parser=parser)


def _export(args) -> None:
    from jaxprune.data import OFFLINE_CORPUS, read_table
    from jaxprune.export import export_onnx

    texts: list[str] = []
    if args.check_count and args.dtype == "float32":
        table = read_table(args.check_file or OFFLINE_CORPUS, args.text_column, args.label_column)
        texts = list(table.texts[: args.check_count])
    start = time.perf_counter()
    result = export_onnx(args.model, args.output, dtype=args.dtype, check_texts=texts, max_length=args.max_length,
                         tolerance=args.tolerance, quantize=args.quantize, per_channel=args.per_channel == "on",
                         reduce_range=args.weight_bits == 7,
                         ort_fusion=args.ort_fusion == "on")
    size_mb = _megabytes(result.path)
    print(f"wrote {result.path} ({result.num_params:,} parameters, {result.dtype}, {size_mb:.0f} MB) in "
          f"{time.perf_counter() - start:.0f} s; beside it: {', '.join(result.copied) or 'no tokenizer files'}")
    if result.max_abs_diff is None:
        print("no logit check (float16 export, or --check-count 0)")
    else:
        print(f"ONNX Runtime vs jaxprune on {len(texts)} texts: max |logit difference| "
              f"{result.max_abs_diff:.2e} (tolerance {args.tolerance:g}): ok")
    if result.int8_path is not None:
        print(f"wrote {result.int8_path} ({args.weight_bits}-bit weights, per "
              f"{'channel' if args.per_channel == 'on' else 'matrix'}, "
              f"{_megabytes(result.int8_path):.1f} MB, {_megabytes(result.int8_path) / size_mb:.0%} of float32)")
    if result.int8_check is not None:
        check = result.int8_check
        print(f"int8 vs float32 in ONNX Runtime on {check.count} texts: argmax agreement {check.argmax_agreement:.2%} "
              f"({round(check.argmax_agreement * check.count)}/{check.count}), max |logit difference| "
              f"{check.max_abs_diff:.2e}")


def _megabytes(path: Path) -> float:
    """An ONNX file's size with its external weights (FILE.onnx.data), if any."""
    data = path.with_name(path.name + ".data")
    return (path.stat().st_size + (data.stat().st_size if data.is_file() else 0)) / 1e6

if __name__ == "__main__":
    from experiments.cli_args import exit_process

    exit_process(main())
