#!/usr/bin/env bash
# The one GPU run of the AutoDistil benchmark (device machine: no network, no ../shared).
# Needs the payload folder .gpu5 (benchmarks/autodistil_payload.py pack) carried along.
# Writes $OUT/results.json (+ the fp16 demo student, job logs). Usage: bash benchmarks/autodistil_gpu.sh
set -u
OUT=${OUT:-/tmp/autodistil-out}
echo "tree: $(pwd) $(git rev-parse --abbrev-ref HEAD 2>/dev/null) $(git log -1 --format=%h 2>/dev/null)"
nvidia-smi -L || true
python3 -c 'import torch, transformers, safetensors, tqdm; print("torch", torch.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available())' || exit 3
[ -d src/terse/autodistil ] && [ -d .gpu5 ] || { echo "missing src/terse/autodistil or .gpu5 here"; ls; exit 4; }
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 TERSE_PROGRESS=0
python3 benchmarks/autodistil_payload.py unpack --payload .gpu5 --teacher-out /tmp/teacher || exit 5
timeout "${PIPELINE_TIMEOUT:-470}" python3 benchmarks/autodistil_pipeline.py run --device cuda --teacher /tmp/teacher \
  --corpus .gpu5/corpus.npz --glue .gpu5/glue --work /tmp/work --out "$OUT" --workers "${WORKERS:-14}" \
  --distill-seconds "${DISTILL_SECONDS:-110}" --batch-size 64 --eval-batch-size 128 --heldout-blocks 256 \
  --ft-epochs 3 --ft-max-train 8000 "$@"
rc=$?
echo "pipeline rc $rc"
tar czf "$OUT/joblogs.tar.gz" -C /tmp/work jobs 2>/dev/null
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv || true
exit $rc
