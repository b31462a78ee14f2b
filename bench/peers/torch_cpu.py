#!/usr/bin/python3
"""PyTorch-on-CPU peer benchmark for Kiln's CPU benchmarks.

Run with Debian's interpreter (python3-torch 1.13 + OpenBLAS), e.g.:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        /usr/bin/python3 bench/peers/torch_cpu.py --json torch_cpu.json

All measurements are float32, under torch.inference_mode(), using
torch.set_num_threads(os.cpu_count()).  Each row gets a warm-up, then
median-of-N timing with time.perf_counter; very short ops are timed in
batches of `inner` calls per sample and divided back to a per-call time.

Rows (stable names):
  gemm_{256,512,1024,2048}           square C = A @ B, GFLOP/s = 2*M*N*K / t
  softmax_<shape>, rmsnorm_<shape>,
  layernorm_<shape>                  shapes 1x128x1024, 4x512x4096; last axis;
                                     GB/s = 2*numel*4 bytes / t (read x, write y)
  eltwise_chain_4x512x4096           y = ((x*1.5+0.5).tanh()*x).sigmoid() - x*0.25
                                     GB/s = 2*numel*4 bytes / t
  lora_<BxTxd>_r8                    y = x@W + (x@A@B)*2, W(d,d), A(d,8), B(8,d);
                                     reported in us (gflops = useful FLOPs / t)
  lora_2x32x1024_r{4,8,16,32,64}     the same, rank sweep
  layer_4x16x1024                    one transformer layer's ops: RMSNorm, q/k/v/o (16 heads of 64,
                                     causal attention as primitives), residual, RMSNorm, SwiGLU
                                     1024->2816->1024, residual (as bench/Kiln.Bench/LayerRows.cs)
  chain100_eval_hit_1elem            100 eager ops ((y*0.999).tanh() x 50) on a 1-element tensor:
                                     per-op host cost (Kiln's row is one Eval on a plan-cache hit)
"""

import argparse
import ctypes
import json
import math
import os
import platform
import statistics
import sys
import time

import torch

# Timing budget knobs (whole script should stay well under ~2 min on 2 cores).
TARGET_ROW_S = 2.5       # total measured time per row (approx.)
MIN_SAMPLE_S = 0.002     # batch tiny ops so one sample lasts at least this long
MIN_SAMPLES = 7
MAX_SAMPLES = 301
WARMUP_S = 0.2           # minimum warm-up time per row (at least 3 calls)


def openblas_info():
    """Return (corename, config) of the OpenBLAS mapped into this process, if any."""
    try:
        libs = set()
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1]
                if "openblas" in os.path.basename(p) and ".so" in p:
                    libs.add(p)
        for p in sorted(libs):
            lib = ctypes.CDLL(p)
            if hasattr(lib, "openblas_get_corename"):
                lib.openblas_get_corename.restype = ctypes.c_char_p
                lib.openblas_get_config.restype = ctypes.c_char_p
                return (lib.openblas_get_corename().decode(),
                        lib.openblas_get_config().decode(), p)
    except Exception:  # pragma: no cover - informational only
        pass
    return (None, None, None)


def bench(fn):
    """Warm up, then return median seconds per call of fn()."""
    # Warm-up: at least 3 calls and at least WARMUP_S seconds.
    t0 = time.perf_counter()
    n = 0
    while n < 3 or time.perf_counter() - t0 < WARMUP_S:
        fn()
        n += 1
    est = (time.perf_counter() - t0) / n
    inner = max(1, math.ceil(MIN_SAMPLE_S / max(est, 1e-9)))
    samples = int(TARGET_ROW_S / (inner * est))
    samples = max(MIN_SAMPLES, min(MAX_SAMPLES, samples))
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t) / inner)
    return statistics.median(times), samples, inner


def layer_rows(record, f32):
    """The transformer layer (4,16,1024) and the 100-op chain on one element."""
    b, t, d, heads, hd, ffn = 4, 16, 1024, 16, 64, 2816

    def w(i, o):
        return torch.randn(i, o, dtype=f32) / math.sqrt(i)
    wq, wk, wv, wo = w(d, d), w(d, d), w(d, d), w(d, d)
    wg, wu, wd = w(d, ffn), w(d, ffn), w(ffn, d)
    n1, n2 = torch.ones(d), torch.ones(d)
    causal = torch.ones(t, t, dtype=torch.bool).triu(1)
    x = torch.randn(b, t, d, dtype=f32)

    def rms(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * g

    def split(y):
        return y.view(b, t, heads, hd).transpose(1, 2)

    def layer(x=x):
        h = rms(x, n1)
        q, k, v = split(h @ wq), split(h @ wk), split(h @ wv)
        s = ((q @ k.transpose(-1, -2)) * (1 / math.sqrt(hd))).masked_fill(causal, float("-inf"))
        a = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(b, t, d)
        x2 = x + a @ wo
        h2 = rms(x2, n2)
        return x2 + (torch.nn.functional.silu(h2 @ wg) * (h2 @ wu)) @ wd
    flops = 2.0 * b * t * (4.0 * d * d + 3.0 * d * ffn) + 2 * 2.0 * b * heads * t * t * hd
    record("layer_4x16x1024", "rmsnorm,attn(16x64,causal),swiglu 2816", layer, flops=flops)

    one = torch.randn(1, dtype=f32)

    def chain(y=one):
        for _ in range(50):
            y = (y * 0.999).tanh()
        return y
    record("chain100_eval_hit_1elem", "100 ops, eager", chain, flops=100e3)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default="torch_cpu.json", help="output JSON path")
    ap.add_argument("--filter", default=None, help="only rows whose name contains this")
    args = ap.parse_args()

    threads = os.cpu_count()
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    # Force BLAS to load so its core can be reported.
    _ = torch.randn(8, 8) @ torch.randn(8, 8)
    core, config, libpath = openblas_info()

    print(f"torch {torch.__version__} | python {platform.python_version()} ({sys.executable})")
    print(f"threads: torch.get_num_threads()={torch.get_num_threads()} (os.cpu_count()={threads})")
    print(f"OpenBLAS: core={core} config={config} lib={libpath}")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if var in os.environ:
            print(f"note: {var}={os.environ[var]} is set")
    print()

    rows = []
    hdr = f"{'name':<28} {'shape':<34} {'us':>12} {'metric':>14} {'samples':>8}"
    print(hdr)
    print("-" * len(hdr))

    def record(name, shape, fn, *, flops=None, nbytes=None):
        if args.filter and args.filter not in name:
            return
        sec, samples, inner = bench(fn)
        us = sec * 1e6
        row = {"name": name, "shape": shape, "us": round(us, 3)}
        if flops is not None:
            row["gflops"] = round(flops / sec / 1e9, 3)
            metric = f"{row['gflops']:.2f} GFLOP/s"
        else:
            row["gbps"] = round(nbytes / sec / 1e9, 3)
            metric = f"{row['gbps']:.2f} GB/s"
        row["torch_version"] = torch.__version__
        row["threads"] = torch.get_num_threads()
        rows.append(row)
        print(f"{name:<28} {shape:<34} {us:>12.1f} {metric:>14} {samples:>5}x{inner:<3}",
              flush=True)

    f32 = torch.float32
    with torch.inference_mode():
        # --- GEMM --------------------------------------------------------
        for n in (256, 512, 1024, 2048):
            a = torch.randn(n, n, dtype=f32)
            b = torch.randn(n, n, dtype=f32)
            record(f"gemm_{n}", f"{n}x{n}x{n}", lambda a=a, b=b: torch.mm(a, b),
                   flops=2.0 * n * n * n)
            del a, b

        # --- normalisations over last axis -------------------------------
        for shape in ((1, 128, 1024), (4, 512, 4096)):
            x = torch.randn(*shape, dtype=f32)
            d = shape[-1]
            w = torch.randn(d, dtype=f32)
            bias = torch.randn(d, dtype=f32)
            s = "x".join(map(str, shape))
            nbytes = 2.0 * x.numel() * 4

            record(f"softmax_{s}", s, lambda x=x: torch.softmax(x, dim=-1), nbytes=nbytes)

            # torch 1.13 has no fused rms_norm: composed from elementary ops.
            def rmsnorm(x=x, w=w):
                return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
            record(f"rmsnorm_{s}", s, rmsnorm, nbytes=nbytes)

            record(f"layernorm_{s}", s,
                   lambda x=x, w=w, bias=bias: torch.nn.functional.layer_norm(
                       x, (d,), w, bias, 1e-5),
                   nbytes=nbytes)

            # The same norms written as primitives, as a user might (Kiln recognises them; PyTorch runs each op).
            def softmax_prims(x=x):
                e = (x - x.amax(-1, keepdim=True)).exp()
                return e / e.sum(-1, keepdim=True)
            record(f"softmax_prims_{s}", s, softmax_prims, nbytes=nbytes)
            record(f"rmsnorm_prims_{s}", s, rmsnorm, nbytes=nbytes)
            del x

        # --- elementwise chain --------------------------------------------
        x = torch.randn(4, 512, 4096, dtype=f32)

        def chain(x=x):
            return ((x * 1.5 + 0.5).tanh() * x).sigmoid() - x * 0.25
        record("eltwise_chain_4x512x4096", "4x512x4096", chain, nbytes=2.0 * x.numel() * 4)
        del x

        # --- LoRA forward --------------------------------------------------
        r = 8
        for (bsz, t, d) in ((1, 128, 512), (4, 16, 512), (4, 16, 1024), (4, 16, 2048)):
            x = torch.randn(bsz, t, d, dtype=f32)
            W = torch.randn(d, d, dtype=f32) / math.sqrt(d)
            A = torch.randn(d, r, dtype=f32) / math.sqrt(d)
            B = torch.randn(r, d, dtype=f32) / math.sqrt(r)

            def lora(x=x, W=W, A=A, B=B):
                return x @ W + (x @ A @ B) * 2
            tokens = bsz * t
            flops = 2.0 * tokens * d * d + 2.0 * tokens * d * r + 2.0 * tokens * r * d
            record(f"lora_{bsz}x{t}x{d}_r{r}", f"x={bsz}x{t}x{d},W={d}x{d},r={r}", lora,
                   flops=flops)

        for r in (4, 8, 16, 32, 64):
            x = torch.randn(2, 32, 1024, dtype=f32)
            W = torch.randn(1024, 1024, dtype=f32) / 32
            A = torch.randn(1024, r, dtype=f32) / 32
            B = torch.randn(r, 1024, dtype=f32) / math.sqrt(r)
            record(f"lora_2x32x1024_r{r}", f"x=2x32x1024,W=1024x1024,r={r}",
                   lambda x=x, W=W, A=A, B=B: x @ W + (x @ A @ B) * 2,
                   flops=2.0 * 64 * 1024 * (1024 + 2 * r))

        layer_rows(record, f32)

    with open(args.json, "w") as f:
        json.dump(rows, f, indent=2)
    print(f"\nwrote {len(rows)} rows to {args.json}")


if __name__ == "__main__":
    main()
