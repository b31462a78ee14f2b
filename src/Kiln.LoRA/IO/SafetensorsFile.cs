// Reading a .safetensors file through a read-only memory map: opening costs the header parse only, and each
// Load copies one tensor's bytes out of the page cache.
using System.IO.MemoryMappedFiles;

namespace Kiln.LoRA.IO;

/// <summary>
/// A safetensors file opened for reading (format: 8-byte little-endian header length, JSON header, data).
/// The header is validated completely on <see cref="Open"/>: every problem is an
/// <see cref="InvalidDataException"/> naming the file, the tensor and the offending value. Disposing unmaps
/// the file; tensors already loaded are copies and stay valid.
/// </summary>
public sealed unsafe class SafetensorsFile : ITensorReader
{
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _base;        // start of the file in the mapping (null for an empty file)
    private readonly SafetensorsHeader _header;
    private bool _disposed;

    /// <summary>The file's full path.</summary>
    public string Path { get; }

    /// <inheritdoc/>
    public IReadOnlyList<string> Names { get; }

    /// <summary>The header's <c>__metadata__</c> (empty if absent), e.g. <c>{"format": "pt"}</c>.</summary>
    public IReadOnlyDictionary<string, string> Metadata => _header.Metadata;

    /// <summary>Every tensor entry, in header order.</summary>
    public IReadOnlyList<TensorInfo> Tensors => _header.Tensors;

    private SafetensorsFile(string path)
    {
        Path = path;
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        long length = stream.Length;
        try
        {
            if (length > 0)   // an empty file cannot be mapped; Parse reports it as truncated
            {
                _map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true);
                _view = _map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
                byte* p = null;
                _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
                _base = p + _view.PointerOffset;
            }
            _header = SafetensorsHeader.Parse(path, _base, length);
        }
        catch
        {
            Unmap();
            throw;
        }
        Names = _header.Tensors.Select(t => t.Name).ToArray();
    }

    /// <summary>Opens and validates <paramref name="path"/>.</summary>
    /// <exception cref="InvalidDataException">The file is not a well-formed safetensors file.</exception>
    public static SafetensorsFile Open(string path) => new(System.IO.Path.GetFullPath(path));

    /// <inheritdoc/>
    public bool Contains(string name) => _header.ByName.ContainsKey(name);

    /// <inheritdoc/>
    public TensorInfo Info(string name) =>
        _header.ByName.TryGetValue(name, out var info) ? info : throw NameSuggestions.NotFound($"safetensors file '{Path}'", name, Names.ToArray());

    /// <inheritdoc/>
    public Tensor Load(string name, DType? convertTo = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var info = Info(name);
        if (info.DType == null)
            throw new NotSupportedException($"safetensors file '{Path}': tensor '{name}' has dtype {info.FileDType}, which Kiln cannot hold exactly");
        var raw = TensorBytes.Decode(_base + _header.DataStart + info.Begin, info.Numel, info.FileDType, info.Shape.ToArray());
        return DTypeConversion.Convert(raw, convertTo, $"safetensors file '{Path}': tensor '{name}'");
    }

    /// <summary>Unmaps the file.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Unmap();
    }

    private void Unmap()
    {
        if (_base != null) _view!.SafeMemoryMappedViewHandle.ReleasePointer();
        _view?.Dispose();
        _map?.Dispose();
    }
}
