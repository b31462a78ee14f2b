using Kiln.LoRA.Modules;

namespace Kiln.LoRA.Models;

/// <summary>
/// Named weights a model is built from (a state dict), with errors that name the source and the key.
/// Every weight is converted to <paramref name="dtype"/> (float32 unless the model is loaded in bf16/fp16). Tracks
/// which keys were used so a loader can report weights the architecture does not know.
/// </summary>
internal sealed class WeightSource(Func<string, Tensor?> lookup, IEnumerable<string> names, string source, DType dtype = DType.Float32)
{
    private readonly HashSet<string> _unused = new(names);

    public string SourceName => source;

    public IEnumerable<string> Unused => _unused;

    public bool Has(string name) => _unused.Contains(name) || lookup(name) is not null;

    public Tensor Get(string name, params int[] shape)
    {
        var t = lookup(name) ?? throw new InvalidDataException($"{source}: weight '{name}' is missing{Near(name)}");
        _unused.Remove(name);
        if (!t.Shape.SequenceEqual(shape))
            throw new InvalidDataException($"{source}: weight '{name}' has shape [{string.Join(", ", t.Shape)}], the config implies [{string.Join(", ", shape)}]");
        return t.DType == dtype ? t : t.Cast(dtype).Detach();
    }

    public Linear Linear(string prefix, bool bias)
    {
        var w = lookup(prefix + ".weight") ?? throw new InvalidDataException($"{source}: weight '{prefix}.weight' is missing{Near(prefix + ".weight")}");
        if (w.Rank != 2) throw new InvalidDataException($"{source}: weight '{prefix}.weight' must be 2-D, has shape [{string.Join(", ", w.Shape)}]");
        _unused.Remove(prefix + ".weight");
        w = w.DType == dtype ? w : w.Cast(dtype).Detach();
        Tensor? b = null;
        if (bias)
        {
            b = Get(prefix + ".bias", w.Shape[0]);
        }
        return new Linear(w, b);
    }

    /// <summary>Checks a loaded Linear against the shape the config implies.</summary>
    public void Expect(string name, Parameter p, int rows, int cols)
    {
        if (p.Shape[0] != rows || p.Shape[1] != cols)
            throw new InvalidDataException($"{source}: weight '{name}' has shape [{string.Join(", ", p.Shape)}], the config implies [{rows}, {cols}]");
    }

    private string Near(string name)
    {
        string tail = name[(name.LastIndexOf('.', name.Length - 8 > 0 ? name.Length - 8 : 0) + 1)..];
        var close = _unused.Where(n => n.EndsWith(tail, StringComparison.Ordinal)).Take(3).ToArray();
        return close.Length == 0 ? "" : $" (similar names present: {string.Join(", ", close)})";
    }
}
