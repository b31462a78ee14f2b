// Storage: one typed managed array per CPU buffer (from and back to the BufferPool), or device memory owned by
// a backend (DeviceMemory set, Data empty).
using System.Runtime.InteropServices;

namespace Kiln.Runtime;

/// <summary>Memory on an accelerator, owned by its backend; Release hands it back to the backend's allocator.</summary>
internal interface IDeviceMemory
{
    Device Device { get; }
    long Bytes { get; }
    void Release();
}

internal sealed class Buffer
{
    public readonly DType DType;
    public readonly Array Data;   // float[], double[], BFloat16[], Half[], int[], long[] or bool[]; empty on a device
    public readonly IDeviceMemory? DeviceMemory;
    public readonly long Length;  // elements in use (the array may be longer: pooled size classes)
    /// <summary>First element of this buffer in <see cref="Data"/>: 0, except for a slice of a plan's arena.</summary>
    public readonly int Start;
    /// <summary>A slice of a plan's CPU arena (MemoryPlan): never pooled on its own, never published.</summary>
    public readonly bool InArena;
    internal int Users;           // live Realised views of this buffer inside an Eval; 0 after release -> pool

    /// <summary>Set for pooled buffers large enough to live on the LOH: returns the array when this buffer dies.</summary>
    internal Reclaimer? Reclaim;

    public Buffer(DType dtype, Array data, long length) { DType = dtype; Data = data; Length = length; }

    /// <summary>Elements [start, start + length) of an arena array.</summary>
    internal Buffer(DType dtype, Array arena, int start, long length) { DType = dtype; Data = arena; Start = start; Length = length; InArena = true; }

    public Buffer(DType dtype, IDeviceMemory memory, long length) { DType = dtype; Data = System.Array.Empty<byte>(); DeviceMemory = memory; Length = length; }

    public bool OnDevice => DeviceMemory is not null;

    private void RequireHost()
    {
        if (DeviceMemory is not null)
            throw new InvalidOperationException($"internal: a CPU kernel touched a {DType.ShortName()} buffer on {DeviceMemory.Device} (move it with Tensor.To(Device.Cpu))");
    }

    /// <summary>
    /// Published values (kept by their nodes) are never released explicitly; when their graph becomes garbage
    /// the array would wait for a gen-2 collection (it is on the large-object heap). This small finalizable
    /// companion dies with the Buffer in a cheap gen-0 collection and hands the array back to the pool.
    /// </summary>
    internal sealed class Reclaimer(DType dtype, Array data)
    {
        private int _done;
        public bool Disarm() => Interlocked.Exchange(ref _done, 1) == 0;
        ~Reclaimer() { if (Disarm()) BufferPool.ReturnArray(dtype, data); }
    }

    /// <summary>A new array; <paramref name="zeroed"/> false skips clearing (kernels overwrite every element).</summary>
    public static Array NewArray(DType dtype, long length, bool zeroed = true) => zeroed ? Zeroed(dtype, length) : dtype switch
    {
        DType.Float32 => GC.AllocateUninitializedArray<float>((int)length),
        DType.Float64 => GC.AllocateUninitializedArray<double>((int)length),
        DType.BFloat16 => GC.AllocateUninitializedArray<BFloat16>((int)length),
        DType.Float16 => GC.AllocateUninitializedArray<Half>((int)length),
        DType.Int32 => GC.AllocateUninitializedArray<int>((int)length),
        DType.Int64 => GC.AllocateUninitializedArray<long>((int)length),
        DType.Bool => GC.AllocateUninitializedArray<bool>((int)length),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    private static Array Zeroed(DType dtype, long length) => dtype switch
    {
        DType.Float32 => new float[length],
        DType.Float64 => new double[length],
        DType.BFloat16 => new BFloat16[length],
        DType.Float16 => new Half[length],
        DType.Int32 => new int[length],
        DType.Int64 => new long[length],
        DType.Bool => new bool[length],
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    public Span<T> Span<T>()
    {
        RequireHost();
        return MemoryMarshal.CreateSpan(ref System.Runtime.CompilerServices.Unsafe.Add(ref MemoryMarshal.GetArrayDataReference((T[])Data), Start), (int)Length);
    }

    /// <summary>The whole backing array: this buffer's elements begin at <see cref="Start"/> in it.</summary>
    public T[] RawArray<T>() { RequireHost(); return (T[])Data; }
}

/// <summary>
/// A realised value: a buffer seen through an offset and strides (in elements). Views (reshape, permute,
/// slice, expand) are new Realised objects over the same buffer; stride 0 is a broadcast dimension.
/// </summary>
internal sealed class Realised
{
    public readonly Buffer Buffer;
    public readonly long Offset;
    public readonly int[] Shape;
    public readonly long[] Strides;

    public Realised(Buffer buffer, long offset, int[] shape, long[] strides)
    {
        Buffer = buffer; Offset = offset; Shape = shape; Strides = strides;
        Interlocked.Increment(ref buffer.Users);
    }

    public static Realised Contiguous(Buffer buffer, int[] shape) => new(buffer, 0, shape, Shapes.ContiguousStrides(shape));

    public long Numel => Shapes.Numel(Shape);
    public DType DType => Buffer.DType;

    public bool IsContiguous
    {
        get
        {
            long acc = 1;
            for (int i = Shape.Length - 1; i >= 0; i--)
            {
                if (Shape[i] != 1 && Strides[i] != acc) return false;
                acc *= Shape[i];
            }
            return true;
        }
    }

    /// <summary>Span over a contiguous value (caller checked <see cref="IsContiguous"/>).</summary>
    public Span<T> Span<T>() => Buffer.Span<T>().Slice((int)Offset, (int)Numel);
}
