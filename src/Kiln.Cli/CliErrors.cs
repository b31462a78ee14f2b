// One place that turns the errors a user can cause (bad path, bad file, bad option) into one red line and
// exit code 1; the stack trace only with --verbose.
using Kiln.LoRA.Data;
using Spectre.Console;

namespace Kiln.Cli;

internal static class CliErrors
{
    public static int Run(bool verbose, Func<int> action)
    {
        try { return action(); }
        catch (Exception e) when (IsUserError(e))
        {
            AnsiConsole.MarkupLine($"[red]error:[/] {Markup.Escape(e.Message)}");
            if (verbose) AnsiConsole.WriteException(e);
            else AnsiConsole.MarkupLine("[grey](run with --verbose for details)[/]");
            return 1;
        }
        catch (OperationCanceledException)
        {
            AnsiConsole.MarkupLine("[yellow]cancelled[/]");
            return 130;
        }
    }

    private static bool IsUserError(Exception e) => e is FileNotFoundException or DirectoryNotFoundException or InvalidDataException
        or DataFormatException or ArgumentException or KeyNotFoundException or InvalidOperationException or NotSupportedException
        or UnauthorizedAccessException or IOException;
}
