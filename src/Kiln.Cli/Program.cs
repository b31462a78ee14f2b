// The kiln command-line tool: train, generate, fuse, info (and demo, the engine's own MLP example).
using System.CommandLine;
using Kiln.Cli;

var verbose = new Option<bool>("--verbose") { Description = "show stack traces on errors", Recursive = true };
var root = new RootCommand("Kiln: LoRA fine-tuning and inference on a lazy, fusing tensor engine") { verbose };
root.Subcommands.Add(TrainCommand.Create(verbose));
root.Subcommands.Add(GenerateCommand.Create(verbose));
root.Subcommands.Add(FuseCommand.Create(verbose));
root.Subcommands.Add(InfoCommand.Create());
root.Subcommands.Add(DemoCommand.Create());
return await root.Parse(args).InvokeAsync();
