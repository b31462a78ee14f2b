namespace Kiln.LoRA.Training;

/// <summary>Shape of a learning-rate schedule after warmup.</summary>
public enum LrScheduleKind
{
    /// <summary>Hold the peak rate (Hugging Face <c>get_constant_schedule_with_warmup</c>; with no warmup,
    /// <c>get_constant_schedule</c>).</summary>
    Constant,

    /// <summary>Linear decay to the floor at the last step (<c>get_linear_schedule_with_warmup</c>).</summary>
    Linear,

    /// <summary>Half-cosine decay to the floor at the last step (<c>get_cosine_schedule_with_warmup</c>;
    /// with a floor, <c>get_cosine_with_min_lr_schedule_with_warmup</c>).</summary>
    Cosine,
}

/// <summary>A learning rate as a pure function of the optimizer step (0-based: step 0 is the first update).</summary>
/// <remarks>
/// Multiplier m(step) of <see cref="PeakLr"/>, following Hugging Face transformers' definitions:
/// during warmup (step &lt; W) m = step / max(1, W); after it, with progress p = (step - W) / max(1, T - W),
/// Constant: 1; Linear: f = max(0, 1 - p); Cosine: f = 0.5 * (1 + cos(pi * p)), and m = f * (1 - r) + r where
/// r = <see cref="MinLr"/> / <see cref="PeakLr"/> (r = 0 reproduces the plain HF schedules exactly).
/// Deviation: p is clamped to 1 past the last step, so the cosine schedule stays at its floor instead of
/// rising again as HF's periodic formula would.
/// </remarks>
/// <param name="Kind">Shape after warmup.</param>
/// <param name="PeakLr">Rate reached at the end of warmup.</param>
/// <param name="WarmupSteps">Linear warmup length W (0: none).</param>
/// <param name="TotalSteps">Total training steps T; the decay reaches the floor at step T.</param>
/// <param name="MinLr">Floor the decay ends at (Linear and Cosine).</param>
public sealed record LrSchedule(LrScheduleKind Kind, double PeakLr, int WarmupSteps = 0, int TotalSteps = 0, double MinLr = 0)
{
    /// <summary>Canonical names accepted by <see cref="ParseKind"/>, one per kind.</summary>
    public static IReadOnlyList<string> Names { get; } = ["constant", "linear", "cosine"];

    private static readonly Dictionary<string, LrScheduleKind> ByName = new()
    {
        ["constant"] = LrScheduleKind.Constant,
        ["warmup-constant"] = LrScheduleKind.Constant,
        ["constant-with-warmup"] = LrScheduleKind.Constant,
        ["linear"] = LrScheduleKind.Linear,
        ["warmup-linear"] = LrScheduleKind.Linear,
        ["cosine"] = LrScheduleKind.Cosine,
        ["warmup-cosine"] = LrScheduleKind.Cosine,
        ["cosine-with-min-lr"] = LrScheduleKind.Cosine,
    };

    /// <summary>Parses a schedule name (case-insensitive; '_' and '-' are interchangeable so HF's names work).</summary>
    /// <exception cref="ArgumentException">Unknown name; the message lists the valid ones.</exception>
    public static LrScheduleKind ParseKind(string name)
    {
        var key = name.Trim().ToLowerInvariant().Replace('_', '-');
        if (ByName.TryGetValue(key, out var kind)) return kind;
        throw new ArgumentException(
            $"unknown learning-rate schedule '{name}'; valid names: {string.Join(", ", Names)} " +
            $"(warmup is set separately; also accepted: {string.Join(", ", ByName.Keys.Except(Names))})", nameof(name));
    }

    /// <summary>Builds a schedule from its name, checking the arguments.</summary>
    public static LrSchedule Parse(string name, double peakLr, int warmupSteps = 0, int totalSteps = 0, double minLr = 0) =>
        new LrSchedule(ParseKind(name), peakLr, warmupSteps, totalSteps, minLr).Validated();

    /// <summary>Throws <see cref="ArgumentException"/> when the settings make no sense; returns this otherwise.</summary>
    public LrSchedule Validated()
    {
        if (!(PeakLr > 0) || double.IsInfinity(PeakLr)) throw new ArgumentException($"peak learning rate must be positive and finite; got {PeakLr}");
        if (WarmupSteps < 0) throw new ArgumentException($"warmup steps must be >= 0; got {WarmupSteps}");
        if (!(MinLr >= 0 && MinLr <= PeakLr)) throw new ArgumentException($"min learning rate must be in [0, peak {PeakLr}]; got {MinLr}");
        if (Kind != LrScheduleKind.Constant && TotalSteps <= WarmupSteps)
            throw new ArgumentException($"{Kind} schedule needs total steps ({TotalSteps}) greater than warmup steps ({WarmupSteps})");
        return this;
    }

    /// <summary>Multiplier of <see cref="PeakLr"/> at <paramref name="step"/> (see the type remarks).</summary>
    public double Multiplier(int step)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        if (step < WarmupSteps) return step / (double)Math.Max(1, WarmupSteps);
        if (Kind == LrScheduleKind.Constant) return 1.0;

        double progress = Math.Min(1.0, (step - WarmupSteps) / (double)Math.Max(1, TotalSteps - WarmupSteps));
        double factor = Kind == LrScheduleKind.Linear
            ? Math.Max(0.0, 1.0 - progress)
            : 0.5 * (1.0 + Math.Cos(Math.PI * progress));
        double floor = MinLr / PeakLr;
        return factor * (1.0 - floor) + floor;
    }

    /// <summary>The learning rate at <paramref name="step"/>.</summary>
    public double LearningRate(int step) => PeakLr * Multiplier(step);
}
