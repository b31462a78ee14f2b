#!/usr/bin/env bash
# GPU smoke test for Kiln.Cuda: publish tests/Kiln.Cuda.Tests as a trimmed, self-contained linux-x64
# executable into .gpu/ (the GPU servers have no .NET), then run it there.
#
# On the development machine (needs the .NET 10 SDK; ~1-2 min on 2 cores):
#   bench/cuda/publish-and-run.sh publish
# On the GPU machine (repository root of the copied working tree; the .gpu/ folder must travel with it:
# it is git-ignored, so with the project's device tool pass carry=[".gpu"]):
#   bench/cuda/publish-and-run.sh run
# which is the same as:
#   .gpu/Kiln.Cuda.Tests -noColor -showLiveOutput -result-junit "$OUT/kiln-cuda-tests.junit.xml" | tee "$OUT/kiln-cuda-tests.txt"
#
# The published folder is a build output and stays out of git: the repository's .gitignore lists .gpu/
# (in a fresh clone without that line: `echo /.gpu/ >> .git/info/exclude`). See docs/gpu.md and ../shared/docs/dotnet.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

case "${1:-}" in
  publish)
    rm -rf .gpu
    # Trimmed (the test project roots itself, Kiln.Cuda and xunit so no test is trimmed away),
    # invariant globalization (no libicu needed on the server), no debug symbols: ~30 MB.
    dotnet publish tests/Kiln.Cuda.Tests -c Release -r linux-x64 --self-contained \
      -p:PublishTrimmed=true -p:InvariantGlobalization=true -p:DebugType=none \
      -p:SatelliteResourceLanguages=en -o .gpu -m:1
    du -sh .gpu
    ;;
  run)
    out="${OUT:-.}"
    # KILN_CACHE_DIR under $OUT so the compiled kernels come back too; the test suite itself uses
    # temporary caches.
    export KILN_CACHE_DIR="${KILN_CACHE_DIR:-$out/kiln-cache}"
    nvidia-smi -L > "$out/nvidia-smi.txt" 2>&1 || true
    set +e
    # -showLiveOutput prints each test's output lines (device, versions, timings) as it runs.
    .gpu/Kiln.Cuda.Tests -noColor -showLiveOutput -result-junit "$out/kiln-cuda-tests.junit.xml" 2>&1 \
      | tee "$out/kiln-cuda-tests.txt"
    exit "${PIPESTATUS[0]}"
    ;;
  *)
    echo "usage: $0 publish|run" >&2; exit 2 ;;
esac
