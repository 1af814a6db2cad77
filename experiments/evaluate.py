"""Evaluate a saved classifier on a MahaNews-format CSV.

    python experiments/evaluate.py --model runs/e5-small-mahanews-shc-s0.5-kd-topk-fp32/compacted \\
        --data-file ../shared/data/mahanews-shc/SHC_Valid.csv

The model is any jaxprune or Hugging Face BERT classifier folder (dense,
pruned or compacted) with its tokenizer; the CSV's labels are mapped by the
model's label names. Writes accuracy, macro-F1 and per-class F1 as JSON next to
the model, to <model folder>/eval_<csv name>.json (above:
runs/e5-small-mahanews-shc-s0.5-kd-topk-fp32/compacted/eval_SHC_Valid.json) unless
--output names another file, and prints a summary. Bad input ends with one line on
stderr and exit status 2.

The model may also be an exported ONNX file (float32, float16 or int8, as
experiments/export_onnx.py writes them), run by ONNX Runtime on the CPU: its labels
and tokenizer are the config.json and tokenizer files beside it, the metrics are the
same, and the JSON goes beside it as eval_<file name>_<csv name>.json:

    python experiments/evaluate.py --model onnx/s25/model.int8.onnx --data-file SHC_Valid.csv

--eval-split-of RUN_FOLDER, instead of --data-file, scores on the eval split of a finished
experiments/run.py run, rebuilt as the run built it from its results.json (the same data files,
text repairs, eval fraction, teacher seed and max length; relative data paths are read from the
folder the run was started in), so a model exported from that run is scored on exactly the texts
its recorded accuracy is:

    python experiments/evaluate.py --model onnx/s75/model.int8.onnx \\
        --eval-split-of results/table1-recipe/s75-kd/seed0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if __name__ == "__main__":  # run as a file: the scripts' folders import from the checkout's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.cli_args import PRECISIONS, Parser, add_column_arguments, quiet_libraries, run_script, whole_number
from jaxprune.errors import JaxpruneError


def make_parser() -> Parser:
    p = Parser(description=__doc__)
    p.add_argument("--model", required=True,
                   help="classifier folder (config.json, model.safetensors, tokenizer), a hub id, or an exported "
                        ".onnx file with config.json and the tokenizer beside it")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--data-file",
                      help="labelled CSV (or .tsv): a text and a label column, found by the usual names or named "
                           "below (no default: this or --eval-split-of)")
    data.add_argument("--eval-split-of", metavar="RUN_FOLDER",
                      help="instead of --data-file: the eval split of the finished experiments/run.py run in this "
                           "folder, the one holding results.json (no default: this or --data-file)")
    add_column_arguments(p)
    p.add_argument("--output", default=None,
                   help="JSON file to write (default: eval_<csv name>.json in the model's folder)")
    p.add_argument("--batch-size", type=whole_number(1), default=32, help="examples per forward pass")
    p.add_argument("--max-length", type=whole_number(1), default=None,
                   help="tokens per text (truncation); default: the run's with --eval-split-of, else 128, or the "
                        "model's position limit if lower")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="compute dtype (a .onnx file computes in the dtype it was exported in)")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return make_parser().parse_args(argv)


RUN_SPLIT_NAME = "run-eval-split"  # what the default output names the data of --eval-split-of


def default_output(model_folder: str, data_file: str | None) -> Path:
    """Where the JSON goes without --output: ``<model folder>/eval_<csv stem>.json``, or for an
    ONNX file ``<its folder>/eval_<file stem>_<csv stem>.json`` (one folder holds several files);
    a run's eval split (``data_file`` None) is named ``run-eval-split``."""
    model = Path(model_folder)
    data_name = Path(data_file).stem if data_file is not None else RUN_SPLIT_NAME
    if model.suffix == ".onnx":
        return model.parent / f"eval_{model.stem}_{data_name}.json"
    return model / f"eval_{data_name}.json"


def is_onnx(model: str) -> bool:
    return Path(model).suffix == ".onnx"


def _check_output(path: Path, in_model_folder: bool) -> None:
    """Fail before the work when the JSON cannot be written (its folder is created if missing)."""
    if path.is_dir():
        raise JaxpruneError(f"--output {path} is a folder; pass a file name such as {path / 'eval.json'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.parent / f".{path.name}.write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        where = f"the model folder {path.parent}" if in_model_folder else str(path.parent)
        raise JaxpruneError(f"cannot write {path.name} to {where} ({err.strerror}); "
                            f"pass --output with a writable file path, e.g. --output eval.json") from None


def _run_origin(run: Path, output_dir: str) -> Path:
    """The folder the run in ``run`` was started in: ``run`` less its recorded relative
    ``output_dir`` (``results/x/seed0`` in ``/work/code/results/x/seed0`` -> ``/work/code``),
    else the current folder."""
    recorded = Path(os.path.normpath(output_dir)).parts
    relative = recorded and not Path(output_dir).is_absolute() and ".." not in recorded
    if relative and run.parts[-len(recorded):] == recorded:
        return Path(*run.parts[:-len(recorded)])
    return Path.cwd()


def run_eval_split(run_folder: str | os.PathLike, label_names: Sequence[str]) -> tuple:
    """``(eval split, DataInfo, max length)`` of the finished run in ``run_folder``, rebuilt from
    its results.json as the run built it (:func:`jaxprune.experiment.baseline.load_data`: the same
    files, text repairs, eval fraction and teacher seed). ``label_names`` (the scored model's) must be
    the run's; the rebuilt split must have the size the run recorded."""
    from jaxprune.experiment.baseline import load_data
    from jaxprune.experiment.config import RESULTS_NAME, ExperimentConfig

    run = Path(run_folder).resolve()
    results_path = run / RESULTS_NAME
    if not results_path.is_file():
        hint = (f"; pass {run.parent}, the run's folder" if (run.parent / RESULTS_NAME).is_file()
                else "; pass the folder of a finished experiments/run.py run")
        raise JaxpruneError(f"--eval-split-of {run_folder} has no {RESULTS_NAME}{hint}")
    try:
        results = json.loads(results_path.read_text(encoding="utf-8"))
        config = ExperimentConfig.from_dict(results["config"])
        eval_size = results["data"]["split_sizes"]["eval"]
        run_labels = tuple(results["data"]["label_names"])
    except (ValueError, KeyError, TypeError):
        raise JaxpruneError(f"{results_path} is not the results.json of a finished experiments/run.py run "
                            f"(no config, split sizes or labels); pass a run's folder") from None
    except JaxpruneError as err:
        raise JaxpruneError(f"{results_path}: {err}; its eval split cannot be rebuilt, pass --data-file") from None
    if tuple(label_names) != run_labels:
        raise JaxpruneError(f"the model's labels {list(label_names)[:12]} are not the run's {list(run_labels)[:12]}; "
                            f"pass a model trained in that run")
    origin = _run_origin(run, config.output_dir)
    found = {}
    for key in ("data_dir", "train_file", "eval_file", "test_file"):
        recorded = getattr(config, key)
        if recorded is not None:
            path = Path(recorded) if Path(recorded).is_absolute() else origin / recorded
            if not path.exists():
                raise JaxpruneError(f"the run's {key} {recorded} is not at {path} (where the run was started: "
                                    f"{origin}); pass --data-file with its data instead")
            found[key] = str(path)
    config = config.replace(**found)
    splits, info = load_data(config, run_labels)
    if len(splits["eval"]) != eval_size:
        raise JaxpruneError(f"the eval split rebuilt for {run_folder} has {len(splits['eval'])} texts, the run "
                            f"recorded {eval_size}: its data changed since; pass --data-file")
    return splits["eval"], info, config.max_length


def _encoded_data(args: argparse.Namespace, folder: str, label_names) -> tuple:
    """``(encoded split, load info, max length)`` of ``--data-file``, or of the eval split of
    ``--eval-split-of``, by the folder's tokenizer."""
    from jaxprune.data import load_csv
    from jaxprune.data.batching import encode_split
    from jaxprune.models.config import BertConfig
    from jaxprune.models.loading import load_tokenizer

    positions = BertConfig.load(folder).max_position_embeddings
    if args.eval_split_of is not None:
        dataset, info, run_max_length = run_eval_split(args.eval_split_of, label_names)
        max_length = args.max_length or run_max_length
    else:
        dataset, info = load_csv(args.data_file, label_names=label_names, text_column=args.text_column,
                                 label_column=args.label_column)
        max_length = args.max_length or min(128, positions)
    if max_length > positions:
        raise JaxpruneError(f"max length {max_length} exceeds the model's {positions} position "
                            f"embeddings; pass --max-length {positions} or less")
    for message in info.messages:
        print(f"data: {message}", flush=True)
    return encode_split(dataset, load_tokenizer(folder), max_length, smallest_bucket=32), info, max_length


def _report(args, folder: str, encoded, info, report: dict, label_names, precision: str, max_length: int,
            seconds: float, device: str) -> dict:
    return {
        "model": args.model,
        "model_folder": folder,
        "data_file": str(Path(args.data_file).resolve()) if args.data_file else info.source,
        "eval_split_of": str(Path(args.eval_split_of).resolve()) if args.eval_split_of else None,
        "split": info.split,
        "n": len(encoded),
        "dropped_header_rows": info.dropped_header_rows,
        "dropped_empty_rows": info.dropped_empty_rows,
        "dropped_unlabelled_rows": info.dropped_unlabelled_rows,
        "duplicate_rows": info.duplicate_rows,
        "dropped_rows": info.dropped_header_rows + info.dropped_empty_rows + info.dropped_unlabelled_rows,
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "per_class_f1": report["per_class_f1"],
        "label_names": list(label_names),
        "precision": precision,
        "max_length": max_length,
        "batch_size": args.batch_size,
        "seconds": seconds,
        "device": device,
    }


def _check_onnx_model(args: argparse.Namespace) -> Path:
    path = Path(args.model)
    if not path.is_file():
        raise JaxpruneError(f"--model {path} does not exist; pass an .onnx file written by experiments/export_onnx.py")
    if args.precision != "fp32":
        raise JaxpruneError(f"--precision {args.precision} does not apply to an ONNX file, which computes in its "
                            f"exported dtype; drop --precision")
    if not (path.parent / "config.json").is_file():
        raise JaxpruneError(f"{path} has no config.json beside it (its labels); export it with "
                            f"experiments/export_onnx.py, which copies config.json and the tokenizer beside it")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise JaxpruneError('scoring an ONNX file needs onnx and onnxruntime; pip install -e ".[onnx]"') from None
    return path


def evaluate_onnx(args: argparse.Namespace) -> dict:
    """Score the exported ONNX file ``args.model`` in ONNX Runtime (CPU): the report dict of
    :func:`evaluate_folder`, ``precision`` being the file's (float32, float16 or int8)."""
    import jax
    import onnxruntime

    from jaxprune.evaluation.metrics import classification_report
    from jaxprune.evaluation.timing import device_description
    from jaxprune.export import onnx_precision, onnx_predict_logits, onnx_session
    from jaxprune.models.config import BertConfig

    path = _check_onnx_model(args)
    folder = str(path.parent)
    label_names = BertConfig.load(folder).label_names
    encoded, info, max_length = _encoded_data(args, folder, label_names)
    try:
        session = onnx_session(path)
    except Exception as err:  # noqa: BLE001 - ONNX Runtime raises its own types for an unreadable file
        raise JaxpruneError(f"ONNX Runtime cannot load {path} ({type(err).__name__}); pass an .onnx file "
                            f"written by experiments/export_onnx.py") from None
    started = time.perf_counter()
    logits = onnx_predict_logits(session, encoded, args.batch_size, len(label_names))
    report = classification_report(logits.argmax(-1), encoded.labels, label_names)
    device = f"ONNX Runtime {onnxruntime.__version__} on {device_description(jax.devices('cpu')[0])}"
    return _report(args, folder, encoded, info, report, label_names, onnx_precision(path), max_length,
                   time.perf_counter() - started, device)


def evaluate_folder(args: argparse.Namespace, folder: str | None = None) -> dict:
    """Load the model and data, predict every row, and return the report dict (``folder``:
    the model already resolved to a local folder, else ``args.model`` is resolved here)."""
    from jaxprune.experiment import check_precision, evaluate
    from jaxprune.models.loading import checkpoint_labels, from_pretrained, resolve_folder
    from jaxprune.evaluation.timing import device_description

    dtype = PRECISIONS[args.precision]
    check_precision(dtype)
    folder = folder or resolve_folder(args.model)
    label_names = checkpoint_labels(folder)
    if label_names is None:
        raise JaxpruneError(
            f"{folder} is not a trained classifier (no classifier weights or only placeholder labels "
            f"LABEL_0...); pass a folder saved by experiments/run.py or a fine-tuned classifier"
        )
    encoded, info, max_length = _encoded_data(args, folder, label_names)
    params, model_config = from_pretrained(folder)
    started = time.perf_counter()
    report = evaluate(params, model_config, encoded, args.batch_size, dtype, "evaluate")
    return _report(args, folder, encoded, info, report, model_config.label_names, dtype, max_length,
                   time.perf_counter() - started, device_description())


def main(argv=None) -> int:
    quiet_libraries()
    parser = make_parser()
    args = parser.parse_args(argv)
    # load_csv names its file `path`: here, --data-file.
    return run_script(lambda: _evaluate_and_report(args), interrupted="interrupted; nothing was written",
                      flags={"path": "--data-file"}, parser=parser)


def _evaluate_and_report(args: argparse.Namespace) -> None:
    from jaxprune.experiment.folders import write_json
    from jaxprune.models.loading import resolve_folder

    if is_onnx(args.model):
        _check_onnx_model(args)  # before anything is written
        output = Path(args.output) if args.output else default_output(args.model, args.data_file)
        _check_output(output, in_model_folder=not args.output)
        results = evaluate_onnx(args)
    else:
        if args.output:  # checked before a hub model is downloaded
            output = Path(args.output)
            _check_output(output, in_model_folder=False)
            folder = resolve_folder(args.model)
        else:
            folder = resolve_folder(args.model)
            output = default_output(folder, args.data_file)
            _check_output(output, in_model_folder=True)
        results = evaluate_folder(args, folder)
    write_json(output, results)
    data = (f"the eval split of {results['eval_split_of']}" if results["eval_split_of"] else results["data_file"])
    print(f"{results['model']} on {data} ({results['n']} distinct texts; {results['dropped_rows']} "
          f"rows dropped, {results['duplicate_rows']} duplicate rows collapsed)")
    print(f"accuracy {results['accuracy']:.4f}, macro-F1 {results['macro_f1']:.4f} ({results['device']})")
    print(f"results: {output}")


if __name__ == "__main__":
    from experiments.cli_args import exit_process

    exit_process(main())
