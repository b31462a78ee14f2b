// `kiln fuse`: merge a LoRA adapter into its base model and write a standalone Hugging Face model folder.
using System.CommandLine;
using Kiln.LoRA.Adapters;
using Kiln.LoRA.Models;
using Spectre.Console;

namespace Kiln.Cli;

internal static class FuseCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var model = new Option<string>("--model") { Description = "base model (Hugging Face folder or llama2.c .bin)", Required = true };
        var adapter = new Option<string>("--adapter") { Description = "PEFT adapter folder", Required = true };
        var output = new Option<string>("--out") { Description = "folder for the fused model (config.json + model.safetensors)", Required = true };
        var cmd = new Command("fuse", "Merge a LoRA adapter into the base weights and save a standalone model") { model, adapter, output };
        cmd.SetAction(r => CliErrors.Run(r.GetValue(verbose), () =>
        {
            var loaded = Pretrained.Load(r.GetValue(model)!);
            PeftAdapter.Apply(loaded.Model, PeftAdapter.Load(r.GetValue(adapter)!));
            Fuse.MergeAndSave(loaded.Model, r.GetValue(output)!);
            AnsiConsole.MarkupLine($"fused model written to [green]{Markup.Escape(r.GetValue(output)!)}[/]");
            return 0;
        }));
        return cmd;
    }
}
