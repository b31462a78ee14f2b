// Kernels run by an action, read from the process-wide counter (tests using it run in KernelCountingCollection).
namespace Kiln.Tests;

public static class KernelCount
{
    public static long Of(Action eval)
    {
        long k0 = Kiln.Runtime.Evaluator.KernelRuns;
        eval();
        return Kiln.Runtime.Evaluator.KernelRuns - k0;
    }
}
