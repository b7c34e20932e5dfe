#!/usr/bin/env bash
# The GPU check of docs/performance.md: on a machine with an NVIDIA GPU and jax[cuda] installed,
# run the tests, `convgrad verify --device gpu` and `convgrad bench` (float32 and bfloat16;
# convgrad vs jax.grad; PyTorch's twins, when importable, run on the CPU), and write every report to one folder.
# The tests run are the registry walk (every op on the GPU) and the conv and pooling files.
# Budgeted to finish within 8 minutes (each step has its own timeout; a step that times out is
# recorded as such and the next one still runs).
#
#   bash scripts/gpu_check.sh [REPORT_DIR]      (default: gpu_reports/)
#
# Runs from a checkout without installing it (PYTHONPATH=.), so an image that has jax, optax,
# numpy, safetensors, tqdm, pytest and hypothesis needs no network.
set -uo pipefail
cd "$(dirname "$0")/.."
reports=${1:-gpu_reports}
python=${PYTHON:-python3}
mkdir -p "$reports"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0

step() {  # step NAME SECONDS COMMAND...: run, log to REPORT_DIR/NAME.txt, record rc and seconds
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$reports/$name.txt" 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$((SECONDS - start))" | tee -a "$reports/summary.txt"
  [ "$rc" -eq 0 ] || status=1
}

: >"$reports/summary.txt"
if ! "$python" -c "import jax, sys; sys.exit(jax.devices()[0].platform != 'gpu')"; then
  echo "gpu_check: jax sees no GPU (jax.devices() = $("$python" -c 'import jax; print(jax.devices())'))" >&2
  exit 2
fi
(nvidia-smi; "$python" -c "import jax; print(jax.__version__, jax.devices())") >"$reports/device.txt" 2>&1
step verify 150 "$python" -m convgrad verify --device gpu --no-progress --json "$reports/verify.json"
step bench_float32 100 "$python" -m convgrad bench --rounds 11 --dtype float32 --no-progress --json "$reports/bench_float32.json"
step bench_bfloat16 100 "$python" -m convgrad bench --rounds 11 --dtype bfloat16 --no-progress --json "$reports/bench_bfloat16.json"
step pytest 120 "$python" -m pytest -q -p no:cacheprovider -x tests/test_conv.py tests/test_pooling.py tests/test_registry.py
exit $status
