using System.Globalization;
using System.Security;
using System.Text;

namespace Kiln.LoRA.Training;

/// <summary>A loss value at an optimizer step.</summary>
public readonly record struct LossPoint(int Step, double Loss);

/// <summary>Pictures of the loss curve: an SVG file (hand-written, no dependency) and a terminal sparkline.</summary>
/// <remarks>Non-finite losses (NaN, ±inf: a diverged step) cannot be placed on a linear axis; they are left out
/// of the picture and their count is written under the title, so a diverging run is visible rather than a crash.</remarks>
public static class LossCurve
{
    private const double Left = 72, Right = 24, Top = 56, Bottom = 52;
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Renders the curve as an SVG document (viewBox 0 0 <paramref name="width"/> <paramref name="height"/>):
    /// the train losses as one polyline with a point per finite step, validation losses as circles, axes with
    /// ticks and labels, a title and a legend.</summary>
    public static string ToSvg(IReadOnlyList<LossPoint> train, IReadOnlyList<LossPoint>? validation = null,
        string title = "Training loss", int width = 800, int height = 450)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 200);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 150);
        validation ??= [];
        var trainOk = train.Where(p => double.IsFinite(p.Loss)).ToList();
        var validOk = validation.Where(p => double.IsFinite(p.Loss)).ToList();
        int skipped = train.Count - trainOk.Count + validation.Count - validOk.Count;

        var svg = new StringBuilder();
        svg.Append(Inv, $"<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        svg.Append(Inv, $"<rect x=\"0\" y=\"0\" width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n");
        svg.Append(Inv, $"<text class=\"title\" x=\"{width / 2.0:0.#}\" y=\"22\" text-anchor=\"middle\" font-size=\"16\">{Escape(title)}</text>\n");
        if (skipped > 0)
            svg.Append(Inv, $"<text class=\"note\" x=\"{width / 2.0:0.#}\" y=\"40\" text-anchor=\"middle\" fill=\"#b00\">{skipped} non-finite loss value(s) (NaN/inf) not shown</text>\n");

        double plotW = width - Left - Right, plotH = height - Top - Bottom;
        var all = trainOk.Concat(validOk).ToList();
        if (all.Count == 0)
        {
            svg.Append(Inv, $"<rect x=\"{Left}\" y=\"{Top}\" width=\"{plotW}\" height=\"{plotH}\" fill=\"none\" stroke=\"#888\"/>\n");
            svg.Append(Inv, $"<text class=\"empty\" x=\"{Left + plotW / 2:0.#}\" y=\"{Top + plotH / 2:0.#}\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n");
            return svg.Append("</svg>\n").ToString();
        }

        var x = Axis.Fit(all.Min(p => p.Step), all.Max(p => p.Step), integer: true);
        var y = Axis.Fit(all.Min(p => p.Loss), all.Max(p => p.Loss), integer: false);
        double Px(double step) => Left + (step - x.Min) / (x.Max - x.Min) * plotW;
        double Py(double loss) => Top + (y.Max - loss) / (y.Max - y.Min) * plotH;

        svg.Append("<g class=\"grid\" stroke=\"#e4e4e4\">\n");
        foreach (var t in y.Ticks) svg.Append(Inv, $"<line x1=\"{Left}\" y1=\"{Py(t):0.##}\" x2=\"{Left + plotW}\" y2=\"{Py(t):0.##}\"/>\n");
        foreach (var t in x.Ticks) svg.Append(Inv, $"<line x1=\"{Px(t):0.##}\" y1=\"{Top}\" x2=\"{Px(t):0.##}\" y2=\"{Top + plotH}\"/>\n");
        svg.Append("</g>\n<g class=\"ticks\" fill=\"#333\">\n");
        foreach (var t in y.Ticks) svg.Append(Inv, $"<text x=\"{Left - 6}\" y=\"{Py(t) + 4:0.##}\" text-anchor=\"end\">{Axis.Label(t, y.Step)}</text>\n");
        foreach (var t in x.Ticks) svg.Append(Inv, $"<text x=\"{Px(t):0.##}\" y=\"{Top + plotH + 16}\" text-anchor=\"middle\">{Axis.Label(t, x.Step)}</text>\n");
        svg.Append("</g>\n");
        svg.Append(Inv, $"<rect class=\"frame\" x=\"{Left}\" y=\"{Top}\" width=\"{plotW}\" height=\"{plotH}\" fill=\"none\" stroke=\"#333\"/>\n");
        svg.Append(Inv, $"<text class=\"xlabel\" x=\"{Left + plotW / 2:0.#}\" y=\"{height - 12}\" text-anchor=\"middle\">step</text>\n");
        svg.Append(Inv, $"<text class=\"ylabel\" x=\"16\" y=\"{Top + plotH / 2:0.#}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {Top + plotH / 2:0.#})\">loss</text>\n");

        if (trainOk.Count > 0)
        {
            var points = string.Join(" ", trainOk.Select(p => string.Create(Inv, $"{Px(p.Step):0.##},{Py(p.Loss):0.##}")));
            svg.Append(Inv, $"<polyline class=\"train\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"{points}\"/>\n");
        }
        foreach (var p in validOk)
            svg.Append(Inv, $"<circle class=\"validation\" cx=\"{Px(p.Step):0.##}\" cy=\"{Py(p.Loss):0.##}\" r=\"3.5\" fill=\"#ff7f0e\"/>\n");

        // Legend, top right inside the plot.
        double lx = Left + plotW - 120, ly = Top + 14;
        svg.Append(Inv, $"<g class=\"legend\"><line x1=\"{lx}\" y1=\"{ly - 4}\" x2=\"{lx + 18}\" y2=\"{ly - 4}\" stroke=\"#1f77b4\" stroke-width=\"1.5\"/><text x=\"{lx + 24}\" y=\"{ly}\">train</text>");
        if (validOk.Count > 0)
            svg.Append(Inv, $"<circle cx=\"{lx + 9}\" cy=\"{ly + 12}\" r=\"3.5\" fill=\"#ff7f0e\"/><text x=\"{lx + 24}\" y=\"{ly + 16}\">validation</text>");
        svg.Append("</g>\n");
        return svg.Append("</svg>\n").ToString();
    }

    /// <summary>Writes <see cref="ToSvg"/>'s picture to <paramref name="path"/> atomically (temp file in the same
    /// folder, then a rename), so a viewer refreshing the file during training never sees half a picture.</summary>
    public static void WriteSvg(string path, IReadOnlyList<LossPoint> train, IReadOnlyList<LossPoint>? validation = null,
        string title = "Training loss") =>
        Kiln.LoRA.IO.AtomicFile.WriteAllText(path, ToSvg(train, validation, title));

    private const string Bars = "▁▂▃▄▅▆▇█";

    /// <summary>One-line terminal picture of <paramref name="values"/>, at most <paramref name="width"/> characters:
    /// longer series are averaged over equal buckets. Non-finite values (or buckets containing one) show as a space.</summary>
    public static string Sparkline(IReadOnlyList<double> values, int width = 40)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        int n = Math.Min(width, values.Count);
        var cells = new double[n];
        for (int c = 0; c < n; c++)
        {
            int from = (int)((long)c * values.Count / n), to = (int)((long)(c + 1) * values.Count / n);
            double sum = 0;
            for (int i = from; i < to; i++) sum += values[i];
            cells[c] = sum / (to - from);
        }
        var finite = cells.Where(double.IsFinite).ToList();
        if (finite.Count == 0) return new string(' ', n);
        double lo = finite.Min(), hi = finite.Max();
        var sb = new StringBuilder(n);
        foreach (var v in cells)
        {
            if (!double.IsFinite(v)) { sb.Append(' '); continue; }
            int level = hi > lo ? (int)Math.Round((v - lo) / (hi - lo) * (Bars.Length - 1)) : 0;
            sb.Append(Bars[level]);
        }
        return sb.ToString();
    }

    private static string Escape(string text) => SecurityElement.Escape(text);
}
