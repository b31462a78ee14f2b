// `kiln demo`: builds a small MLP training step as one lazy graph (forward, backward, SGD update),
// evaluates it a few times and prints the loss and timing of each Eval: the README's main job until
// `kiln train` lands with the LoRA stack.
using System.CommandLine;
using System.Diagnostics;
using Spectre.Console;

namespace Kiln.Cli;

internal static class DemoCommand
{
    public static Command Create()
    {
        var steps = new Option<int>("--steps") { Description = "training steps", DefaultValueFactory = _ => 20 };
        var hidden = new Option<int>("--hidden") { Description = "hidden width", DefaultValueFactory = _ => 256 };
        var cmd = new Command("demo", "Fit a tiny MLP with the lazy engine and show loss and Eval timing") { steps, hidden };
        cmd.SetAction(r => Run(r.GetValue(steps), r.GetValue(hidden)));
        return cmd;
    }

    private static int Run(int steps, int hidden)
    {
        if (steps < 1 || hidden < 1) { AnsiConsole.MarkupLine("[red]--steps and --hidden must be positive[/]"); return 1; }
        const int batch = 64, inputs = 32, classes = 10;
        // Data: labels from a fixed random linear teacher, so the task is learnable.
        var x = Tensor.RandomNormal([batch, inputs], seed: 1);
        var teacher = Tensor.RandomNormal([inputs, classes], seed: 2);
        var labels = x.MatMul(teacher).ArgMax(-1).Eval();
        var w1 = Tensor.RandomNormal([inputs, hidden], seed: 3, std: 1 / Math.Sqrt(inputs));
        var w2 = Tensor.RandomNormal([hidden, classes], seed: 4, std: 1 / Math.Sqrt(hidden));
        var norm = Tensor.Ones([hidden]);
        const double lr = 0.5;

        AnsiConsole.MarkupLine($"[bold]kiln demo[/]: MLP {inputs}→{hidden}→{classes}, batch {batch}, device {Device.Default}, SIMD {InfoCommand.SimdDescription()}");
        var table = new Table().AddColumns("step", "loss", "nodes", "Eval µs").Border(TableBorder.Simple);
        for (int step = 1; step <= steps; step++)
        {
            // One graph: forward, backward (autograd as a graph transform) and the SGD update.
            var (loss, g) = Autograd.ValueAndGrad(p =>
            {
                var h = Ops.RmsNorm(x.MatMul(p[0]).Silu(), p[2]);
                return Ops.CrossEntropy(h.MatMul(p[1]), labels);
            }, w1, w2, norm);
            var n1 = w1 - g[0] * lr; var n2 = w2 - g[1] * lr; var n3 = norm - g[2] * lr;
            int nodes = CountNodes(loss, n1, n2, n3);
            var sw = Stopwatch.StartNew();
            Tensor.Eval(loss, n1, n2, n3);
            sw.Stop();
            (w1, w2, norm) = (n1.Detach(), n2.Detach(), n3.Detach());
            if (step == 1 || step == steps || step % Math.Max(1, steps / 10) == 0)
                table.AddRow(step.ToString(), loss.Item<float>().ToString("F4"), nodes.ToString(), sw.Elapsed.TotalMicroseconds.ToString("F0"));
        }
        AnsiConsole.Write(table);
        return 0;
    }

    private static int CountNodes(params Tensor[] outputs)
    {
        var seen = new HashSet<Graph.Node>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<Graph.Node>(outputs.Select(t => t.Node));
        while (stack.Count > 0)
        {
            var n = stack.Pop();
            if (seen.Add(n)) foreach (var i in n.Inputs) stack.Push(i);
        }
        return seen.Count;
    }
}
