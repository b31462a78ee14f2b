using Kiln.LoRA.IO;
using Kiln.LoRA.Tokenizers;

namespace Kiln.LoRA.Models;

/// <summary>A loaded model with its tokenizer (when one was found beside it) and where it came from.</summary>
public sealed record PretrainedModel(CausalLM Model, ITokenizer? Tokenizer, string Source)
{
    public ITokenizer RequireTokenizer() => Tokenizer ??
        throw new FileNotFoundException($"no tokenizer found for {Source}: put tokenizer.json (or a llama2.c tok*.bin) beside the model or pass one explicitly");
}

/// <summary>
/// Loads Llama / Qwen2 models: a Hugging Face folder (config.json + model.safetensors or a sharded index)
/// or a llama2.c checkpoint (.bin). The tokenizer is looked up beside the model unless given.
/// </summary>
public static class Pretrained
{
    /// <param name="dtype">what the weights are stored (and the model computes) in: fp32, or bf16/fp16 for a
    /// half-precision base (a file's bf16 tensors then load without a float32 copy; see CausalLM.CastFrozenWeights)</param>
    public static PretrainedModel Load(string path, string? tokenizerPath = null, DType dtype = DType.Float32)
    {
        CausalLM.RequireComputeDType(dtype, "Pretrained.Load");
        if (File.Exists(path) && path.EndsWith(".bin", StringComparison.OrdinalIgnoreCase))
        {
            var ckpt = Llama2cCheckpoint.Load(path);
            var config = ModelConfig.Parse(ckpt.HfConfig(), path);
            var model = CausalLM.FromWeights(config, ckpt.Weights, path, dtype);
            return new(model, Tokenizer(tokenizerPath, Path.GetDirectoryName(Path.GetFullPath(path))!), path);
        }
        if (Directory.Exists(path))
        {
            var config = ModelConfig.Load(Path.Combine(path, "config.json"));
            using var weights = ModelWeights.Open(path);
            var dict = weights.Names.ToDictionary(n => n, n => weights.Load(n, dtype));
            var model = CausalLM.FromWeights(config, dict, path, dtype);
            return new(model, Tokenizer(tokenizerPath, path), path);
        }
        if (File.Exists(path))
            throw new InvalidDataException($"{path}: not a model (expected a Hugging Face model folder with config.json and model.safetensors, or a llama2.c .bin checkpoint)");
        throw new FileNotFoundException($"model not found: {path}", path);
    }

    private static ITokenizer? Tokenizer(string? explicitPath, string dir)
    {
        if (explicitPath is not null) return TokenizerLoader.Load(explicitPath);
        try { return TokenizerLoader.Load(dir); }
        catch (FileNotFoundException) { return null; }
    }
}
