#!/usr/bin/env bash
# Host-side syntax/type check of the embedded CUDA kernels (src/Kiln.Cuda/Kernels) with g++ and a stub prelude
# (CUDA keywords defined away, intrinsics stubbed): catches C++ errors without NVRTC or a GPU. It proves nothing
# about CUDA-specific constructs or numerics; the GPU tests (publish-and-run.sh) do.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/prelude.h" <<'PRE'
#include <cmath>
#include <math.h>
#include <algorithm>
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__
#define __launch_bounds__(x)
struct kiln_dim3 { unsigned x, y, z; };
static kiln_dim3 threadIdx, blockIdx, blockDim, gridDim;
inline float __int_as_float(int x) { float f; __builtin_memcpy(&f, &x, 4); return f; }
inline float __uint_as_float(unsigned x) { float f; __builtin_memcpy(&f, &x, 4); return f; }
inline unsigned __float_as_uint(float x) { unsigned u; __builtin_memcpy(&u, &x, 4); return u; }
inline float __shfl_xor_sync(unsigned, float v, int) { return v; }
inline double __shfl_xor_sync(unsigned, double v, int) { return v; }
inline float __shfl_sync(unsigned, float v, int) { return v; }
inline void __syncthreads() {}
inline float atomicAdd(float* p, float v) { float o = *p; *p += v; return o; }
inline void sincos(double a, double* s, double* c) { *s = std::sin(a); *c = std::cos(a); }
using std::min; using std::pow;
PRE
status=0
for f in src/Kiln.Cuda/Kernels/*.cu; do
  { echo '#include "prelude.h"'; cat src/Kiln.Cuda/Kernels/common.cuh; echo; cat "$f"; } > "$tmp/k.cpp"
  if g++ -std=c++17 -fsyntax-only -Wall -Wno-unknown-pragmas -Wno-unused-function -I"$tmp" "$tmp/k.cpp"; then echo "ok   $f"; else echo "FAIL $f"; status=1; fi
done
exit $status
