using Kiln.LoRA.Modules;

namespace Kiln.LoRA.Adapters;

/// <summary>
/// Which layers get LoRA and how (PEFT's LoraConfig). Targets are module names matched like PEFT does: a
/// Linear whose path equals a target or ends with "." + target ("q_proj" matches
/// "model.layers.3.self_attn.q_proj"); "all-linear" targets every Linear except the output head.
/// </summary>
public sealed record LoraConfig
{
    public int Rank { get; init; } = 8;
    public double Alpha { get; init; } = 16;
    public double Dropout { get; init; }
    public bool UseRsLora { get; init; }
    public IReadOnlyList<string> TargetModules { get; init; } = ["q_proj", "v_proj"];

    public LoraOptions Options => new(Rank, Alpha, Dropout, UseRsLora);

    public static readonly IReadOnlyList<string> AllLinear = ["all-linear"];

    public bool Targets(string path)
    {
        foreach (var t in TargetModules)
        {
            if (t == "all-linear") return !path.EndsWith("lm_head", StringComparison.Ordinal);
            if (path == t || path.EndsWith("." + t, StringComparison.Ordinal)) return true;
        }
        return false;
    }

    /// <summary>Parses "q_proj,v_proj" or "all-linear".</summary>
    public static IReadOnlyList<string> ParseTargets(string text) =>
        text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) is { Length: > 0 } parts
            ? parts
            : throw new ArgumentException("LoRA targets: give module names such as q_proj,v_proj or all-linear");
}

/// <summary>Wraps a model's Linear layers with LoRA and freezes everything else.</summary>
public static class Lora
{
    /// <summary>
    /// Replaces every targeted Linear of <paramref name="model"/> with a LoraLinear (A seeded per layer from
    /// <paramref name="seed"/>), marks only the LoRA weights trainable, and returns the wrapped layers by path.
    /// Throws when no layer matches, listing the Linear names the model has.
    /// </summary>
    public static IReadOnlyDictionary<string, LoraLinear> Apply(Module model, LoraConfig config, int seed = 0)
    {
        config.Options.Validate();
        foreach (var p in model.NamedParameters()) p.Value.Trainable = false;
        var targets = new List<(Module Parent, string Child, string Path, Linear Layer)>();
        foreach (var (path, m) in model.NamedModules())
            foreach (var (name, child) in m.Children)
            {
                string childPath = Module.Join(path, name);
                if (child is Linear lin and not LoraLinear && config.Targets(childPath)) targets.Add((m, name, childPath, lin));
            }
        if (targets.Count == 0)
        {
            var linears = model.NamedModules().Where(m => m.Value is Linear).Select(m => m.Key.Split('.')[^1]).Distinct();
            throw new ArgumentException($"LoRA targets [{string.Join(", ", config.TargetModules)}] match no Linear layer; the model's Linear names are: {string.Join(", ", linears)}");
        }
        var result = new Dictionary<string, LoraLinear>();
        int i = 0;
        foreach (var (parent, child, path, layer) in targets)
        {
            var lora = new LoraLinear(layer, config.Options, seed * 7919 + i++);
            parent.ReplaceChild(child, lora);
            result[path] = lora;
        }
        return result;
    }

    /// <summary>The LoRA layers of a model by path.</summary>
    public static IReadOnlyDictionary<string, LoraLinear> Layers(Module model) =>
        model.NamedModules().Where(m => m.Value is LoraLinear).ToDictionary(m => m.Key, m => (LoraLinear)m.Value);
}
