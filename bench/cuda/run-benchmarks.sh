#!/usr/bin/env bash
# GPU benchmark (issue 5): Kiln's `cuda` rows beside bench/cuda/torch_peer.py on the same shapes.
#
# On the development machine (needs the .NET 10 SDK):
#   bench/cuda/run-benchmarks.sh publish     # trimmed self-contained linux-x64 Kiln.Bench into .gpu-bench/
# On the GPU machine, from the repository root (.gpu-bench/ is git-ignored: with the project's device tool
# pass carry=[".gpu-bench"]; PyTorch with CUDA must be installed there):
#   bench/cuda/run-benchmarks.sh run
# which runs
#   python3 bench/cuda/torch_peer.py --out $OUT/torch_cuda.json
#   .gpu-bench/Kiln.Bench cuda --peer $OUT/torch_cuda.json --json $OUT/kiln_cuda.json --root . > $OUT/kiln_cuda.md
#   python3 bench/peers/lora_cpu.py --device cuda --out $OUT/lora_cuda_torch.json
#   .gpu-bench/Kiln.Bench lora --device cuda --root . --peer $OUT/lora_cuda_torch.json > $OUT/lora_cuda.md
# and prints the tables. Budget: ~5 minutes in all: the PyTorch script starts no new compile variant after
# 100 s and is killed at 150 s (it rewrites its JSON after every case, so what ran is kept); Kiln (three
# processes: as built, KILN_DISABLE=cudagraph, KILN_DISABLE=fusion) is killed at 120 s.
set -euo pipefail
cd "$(dirname "$0")/../.."

case "${1:-}" in
  publish)
    rm -rf .gpu-bench
    # Trimmed like .gpu/ (bench/cuda/publish-and-run.sh); Kiln.Bench roots its own assembly and Kiln.Cuda
    # (TrimmerRootAssembly in its .csproj) so BenchmarkDotNet's reflection-found benchmarks are kept too.
    dotnet publish bench/Kiln.Bench -c Release -r linux-x64 --self-contained \
      -p:PublishTrimmed=true -p:InvariantGlobalization=true -p:DebugType=none \
      -p:SatelliteResourceLanguages=en -o .gpu-bench -m:1
    du -sh .gpu-bench
    ;;
  run)
    out="${OUT:-.}"
    mkdir -p "$out"
    # The kernel cache stays out of $OUT: its ~100 files crowd out what the device tool brings back.
    export KILN_CACHE_DIR="${KILN_CACHE_DIR:-/tmp/kiln-bench-cache}"
    nvidia-smi -L > "$out/nvidia-smi.txt" 2>&1 || true
    cat "$out/nvidia-smi.txt" || true
    set +e
    timeout 220 python3 bench/cuda/torch_peer.py --out "$out/torch_cuda.json" --budget 180 2>&1 | tee "$out/torch_cuda.log"
    echo "torch_peer.py exit: ${PIPESTATUS[0]}"
    timeout 240 .gpu-bench/Kiln.Bench cuda --peer "$out/torch_cuda.json" --json "$out/kiln_cuda.json" --root . \
      > "$out/kiln_cuda.md" 2> "$out/kiln_cuda.log"
    rc=$?
    cat "$out/kiln_cuda.log"
    cat "$out/kiln_cuda.md"
    # End to end on the GPU: LoRA training steps and greedy decoding on stories260K, PyTorch eager beside it.
    timeout 120 python3 bench/peers/lora_cpu.py --device cuda --out "$out/lora_cuda_torch.json" 2>&1 | tee "$out/lora_cuda_torch.log"
    timeout 180 .gpu-bench/Kiln.Bench lora --device cuda --root . --peer "$out/lora_cuda_torch.json" > "$out/lora_cuda.md" 2> "$out/lora_cuda.log"
    lrc=$?
    cat "$out/lora_cuda.log" "$out/lora_cuda.md"
    [ "$rc" -eq 0 ] && rc=$lrc
    exit "$rc"
    ;;
  *)
    echo "usage: $0 publish|run" >&2; exit 2 ;;
esac
