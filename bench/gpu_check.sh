#!/usr/bin/env bash
# GPU check of the VLM path, as one prepared command that ends in about 9 minutes (each step has its
# own timeout; results under $OUT, or ./gpu_check_out). Last run on an NVIDIA H200 (README "VLM path"):
#   1. the GPU's name, torch and CUDA;
#   2. a full-size Qwen2.5-VL-3B without weights: bench/vlm_bench.py --config builds the architecture of
#      bench/qwen2_5_vl_3b_config.json (3.75 B parameters) with random weights on the GPU, saves it to a
#      temporary folder, loads it through the pipeline's own loader and transformers backend, and
#      decodes exactly 256 new tokens per page (random weights end the constrained JSON at random; see
#      bench/random_vlm.py): pages/s, prompt, image and output tokens per page, peak GPU memory at
#      batch sizes 1 to 16, two batches each ($OUT/vlm_full.md, .json); about 20 s to build and load,
#      then about 40 s per batch size on an H200, where a decoding step took ~65-70 ms at any batch size;
#   3. the VLM tests (tests/test_vlm.py, tests/test_vlm_server.py) on cuda: the tiny Qwen2.5-VL and
#      Qwen3-VL through the production loader, constrained decoding, batching, guards, loopback server;
#   4. bench/vlm_bench.py with the tiny model (or $DOCROUTE_VLM_MODEL when set) at batch sizes 1 to 16.
#
# Where the GPU machine's Python already has docroute's dependencies (a .venv made per README "GPU"):
#     PY=.venv/bin/python bash bench/gpu_check.sh
# On a bare image with torch, transformers and pytest but without xgrammar or pydantic, and no
# network: prepare here first (fetch those wheels, Python 3.12, manylinux x86-64, about 7 MB, into
# .whl/; render the sample pages at 100 dpi with PyMuPDF into .gpu_pages/, a few MB), carry .whl/ and
# .gpu_pages/ along, and run the script there; it installs the wheels into a temporary folder and
# imports docroute from this tree (PYTHONSAFEPATH keeps the tree's own docroute/ folder, which holds
# only __init__.py, from shadowing that package in pytest and its subprocesses). PyMuPDF's wheel
# (69 MB) is over the carry limit: without .gpu_pages/ the tests and the benchmarks use the sample
# phone photo (sample_docs/invoice_photo.png).
#     bash bench/gpu_check.sh --fetch-wheels        # here, with access to PyPI and PyMuPDF
#     bash bench/gpu_check.sh                       # there; STEPS="full" runs step 2 alone
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-gpu_check_out}
WHEELS=(xgrammar==0.2.8 apache-tvm-ffi==0.1.15.post2 pydantic==2.14.4 pydantic-core==2.50.5
        annotated-types==0.8.0 typing-inspection==0.4.5 pydantic-settings==2.16.3 python-dotenv==1.2.4)

if [ "${1:-}" = "--fetch-wheels" ]; then
    mkdir -p .whl
    if [ -d .git ]; then
        for d in /.whl/ /.gpu_pages/; do grep -qx "$d" .git/info/exclude || echo "$d" >> .git/info/exclude; done
    fi
    ${PIP_PY:-.venv/bin/python} -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}" || exit 1
    ${PIP_PY:-.venv/bin/python} bench/vlm_bench.py --save-pages .gpu_pages
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

STEPS=${STEPS:-full tests tiny}
PAGES=()
ls .gpu_pages/*.png >/dev/null 2>&1 && PAGES=(--pages-dir .gpu_pages)
quiet() { grep -v -e "Loading weights" -e "Writing model"; }
status=0
if [[ " $STEPS " == *" full "* ]]; then
    timeout 330 "$PY" bench/vlm_bench.py --config bench/qwen2_5_vl_3b_config.json --fixed-new-tokens 256 \
        --batch-sizes 1,2,4,8,16 --batches 2 "${PAGES[@]}" --out "$OUT/vlm_full" 2>&1 | quiet | tee "$OUT/full.log" || status=1
fi
[[ " $STEPS " == *" tests "* ]] && { PYTHONSAFEPATH=1 timeout 100 "$PY" -m pytest -q -p no:cacheprovider tests/test_vlm.py tests/test_vlm_server.py 2>&1 \
    | tee "$OUT/tests.log" || status=1; }
[[ " $STEPS " == *" tiny "* ]] && { timeout 100 "$PY" bench/vlm_bench.py --batch-sizes 1,2,4,8,16 --pages 16 \
    "${PAGES[@]}" --out "$OUT/vlm_bench" 2>&1 | quiet | tee "$OUT/bench.log" || status=1; }
exit $status
