// A Hugging Face model folder's weights: one model.safetensors, or shards listed by model.safetensors.index.json.
using System.Text.Json;

namespace Kiln.LoRA.IO;

/// <summary>
/// The weights of a model directory, single-file or sharded, behind one name-based interface. Opening maps
/// every shard and checks that each indexed tensor is in its shard; disposing unmaps them all.
/// </summary>
public sealed class ModelWeights : ITensorReader
{
    /// <summary>The single-file weights name transformers writes.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>The shard index name transformers writes for models split into several files.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly IReadOnlyList<SafetensorsFile> _shards;
    private readonly Dictionary<string, SafetensorsFile> _shardOf;

    /// <summary>The directory the weights were opened from.</summary>
    public string Directory { get; }

    /// <inheritdoc/>
    public IReadOnlyList<string> Names { get; }

    /// <summary>The opened shard files (one for a single-file model).</summary>
    public IReadOnlyList<SafetensorsFile> Shards => _shards;

    private ModelWeights(string directory, IReadOnlyList<SafetensorsFile> shards, Dictionary<string, SafetensorsFile> shardOf, IReadOnlyList<string> names)
    {
        Directory = directory;
        _shards = shards;
        _shardOf = shardOf;
        Names = names;
    }

    /// <summary>Opens <paramref name="directory"/>'s sharded index if it has one, else its model.safetensors.</summary>
    /// <exception cref="FileNotFoundException">Neither file, or a shard the index names, exists.</exception>
    /// <exception cref="InvalidDataException">The index or a shard is malformed, or a shard lacks a tensor the index puts there.</exception>
    public static ModelWeights Open(string directory)
    {
        string dir = Path.GetFullPath(directory);
        string index = Path.Combine(dir, IndexFileName), single = Path.Combine(dir, SingleFileName);
        if (File.Exists(index)) return OpenSharded(dir, index);
        if (File.Exists(single))
        {
            var file = SafetensorsFile.Open(single);
            return new ModelWeights(dir, [file], file.Names.ToDictionary(n => n, _ => file, StringComparer.Ordinal), file.Names);
        }
        throw new FileNotFoundException($"model directory '{dir}' has neither {IndexFileName} nor {SingleFileName}", single);
    }

    private static ModelWeights OpenSharded(string dir, string index)
    {
        var weightMap = ReadWeightMap(index);
        var opened = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        try
        {
            var shardOf = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (var (name, shardName) in weightMap)
            {
                if (!opened.TryGetValue(shardName, out var shard))
                {
                    string shardPath = Path.Combine(dir, shardName);
                    if (!File.Exists(shardPath))
                        throw new FileNotFoundException($"{index}: shard '{shardName}' (holding '{name}' among others) does not exist at '{shardPath}'", shardPath);
                    opened[shardName] = shard = SafetensorsFile.Open(shardPath);
                }
                if (!shard.Contains(name))
                    throw new InvalidDataException($"{index}: weight_map puts tensor '{name}' in '{shardName}', which does not hold it");
                shardOf[name] = shard;
            }
            return new ModelWeights(dir, opened.Values.ToArray(), shardOf, weightMap.Select(kv => kv.Key).ToArray());
        }
        catch
        {
            foreach (var f in opened.Values) f.Dispose();
            throw;
        }
    }

    /// <summary>The index's weight_map (tensor name to shard file name), in file order.</summary>
    private static List<KeyValuePair<string, string>> ReadWeightMap(string index)
    {
        byte[] bytes = File.ReadAllBytes(index);
        if (!System.Text.Unicode.Utf8.IsValid(bytes)) throw new InvalidDataException($"{index}: not valid JSON (invalid UTF-8)");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(bytes); }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{index}: not valid JSON ({e.Message})", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{index}: expected a JSON object with a 'weight_map' object");
            var result = new List<KeyValuePair<string, string>>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new InvalidDataException($"{index}: weight_map entry '{p.Name}' is a JSON {p.Value.ValueKind}, expected a shard file name");
                string shard = p.Value.GetString()!;
                // Shards live next to the index; a path elsewhere is a corrupt (or hostile) index.
                if (shard.Length == 0 || Path.IsPathRooted(shard) || shard.Contains('/') || shard.Contains('\\'))
                    throw new InvalidDataException($"{index}: weight_map entry '{p.Name}' names shard '{shard}', which is not a plain file name in the model directory");
                if (!seen.Add(p.Name)) throw new InvalidDataException($"{index}: weight_map lists '{p.Name}' twice");
                result.Add(new(p.Name, shard));
            }
            return result;
        }
    }

    /// <inheritdoc/>
    public bool Contains(string name) => _shardOf.ContainsKey(name);

    /// <inheritdoc/>
    public TensorInfo Info(string name) => ShardOf(name).Info(name);

    /// <inheritdoc/>
    public Tensor Load(string name, DType? convertTo = null) => ShardOf(name).Load(name, convertTo);

    private SafetensorsFile ShardOf(string name) =>
        _shardOf.TryGetValue(name, out var shard) ? shard : throw NameSuggestions.NotFound($"model '{Directory}'", name, Names.ToArray());

    /// <summary>Unmaps every shard.</summary>
    public void Dispose()
    {
        foreach (var shard in _shards) shard.Dispose();
    }
}
