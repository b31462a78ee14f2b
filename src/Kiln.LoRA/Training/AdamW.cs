namespace Kiln.LoRA.Training;

/// <summary>AdamW hyper-parameters (PyTorch's defaults).</summary>
public sealed record AdamWOptions(double Beta1 = 0.9, double Beta2 = 0.999, double Eps = 1e-8, double WeightDecay = 0.0);

/// <summary>
/// AdamW with decoupled weight decay and bias correction as one multi-tensor graph op (Ops.AdamWUpdate), so an
/// update is part of the training step's graph (one plan, evaluated with forward and backward) and costs one kernel. Quantities that change every
/// step (learning rate, bias corrections) enter as data, not constants, so every step reuses the same plan.
/// Matches torch.optim.AdamW: p ← p·(1 − lr·wd) − lr/(1−β1ᵗ) · m / (√v / √(1−β2ᵗ) + eps).
/// </summary>
public sealed class AdamW
{
    private readonly AdamWOptions _o;

    public AdamW(IReadOnlyList<Tensor> parameters, AdamWOptions? options = null)
    {
        if (parameters.FirstOrDefault(p => p.DType != DType.Float32) is { } bad)
            throw new ArgumentException($"AdamW: parameters must be float32, got {bad}");
        _o = options ?? new AdamWOptions();
        // Dense zero arrays, not Zeros(): a realised fill is a broadcast view, whose layout would give the
        // second step a different plan key than the first.
        M = parameters.Select(p => Tensor.FromArray(new float[p.Numel], [.. p.Shape], p.Device)).ToArray();
        V = parameters.Select(p => Tensor.FromArray(new float[p.Numel], [.. p.Shape], p.Device)).ToArray();
        _device = parameters.Count > 0 ? parameters[0].Device : Device.Cpu;
    }

    /// <summary>First and second moments, one per parameter (realised leaves between steps).</summary>
    public Tensor[] M { get; private set; }
    public Tensor[] V { get; private set; }

    /// <summary>Number of updates applied so far.</summary>
    public long Step { get; private set; }

    public AdamWOptions Options => _o;

    /// <summary>
    /// Builds (lazily) the updated parameters and moments for step Step+1 at learning rate <paramref name="lr"/>,
    /// the gradients multiplied by <paramref name="gradScale"/> first (clipping, accumulation), as one
    /// multi-tensor kernel for all parameters.
    /// </summary>
    public PendingUpdate Update(IReadOnlyList<Tensor> parameters, IReadOnlyList<Tensor> grads, double lr, Tensor? gradScale = null)
    {
        long t = Step + 1;
        double bc1 = 1 - Math.Pow(_o.Beta1, t), bc2 = 1 - Math.Pow(_o.Beta2, t);
        var r = Ops.AdamWUpdate(parameters, grads, M, V, Scalar(lr / bc1), Scalar(1 / Math.Sqrt(bc2)), Scalar(1 - lr * _o.WeightDecay),
            gradScale ?? Scalar(1), _o.Beta1, _o.Beta2, _o.Eps);
        return new PendingUpdate(this, r.Select(x => x.P).ToArray(), r.Select(x => x.M).ToArray(), r.Select(x => x.V).ToArray());
    }

    /// <summary>Restores moments and step (checkpoint resume).</summary>
    public void Restore(long step, Tensor[] m, Tensor[] v)
    {
        if (m.Length != M.Length || v.Length != V.Length) throw new InvalidDataException($"optimizer state holds {m.Length} moments, the model has {M.Length} trainable tensors");
        for (int i = 0; i < m.Length; i++)
            if (!m[i].Shape.SequenceEqual(M[i].Shape) || !v[i].Shape.SequenceEqual(V[i].Shape))
                throw new InvalidDataException($"optimizer state tensor {i} has shape [{string.Join(", ", m[i].Shape)}], the parameter has [{string.Join(", ", M[i].Shape)}]");
        (Step, M, V) = (step, m, v);
    }

    private readonly Device _device;

    private Tensor Scalar(double v) => Tensor.FromArray([(float)v], [], _device);

    /// <summary>The lazily built result of one update; <see cref="Commit"/> after evaluating <see cref="Outputs"/>.</summary>
    public sealed class PendingUpdate(AdamW owner, Tensor[] parameters, Tensor[] m, Tensor[] v)
    {
        public Tensor[] Parameters => parameters;
        public IEnumerable<Tensor> Outputs => parameters.Concat(m).Concat(v);

        /// <summary>Makes the evaluated moments the optimizer's state and returns the new parameters as leaves.</summary>
        public Tensor[] Commit()
        {
            owner.M = m.Select(t => t.Detach()).ToArray();
            owner.V = v.Select(t => t.Detach()).ToArray();
            owner.Step++;
            return parameters.Select(t => t.Detach()).ToArray();
        }
    }
}
