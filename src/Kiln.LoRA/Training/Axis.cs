using System.Globalization;

namespace Kiln.LoRA.Training;

/// <summary>A plot axis: a data range widened to "nice" tick values (1, 2 or 5 times a power of ten).</summary>
internal sealed record Axis(double Min, double Max, double Step, double[] Ticks)
{
    private const int TargetTicks = 6;

    /// <summary>The axis covering [lo, hi]; a degenerate range (one value) is widened so it has extent.</summary>
    public static Axis Fit(double lo, double hi, bool integer)
    {
        if (hi <= lo)
        {
            double pad = integer ? 1 : Math.Max(Math.Abs(lo) * 0.1, 1e-3);
            (lo, hi) = (lo - pad, hi + pad);
        }
        double step = NiceStep((hi - lo) / (TargetTicks - 1));
        if (integer) step = Math.Max(1, Math.Round(step));
        double min = Math.Floor(lo / step) * step, max = Math.Ceiling(hi / step) * step;
        int count = (int)Math.Round((max - min) / step) + 1;
        var ticks = Enumerable.Range(0, count).Select(i => min + i * step).ToArray();
        return new Axis(min, max, step, ticks);
    }

    private static double NiceStep(double raw)
    {
        double magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double f = raw / magnitude;
        double nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
        return nice * magnitude;
    }

    /// <summary>Tick label with as many decimals as the step needs (and no "-0").</summary>
    public static string Label(double value, double step)
    {
        int decimals = Math.Clamp(-(int)Math.Floor(Math.Log10(step)), 0, 10);
        if (Math.Abs(value) < step * 1e-9) value = 0;
        return value.ToString("F" + decimals, CultureInfo.InvariantCulture);
    }
}
