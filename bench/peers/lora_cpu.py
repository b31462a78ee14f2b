#!/usr/bin/python3
"""PyTorch peer (CPU, or CUDA with --device cuda) for Kiln's LoRA training and decoding on stories260K.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        /usr/bin/python3 bench/peers/lora_cpu.py [--threads N] [--out /tmp/lora_cpu.json]
    python3 bench/peers/lora_cpu.py --device cuda --out $OUT/lora_cuda_torch.json

Self-contained on purpose: transformers/peft/safetensors are not installed here,
so the safetensors file is parsed by hand and the Llama forward is written in
plain PyTorch, then checked against data/hf/stories260K/reference.json (logits,
1e-4) and data/models/stories260K/reference_logits.json (greedy ids, exact).

  train : one AdamW step (fwd + CE + bwd + step + zero_grad), B=4, T=128,
          LoRA r=8 alpha=16 on q,k,v,o,gate,up,down; base weights frozen.
  decode: greedy, KV cache, batch 1, from BOS, 200 new tokens, no_grad.
Both are median of N timed repetitions after warm-up (time.perf_counter; on cuda
with torch.cuda.synchronize() before each clock read). --threads is CPU-only.
"""

import argparse
import json
import math
import os
import statistics
import struct
import time

import torch
import torch.nn.functional as F

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
HF_DIR = os.path.join(ROOT, "data", "hf", "stories260K")
GREEDY_REF = os.path.join(ROOT, "data", "models", "stories260K", "reference_logits.json")
HAS_SDPA = hasattr(F, "scaled_dot_product_attention")  # torch >= 2.0 only


def load_safetensors(path):
    """Minimal reader: u64 LE header length, JSON header, raw little-endian data."""
    dtypes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = bytearray(f.read())  # writable buffer, so frombuffer doesn't warn
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        dt = dtypes[info["dtype"]]
        size = torch.empty((), dtype=dt).element_size()  # torch 1.13 has no dtype.itemsize
        t = torch.frombuffer(data, dtype=dt, count=(hi - lo) // size, offset=lo)
        out[name] = t.reshape(info["shape"]).clone().float()  # own the memory
    return out


class LoRALinear(torch.nn.Module):
    """PEFT-style: y = x W^T + (x A^T B^T) * alpha/r; W frozen, A kaiming-uniform, B zero."""

    def __init__(self, weight, rank=0, alpha=16.0):
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.rank = rank
        if rank:
            out_f, in_f = weight.shape
            bound = 1.0 / math.sqrt(in_f)  # PEFT's kaiming_uniform_(a=sqrt(5)) reduces to this
            self.lora_A = torch.nn.Parameter(torch.empty(rank, in_f).uniform_(-bound, bound))
            self.lora_B = torch.nn.Parameter(torch.zeros(out_f, rank))
            self.scale = alpha / rank

    def forward(self, x):
        y = F.linear(x, self.weight)
        if self.rank:
            y = y + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scale
        return y


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):  # Hugging Face convention: halves, not interleaved pairs
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Llama(torch.nn.Module):
    def __init__(self, cfg, sd, rank=0, alpha=16.0):
        super().__init__()
        self.cfg = cfg
        self.eps = cfg["rms_norm_eps"]
        self.n_heads, self.n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.hd = cfg.get("head_dim") or cfg["hidden_size"] // self.n_heads
        P = lambda t: torch.nn.Parameter(t, requires_grad=False)  # noqa: E731  frozen base
        self.embed = P(sd["model.embed_tokens.weight"])  # also the (tied) LM head
        self.norm = P(sd["model.norm.weight"])
        self.layers = torch.nn.ModuleList()
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            L = torch.nn.Module()
            L.ln1, L.ln2 = P(sd[p + "input_layernorm.weight"]), P(sd[p + "post_attention_layernorm.weight"])
            for name in ("q", "k", "v", "o", "gate", "up", "down"):  # every Linear but the tied head
                block = "self_attn" if len(name) == 1 else "mlp"
                setattr(L, name, LoRALinear(sd[f"{p}{block}.{name}_proj.weight"], rank, alpha))
            self.layers.append(L)
        inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, self.hd, 2, dtype=torch.float32) / self.hd))
        freqs = torch.outer(torch.arange(cfg["max_position_embeddings"], dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def attend(self, q, k, v, causal):
        if HAS_SDPA:
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
        if causal:  # only used when queries and keys cover the same positions
            T = s.shape[-1]
            s = s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=s.device).triu(1), float("-inf"))
        return torch.softmax(s, dim=-1) @ v

    def forward(self, ids, cache=None, pos=0):
        """ids (B,T). cache: per-layer preallocated (k, v) of (B,n_kv,max,hd), written in place.
        Causal masking is only needed when there is no cached prefix (training / prefill);
        a decode step (T=1) may see every cached position."""
        B, T = ids.shape
        h = F.embedding(ids, self.embed)
        cos, sin = self.cos[pos:pos + T], self.sin[pos:pos + T]
        rep = self.n_heads // self.n_kv
        for i, L in enumerate(self.layers):
            x = rms_norm(h, L.ln1, self.eps)
            q = L.q(x).view(B, T, self.n_heads, self.hd).transpose(1, 2)
            k = L.k(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
            v = L.v(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if cache is not None:
                ck, cv = cache[i]
                ck[:, :, pos:pos + T] = k
                cv[:, :, pos:pos + T] = v
                k, v = ck[:, :, :pos + T], cv[:, :, :pos + T]
            # GQA: query head j uses kv head j // rep (HF repeat_kv == repeat_interleave).
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            a = self.attend(q, k, v, causal=(pos == 0 and T > 1))
            h = h + L.o(a.transpose(1, 2).reshape(B, T, -1))
            x = rms_norm(h, L.ln2, self.eps)
            h = h + L.down(F.silu(L.gate(x)) * L.up(x))
        return rms_norm(h, self.norm, self.eps) @ self.embed.t()

    def new_cache(self, B, max_len):
        dev = self.embed.device
        return [tuple(torch.zeros(B, self.n_kv, max_len, self.hd, device=dev) for _ in "kv") for _ in self.layers]


def sync(dev):
    """Wait for queued GPU work so perf_counter measures it; no-op on the CPU."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def median_time(fn, reps, warmup, dev):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        sync(dev)
        t = time.perf_counter()
        fn()
        sync(dev)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def greedy(model, n_new):
    """Returns (ids, seconds spent in the n_new single-token forwards).
    With a BOS-only prompt the 'prefill' is itself one single-token step, so the
    n_new forwards at positions 0..n_new-1 are exactly the decode work; only cache
    allocation is outside the timer."""
    dev = model.embed.device
    cache = model.new_cache(1, n_new + 1)
    ids = [model.cfg["bos_token_id"]]
    cur = torch.tensor([[ids[0]]], device=dev)
    with torch.no_grad():
        sync(dev)
        t = time.perf_counter()
        for pos in range(n_new):
            nxt = int(model(cur, cache, pos)[0, -1].argmax())  # int() syncs each token anyway
            ids.append(nxt)
            cur = torch.tensor([[nxt]], device=dev)
        sync(dev)
        dt = time.perf_counter() - t
    return ids, dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads, CPU only (default: torch's choice)")
    ap.add_argument("--train-reps", type=int, default=30)
    ap.add_argument("--decode-reps", type=int, default=7)
    ap.add_argument("--decode-with-lora", action="store_true",
                    help="decode through the unmerged adapters (B reset to 0) instead of the bare base model")
    ap.add_argument("--out", default="/tmp/lora_cpu.json")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if args.threads and dev.type == "cpu":
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()  # on cuda: host threads, torch's default
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"

    with open(os.path.join(HF_DIR, "model", "config.json")) as f:
        cfg = json.load(f)
    sd = load_safetensors(os.path.join(HF_DIR, "model", "model.safetensors"))

    # --- correctness first: a fast but wrong forward is not a peer -------------
    with open(os.path.join(HF_DIR, "reference.json")) as f:
        ref = json.load(f)
    base = Llama(cfg, sd).to(dev).eval()
    with torch.no_grad():
        logits = base(torch.tensor([ref["input_ids"]], device=dev))[0].cpu()
    diff = (logits - torch.tensor(ref["logits"])).abs().max().item()
    print(f"torch {torch.__version__}, device {device_name}, threads {threads}, SDPA {HAS_SDPA}; "
          f"logits max |diff| = {diff:.3e}")
    # 1e-3 on cuda: GPU kernels (other reduction orders, SDPA backends) differ from CPU float32 by more than 1e-4.
    tol = 1e-4 if dev.type == "cpu" else 1e-3
    assert diff < tol, f"forward does not match reference.json: {diff}"

    # --- train: one LoRA optimizer step ----------------------------------------
    torch.manual_seed(0)  # LoRA A init
    B, T, rank, alpha = 4, 128, 8, 16.0
    model = Llama(cfg, sd, rank, alpha).to(dev)  # built on the CPU first: same LoRA A on every device
    gen = torch.Generator().manual_seed(1234)
    batch = torch.randint(0, cfg["vocab_size"], (B, T + 1), generator=gen).to(dev)
    inp, tgt = batch[:, :-1].contiguous(), batch[:, 1:].contiguous()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)

    def step(fwd):
        loss = F.cross_entropy(fwd(inp).reshape(-1, cfg["vocab_size"]), tgt.reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    loss0 = step(model).item()  # sanity: the loss must fall as the adapters memorise the batch
    t_step = median_time(lambda: step(model), args.train_reps, warmup=4, dev=dev)
    print(f"train eager: {t_step * 1e6:.0f} us/step, {B * T / t_step:.0f} tok/s "
          f"({sum(p.numel() for p in params)} trainable params; loss {loss0:.3f} -> {step(model).item():.3f})")

    compile_us, compile_note = None, None
    if not hasattr(torch, "compile"):
        compile_note = f"torch.compile not available in torch {torch.__version__} (needs >= 2.0)"
    else:
        try:
            cm = torch.compile(model)
            t0 = time.perf_counter()
            step(cm)  # first call compiles
            sync(dev)
            compile_note = f"compiled in {time.perf_counter() - t0:.1f} s"
            t_c = median_time(lambda: step(cm), args.train_reps, warmup=3, dev=dev)
            compile_us = round(t_c * 1e6, 1)
        except Exception as e:  # noqa: BLE001 - report, don't die
            compile_note = f"torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    print(f"train compile: {compile_us} us/step ({compile_note})")

    # --- decode: greedy, KV cache ----------------------------------------------
    n_new = 200
    dec = model if args.decode_with_lora else base
    with torch.no_grad():  # B back to 0: adapters cost their FLOPs but keep greedy ids exact
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.zero_()
    ids, _ = greedy(dec, n_new)  # warm-up, and the correctness check
    # Reported, not asserted: on cuda a near-tie argmax may flip from float differences alone.
    with open(GREEDY_REF) as f:
        matches = ids == json.load(f)["greedy_from_bos_200"][:n_new + 1]
    t_dec = statistics.median(greedy(dec, n_new)[1] for _ in range(args.decode_reps))
    print(f"decode: {t_dec / n_new * 1e6:.1f} us/token, {n_new / t_dec:.0f} tok/s; "
          f"greedy ids match reference: {matches}")

    result = {
        "torch_version": torch.__version__, "device": device_name, "threads": threads,
        "train": {"batch": B, "seq": T, "rank": rank, "us_per_step": round(t_step * 1e6, 1),
                  "tokens_per_s": round(B * T / t_step, 1),
                  "compile_us_per_step": compile_us, "compile_note": compile_note},
        "decode": {"new_tokens": n_new, "us_per_token": round(t_dec / n_new * 1e6, 2),
                   "tokens_per_s": round(n_new / t_dec, 1), "greedy_matches_reference": matches,
                   "with_lora": args.decode_with_lora},
        "logits_max_abs_diff": diff,
    }
    print(json.dumps(result))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
