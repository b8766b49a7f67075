#!/usr/bin/env bash
# Every GPU figure this project reports, in one run of under 10 minutes (one H100/H200 lease):
#   1. the CUDA tests (bf16 memory against the fp32 CPU reference),
#   2. bench/blocks.py: one T / H block and the presets at the seeds' shapes (batch 16 x 8 frames)
#      and --long (batch 2 x 64 frames), bf16, with achieved TFLOP/s and share of measured peak;
#      then the H blocks with the memory compiled (Triton kernels; first call = compilation),
#   3. bench/memory.py: the chunked Titan memory alone at the seeds' shape, bf16,
#   4. bench/extract.py: the ViT-L encoder, bf16, clips/s with TFLOP/s and share of peak,
#   5. bench/store.py: the training loader's reads (clips/s, MiB/s at 1, 2, 8 threads) beside
#      plain zarr, with the clips/s a GPU step of each full preset needs,
#   6. hope profile: a CEM planning step of hope_tiny and vit_tiny (100 samples x 5 iterations,
#      horizon 2) at the seeds' shape, beside the time its FLOPs take at the measured peak.
# JSON and logs go to $OUT (the device tool's result folder) or ./gpu_out.
#
#   run: bash bench/gpu_check.sh          (on the device machine, from the repository root)
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PY:-python}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"

step() {  # name, seconds, command...
    local name=$1 limit=$2; shift 2
    echo "== $name (limit ${limit}s)"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    echo "   exit $? ; tail:"; tail -n 25 "$OUT/$name.log"
}

step cuda_tests 80 $PY -m pytest -q -p no:cacheprovider tests/model/test_memory.py -k cuda
step blocks 160 $PY bench/blocks.py --long --warmup 2 --repeats 5 --json-out "$OUT/blocks.json"
step blocks_compiled 120 $PY bench/blocks.py --cases blocks --compile --warmup 2 --repeats 5 \
    --json-out "$OUT/blocks_compiled.json"
step memory 50 $PY bench/memory.py --device cuda --dtype bf16 --batch 16 --frames 8 --tokens 258 \
    --dim 384 --heads 6 --impl chunked --warmup 2 --repeats 5
step extract 80 $PY bench/extract.py --size vit_large --batch-size 4 8 16 --warmup 2 --repeats 5 \
    --json-out "$OUT/extract.json"
step store 50 $PY bench/store.py --clips 32 --repeats 2 --threads 1 2 8 --codecs none zstd \
    --json-out "$OUT/store.json"
step plan 50 $PY -c "from hopecli.cli import main; main()" profile --preset hope_tiny --preset vit_tiny \
    --device cuda --batch-size 1 --frames 2 --repeats 3 --warmup 1   # planning rows of its table

echo "results in $OUT: $(ls "$OUT" | tr '\n' ' ')"
