#!/usr/bin/env bash
# salcli's GPU check (issue 13): the first device call of a session that is lent a GPU.
# Under 8 minutes in all: each step has its own timeout; a failing or timed-out step is
# reported and the others still run; a summary of every step comes last.
#
# 1. Once, here, prepare the wheels that the GPU machine lacks: PyAV, soundfile and
#    soundfile's cffi, and cffi's pycparser (its CPython 3.12 has torch, numpy, h5py,
#    OpenCV, Rich, Typer, scipy, pytest and typing-extensions). The device tool sends
#    the session's own checkout (a helper's worktree does not travel), so run this in
#    that checkout's root. About 36 MiB (PyAV's wheel is most of it), ignored by git,
#    never committed; it counts towards the 64 MiB that travel with each call:
#
#      grep -qx /.whl/ .git/info/exclude || echo /.whl/ >> .git/info/exclude
#      python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#        --implementation cp --platform manylinux_2_28_x86_64 \
#        --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
#        av==18.1.0 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12
#
#    (--no-deps: each wheel's own needs are named above; `unzip -p .whl/NAME-*.whl
#    '*/METADATA' | grep ^Requires-Dist` lists them. Keep one version of each: two stop
#    the install. The av wheel is cp311-abi3, for any CPython from 3.11 on.)
#
# 2. Run it there, carrying them: run(command="bash benchmarks/gpu_check.sh",
#    carry=[".whl"], timeout_s=540), and put the output in the session's note. The
#    script installs the wheels itself (the install line of the device tool's README),
#    so the command needs nothing before it.
#
# Steps: the machine (nvidia-smi, python, torch); the wheels installed into /tmp/site
# (pip --target, no index; skipped, saying so, where they are for another Python); salcli
# from this checkout (PYTHONPATH, nothing installed) and the packages it needs; the tests
# marked cuda (tests/test_gpu.py: every model on CUDA in bf16 and fp16 against the CPU's
# fp32 maps, and the CUDA settings); benchmarks/bench_gpu.py (model-only maps/s of ViNet,
# ViNet-S, AViNet(B) and ViNet-A in bf16 per batch, eager / overlap reuse / CUDA graph /
# torch.compile; end to end from H.264; peak GPU memory; per-frame CC against fp32; the
# targets, and ViNet-S against its authors' 1000 maps/s claim).
# Each step's log goes to $OUT/<step>.log where OUT is set (the device tool's folder;
# 6 files, within the 8 it sends back), else to a new folder under /tmp.
# Without CUDA (here, to check the script) the benchmark runs as --device cpu --quick.
#
# Overrides: PYTHON (python3), WHEELS (.whl), SITE (/tmp/site), and the step timeouts
# T_ENV, T_INSTALL, T_IMPORT, T_TESTS, T_BENCH in seconds (defaults sum to 465 s).
set -u

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/site}
LOGS=${OUT:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
T_ENV=${T_ENV:-15}
T_INSTALL=${T_INSTALL:-30}
T_IMPORT=${T_IMPORT:-20}
T_TESTS=${T_TESTS:-200}
T_BENCH=${T_BENCH:-200}
BENCH_MARGIN_S=30 # of the bench step's timeout, kept from bench_gpu.py's own budget
export PYTHONUNBUFFERED=1
export PYTHONPATH="$ROOT${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"

STARTED=$(date +%s)
SUMMARY=()
FAILED=0

# step NAME TIMEOUT COMMAND...: run it with a timeout, log it, record how it ended
step() {
    local name=$1 limit=$2
    shift 2
    local t0 rc verdict
    t0=$(date +%s)
    echo
    echo "=== [$name] (timeout ${limit} s) ==="
    timeout -k 5 "$limit" "$@" 2>&1 | tee "$LOGS/$name.log"
    rc=${PIPESTATUS[0]}
    case $rc in
        0) verdict="ok" ;;
        124 | 137) verdict="TIMED OUT after ${limit} s" ;;
        *) verdict="FAILED (exit $rc)" ;;
    esac
    [ "$rc" -eq 0 ] || FAILED=$((FAILED + 1))
    SUMMARY+=("$(printf '%-8s %-28s %4d s' "$name" "$verdict" $(($(date +%s) - t0)))")
}

machine() {
    nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.sm \
        --format=csv || echo "nvidia-smi: not available"
    "$PYTHON" - <<'EOF'
import os, platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, "
      f"{os.cpu_count()} CPUs, CUDA available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"{p.name}: sm {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB, "
          f"bf16 {torch.cuda.is_bf16_supported()}, cuDNN {torch.backends.cudnn.version()}")
EOF
}

# the wheels of WHEELS that this Python cannot install (their tags do not fit it)
misfits() {
    "$PYTHON" - "$@" <<'EOF'
import os, sys
try:
    from packaging.tags import sys_tags
    from packaging.utils import parse_wheel_filename
except ImportError:  # pip's own copy
    from pip._vendor.packaging.tags import sys_tags
    from pip._vendor.packaging.utils import parse_wheel_filename
here = set(sys_tags())
for path in sys.argv[1:]:
    if not parse_wheel_filename(os.path.basename(path))[3] & here:
        print(os.path.basename(path))
EOF
}

install_wheels() {
    local wheels=("$WHEELS"/*.whl) other
    if [ ! -e "${wheels[0]}" ]; then
        echo "no wheels in $WHEELS/: nothing installed (see this script's header)"
        return 0
    fi
    printf '%s\n' "${wheels[@]}"
    other=$(misfits "${wheels[@]}") || return
    if [ -n "$other" ]; then
        echo "not for this Python ($("$PYTHON" -c 'import platform; print(platform.python_version())')): $other"
        echo "nothing installed: the imports step shows whether the packages are here anyway"
        return 0
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target "$SITE" "${wheels[@]}"
}

imports() {
    "$PYTHON" - <<'EOF'
import importlib, importlib.metadata
missing = []
for name in ("av", "soundfile", "h5py", "cv2", "typer", "rich", "scipy", "pytest"):
    try:
        mod = importlib.import_module(name)
        version = getattr(mod, "__version__", None) or importlib.metadata.version(name)
        print(f"{name} {version} from {mod.__file__}")
    except Exception as exc:  # report every one, then fail
        missing.append(f"{name} ({type(exc).__name__}: {exc})")
import salcli, salcli.cli, salcli.inference.predictor
print(f"salcli {salcli.__version__} from {salcli.__file__}")
if missing:
    raise SystemExit("missing: " + ", ".join(missing))
EOF
}

has_cuda() {
    "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
        2>/dev/null
}

export PYTHON WHEELS SITE
export -f machine misfits install_wheels imports # timeout runs commands, not shell functions
step machine "$T_ENV" bash -c machine
step install "$T_INSTALL" bash -c install_wheels
step imports "$T_IMPORT" bash -c imports
step tests "$T_TESTS" "$PYTHON" -m pytest -q -m cuda -rs --durations=10 -p no:cacheprovider tests
if has_cuda; then
    step bench "$T_BENCH" "$PYTHON" benchmarks/bench_gpu.py --device cuda \
        --budget-s $((T_BENCH - BENCH_MARGIN_S))
else
    echo
    echo "no CUDA device: the benchmark runs on the CPU, quick (checks the script only)"
    step bench "$T_BENCH" "$PYTHON" benchmarks/bench_gpu.py --device cpu --quick \
        --budget-s $((T_BENCH - BENCH_MARGIN_S))
fi

{
    echo
    echo "=== gpu_check summary ($(($(date +%s) - STARTED)) s; logs in $LOGS) ==="
    printf '%s\n' "${SUMMARY[@]}"
    echo "failed steps: $FAILED"
} | tee "$LOGS/summary.txt"
[ "$FAILED" -eq 0 ]
