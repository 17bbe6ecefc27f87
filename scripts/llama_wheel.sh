#!/usr/bin/env bash
# A portable llama-cpp-python, installed into the venv whose python is $1.
#
# pip's own build compiles llama.cpp with -march=native (GGML_NATIVE), and pip's wheel cache then
# hands that wheel to any machine that shares the cache: a wheel built on a Sapphire Rapids Xeon
# carries AMX and AVX-512 code and dies with SIGILL/SIGSEGV on an AVX2-only AMD box, and the
# reverse loses the fast paths. So this builds it the way llama.cpp's release binaries are built:
# GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS, one ggml-cpu module per ISA level (x64 ... haswell ...
# sapphirerapids), of which ggml picks the best one the running CPU supports when the worker loads
# them (ivcr_engine/dialogue/llm_worker.py). llama-cpp-python installs only a single "ggml-cpu"
# target, so the variant modules are added to its wheel here.
#
# The finished wheel is cached under a key made of the version, the CMake flags and this script,
# never in pip's cache (--no-cache-dir), so a wheel built with other flags is never picked up.
set -euo pipefail

VPY=${1:?usage: llama_wheel.sh VENV_PYTHON}
VERSION=0.3.36
CMAKE_FLAGS="-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DGGML_OPENMP=OFF \
-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
# GGML_OPENMP=OFF: ggml's own thread pool; OpenMP's workers spin-wait between tokens beside the
# engine's threads (see GGUFResponder's n_threads note).

here=$(cd "$(dirname "$0")" && pwd)
key=$( (echo "$VERSION $CMAKE_FLAGS $(uname -m)"; cat "$here/llama_wheel.sh") | sha256sum | cut -c1-16)
cache=${IVCR_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ivcr_engine/wheels}/llama-cpp-python-$VERSION-$key

installed_key() {
  "$VPY" - <<'EOF' 2>/dev/null || true
import importlib.util, pathlib
spec = importlib.util.find_spec("llama_cpp")
if spec:
    stamp = pathlib.Path(spec.origin).parent / "lib" / "IVCR_BUILD_KEY"
    print(stamp.read_text().strip() if stamp.is_file() else "")
EOF
}

if [ "$(installed_key)" = "$key" ]; then
  echo "llama-cpp-python $VERSION (portable, $key) already installed"
  exit 0
fi

if ! ls "$cache"/*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $VERSION portably (all CPU variants; about 7 min on 2 cores), cached in $cache"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$VPY" -m pip download -q --no-deps --no-binary :all: --no-cache-dir "llama-cpp-python==$VERSION" -d "$work/sdist"
  tar xzf "$work"/sdist/*.tar.gz -C "$work"
  src=$(echo "$work"/llama_cpp_python-*/)
  CMAKE_ARGS="$CMAKE_FLAGS" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
    "$VPY" -m pip wheel -q --no-deps --no-cache-dir --config-settings=build-dir="$work/build" -w "$work/dist" "$src"
  variants=$(find "$work/build" -name 'libggml-cpu-*.so' -type f)
  if [ -z "$variants" ]; then
    echo "llama_wheel.sh: the build produced no libggml-cpu-*.so variant modules" >&2
    exit 1
  fi
  "$VPY" -m wheel unpack -d "$work/unpacked" "$work"/dist/*.whl
  lib=$(echo "$work"/unpacked/*/llama_cpp/lib)
  cp $variants "$lib/"
  rm -f "$lib/libggml-cpu.so"   # a non-variant CPU module would be loaded beside the best variant
  echo "$key" > "$lib/IVCR_BUILD_KEY"
  mkdir -p "$cache.tmp"
  "$VPY" -m wheel pack -d "$cache.tmp" "$(echo "$work"/unpacked/*/)"
  rm -rf "$cache" && mv "$cache.tmp" "$cache"
fi
"$VPY" -m pip install -q --no-deps --force-reinstall "$cache"/*.whl
# llama-cpp-python's own dependencies (numpy, jinja2, diskcache, typing-extensions)
"$VPY" -m pip install -q "llama-cpp-python==$VERSION" --no-build-isolation
echo "installed llama-cpp-python $VERSION (portable, $key)"
