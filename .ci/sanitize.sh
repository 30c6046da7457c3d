#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the C++ decoder:
#   1. the plain C++ tests (ctest) built with EDGEPOSE_SANITIZE=ON;
#   2. the Python module built with the same instrumentation into a temporary copy of the
#      package (edgepose/_decoder*.so in the checkout is left alone), driven by
#      tests/test_decoder_contract.py (bad inputs, caps, random maps).
# Exits non-zero on a failing test or on any sanitizer report. Takes about two minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PYTHON="${PYTHON:-python3}"
JOBS="$(nproc 2>/dev/null || echo 2)"
GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/reports"
# Every report goes to a file as well as aborting, so a report swallowed by a test harness
# still fails this script.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:log_path=$TMP/reports/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$TMP/reports/ubsan"

check_reports() {
  if compgen -G "$TMP/reports/*" >/dev/null; then
    echo "sanitize.sh: sanitizer reports after $1:" >&2
    cat "$TMP"/reports/* >&2
    exit 1
  fi
}

echo "== C++ tests with ASan + UBSan"
cmake -S . -B build/sanitize "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDGEPOSE_SANITIZE=ON \
  -DEDGEPOSE_BUILD_TESTS=ON >/dev/null
cmake --build build/sanitize --target edgepose_tests -j "$JOBS"
(cd build/sanitize && ctest --output-on-failure)
check_reports "ctest"

echo "== Python module with ASan + UBSan: tests/test_decoder_contract.py"
PKG="$TMP/pkg"
mkdir -p "$PKG"
# A copy of the package without its compiled module; the instrumented one is built into it.
(cd "$ROOT" && tar --exclude='_decoder*.so' --exclude='__pycache__' -cf - edgepose) | tar -C "$PKG" -xf -
cmake -S . -B build/sanitize-python "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDGEPOSE_SANITIZE=ON \
  -DEDGEPOSE_BUILD_PYTHON=ON -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PKG/edgepose" \
  -DPython_EXECUTABLE="$(command -v "$PYTHON")" \
  -Dpybind11_DIR="$("$PYTHON" -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  -DEDGEPOSE_VERSION="$("$PYTHON" -c 'import re; print(re.search(r"__version__ = \"([^\"]+)\"", open("edgepose/_version.py").read()).group(1))')" \
  >/dev/null
cmake --build build/sanitize-python --target _decoder -j "$JOBS"

PRELOAD="$(g++ -print-file-name=libasan.so):$(g++ -print-file-name=libubsan.so)"
# Run from inside the copy: the current directory comes first on sys.path, ahead of the
# checkout and of an editable install's finder.
run_instrumented() {
  (cd "$PKG" && env LD_PRELOAD="$PRELOAD" PYTHONPATH="$PKG${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" "$@")
}
# Make sure the instrumented module is the one imported, and that it carries the package's version.
run_instrumented -c "import edgepose, edgepose._decoder as d, sys; p = d.__file__; print('module:', p, d.__version__); \
sys.exit('not the instrumented module: ' + p if not p.startswith('$PKG') else \
'module version %r is not the package version %r' % (d.__version__, edgepose.__version__) \
if d.__version__ != edgepose.__version__ else 0)"
run_instrumented -m pytest -q -p no:cacheprovider "$ROOT/tests/test_decoder_contract.py"
check_reports "tests/test_decoder_contract.py"
echo "sanitize.sh: no sanitizer reports"
