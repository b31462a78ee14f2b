using System.Diagnostics;

namespace Kiln.LoRA.Tests.Cli;

/// <summary>The kiln tool as a user runs it: a separate process, its output and exit code.</summary>
public class CliTests
{
    private static (int Code, string Output) Kiln(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("exec");
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Kiln.Cli.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["COLUMNS"] = "400";
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        Assert.True(p.WaitForExit(120_000), "kiln did not finish in 2 minutes");
        return (p.ExitCode, output + err.Result);
    }

    private static readonly string Model = TestData.File("models", "stories260K", "stories260K.bin");

    [Fact]
    public void TrainThenGenerateWithTheAdapterThenFuse()
    {
        using var dir = TestData.Temp();
        string data = dir.File("data.jsonl");
        File.WriteAllLines(data, Enumerable.Range(0, 20).Select(i => $$"""{"text": "The cat number {{i}} sat on the mat and looked at the moon."}"""));
        var (code, output) = Kiln("train", "--model", Model, "--data", data, "--out", dir.File("out"), "--steps", "12", "--batch", "2", "--max-seq", "32", "--lr", "5e-3");
        Assert.True(code == 0, output);
        Assert.Contains("loss", output);
        Assert.True(File.Exists(dir.File("out", "adapter_model.safetensors")));
        Assert.True(File.Exists(dir.File("out", "loss_curve.svg")));

        (code, output) = Kiln("generate", "--model", Model, "--adapter", dir.File("out"), "--prompt", "The cat", "--max-tokens", "10", "--temperature", "0");
        Assert.True(code == 0, output);
        Assert.StartsWith("The cat", output);

        (code, output) = Kiln("fuse", "--model", Model, "--adapter", dir.File("out"), "--out", dir.File("fused"));
        Assert.True(code == 0, output);
        Assert.True(File.Exists(dir.File("fused", "model.safetensors")));
        Assert.True(File.Exists(dir.File("fused", "config.json")));
    }

    [Fact]
    public void TrainsWithABf16BaseAndSamplesAfterwards()
    {
        using var dir = TestData.Temp();
        string data = dir.File("data.jsonl");
        File.WriteAllLines(data, Enumerable.Range(0, 20).Select(i => $$"""{"text": "The dog number {{i}} ran to the park and back home."}"""));
        var (code, output) = Kiln("train", "--model", Model, "--data", data, "--out", dir.File("out"), "--steps", "4", "--batch", "2",
            "--max-seq", "32", "--dtype", "bf16", "--sample-prompt", "The dog", "--sample-tokens", "5");
        Assert.True(code == 0, output);
        Assert.Contains("base weights bf16", output);
        Assert.Contains("with the adapter", output);
        using (var adapter = global::Kiln.LoRA.IO.SafetensorsFile.Open(dir.File("out", "adapter_model.safetensors")))
            Assert.All(adapter.Tensors, t => Assert.Equal("F32", t.FileDType));   // the adapter is saved as trained: fp32

        (code, output) = Kiln("train", "--model", Model, "--data", data, "--out", dir.File("out2"), "--steps", "1", "--dtype", "int8");
        Assert.Equal(1, code);
        Assert.Contains("--dtype int8", output);
    }

    [Fact]
    public void BadInputsGiveOneClearLineAndExitCodeOne()
    {
        using var dir = TestData.Temp();
        string bad = dir.File("bad.jsonl");
        File.WriteAllLines(bad, ["""{"text": "fine"}""", """{"text": "fine too"}""", """{"prompt": "no completion"}"""]);
        var (code, output) = Kiln("train", "--model", Model, "--data", bad, "--out", dir.File("out"), "--steps", "1");
        Assert.Equal(1, code);
        Assert.Contains("line 3", output);
        Assert.DoesNotContain("   at ", output);   // no stack trace without --verbose

        (code, output) = Kiln("generate", "--model", dir.File("missing.bin"), "--prompt", "x");
        Assert.Equal(1, code);
        Assert.Contains("missing.bin", output);

        Directory.CreateDirectory(dir.File("adapter"));
        File.WriteAllText(dir.File("adapter", "adapter_config.json"), """{"peft_type": "LORA", "r": 4, "lora_alpha": 8}""");
        File.Copy(TestData.File("hf", "llama_tiny", "adapter", "adapter_model.safetensors"), dir.File("adapter", "adapter_model.safetensors"));
        (code, output) = Kiln("generate", "--model", Model, "--adapter", dir.File("adapter"), "--prompt", "x");
        Assert.Equal(1, code);
        Assert.Contains("r = 4", output);

        (code, output) = Kiln("train", "--model", Model, "--data", bad, "--out", dir.File("out"), "--device", "cuda");
        Assert.Equal(1, code);
        Assert.Contains("cuda", output);
    }
}
