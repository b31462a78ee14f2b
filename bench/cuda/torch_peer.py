#!/usr/bin/env python3
"""PyTorch peer of Kiln's GPU benchmark (`Kiln.Bench cuda`, issue 5): the same cases on CUDA.

Variants per case: eager, torch.compile (default mode), torch.compile(mode="reduce-overhead"), and the same
eager ops hand-captured in a torch.cuda.CUDAGraph (timing g.replay()). Timing: CUDA events around one call,
median of N after warm-up. fp32 everywhere, TF32 off (Kiln's cuBLASLt GEMM computes in strict fp32).
Extras: device-to-device copy bandwidth (dst.copy_(src), 256 MiB) and torch.matmul 4096^3 fp32.

A variant that fails (or that is skipped after --budget seconds) is reported as null with the reason under
"errors". The JSON is rewritten after every case, so a run cut short keeps what it measured.

    python3 bench/cuda/torch_peer.py --out torch_cuda.json [--budget 150] [--filter softmax] [--no-compile]
"""
import argparse
import json
import statistics
import sys
import time
import traceback

import torch
import torch._dynamo  # noqa: F401 - torch._dynamo.reset() between compile variants
import torch.nn.functional as F

MIB = 1024 * 1024


def rand(shape, seed, std=1.0, mean=0.0):
    g = torch.Generator(device="cuda")
    g.manual_seed(seed)
    return torch.randn(shape, generator=g, device="cuda", dtype=torch.float32) * std + mean


def lora_fwd(x, w, a, b):
    return x @ w + (x @ a) @ b * 2.0


def softmax(x):
    return torch.softmax(x, -1)


def rmsnorm(x, w):
    if hasattr(F, "rms_norm"):
        return F.rms_norm(x, (x.shape[-1],), w, 1e-6)
    return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + 1e-6) * w


def chain100(x):
    y = torch.tanh(x * 0.999)
    for _ in range(49):
        y = torch.tanh(y * 0.999)
    return y


def matmul(x, w):
    return x @ w


def matmul_tf32(x, w):
    # TF32 for this call only (the script's other fp32 rows keep it off).
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        return x @ w
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False


def gelu_bwd(pre, w2, dy):
    # What autograd runs for d pre of (gelu_tanh(pre) @ w2 * dy).sum(): dy @ w2.T, then aten's gelu_backward.
    return torch.ops.aten.gelu_backward(dy @ w2.T, pre, approximate="tanh")


def scale_copy(x):
    return x * 1.0001


def cases():
    """(name, shape text, make inputs, fn, rate(us), unit, compile variants?) in Kiln's row names."""
    for (b, t, d) in [(1, 128, 512), (4, 16, 512), (4, 16, 1024), (4, 16, 2048)]:
        r = 8
        m = b * t
        flops = 2 * m * d * d + 2 * m * d * r + 2 * m * r * d
        yield (f"lora_fwd_{b}x{t}x{d}_r{r}", f"x=({b},{t},{d}) W={d}x{d} r={r} fp32",
               lambda b=b, t=t, d=d, r=r: (rand((b, t, d), 1), rand((d, d), 2, d ** -0.5),
                                           rand((d, r), 3, d ** -0.5), rand((r, d), 4, 0.01)),
               lora_fwd, lambda us, f=flops: f / us / 1e6, "TFLOP/s", True)
    for (b, t, d) in [(1, 128, 1024), (4, 512, 4096)]:
        nbytes = 4.0 * b * t * d
        yield (f"softmax_{b}x{t}x{d}", f"({b},{t},{d}) fp32, last dim",
               lambda b=b, t=t, d=d: (rand((b, t, d), 5),),
               softmax, lambda us, n=nbytes: 2 * n / us / 1e3, "GB/s", True)
    for (b, t, d) in [(1, 128, 1024), (4, 512, 4096)]:
        nbytes = 4.0 * b * t * d
        yield (f"rmsnorm_{b}x{t}x{d}", f"({b},{t},{d}) fp32, eps 1e-6, weight",
               lambda b=b, t=t, d=d: (rand((b, t, d), 6), rand((d,), 7, 0.1, 1.0)),
               rmsnorm, lambda us, n=nbytes: 2 * n / us / 1e3, "GB/s", True)
    yield ("chain100_1024", "(1024,) fp32, 50x(y*0.999).tanh()", lambda: (rand((1024,), 8),),
           chain100, lambda us: us / 100, "us/op", True)
    n = 4096
    yield ("gemm_4096_fp32", "4096^3 fp32 (TF32 off)", lambda: (rand((n, n), 9), rand((n, n), 10)),
           matmul, lambda us: 2.0 * n * n * n / us / 1e6, "TFLOP/s", False)
    yield ("gemm_4096_tf32", "4096^3 fp32 inputs, TF32 tensor cores", lambda: (rand((n, n), 9), rand((n, n), 10)),
           matmul_tf32, lambda us: 2.0 * n * n * n / us / 1e6, "TFLOP/s", False)
    yield ("copy_256MiB", "x*1.0001, 256 MiB fp32 read + write", lambda: (rand((64 * MIB,), 11),),
           scale_copy, lambda us: 2 * 256 * MIB / us / 1e3, "GB/s", False)
    # bf16 rows (fp32 accumulation in the GEMMs on both sides).
    bf = torch.bfloat16
    b, t, d, r = 4, 512, 4096, 16
    m = b * t
    lflops = 2 * m * d * d + 2 * m * d * r + 2 * m * r * d
    yield (f"lora_fwd_bf16_{b}x{t}x{d}_r{r}", f"x=({b},{t},{d}) W={d}x{d} r={r} bf16",
           lambda: (rand((b, t, d), 21).to(bf), rand((d, d), 22, d ** -0.5).to(bf),
                    rand((d, r), 23, d ** -0.5).to(bf), rand((r, d), 24, 0.01).to(bf)),
           lora_fwd, lambda us: lflops / us / 1e6, "TFLOP/s", True)
    yield (f"gelu_bwd_bf16_{b}x{t}x{d}", f"d pre of gelu_tanh(pre)·W2, pre=({b},{t},{d}) W2={d}x{d} bf16",
           lambda: (rand((b, t, d), 31).to(bf), rand((d, d), 32, d ** -0.5).to(bf), rand((b, t, d), 33).to(bf)),
           gelu_bwd, lambda us: 2 * m * d * d / us / 1e6, "TFLOP/s", True)
    yield (f"gemm_xw_bf16_{b}x{t}x{d}", f"x@W, x=({b},{t},{d}) W={d}x{d} bf16 (the LoRA row's floor)",
           lambda: (rand((b, t, d), 21).to(bf), rand((d, d), 22, d ** -0.5).to(bf)),
           matmul, lambda us: 2 * m * d * d / us / 1e6, "TFLOP/s", False)
    for (b, t, d) in [(4, 512, 4096), (16, 2048, 4096)]:
        nbytes = 2.0 * b * t * d
        yield (f"softmax_bf16_{b}x{t}x{d}", f"({b},{t},{d}) bf16, last dim",
               lambda b=b, t=t, d=d: (rand((b, t, d), 25).to(bf),),
               softmax, lambda us, n=nbytes: 2 * n / us / 1e3, "GB/s", True)
        yield (f"rmsnorm_bf16_{b}x{t}x{d}", f"({b},{t},{d}) bf16, eps 1e-6, weight",
               lambda b=b, t=t, d=d: (rand((b, t, d), 26).to(bf), rand((d,), 27, 0.1, 1.0).to(bf)),
               rmsnorm, lambda us, n=nbytes: 2 * n / us / 1e3, "GB/s", True)
    # Reductions over x (4,512,4096) fp32: all, each row, the leading axes, argmax per row.
    for (name, shape, fn) in [("sum_all_4x512x4096", "(4,512,4096) fp32 -> scalar", lambda x: x.sum()),
                              ("sum_rows_4x512x4096", "(4,512,4096) fp32, last dim", lambda x: x.sum(-1)),
                              ("sum_leading_4x512x4096", "(4,512,4096) fp32, axes 0,1", lambda x: x.sum((0, 1))),
                              ("argmax_rows_4x512x4096", "(4,512,4096) fp32, last dim", lambda x: x.argmax(-1))]:
        yield (name, shape, lambda: (rand((4, 512, 4096), 30),), fn,
               lambda us: 4.0 * 4 * 512 * 4096 / us / 1e3, "GB/s", True)
    n = 8192
    yield ("gemm_8192_bf16", "8192^3 bf16, fp32 accumulation", lambda: (rand((n, n), 28).to(bf), rand((n, n), 29).to(bf)),
           matmul, lambda us: 2.0 * n * n * n / us / 1e6, "TFLOP/s", False)


def time_call(call, warmup=10, seconds=0.5, min_iters=15, max_iters=1000):
    """Median µs of one call, CUDA events around it (host launch work included when the GPU waits on it)."""
    for _ in range(warmup):
        call()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    call()
    e.record()
    e.synchronize()
    per_us = max(s.elapsed_time(e) * 1000.0, 1.0)
    iters = int(min(max(seconds * 1e6 / per_us, min_iters), max_iters))
    times = []
    for _ in range(iters):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        call()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) * 1000.0)
    return statistics.median(times), iters


def reason(exc):
    msg = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return msg[0][:300] if msg else type(exc).__name__


def eager_call(fn, inputs):
    return lambda: fn(*inputs)


def compiled_call(fn, inputs, mode):
    torch._dynamo.reset()   # a fresh cache per variant: the same function is compiled once per mode
    cf = torch.compile(fn) if mode is None else torch.compile(fn, mode=mode)
    mark = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)
    if mode == "reduce-overhead" and mark is not None:
        def call():
            mark()
            return cf(*inputs)
    else:
        def call():
            return cf(*inputs)
    for _ in range(3):   # compile (and, for reduce-overhead, record the CUDA graph) before timing
        call()
    torch.cuda.synchronize()
    return call


def graph_call(fn, inputs):
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn(*inputs)
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = fn(*inputs)
    torch.cuda.synchronize()
    graph_call.keep.append((g, out))   # keep the graph's static output alive
    return g.replay


graph_call.keep = []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=100.0, help="seconds after which no new compile variant starts")
    ap.add_argument("--filter", default=None)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--seconds", type=float, default=0.5, help="timed seconds per variant (upper bound on samples)")
    args = ap.parse_args()

    t0 = time.time()
    if not torch.cuda.is_available():
        print("CUDA unavailable to PyTorch", file=sys.stderr)
        return 3
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    doc = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0),
        "timing": "CUDA events around one call, median of N after warm-up; fp32, TF32 off",
        "rows": {},
        "extra": {},
    }

    def save():
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=2)

    variants = [("eager", lambda fn, inp: eager_call(fn, inp)),
                ("compile", lambda fn, inp: compiled_call(fn, inp, None)),
                ("compile_reduce_overhead", lambda fn, inp: compiled_call(fn, inp, "reduce-overhead")),
                ("cuda_graph", graph_call)]
    for name, shape, make, fn, rate, unit, do_compile in cases():
        if args.filter and args.filter not in name:
            continue
        row = {"shape": shape, "unit": unit, "errors": {}}
        doc["rows"][name] = row
        try:
            inputs = make()
            torch.cuda.synchronize()
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            row["errors"]["inputs"] = reason(exc)
            save()
            continue
        for vname, build in variants:
            row[vname] = None
            if vname.startswith("compile"):
                if not do_compile:
                    row["errors"][vname] = "not run: reference row (copy bandwidth / GEMM floor)"
                    continue
                if args.no_compile:
                    row["errors"][vname] = "not run: --no-compile"
                    continue
                if time.time() - t0 > args.budget:
                    row["errors"][vname] = f"skipped: time budget of {args.budget:.0f} s spent"
                    continue
            try:
                tb = time.time()
                call = build(fn, inputs)
                us, iters = time_call(call, seconds=args.seconds)
                row[vname] = {"us": us, "rate": rate(us), "samples": iters, "setup_s": round(time.time() - tb, 2)}
                print(f"[torch] {name} {vname}: {us:.1f} us ({rate(us):.2f} {unit})", file=sys.stderr, flush=True)
            except Exception as exc:  # noqa: BLE001 - reported, not fatal
                row["errors"][vname] = reason(exc)
                print(f"[torch] {name} {vname} failed: {reason(exc)}", file=sys.stderr, flush=True)
                traceback.print_exc(file=sys.stderr)
            finally:
                torch.cuda.synchronize()
        if not row["errors"]:
            del row["errors"]
        del inputs
        graph_call.keep.clear()
        torch.cuda.empty_cache()
        save()

    # Extras: the bandwidth ceiling (a plain device-to-device copy) and the fp32 GEMM floor.
    try:
        src = rand((64 * MIB,), 12)
        dst = torch.empty_like(src)
        us, iters = time_call(lambda: dst.copy_(src), seconds=args.seconds)
        doc["extra"]["d2d_copy_256MiB"] = {"us": round(us, 2), "rate": round(2 * 256 * MIB / us / 1e3, 1), "unit": "GB/s"}
        del src, dst
    except Exception as exc:  # noqa: BLE001
        doc["extra"]["d2d_copy_256MiB"] = {"error": reason(exc)}
    try:
        n = 4096
        x, w = rand((n, n), 9), rand((n, n), 10)
        us, iters = time_call(lambda: torch.matmul(x, w), seconds=args.seconds)
        doc["extra"]["matmul_4096_fp32"] = {"us": round(us, 2), "rate": round(2.0 * n ** 3 / us / 1e6, 2), "unit": "TFLOP/s"}
        del x, w
    except Exception as exc:  # noqa: BLE001
        doc["extra"]["matmul_4096_fp32"] = {"error": reason(exc)}
    doc["elapsed_s"] = round(time.time() - t0, 1)
    save()
    print(f"[torch] wrote {args.out} in {doc['elapsed_s']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
