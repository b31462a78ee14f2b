// The LoRA stack on the GPU: the real stories260K model's logits and a few LoRA training steps agree with the
// CPU, and the training step is captured once as a CUDA Graph and replayed.
using System.Diagnostics;
using Kiln.Cuda.Backend;
using Kiln.LoRA.Adapters;
using Kiln.LoRA.Models;
using Kiln.LoRA.Training;
using Kiln.Runtime;

namespace Kiln.Cuda.Tests;

[Collection("gpu")]
public class LoraOnGpuTests
{
    private static string Model()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            var p = Path.Combine(dir.FullName, "data", "models", "stories260K", "stories260K.bin");
            if (File.Exists(p)) return p;
        }
        throw new FileNotFoundException("data/models/stories260K/stories260K.bin not found above the test binary");
    }

    [Fact]
    public void Stories260KLogitsAndLoraTrainingStepsMatchTheCpu()
    {
        Gpu.Context();
        KilnCuda.Register();
        var d = Device.Cuda(0);
        var backend = (CudaBackend)Backends.For(d);
        int[] ids = [1, 403, 407, 261, 378, 432, 383, 286];
        var cpu = Pretrained.Load(Model()).Model;
        var gpu = Pretrained.Load(Model()).Model.To(d);
        Assert.Equal(d, gpu.Device);
        var lc = cpu.Forward(Tensor.FromArray(ids, [1, ids.Length])).ToArray<float>();
        var lg = gpu.Forward(Tensor.FromArray(ids, [1, ids.Length])).ToArray<float>();
        Assert.Equal(lc.Length, lg.Length);
        for (int i = 0; i < lc.Length; i++) Assert.True(Math.Abs(lc[i] - lg[i]) < 1e-3, $"logit {i}: cpu {lc[i]} gpu {lg[i]}");
        Console.WriteLine("[lora-gpu] forward logits match");

        Lora.Apply(cpu, new LoraConfig { Rank = 8, Alpha = 16, TargetModules = LoraConfig.AllLinear }, seed: 1);
        Lora.Apply(gpu, new LoraConfig { Rank = 8, Alpha = 16, TargetModules = LoraConfig.AllLinear }, seed: 1);
        var tc = new Trainer(cpu); var tg = new Trainer(gpu);
        var rng = new Random(2);
        long captures0 = backend.Captures;
        var times = new List<double>();
        for (int step = 0; step < 6; step++)
        {
            var batch = new TokenBatch(Enumerable.Range(0, 512).Select(_ => rng.Next(512)).ToArray(), Enumerable.Range(0, 512).Select(_ => rng.Next(512)).ToArray(), 4, 128);
            var rc = tc.Feed(batch, 1e-3)!;
            var sw = Stopwatch.StartNew();
            var rg = tg.Feed(batch, 1e-3)!;
            times.Add(sw.Elapsed.TotalMicroseconds);
            Console.WriteLine($"[lora-gpu] step {step}: cpu {rc.Loss:F5} gpu {rg.Loss:F5}, {sw.Elapsed.TotalMicroseconds:F0} µs");
            Assert.True(Math.Abs(rc.Loss - rg.Loss) < 2e-3, $"step {step}: cpu loss {rc.Loss} gpu loss {rg.Loss}");
            Assert.True(Math.Abs(rc.GradNorm - rg.GradNorm) < 2e-3 * (1 + rc.GradNorm), $"step {step}: cpu norm {rc.GradNorm} gpu {rg.GradNorm}");
        }
        TestContext.Current.TestOutputHelper?.WriteLine($"GPU LoRA step (4x128, stories260K, r8 all-linear), host-timed µs per step: {string.Join(", ", times.Select(t => t.ToString("F0")))}; captures {backend.Captures - captures0}, replays {backend.Replays}");
        Assert.True(backend.Captures - captures0 >= 1, "the training step should have been captured as a CUDA Graph");
    }

    [Theory]
    [InlineData(DType.BFloat16)]
    [InlineData(DType.Float16)]
    public void MixedPrecisionLoraTrainingOnTheGpuFollowsTheCpu(DType dtype)
    {
        // The base model in bf16/fp16 (CastFrozenWeights), LoRA and AdamW in fp32, on both sides: the GPU fuses
        // half-precision graphs and keeps fp32 inside its kernels, the CPU rounds after every op, so the losses agree
        // to half precision's resolution, not bit for bit. Captured and replayed like the fp32 step.
        Gpu.Context();
        KilnCuda.Register();
        var d = Device.Cuda(0);
        var backend = (CudaBackend)Backends.For(d);
        var cpu = Pretrained.Load(Model()).Model;
        var gpu = Pretrained.Load(Model()).Model.To(d);
        foreach (var m in new[] { cpu, gpu })
        {
            Lora.Apply(m, new LoraConfig { Rank = 8, Alpha = 16, TargetModules = LoraConfig.AllLinear, Dropout = 0.05 }, seed: 1);
            m.CastFrozenWeights(dtype);
        }
        var tc = new Trainer(cpu); var tg = new Trainer(gpu);
        var rng = new Random(4);
        long captures0 = backend.Captures;
        double tol = dtype == DType.BFloat16 ? 1e-2 : 2e-3;
        for (int step = 0; step < 5; step++)
        {
            var batch = new TokenBatch(Enumerable.Range(0, 256).Select(_ => rng.Next(512)).ToArray(), Enumerable.Range(0, 256).Select(_ => rng.Next(512)).ToArray(), 2, 128);
            var rc = tc.Feed(batch, 1e-3)!;
            var rg = tg.Feed(batch, 1e-3)!;
            Console.WriteLine($"[lora-gpu {dtype}] step {step}: cpu {rc.Loss:F5} gpu {rg.Loss:F5}, norm cpu {rc.GradNorm:F4} gpu {rg.GradNorm:F4}");
            Assert.True(Math.Abs(rc.Loss - rg.Loss) <= tol * rc.Loss, $"{dtype} step {step}: cpu loss {rc.Loss} gpu loss {rg.Loss}");
            Assert.True(Math.Abs(rc.GradNorm - rg.GradNorm) <= 5 * tol * (1 + rc.GradNorm), $"{dtype} step {step}: cpu norm {rc.GradNorm} gpu {rg.GradNorm}");
        }
        Assert.All(gpu.NamedParameters(), p => Assert.Equal(p.Value.Trainable ? DType.Float32 : dtype, p.Value.Value.DType));
        Assert.True(backend.Captures - captures0 >= 1, "the mixed-precision step should have been captured as a CUDA Graph");
    }
}

[Collection("gpu")]
public class GenerationOnGpuTests
{
    /// <summary>stories260K twice: one copy on the CPU, one moved to cuda:0.</summary>
    private static (PretrainedModel Cpu, PretrainedModel Gpu) CpuAndGpuModels()
    {
        Gpu.Context();
        KilnCuda.Register();
        string path = typeof(LoraOnGpuTests).GetMethod("Model", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!.Invoke(null, null) as string ?? "";
        var cpu = Pretrained.Load(path);
        var gpu = Pretrained.Load(path);
        gpu.Model.To(Device.Cuda(0));
        return (cpu, gpu);
    }

    [Fact]
    public void GreedyDecodeOnTheGpuEqualsTheCpu()
    {
        var (cpu, gpu) = CpuAndGpuModels();
        var o = new Kiln.LoRA.Generation.SamplingOptions { MaxTokens = 40, StopTokens = [] };
        var backend = (CudaBackend)Backends.For(Device.Cuda(0));
        var a = new Kiln.LoRA.Generation.Generator(cpu.Model, cpu.RequireTokenizer()).GenerateIds([1], o).ToArray();
        long captures0 = backend.Captures, replays0 = backend.Replays, copied0 = backend.OutputsCopied, staged0 = backend.InputsStaged, bound0 = backend.InputsBound;
        var b = new Kiln.LoRA.Generation.Generator(gpu.Model, gpu.RequireTokenizer()).GenerateIds([1], o).ToArray();
        long captures = backend.Captures - captures0, replays = backend.Replays - replays0, copied = backend.OutputsCopied - copied0;
        Console.WriteLine($"[gen-gpu] {gpu.RequireTokenizer().Decode([1, .. b])} (captures {captures}, replays {replays}, " +
            $"inputs staged {backend.InputsStaged - staged0}, bound {backend.InputsBound - bound0}, outputs copied {copied})");
        Assert.Equal(a, b);
        // The decode step reads its valid key count and position on the device: one plan, captured once and replayed
        // for the later tokens (no host read per step). A few captures cover the prefill and the first steps.
        Assert.True(replays >= 30, $"decode steps should replay a captured graph: {captures} captures, {replays} replays for 40 tokens");
        // The KV caches a step writes are handed out, not copied out (their copy is a kernel the graph can re-point);
        // only what a library kernel wrote (the logits' GEMM) is copied: ~1 output per step, not 1 + 2 per layer.
        Assert.True(copied <= 2 * replays, $"{copied} outputs copied out over {replays} replays");
    }

    [Fact]
    public void BatchedLeftPaddedGreedyDecodeOnTheGpuEqualsTheCpu()
    {
        // Prompts of different lengths, left-padded with a mask and a growing cache (concat on the GPU).
        var (cpu, gpu) = CpuAndGpuModels();
        var o = new Kiln.LoRA.Generation.SamplingOptions { MaxTokens = 24, StopTokens = [] };
        int[][] prompts = [[1, 403, 407], [1], [1, 403, 407, 261, 378, 300]];
        var a = new Kiln.LoRA.Generation.Generator(cpu.Model, cpu.RequireTokenizer()).GenerateIdsBatch(prompts, o);
        var b = new Kiln.LoRA.Generation.Generator(gpu.Model, gpu.RequireTokenizer()).GenerateIdsBatch(prompts, o);
        for (int r = 0; r < prompts.Length; r++) Assert.Equal(a[r], b[r]);
    }

    [Fact]
    public void Bf16DecodingWithTheKvCacheOnTheGpuFollowsTheCpu()
    {
        // A bf16 model (Pretrained.Load(dtype)) keeps its KV cache in bf16 (written by index_add, a bf16 scatter_add on
        // the GPU). Teacher-forced (the same next token on both sides, so rounding cannot make the paths diverge):
        // each step's logits agree with the CPU's bf16 run to bf16 resolution.
        Gpu.Context();
        KilnCuda.Register();
        string path = typeof(LoraOnGpuTests).GetMethod("Model", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!.Invoke(null, null) as string ?? "";
        var cpu = Pretrained.Load(path, dtype: DType.BFloat16).Model;
        var gpu = Pretrained.Load(path, dtype: DType.BFloat16).Model.To(Device.Cuda(0));
        var (kc, kg) = (new KvCache(cpu.Config.Layers), new KvCache(gpu.Config.Layers));
        int[][] steps = [[1, 403, 407], [261], [378], [432], [383], [286]];
        foreach (var ids in steps)
        {
            var lc = cpu.Forward(Tensor.FromArray(ids, [1, ids.Length]), kc);
            var lg = gpu.Forward(Tensor.FromArray(ids, [1, ids.Length]), kg);
            Tensor.Eval([lc, .. kc.Pending]); Tensor.Eval([lg, .. kg.Pending]);
            Assert.Equal(DType.BFloat16, lg.DType);
            var (a, b) = (lc.ToArray<float>(), lg.ToArray<float>());
            double scale = a.Max(Math.Abs);
            for (int i = 0; i < a.Length; i++) Assert.True(Math.Abs(a[i] - b[i]) <= 3e-2 * scale, $"after {ids[0]}: logit {i} cpu {a[i]} gpu {b[i]}");
            kc.Commit(); kg.Commit();
        }
    }
}
