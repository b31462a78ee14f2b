using System.Text.Json;
using System.Text.Json.Nodes;
using Kiln.LoRA.IO;
using Kiln.LoRA.Models;
using Kiln.LoRA.Modules;

namespace Kiln.LoRA.Adapters;

/// <summary>A LoRA adapter as PEFT stores it: its config and, per layer path, A (r, in) and B (out, r).</summary>
public sealed record AdapterData(LoraConfig Config, IReadOnlyDictionary<string, (Tensor A, Tensor B)> Layers, string? BaseModel, string Source);

/// <summary>
/// PEFT's adapter format both ways: adapter_model.safetensors with keys
/// "base_model.model.&lt;path&gt;.lora_A.weight" / "lora_B.weight" and adapter_config.json (r, lora_alpha,
/// target_modules, lora_dropout, use_rslora, base_model_name_or_path). Files are written atomically.
/// </summary>
public static class PeftAdapter
{
    public const string WeightsFile = "adapter_model.safetensors", ConfigFile = "adapter_config.json";
    private const string Prefix = "base_model.model.";

    public static void Save(Module model, string directory, LoraConfig config, string? baseModel = null)
    {
        var layers = Lora.Layers(model);
        if (layers.Count == 0) throw new InvalidOperationException("the model has no LoRA layers to save");
        Directory.CreateDirectory(directory);
        var tensors = layers.SelectMany(l => new[]
        {
            new KeyValuePair<string, Tensor>($"{Prefix}{l.Key}.lora_A.weight", l.Value.A.Value),
            new KeyValuePair<string, Tensor>($"{Prefix}{l.Key}.lora_B.weight", l.Value.B.Value),
        });
        Safetensors.Save(Path.Combine(directory, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        var targets = layers.Keys.Select(k => k.Split('.')[^1]).Distinct().Order(StringComparer.Ordinal);
        var json = new JsonObject
        {
            ["peft_type"] = "LORA",
            ["task_type"] = "CAUSAL_LM",
            ["base_model_name_or_path"] = baseModel,
            ["r"] = config.Rank,
            ["lora_alpha"] = config.Alpha,
            ["lora_dropout"] = config.Dropout,
            ["use_rslora"] = config.UseRsLora,
            ["target_modules"] = new JsonArray(targets.Select(t => (JsonNode)t).ToArray()),
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["inference_mode"] = true,
            ["init_lora_weights"] = true,
            ["use_dora"] = false,
            ["modules_to_save"] = null,
        };
        AtomicFile.WriteAllText(Path.Combine(directory, ConfigFile), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    public static AdapterData Load(string directory)
    {
        string cfgPath = Path.Combine(directory, ConfigFile), wPath = Path.Combine(directory, WeightsFile);
        if (!Directory.Exists(directory)) throw new FileNotFoundException($"adapter folder not found: {directory}", directory);
        if (!File.Exists(cfgPath)) throw new FileNotFoundException($"adapter config not found: {cfgPath}", cfgPath);
        if (!File.Exists(wPath)) throw new FileNotFoundException($"adapter weights not found: {wPath}", wPath);
        var (config, baseModel) = ReadConfig(cfgPath);
        using var file = SafetensorsFile.Open(wPath);
        var layers = new Dictionary<string, (Tensor A, Tensor B)>();
        foreach (var name in file.Names)
        {
            if (!name.EndsWith(".lora_A.weight", StringComparison.Ordinal)) continue;
            string stem = name[..^".lora_A.weight".Length];
            string path = stem.StartsWith(Prefix, StringComparison.Ordinal) ? stem[Prefix.Length..] : stem;
            string bName = stem + ".lora_B.weight";
            if (!file.Contains(bName)) throw new InvalidDataException($"{wPath}: '{name}' has no matching '{bName}'");
            var a = file.Load(name, DType.Float32); var b = file.Load(bName, DType.Float32);
            if (a.Rank != 2 || b.Rank != 2 || a.Shape[0] != config.Rank || b.Shape[1] != config.Rank)
                throw new InvalidDataException($"{wPath}: layer {path} has A [{string.Join(", ", a.Shape)}] and B [{string.Join(", ", b.Shape)}], adapter_config.json says r = {config.Rank}");
            layers[path] = (a, b);
        }
        if (layers.Count == 0) throw new InvalidDataException($"{wPath}: no LoRA weights (expected keys ending in .lora_A.weight / .lora_B.weight)");
        var unknown = file.Names.FirstOrDefault(n => !n.EndsWith(".lora_A.weight", StringComparison.Ordinal) && !n.EndsWith(".lora_B.weight", StringComparison.Ordinal));
        if (unknown is not null) throw new InvalidDataException($"{wPath}: tensor '{unknown}' is not a LoRA weight (modules_to_save / DoRA adapters are not supported)");
        return new AdapterData(config with { TargetModules = layers.Keys.Select(k => k.Split('.')[^1]).Distinct().ToArray() }, layers, baseModel, directory);
    }

    /// <summary>Wraps the adapter's layers with LoRA (if they are not yet) and loads its weights into them.</summary>
    public static void Apply(CausalLM model, AdapterData adapter)
    {
        var existing = Lora.Layers(model);
        bool sameShape = existing.Count == adapter.Layers.Count && adapter.Layers.Keys.All(existing.ContainsKey)
            && existing.Values.All(l => l.Options == adapter.Config.Options);
        if (!sameShape)
        {
            Unwrap(model);
            var targets = adapter.Layers.Keys.ToArray();
            foreach (var t in targets)
                if (!model.NamedModules().Any(m => m.Key == t && m.Value is Linear))
                    throw new InvalidDataException($"{adapter.Source}: incompatible adapter: layer '{t}' is not a Linear of this model");
            existing = Lora.Apply(model, adapter.Config with { TargetModules = targets });
        }
        foreach (var (path, (a, b)) in adapter.Layers)
        {
            var l = existing[path];
            if (!a.Shape.SequenceEqual(l.A.Shape) || !b.Shape.SequenceEqual(l.B.Shape))
                throw new InvalidDataException($"{adapter.Source}: incompatible adapter: layer '{path}' has A [{string.Join(", ", a.Shape)}] and B [{string.Join(", ", b.Shape)}], the model needs A [{string.Join(", ", l.A.Shape)}] and B [{string.Join(", ", l.B.Shape)}]");
            var dev = l.Weight.Value.Device;   // adapter files load on the CPU; the layer may live on a GPU
            l.A.Value = dev.Kind == DeviceKind.Cpu ? a : a.To(dev).Detach();
            l.B.Value = dev.Kind == DeviceKind.Cpu ? b : b.To(dev).Detach();
        }
    }

    /// <summary>Replaces every LoRA layer by its plain (unmerged) base Linear.</summary>
    public static void Unwrap(Module model)
    {
        foreach (var (path, m) in model.NamedModules().ToArray())
            foreach (var (name, child) in m.Children.ToArray())
                if (child is LoraLinear l)
                {
                    l.Unmerge();
                    m.ReplaceChild(name, new Linear(l.Weight.Value, l.Bias?.Value));
                }
    }

    private static (LoraConfig, string?) ReadConfig(string path)
    {
        JsonObject c;
        try { c = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidDataException($"{path}: expected a JSON object"); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e); }
        if (c["peft_type"]?.GetValue<string>() is { } type && type != "LORA") throw new InvalidDataException($"{path}: peft_type '{type}' is not LORA");
        if (c["use_dora"]?.GetValue<bool>() == true) throw new InvalidDataException($"{path}: DoRA adapters are not supported");
        int r = c["r"] is JsonValue rv && rv.TryGetValue<int>(out int ri) && ri > 0 ? ri : throw new InvalidDataException($"{path}: 'r' must be a positive integer");
        double alpha = c["lora_alpha"] is JsonValue av && av.TryGetValue<double>(out double ad) ? ad : r;
        double dropout = c["lora_dropout"] is JsonValue dv && dv.TryGetValue<double>(out double dd) ? dd : 0;
        bool rs = c["use_rslora"] is JsonValue sv && sv.TryGetValue<bool>(out bool sb) && sb;
        string? baseModel = c["base_model_name_or_path"] is JsonValue bv && bv.TryGetValue<string>(out var bs) ? bs : null;
        return (new LoraConfig { Rank = r, Alpha = alpha, Dropout = dropout, UseRsLora = rs }, baseModel);
    }
}

/// <summary>
/// Several adapters over one loaded base model; <see cref="Activate"/> switches which one the model runs
/// without reloading the base weights.
/// </summary>
public sealed class AdapterRegistry(CausalLM model)
{
    private readonly Dictionary<string, AdapterData> _adapters = [];

    public string? Active { get; private set; }
    public IReadOnlyCollection<string> Names => _adapters.Keys;

    public void Add(string name, AdapterData adapter) => _adapters[name] = adapter;

    public void Activate(string name)
    {
        if (!_adapters.TryGetValue(name, out var a)) throw new KeyNotFoundException($"no adapter named '{name}' (have: {string.Join(", ", _adapters.Keys)})");
        PeftAdapter.Apply(model, a);
        Active = name;
    }

    /// <summary>Back to the base model alone.</summary>
    public void Deactivate()
    {
        PeftAdapter.Unwrap(model);
        Active = null;
    }
}

/// <summary>Merges the LoRA layers into the base weights and writes a standalone Hugging Face model folder.</summary>
public static class Fuse
{
    /// <summary>Writes model.safetensors (base names, LoRA folded in as W + s·B·A) and config.json; the
    /// in-memory model is left as it was.</summary>
    public static void MergeAndSave(CausalLM model, string directory)
    {
        var tensors = model.NamedParameters()
            .Where(p => !p.Key.Contains(".lora_A.", StringComparison.Ordinal) && !p.Key.Contains(".lora_B.", StringComparison.Ordinal))
            .ToDictionary(p => p.Key, p => p.Value.Value);
        foreach (var (path, l) in Lora.Layers(model))
            if (!l.Merged) tensors[path + ".weight"] = l.Weight.Value + l.B.Value.MatMul(l.A.Value) * l.Options.Scaling;
        Directory.CreateDirectory(directory);
        Safetensors.Save(Path.Combine(directory, ModelWeights.SingleFileName), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        AtomicFile.WriteAllText(Path.Combine(directory, "config.json"), model.Config.ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
