namespace Kiln.LoRA.Models;

/// <summary>
/// Rotary position embedding in the Hugging Face (half-split) convention. Plain RoPE at positions
/// offset..offset+T-1 uses the engine's single rope kernel; Llama-3 frequency scaling and per-row positions
/// (left-padded batches) use cos/sin tables made on the host and passed as data, so the graph's structure
/// does not depend on the positions.
/// </summary>
internal sealed class Rotary
{
    private readonly double _theta;
    private readonly double[] _invFreq;
    private readonly bool _scaled;

    public Rotary(ModelConfig config)
    {
        _theta = config.RopeTheta;
        int half = config.HeadDim / 2;
        _invFreq = new double[half];
        for (int i = 0; i < half; i++) _invFreq[i] = Math.Pow(_theta, -2.0 * i / config.HeadDim);
        if (config.RopeScaling is { } s)
        {
            _scaled = true;
            ScaleLlama3(_invFreq, s);
        }
    }

    /// <summary>transformers' _compute_llama3_parameters: long wavelengths slowed by the factor, short kept,
    /// a smooth blend between.</summary>
    private static void ScaleLlama3(double[] invFreq, Llama3RopeScaling s)
    {
        double lowWavelen = s.OriginalMaxPositions / s.LowFreqFactor, highWavelen = s.OriginalMaxPositions / s.HighFreqFactor;
        for (int i = 0; i < invFreq.Length; i++)
        {
            double wavelen = 2 * Math.PI / invFreq[i];
            if (wavelen > lowWavelen) invFreq[i] /= s.Factor;
            else if (wavelen >= highWavelen)
            {
                double smooth = (s.OriginalMaxPositions / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                invFreq[i] = (1 - smooth) * invFreq[i] / s.Factor + smooth * invFreq[i];
            }
        }
    }

    /// <summary>x is (B, heads, T, head_dim).</summary>
    public Tensor Apply(Tensor x, Positions positions)
    {
        if (!_scaled && positions.PerRow is null)
            return positions.OffsetData is { } o ? x.Rope(o, _theta) : x.Rope(_theta, interleaved: false, offset: positions.Offset);
        var (cos, sin) = positions.Tables ??= Tables(positions, x.Shape[0], x.Shape[2], x.Device);
        int half = x.Shape[^1] / 2;
        var rotated = Ops.Concat([-x.Slice(-1, half), x.Slice(-1, 0, half)], axis: -1);
        return x * cos + rotated * sin;
    }

    private (Tensor Cos, Tensor Sin) Tables(Positions p, int batch, int t, Device device)
    {
        int half = _invFreq.Length, hd = 2 * half;
        int rows = p.PerRow is null ? 1 : batch;
        var cos = new float[rows * t * hd];
        var sin = new float[rows * t * hd];
        for (int b = 0; b < rows; b++)
            for (int i = 0; i < t; i++)
            {
                double pos = p.PerRow is null ? p.Offset + i : p.PerRow[b * t + i];
                for (int f = 0; f < half; f++)
                {
                    double a = pos * _invFreq[f];
                    int o = (b * t + i) * hd + f;
                    cos[o] = cos[o + half] = (float)Math.Cos(a);
                    sin[o] = sin[o + half] = (float)Math.Sin(a);
                }
            }
        return (Tensor.FromArray(cos, [rows, 1, t, hd], device), Tensor.FromArray(sin, [rows, 1, t, hd], device));
    }
}

/// <summary>
/// Token positions for one forward call: offset..offset+T-1 for every row, or explicit per-row positions
/// (B·T values, row-major) for left-padded batches.
/// </summary>
public sealed class Positions
{
    public Positions(int offset) { Offset = offset; }

    public Positions(int[] perRow) { PerRow = perRow; }

    /// <summary>Positions offset.. for every row, with the offset passed to the kernels as data (not as a
    /// graph constant), so consecutive decode steps run the same graph.</summary>
    public static Positions AsData(int offset, Device? device = null) => new(offset) { OffsetData = Tensor.FromArray(new[] { offset }, [], device ?? Device.Cpu) };

    public int Offset { get; }
    public int[]? PerRow { get; }
    internal Tensor? OffsetData { get; private init; }

    // The cos/sin tables are shared by every layer of one forward call.
    internal (Tensor Cos, Tensor Sin)? Tables { get; set; }
}
