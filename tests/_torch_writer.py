"""Write ``torch.save``-format files without PyTorch (tests only).

Produces what torch writes for a dict of tensors: the zip format (torch >= 1.6:
``<name>/data.pkl`` + ``<name>/data/<key>``) or the legacy stream (magic,
protocol, system info, object, storage keys, raw storages). Tensors are NumPy
arrays; each becomes ``torch._utils._rebuild_tensor_v2`` over a typed storage,
the way torch pickles them. The pickler is Python's own, with the torch globals
written by name (so no torch module is needed to write them).
"""
from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile

import numpy as np

_STORAGE = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float16): "HalfStorage",
            np.dtype(np.float64): "DoubleStorage", np.dtype(np.int64): "LongStorage",
            np.dtype(np.int32): "IntStorage", np.dtype(np.uint8): "ByteStorage",
            np.dtype(np.bool_): "BoolStorage"}


class _Global:
    """A torch global written by name (callable only to satisfy the pickler)."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):
        raise RuntimeError("a placeholder for pickling only")


_REBUILD = _Global("torch._utils", "_rebuild_tensor_v2")
_ODICT = _Global("collections", "OrderedDict")


class _Storage:
    def __init__(self, key, array):
        self.key, self.array = key, array


class _Pickler(pickle._Pickler):
    def __init__(self, file, legacy):
        super().__init__(file, protocol=2)
        self.legacy = legacy
        self.storages = []

    def reducer_override(self, obj):
        if isinstance(obj, _Global):
            return obj.name  # -> save_global below
        if isinstance(obj, np.ndarray):
            st = _Storage(str(len(self.storages)), np.ascontiguousarray(obj).reshape(-1))
            self.storages.append(st)
            strides = tuple(s // obj.itemsize for s in np.ascontiguousarray(obj).strides)
            return (_REBUILD, (st, 0, tuple(obj.shape), strides, False, _EmptyODict()))
        if isinstance(obj, _EmptyODict):
            return (_ODICT, ())
        return NotImplemented

    def save_global(self, obj, name=None):
        if isinstance(obj, _Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            self.memoize(obj)
            return
        super().save_global(obj, name)

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            stype = _Global("torch", _STORAGE[obj.array.dtype])
            if self.legacy:
                return ("storage", stype, obj.key, "cpu", obj.array.size, None)
            return ("storage", stype, obj.key, "cpu", obj.array.size)
        return None


class _EmptyODict:
    pass


def save(obj, path, legacy: bool = False) -> None:
    """Write ``obj`` (dicts / lists of NumPy arrays and numbers) like ``torch.save``."""
    buf = io.BytesIO()
    pickler = _Pickler(buf, legacy)
    pickler.dump(obj)
    if not legacy:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr("archive/data.pkl", buf.getvalue())
            zf.writestr("archive/byteorder", "little")
            for st in pickler.storages:
                zf.writestr(f"archive/data/{st.key}", st.array.astype(st.array.dtype.newbyteorder("<")).tobytes())
            zf.writestr("archive/version", "3\n")
        return
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001,
                       {"protocol_version": 1001, "little_endian": True,
                        "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(header, f, protocol=2)
        f.write(buf.getvalue())
        pickle.dump([st.key for st in pickler.storages], f, protocol=2)
        for st in pickler.storages:
            f.write(struct.pack("<q", st.array.size))
            f.write(st.array.tobytes())


def hostile_bytes(command: str) -> bytes:
    """A pickle that, under a plain ``pickle.load``, would run ``os.system(command)``."""
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, (command,))

    return pickle.dumps({"epoch": 1, "weights": collections.OrderedDict(w=Evil())}, protocol=2)


def save_hostile(path, command: str, legacy: bool = False) -> None:
    """A checkpoint file (zip or legacy) whose object pickle is ``hostile_bytes``."""
    payload = hostile_bytes(command)
    if not legacy:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", payload)
            zf.writestr("archive/version", "3\n")
        return
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001,
                                                      "little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(payload)
        pickle.dump([], f, protocol=2)
