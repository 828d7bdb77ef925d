#!/usr/bin/env bash
# Issue 5's GPU half in one call on a lent H100/H200 (the device tool; METHOD.md: one script,
# few calls). Writes, under $OUT (default out/gpu):
#   nvidia-smi.csv          GPU, driver, clocks and power limit as found (never changed)
#   profile.yaml            `clustersim calibrate --device cuda` at the validation model's shapes
#   validate.json / .txt    `clustersim validate --device cuda` with that profile
#   provenance.txt          date, torch/CUDA/NCCL versions, the commit measured
# Back on the CPU machine: copy profile.yaml and validate.json to validation/gpu/ (with the
# provenance) and run `clustersim published ../shared/validation/dev_runs.yaml --profile ...`
# for the MAPE before and after.
#
# The device image has PyTorch but not simpy (nothing can be fetched there): carry it as a wheel,
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl simpy==4.1.2
# and call the device tool with carry [".whl"] and the command `bash benchmarks/gpu_session.sh`.
set -euo pipefail
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
cs() { python3 -m simulator.cli "$@"; }

# The validation model: large enough that kernels, not launches, set the step time on an H100,
# small enough that every single-GPU plan (incl. no recompute, micro-batch 2) fits in 80 GB.
MODEL=(--layers 8 --hidden 2048 --heads 16 --kv-heads 16 --ffn-hidden 8192 --vocab 32000 --seq-len 2048)
SHAPE=(--hidden 2048 --heads 16 --kv-heads 16 --ffn-hidden 8192 --vocab 32000 --seq-len 2048 --micro-batch 2)

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.sm,power.limit,temperature.gpu \
  --format=csv > "$OUT/nvidia-smi.csv" || true
python3 - > "$OUT/provenance.txt" <<'EOF'
import datetime, subprocess, torch
print("date", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
print("gpu", torch.cuda.get_device_name(0), "sms", torch.cuda.get_device_properties(0).multi_processor_count)
print("torch", torch.__version__, "cuda", torch.version.cuda, "nccl", ".".join(map(str, torch.cuda.nccl.version())))
try:
    print("commit", subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip())
except OSError:
    pass
EOF
cat "$OUT/provenance.txt"

time cs calibrate --device cuda -o "$OUT/profile.yaml" "${SHAPE[@]}" 2>&1 | tee "$OUT/calibrate.txt"
time cs validate --device cuda --profile "$OUT/profile.yaml" -o "$OUT/validate.json" "${MODEL[@]}" \
  --steps 10 --warmup 3 2>&1 | tee "$OUT/validate.txt"
