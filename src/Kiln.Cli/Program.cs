// The kiln command-line tool. Today: `kiln info` and `kiln demo`; train/generate/fuse arrive with the LoRA stack.
using System.CommandLine;
using Kiln.Cli;

var root = new RootCommand("Kiln: LoRA fine-tuning and inference on a lazy, fusing tensor engine");
root.Subcommands.Add(InfoCommand.Create());
root.Subcommands.Add(DemoCommand.Create());
return await root.Parse(args).InvokeAsync();
