namespace Kiln.LoRA.Modules;

/// <summary>
/// A node of the model tree. Children and parameters are registered under the names Hugging Face uses, so
/// <see cref="NamedParameters"/> yields state-dict keys ("model.layers.0.self_attn.q_proj.weight").
/// </summary>
public abstract class Module
{
    private readonly List<KeyValuePair<string, Module>> _children = [];
    private readonly List<KeyValuePair<string, Parameter>> _parameters = [];

    /// <summary>Training mode (dropout active). Set for the whole tree with <see cref="SetTraining"/>.</summary>
    public bool Training { get; private set; }

    protected T Register<T>(string name, T child) where T : Module
    {
        _children.Add(new(name, child));
        return child;
    }

    protected Parameter Register(string name, Parameter parameter)
    {
        _parameters.Add(new(name, parameter));
        return parameter;
    }

    public IEnumerable<KeyValuePair<string, Module>> Children => _children;

    public void SetTraining(bool training)
    {
        Training = training;
        foreach (var c in _children) c.Value.SetTraining(training);
    }

    /// <summary>Every parameter with its dotted path, depth first in registration order.</summary>
    public IEnumerable<KeyValuePair<string, Parameter>> NamedParameters(string prefix = "")
    {
        foreach (var p in _parameters) yield return new(Join(prefix, p.Key), p.Value);
        foreach (var c in _children)
            foreach (var p in c.Value.NamedParameters(Join(prefix, c.Key))) yield return p;
    }

    /// <summary>This module and every descendant with its dotted path ("" for this one).</summary>
    public IEnumerable<KeyValuePair<string, Module>> NamedModules(string prefix = "")
    {
        yield return new(prefix, this);
        foreach (var c in _children)
            foreach (var m in c.Value.NamedModules(Join(prefix, c.Key))) yield return m;
    }

    /// <summary>Replaces the child registered as <paramref name="name"/> (used to wrap Linear layers with LoRA).</summary>
    public void ReplaceChild(string name, Module replacement)
    {
        int i = _children.FindIndex(c => c.Key == name);
        if (i < 0) throw new KeyNotFoundException($"{GetType().Name} has no child '{name}' (children: {string.Join(", ", _children.Select(c => c.Key))})");
        _children[i] = new(name, replacement);
        OnChildReplaced(name, replacement);
    }

    /// <summary>Lets a module update the typed field that mirrors a replaced child.</summary>
    protected virtual void OnChildReplaced(string name, Module replacement) { }

    public IEnumerable<Parameter> TrainableParameters() => NamedParameters().Select(p => p.Value).Where(p => p.Trainable);

    internal static string Join(string prefix, string name) => prefix.Length == 0 ? name : name.Length == 0 ? prefix : prefix + "." + name;
}
