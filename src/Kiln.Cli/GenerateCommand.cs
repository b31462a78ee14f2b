// `kiln generate`: stream a completion to the terminal, optionally through a LoRA adapter.
using System.CommandLine;
using Kiln.LoRA.Adapters;
using Kiln.LoRA.Generation;
using Kiln.LoRA.Models;

namespace Kiln.Cli;

internal static class GenerateCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var model = new Option<string>("--model") { Description = "Hugging Face model folder or llama2.c .bin checkpoint", Required = true };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer file or folder (default: beside the model)" };
        var adapter = new Option<string?>("--adapter") { Description = "PEFT adapter folder (adapter_model.safetensors + adapter_config.json)" };
        var prompt = new Option<string>("--prompt") { Description = "prompt text", DefaultValueFactory = _ => "" };
        var maxTokens = new Option<int>("--max-tokens") { Description = "tokens to generate", DefaultValueFactory = _ => 200 };
        var temperature = new Option<double>("--temperature") { Description = "0 = greedy", DefaultValueFactory = _ => 0.8 };
        var topP = new Option<double>("--top-p") { Description = "nucleus threshold (1 = off)", DefaultValueFactory = _ => 0.9 };
        var topK = new Option<int>("--top-k") { Description = "keep the k most likely (0 = off)", DefaultValueFactory = _ => 0 };
        var minP = new Option<double>("--min-p") { Description = "drop tokens below min-p × the top probability (0 = off)", DefaultValueFactory = _ => 0 };
        var penalty = new Option<double>("--repetition-penalty") { Description = "1 = off", DefaultValueFactory = _ => 1 };
        var seed = new Option<ulong>("--seed") { Description = "sampling seed", DefaultValueFactory = _ => 42 };
        var stop = new Option<string[]>("--stop") { Description = "stop strings", AllowMultipleArgumentsPerToken = true };
        var device = new Option<string>("--device") { Description = "cpu, cuda[:N] or auto", DefaultValueFactory = _ => "cpu" };
        var tf32 = new Option<bool>("--tf32") { Description = "on a GPU, let fp32 matrix products use TF32 tensor cores (as KILN_TF32=1)" };
        var cmd = new Command("generate", "Generate text, streaming to the terminal")
        {
            model, tokenizer, adapter, prompt, maxTokens, temperature, topP, topK, minP, penalty, seed, stop, device, tf32,
        };
        cmd.SetAction(r => CliErrors.Run(r.GetValue(verbose), () =>
        {
            var dev = TrainCommand.ResolveDevice(r.GetValue(device)!);
            if (r.GetValue(tf32)) Settings.AllowTf32 = true;
            var loaded = Pretrained.Load(r.GetValue(model)!, r.GetValue(tokenizer));
            if (r.GetValue(adapter) is { } a) PeftAdapter.Apply(loaded.Model, PeftAdapter.Load(a));
            if (dev.Kind != DeviceKind.Cpu) loaded.Model.To(dev);
            var o = new SamplingOptions
            {
                MaxTokens = r.GetValue(maxTokens), Temperature = r.GetValue(temperature), TopP = r.GetValue(topP), TopK = r.GetValue(topK),
                MinP = r.GetValue(minP), RepetitionPenalty = r.GetValue(penalty), Seed = r.GetValue(seed), StopStrings = r.GetValue(stop) ?? [],
            };
            string text = r.GetValue(prompt)!;
            Console.Write(text);
            foreach (var piece in new Generator(loaded.Model, loaded.RequireTokenizer()).Stream(text, o)) Console.Write(piece);
            Console.WriteLine();
            return 0;
        }));
        return cmd;
    }
}
