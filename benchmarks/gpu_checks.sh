#!/usr/bin/env bash
# The checks that need a GPU (issue 17, parts 3, 4 and 6), in one run of about 6 minutes on
# one H100, for a session that is lent a device machine (the `device` tool), whose time is
# short: prepare once, run once.
#
#   1. the CUDA-only tests: deferred (pinned, non-blocking) loss reads, the device
#      prefetcher and its exact resume, AMP, the determinism flags;
#   2. benchmarks/trainer_overhead.py --device cuda on the MLP and the small CNN
#      (target <= 1.03x);
#   3. a ResNet-50 AMP (fp16) step of AMPTrainer with the default hooks and writers against a
#      plain autocast + GradScaler loop (target within 2%).
#
# The device machine's image has PyTorch, torchvision, TensorBoard, tabulate, tqdm and
# scikit-learn, but not fvcore, iopath, yacs or termcolor, and it cannot download. Build
# their wheels (google-crc32c's is the one with a C extension; without it TensorBoard falls
# back to its pure-Python CRC) here first, into a folder git ignores, and carry it:
#
#   echo /.whl/ >> .git/info/exclude
#   python -m pip wheel --no-deps -w .whl fvcore==0.1.5.post20221221 iopath==0.1.10 \
#       yacs==0.1.8 termcolor google-crc32c
#
# then call the device tool's run with command "bash benchmarks/gpu_checks.sh",
# carry [".whl"] and timeout_s 540. Every log is written under $OUT (the files that come
# back) as well as to the output.
set -uo pipefail

OUT=${OUT:-/tmp/gpu_checks}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi

status=0
run() {  # run NAME COMMAND...: log to $OUT/NAME.log, keep going, remember a failure
    local name=$1
    shift
    echo "=== $name: $*"
    "$@" 2>&1 | tee "$OUT/$name.log" || status=1
}

run gpu nvidia-smi -L
run versions python3 -c "import torch, torchvision; print(torch.__version__, \
torchvision.__version__, torch.cuda.get_device_name())"
# The tests that skip without CUDA, and the ones next to them.
run pytest_cuda timeout 240 python3 -m pytest -q -rs -p no:cacheprovider \
    tests/engine/test_deferred_metrics.py tests/data/test_prefetch.py \
    tests/engine/test_train_loop.py tests/engine/test_determinism.py
run overhead_cuda timeout 150 python3 benchmarks/trainer_overhead.py --device cuda \
    --workloads mlp,cnn --repeats 7 --cnn-iters 200
run resnet50_amp timeout 150 python3 benchmarks/trainer_overhead.py --device cuda \
    --workloads resnet50 --repeats 5 --resnet-iters 40
exit $status
