using System.Globalization;
using System.Xml.Linq;
using Kiln.LoRA.Training;

namespace Kiln.LoRA.Tests.Training;

public class LossCurveTests
{
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";

    private static (XElement Root, double W, double H) Parse(string svg)
    {
        var root = XDocument.Parse(svg).Root!;
        Assert.Equal(Svg + "svg", root.Name);
        var box = root.Attribute("viewBox")!.Value.Split(' ').Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(0, box[0]);
        Assert.Equal(0, box[1]);
        return (root, box[2], box[3]);
    }

    private static List<(double X, double Y)> PolylinePoints(XElement root) =>
        [.. root.Descendants(Svg + "polyline").Single(p => (string?)p.Attribute("class") == "train")
            .Attribute("points")!.Value.Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Select(p => p.Split(',')).Select(xy => (double.Parse(xy[0], CultureInfo.InvariantCulture), double.Parse(xy[1], CultureInfo.InvariantCulture)))];

    private static List<LossPoint> Decaying(int n) =>
        [.. Enumerable.Range(1, n).Select(s => new LossPoint(s, 3.0 * Math.Exp(-s / 20.0) + 0.5))];

    [Fact]
    public void OnePointPerStepInsideTheViewBoxWithAxesAndTitle()
    {
        var train = Decaying(100);
        var (root, w, h) = Parse(LossCurve.ToSvg(train, [new(50, 1.4), new(100, 0.9)], title: "run <1> & co"));
        var points = PolylinePoints(root);
        Assert.Equal(100, points.Count);
        Assert.All(points, p => { Assert.InRange(p.X, 0, w); Assert.InRange(p.Y, 0, h); });
        // Steps increase left to right and the decaying loss goes down the picture (SVG y grows downwards).
        Assert.True(points.Zip(points.Skip(1)).All(pair => pair.First.X < pair.Second.X));
        Assert.True(points[0].Y < points[^1].Y);
        Assert.Equal(2, root.Descendants(Svg + "circle").Count(c => (string?)c.Attribute("class") == "validation"));
        var texts = root.Descendants(Svg + "text").Select(t => t.Value).ToList();
        Assert.Contains("run <1> & co", texts);   // escaped in the file, intact after parsing
        Assert.Contains("step", texts);
        Assert.Contains("loss", texts);
        Assert.Contains("100", texts);            // a step tick label at the end of the range
    }

    [Fact]
    public void NonFiniteLossesAreSkippedAndNoted()
    {
        var train = Decaying(10);
        train[3] = new LossPoint(4, double.NaN);
        train[7] = new LossPoint(8, double.PositiveInfinity);
        var (root, w, h) = Parse(LossCurve.ToSvg(train, [new(5, double.NegativeInfinity), new(10, 1.0)]));
        var points = PolylinePoints(root);
        Assert.Equal(8, points.Count);
        Assert.All(points, p => { Assert.InRange(p.X, 0, w); Assert.InRange(p.Y, 0, h); });
        Assert.Single(root.Descendants(Svg + "circle"), c => (string?)c.Attribute("class") == "validation");
        Assert.Contains(root.Descendants(Svg + "text"), t => t.Value.StartsWith("3 non-finite loss value(s)"));
    }

    [Fact]
    public void SinglePointIsDrawnInsideThePlot()
    {
        var (root, w, h) = Parse(LossCurve.ToSvg([new LossPoint(7, 2.5)]));
        var p = Assert.Single(PolylinePoints(root));
        Assert.InRange(p.X, 1, w - 1);
        Assert.InRange(p.Y, 1, h - 1);
    }

    [Fact]
    public void EmptyAndAllNonFiniteInputsGiveAPictureWithoutACurve()
    {
        foreach (var train in new List<LossPoint>[] { [], [new(1, double.NaN)] })
        {
            var (root, _, _) = Parse(LossCurve.ToSvg(train));
            Assert.Empty(root.Descendants(Svg + "polyline"));
            Assert.Contains(root.Descendants(Svg + "text"), t => t.Value == "no data");
        }
    }

    [Fact]
    public void WriteSvgReplacesTheFileAndLeavesNoTempFiles()
    {
        using var dir = TestData.Temp();
        var path = dir.File("loss.svg");
        File.WriteAllText(path, "old");
        LossCurve.WriteSvg(path, Decaying(5));
        Assert.Equal(5, PolylinePoints(Parse(File.ReadAllText(path)).Root).Count);
        Assert.Equal(["loss.svg"], Directory.GetFiles(dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void SparklineScalesToBarsAndAveragesLongSeries()
    {
        Assert.Equal("▁▂▃▄▅▆▇█", LossCurve.Sparkline([0, 1, 2, 3, 4, 5, 6, 7]));
        Assert.Equal("█▁", LossCurve.Sparkline([4, 6, 1, 1], width: 2));    // bucket means 5 and 1
        Assert.Equal("▁ █", LossCurve.Sparkline([1, double.NaN, 2]));
        Assert.Equal("▁▁▁", LossCurve.Sparkline([3, 3, 3]));
        Assert.Equal("", LossCurve.Sparkline([]));
        Assert.Equal(40, LossCurve.Sparkline([.. Enumerable.Range(0, 1000).Select(i => (double)i)]).Length);
    }
}
