#!/usr/bin/env bash
# GPU check of the VLM path, as one prepared command that ends in under 5 minutes:
#   1. the GPU's name, torch and CUDA;
#   2. the VLM tests (tests/test_vlm.py, tests/test_vlm_server.py) on cuda: the tiny Qwen2.5-VL and
#      Qwen3-VL through the production loader, constrained decoding, batching, guards, loopback server;
#   3. bench/vlm_bench.py at batch sizes 1 to 16 (the tiny model, or $DOCROUTE_VLM_MODEL when set).
#
# Where the GPU machine's Python already has docroute's dependencies (a .venv made per README "GPU"):
#     PY=.venv/bin/python bash bench/gpu_check.sh
# On a bare image with torch, transformers and pytest but without xgrammar or pydantic, and no
# network: fetch those wheels here first (Python 3.12, manylinux x86-64, about 7 MB), carry .whl/
# along, and run the script there; it installs them into a temporary folder and imports docroute
# from this tree. PyMuPDF's wheel (69 MB) is over the carry limit: without it the tests and the
# benchmark use the sample phone photo (sample_docs/invoice_photo.png) as their pages.
#     bash bench/gpu_check.sh --fetch-wheels        # here, with access to PyPI
#     bash bench/gpu_check.sh                       # there; results under $OUT (or ./gpu_check_out)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-gpu_check_out}
WHEELS=(xgrammar==0.2.8 apache-tvm-ffi==0.1.15.post2 pydantic==2.14.4 pydantic-core==2.50.5
        annotated-types==0.8.0 typing-inspection==0.4.5 pydantic-settings==2.16.3 python-dotenv==1.2.4)

if [ "${1:-}" = "--fetch-wheels" ]; then
    mkdir -p .whl
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    ${PIP_PY:-.venv/bin/python} -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
    exit $?
fi

mkdir -p "$OUT"
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if ! "$PY" -c "import docroute.extractors.vlm" 2>/dev/null; then
    site=$(mktemp -d /tmp/docroute-site.XXXX)
    if ls .whl/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl || exit 1
    fi
    # docroute's packages live in top-level folders (see pyproject.toml): link them under one package
    mkdir -p "$site/docroute"
    cp docroute/__init__.py "$site/docroute/"
    for pkg in schemas extractors pipelines flows; do ln -sfn "$PWD/$pkg" "$site/docroute/$pkg"; done
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$PY" -c "import torch, transformers, xgrammar; assert torch.cuda.is_available(), 'no CUDA device';
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__,
      '|', torch.cuda.get_device_name(0))"
} 2>&1 | tee "$OUT/gpu.txt" || exit 1

status=0
timeout 170 "$PY" -m pytest -q -p no:cacheprovider tests/test_vlm.py tests/test_vlm_server.py 2>&1 \
    | tee "$OUT/tests.log" || status=1
timeout 100 "$PY" bench/vlm_bench.py --batch-sizes 1,2,4,8,16 --pages 16 --out "$OUT/vlm_bench" 2>&1 \
    | grep -v -e "Loading weights" -e "Writing model" | tee "$OUT/bench.log" || status=1
exit $status
