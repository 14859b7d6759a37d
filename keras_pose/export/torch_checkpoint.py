"""Read a PyTorch ``.pth`` checkpoint into NumPy arrays, without PyTorch and without running its code.

A ``.pth`` file is a pickle: ``pickle.load`` (and ``torch.load`` without
``weights_only``) calls whatever callables the file names, so a hostile file
runs arbitrary code. This reader unpickles with an allow-list: the tensor
rebuild functions of ``torch._utils``, the typed storage classes (``torch.FloatStorage``
...), ``collections.OrderedDict``, and pickle's plain containers and scalars.
Any other global is refused with :class:`UnsafeCheckpointError` before it is
called. Tensors come back as NumPy arrays with their shape, strides and dtype.

Both of torch's file formats are read:

* zip (torch >= 1.6): ``<name>/data.pkl`` plus one entry ``<name>/data/<key>``
  per storage, little-endian unless ``<name>/byteorder`` says otherwise;
* legacy (torch < 1.6, or ``_use_new_zipfile_serialization=False``): one stream
  of pickles - magic number, protocol version, system info, the object, the
  list of storage keys - followed by each storage as an int64 element count
  and its raw bytes.

NumPy only (no TensorFlow, no torch).
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

__all__ = ["UnsafeCheckpointError", "CheckpointFormatError", "load_torch_checkpoint"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch's typed storage classes -> NumPy dtypes (the names a checkpoint pickles).
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
    "UntypedStorage": np.uint8,
}


class UnsafeCheckpointError(ValueError):
    """The pickle names a callable outside the allow-list (nothing was called)."""


class CheckpointFormatError(ValueError):
    """The file is not a torch checkpoint this reader understands."""


class _StorageType:
    """Stand-in for ``torch.<X>Storage``: only carries the element dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A flat 1-D array of one storage (filled later for the legacy format)."""

    def __init__(self, dtype, numel: int, data: np.ndarray | None = None):
        self.dtype, self.numel, self.data = np.dtype(dtype), int(numel), data


class _View:
    """A legacy storage view: ``numel`` elements of ``root`` from ``offset``."""

    def __init__(self, root: _Storage, offset: int, numel: int):
        self.root, self.offset, self.numel = root, int(offset), int(numel)
        self.dtype = root.dtype


class _LazyTensor:
    """A tensor whose storage bytes may not be read yet (legacy format)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(int(v) for v in size), tuple(int(v) for v in stride)

    def materialise(self) -> np.ndarray:
        st, offset = self.storage, self.offset
        if isinstance(st, _View):
            st, offset = st.root, offset + st.offset
        flat = st.data
        if flat is None:
            raise CheckpointFormatError("a tensor's storage was never written in the file")
        if not self.size:
            return np.array(flat[offset], dtype=flat.dtype)
        extent = offset + 1 + sum((n - 1) * s for n, s in zip(self.size, self.stride) if n > 0)
        if any(n == 0 for n in self.size):
            return np.zeros(self.size, flat.dtype)
        if offset < 0 or extent > flat.size or min(self.stride) < 0:
            raise CheckpointFormatError(f"tensor of size {self.size} reads past its storage "
                                        f"({flat.size} elements)")
        item = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=self.size, strides=tuple(s * item for s in self.stride),
            writeable=False)
        return np.array(view)  # own, contiguous copy


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """``torch._utils._rebuild_tensor[_v2]``: only the data is kept (requires_grad,
    backward hooks and metadata do not matter for weights)."""
    if not isinstance(storage, (_Storage, _View)):
        raise UnsafeCheckpointError("tensor rebuild called on something that is not a storage")
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *unused):
    """``torch._utils._rebuild_parameter``: an ``nn.Parameter`` is its data."""
    if not isinstance(data, _LazyTensor):
        raise UnsafeCheckpointError("parameter rebuild called on something that is not a tensor")
    return data


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose globals come from the allow-list only.

    ``find_class`` is the single door through which a pickle reaches a callable
    (GLOBAL, STACK_GLOBAL and the EXT opcodes all pass through it), so refusing
    there means nothing outside the list is ever imported or called.
    """

    def __init__(self, file, path: str, storage_for):
        super().__init__(file, encoding="latin1")
        self._path = path
        self._storage_for = storage_for

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch.storage" and name == "UntypedStorage":
            return _StorageType(name)
        raise UnsafeCheckpointError(
            f"{self._path}: refusing to load: the pickle calls {module}.{name}, which is not a "
            "tensor rebuild or a plain container (only tensors, dicts, lists and numbers are "
            "read; nothing from the file was executed)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise CheckpointFormatError(f"{self._path}: unknown persistent id {pid!r:.80}")
        return self._storage_for(pid)


def _check_storage_type(path, t):
    if not isinstance(t, _StorageType):
        raise CheckpointFormatError(f"{path}: storage record without a storage type")
    return t.dtype


def _materialise(obj):
    """Replace every _LazyTensor in nested containers by its NumPy array."""
    if isinstance(obj, _LazyTensor):
        return obj.materialise()
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialise(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialise(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialise(v) for v in obj)
    return obj


def _load_zip(path: str) -> object:
    with zipfile.ZipFile(path) as zf:
        pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkls) != 1:
            raise CheckpointFormatError(f"{path}: a zip without exactly one data.pkl: not a torch "
                                        "checkpoint")
        prefix = pkls[0][:-len("data.pkl")]
        order = "<"
        if f"{prefix}byteorder" in zf.namelist():
            order = "<" if zf.read(f"{prefix}byteorder").strip() == b"little" else ">"
        storages = {}

        def storage_for(pid):
            if len(pid) < 5:
                raise CheckpointFormatError(f"{path}: short storage record {pid!r:.80}")
            _, stype, key, _location, numel = pid[:5]
            dtype = _check_storage_type(path, stype)
            if key not in storages:
                try:
                    raw = zf.read(f"{prefix}data/{key}")
                except KeyError:
                    raise CheckpointFormatError(f"{path}: storage {key!r} is missing") from None
                data = np.frombuffer(raw, dtype=dtype.newbyteorder(order))
                storages[key] = _Storage(dtype, data.size, data.astype(dtype, copy=False))
            return storages[key]

        with zf.open(pkls[0]) as f:
            obj = _RestrictedUnpickler(io.BytesIO(f.read()), path, storage_for).load()
        return _materialise(obj)


def _load_legacy(path: str, f) -> object:
    def header(what):
        try:
            return _RestrictedUnpickler(f, path, _no_storage).load()
        except (pickle.UnpicklingError, EOFError) as e:
            raise CheckpointFormatError(f"{path}: not a torch checkpoint ({what}: {e})") from None

    def _no_storage(pid):
        raise CheckpointFormatError(f"{path}: storage record in a checkpoint header")

    if header("magic number") != _LEGACY_MAGIC:
        raise CheckpointFormatError(f"{path}: not a torch checkpoint (no zip archive and no "
                                    "legacy magic number)")
    if header("protocol version") != _LEGACY_PROTOCOL:
        raise CheckpointFormatError(f"{path}: unsupported legacy torch protocol version")
    info = header("system info")
    little = bool(info.get("little_endian", True)) if isinstance(info, dict) else True
    roots = {}

    def storage_for(pid):
        if len(pid) < 6:
            raise CheckpointFormatError(f"{path}: short legacy storage record {pid!r:.80}")
        _, stype, root_key, _location, numel, view = pid[:6]
        dtype = _check_storage_type(path, stype)
        if root_key not in roots:
            roots[root_key] = _Storage(dtype, numel)
        root = roots[root_key]
        if view is not None:
            _view_key, offset, view_size = view
            return _View(root, offset, view_size)
        return root

    obj = _RestrictedUnpickler(f, path, storage_for).load()
    keys = _RestrictedUnpickler(f, path, _no_storage).load()
    if not isinstance(keys, list):
        raise CheckpointFormatError(f"{path}: legacy storage key list missing")
    order = "<" if little else ">"
    for key in keys:
        if key not in roots:
            raise CheckpointFormatError(f"{path}: storage {key!r} written but never used")
        st = roots[key]
        head = f.read(8)
        if len(head) != 8:
            raise CheckpointFormatError(f"{path}: truncated (storage {key!r})")
        numel = struct.unpack(order + "q", head)[0]
        nbytes = numel * st.dtype.itemsize
        raw = f.read(nbytes)
        if numel < 0 or len(raw) != nbytes:
            raise CheckpointFormatError(f"{path}: truncated (storage {key!r})")
        st.data = np.frombuffer(raw, dtype=st.dtype.newbyteorder(order)).astype(st.dtype)
        st.numel = numel
    return _materialise(obj)


def load_torch_checkpoint(path) -> object:
    """Load a ``torch.save`` file as plain Python containers of NumPy arrays.

    Args:
        path: a ``.pth`` / ``.pt`` file in torch's zip or legacy format.

    Returns:
        The saved object (dicts, lists, tuples, numbers, strings) with every
        tensor replaced by an ``np.ndarray`` of its shape and dtype.

    Raises:
        UnsafeCheckpointError: the pickle names anything but a tensor rebuild,
            a storage type or ``OrderedDict`` (refused before it is called).
        CheckpointFormatError: not a torch checkpoint, truncated or corrupt.
        FileNotFoundError: no such file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        with open(path, "rb") as f:
            return _load_legacy(path, f)
    except (UnsafeCheckpointError, CheckpointFormatError):
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, struct.error, TypeError,
            AttributeError, IndexError, KeyError, ValueError) as e:
        raise CheckpointFormatError(f"{path}: corrupt torch checkpoint ({type(e).__name__}: "
                                    f"{e})") from None
