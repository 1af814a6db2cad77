#!/usr/bin/env bash
# The GPU evidence in one call: run it first whenever a GPU machine is lent to this project.
#
#   here, once:      python benchmarks/gpu_prepare.py     # writes .gpu/ (git-ignored, ~51 MiB)
#   on the GPU:      bash benchmarks/gpu.sh               # device tool: carry [".gpu"], timeout_s 600
#   on a CPU:        bash benchmarks/gpu.sh --smoke --prepared DIR --out DIR   # tiny sizes (the tests)
#
# Measures, in about 8 minutes on one H100 (each part has its own time limit, and a part that
# fails or runs out of time is reported and the next one runs):
#   1. inference (benchmarks/inference.py): MahaBERT and e5-small shapes at 32 x 128, fp32 and
#      bf16, dense and compacted at 25% and 75%, next to PyTorch eager and torch.compile (dense);
#      its table ends with the GPU goals (75% compacted >= 2.5x dense in bf16; bf16 compacted
#      >= 5x fp32 dense);
#   2. train-step MFU (benchmarks/train_step.py): MahaBERT shape, 32 x 128, fp32 and bf16;
#   3. a short fine-tuning run on SHC in fp32 and in bf16, the same steps (benchmarks/gpu_train.py).
# Results are written to a fresh folder, then copied into --out (default: benchmarks/results);
# on the device machine ($OUT set) they are also packed into $OUT/gpu_results.tar with the log,
# to be unpacked into benchmarks/results and committed with the device named.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
out=
prepared=.gpu
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --out) out="${2:?--out needs a folder}"; shift ;;
    --prepared) prepared="${2:?--prepared needs a folder}"; shift ;;
    *) echo "error: unknown argument $1; use --smoke, --out DIR or --prepared DIR" >&2; exit 2 ;;
  esac
  shift
done
if [ ! -d "$prepared/model" ] || [ ! -d "$prepared/data" ]; then
  echo "error: $prepared has no model/ and data/; run python benchmarks/gpu_prepare.py first (and carry .gpu)" >&2
  exit 2
fi
if [ -z "$out" ]; then
  out=benchmarks/results
  [ "$smoke" -eq 1 ] && out="$(mktemp -d)"  # smoke results are not results
fi
mkdir -p "$out"
run_dir="$(mktemp -d)"
log="$run_dir/gpu_log.txt"
exec > >(tee -a "$log") 2>&1

PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# The GPU image lacks `datasets`: gpu_prepare.py downloaded its wheels.
if ! "$PY" -c "import datasets" 2>/dev/null; then
  if ls "$prepared"/wheels/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$run_dir/site" "$prepared"/wheels/*.whl
    export PYTHONPATH="$PYTHONPATH:$run_dir/site"
  else
    echo "note: datasets is not installed and $prepared/wheels is empty: the training run will fail"
  fi
fi

start=$(date +%s)
failed=0
part() {  # part NAME SECONDS COMMAND...: run with a time limit; a failure is reported, not fatal
  local name=$1 limit=$2 status=0
  shift 2
  echo "== $name: start at $(( $(date +%s) - start )) s, limit $limit s"
  timeout "$limit" "$@" || status=$?
  if [ "$status" -ne 0 ]; then
    failed=$((failed + 1))
    echo "!! $name: exit status $status$([ "$status" -eq 124 ] && echo ' (out of time)')"
  fi
  echo "== $name: done at $(( $(date +%s) - start )) s"
}

if [ "$smoke" -eq 1 ]; then
  inference=(--models minilm --batch-sizes 2 --lengths 16 --dtypes float32 bfloat16 --sparsities 0.75
             --repeats 1 --warmup 0 --torch-compile off --ort off)
  train_step=(--quick --model minilm)
  training=(--epochs 1 --limit 64 --max-length 32)
  limits=(300 300 300)
else
  inference=(--models mahabert e5-small --batch-sizes 32 --lengths 128 --dtypes float32 bfloat16
             --sparsities 0.25 0.75 --torch-compile dense)
  train_step=(--model mahabert --batch-size 32 --length 128)
  training=(--epochs 3 --max-length 128)
  limits=(210 90 150)
fi

echo "== environment ($(date -u +%FT%TZ))"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
"$PY" - <<'EOF' || true
import importlib.metadata as m
names = ("jax", "jaxlib", "flax", "optax", "torch", "transformers", "onnxruntime", "datasets")
print({n: (m.version(n) if any(True for _ in m.distributions(name=n)) else None) for n in names})
import jax
print("jax devices:", jax.devices())
EOF

part inference "${limits[0]}" "$PY" benchmarks/inference.py "${inference[@]}" --out "$run_dir"
part train_step "${limits[1]}" "$PY" benchmarks/train_step.py "${train_step[@]}" --out "$run_dir"
part training "${limits[2]}" "$PY" benchmarks/gpu_train.py --model "$prepared/model" --data-dir "$prepared/data" \
  "${training[@]}" --out "$run_dir"

echo "== all parts: $(( $(date +%s) - start )) s, $failed failed"
cp "$run_dir"/*.json "$run_dir"/*.md "$out"/ 2>/dev/null || true
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
  (cd "$run_dir" && tar -cf "$OUT/gpu_results.tar" ./*.json ./*.md gpu_log.txt 2>/dev/null || true)
  cp "$log" "$OUT/gpu_log.txt"
fi
echo "results: $(cd "$run_dir" && ls ./*.json 2>/dev/null | tr '\n' ' ')-> $out"
cp "$log" "$out/gpu_log_$(date +%F).txt" 2>/dev/null || true
exit $((failed > 0))
