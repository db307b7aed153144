"""Reading PyTorch weight files into ``{torch name: numpy array}`` (``read_state_dict``), for
``bat_jax.tools.import_torch``.

Reading never executes code from the file: ``.safetensors`` are parsed directly; PyTorch files
(``torch.save``) go through ``torch.load(..., weights_only=True)`` when torch is installed, else
through a restricted unpickler of this module that accepts tensors, storages, ``OrderedDict``
and plain Python values only. A file that needs anything else (a pickled model class, a
``__reduce__`` that calls a function) is refused with :class:`UnsafeCheckpointError`.

This module imports only numpy (and torch, if asked to read a ``.pth`` with it), so it also runs
in a PyTorch-only environment (the tests compare it with ``torch.load`` there).
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import re
import struct
import zipfile
from typing import Any, Mapping, Sequence

import numpy as np

READERS = ('auto', 'torch', 'builtin')


class UnsafeCheckpointError(ValueError):
  """The file would need unrestricted unpickling (it may run code when loaded)."""


_SAFETENSORS_DTYPES = {
    'F64': np.float64, 'F32': np.float32, 'F16': np.float16, 'I64': np.int64, 'I32': np.int32,
    'I16': np.int16, 'I8': np.int8, 'U8': np.uint8, 'BOOL': np.bool_, 'U16': np.uint16,
    'U32': np.uint32, 'U64': np.uint64,
}
_TORCH_STORAGES = {
    'DoubleStorage': np.float64, 'FloatStorage': np.float32, 'HalfStorage': np.float16,
    'LongStorage': np.int64, 'IntStorage': np.int32, 'ShortStorage': np.int16,
    'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
}
_REFUSED_HINT = ('Only tensors, storages and plain Python values are read. Re-save just the '
                 'weights (torch.save(model.state_dict(), path)) or convert the file to '
                 '.safetensors (safetensors.torch.save_file) in an environment you trust.')


def _bfloat16() -> Any:
  try:
    import ml_dtypes  # pylint: disable=g-import-not-at-top
    return ml_dtypes.bfloat16
  except ImportError:
    return None


def _to_float32_if_bf16(a: np.ndarray) -> np.ndarray:
  bf16 = _bfloat16()
  return a.astype(np.float32) if bf16 is not None and a.dtype == bf16 else a


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """A ``.safetensors`` file (8-byte header length, JSON header, raw little-endian data)."""
  with open(path, 'rb') as f:
    raw = f.read()
  if len(raw) < 8:
    raise ValueError(f'{path}: not a safetensors file (too short)')
  (n,) = struct.unpack('<Q', raw[:8])
  if n > len(raw) - 8:
    raise ValueError(f'{path}: not a safetensors file (header length {n} > file size)')
  header = json.loads(raw[8:8 + n])
  data = memoryview(raw)[8 + n:]
  out = {}
  for name, info in header.items():
    if name == '__metadata__':
      continue
    code = info['dtype']
    dtype = _bfloat16() if code == 'BF16' else _SAFETENSORS_DTYPES.get(code)
    if dtype is None:
      raise ValueError(f'{path}: tensor {name!r} has dtype {code}, which this reader does not '
                       'support')
    start, end = info['data_offsets']
    shape = tuple(int(s) for s in info['shape'])
    if not 0 <= start <= end <= len(data) or end - start != int(np.prod(shape)) * np.dtype(
        dtype).itemsize:
      raise ValueError(f'{path}: tensor {name!r} has inconsistent offsets {start}..{end} for '
                       f'shape {shape} {code}')
    out[name] = _to_float32_if_bf16(
        np.frombuffer(data[start:end], np.dtype(dtype).newbyteorder('<')).reshape(shape).copy())
  return out


class _StorageType:
  def __init__(self, name: str, dtype: Any):
    self.name, self.dtype = name, np.dtype(dtype)


def _rebuild_tensor(storage: np.ndarray, offset: int, size: Sequence[int], stride: Sequence[int],
                    *unused: Any) -> np.ndarray:
  size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
  if len(size) != len(stride) or any(s < 0 for s in size + stride) or offset < 0:
    raise ValueError(f'bad tensor geometry size={size} stride={stride} offset={offset}')
  if 0 in size:
    return np.zeros(size, storage.dtype)
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= storage.size:  # never read outside the storage
    raise ValueError(f'tensor (size={size}, stride={stride}, offset={offset}) reaches past its '
                     f'storage of {storage.size} elements')
  view = np.lib.stride_tricks.as_strided(
      storage[offset:], shape=size, strides=[s * storage.itemsize for s in stride],
      writeable=False)
  return np.array(view)


def _rebuild_parameter(data: Any, *unused: Any) -> Any:
  return data


class _RestrictedUnpickler(pickle.Unpickler):
  """Unpickles a ``torch.save`` archive's ``data.pkl`` allowing only what a state dict needs."""

  _ALLOWED: dict[tuple[str, str], Any] = {
      ('collections', 'OrderedDict'): collections.OrderedDict,
      ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
      ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
      ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
  }

  def __init__(self, file: io.BytesIO, archive: zipfile.ZipFile, prefix: str, byteorder: str,
               path: str):
    super().__init__(file)
    self._archive, self._prefix, self._path = archive, prefix, path
    self._byteorder = '>' if byteorder == 'big' else '<'
    self._storages: dict[str, np.ndarray] = {}

  def find_class(self, module: str, name: str) -> Any:
    module = {'__builtin__': 'builtins', 'copy_reg': 'copyreg'}.get(module, module)  # protocol 2
    if (module, name) in self._ALLOWED:
      return self._ALLOWED[(module, name)]
    if module == 'torch' and name in _TORCH_STORAGES:
      return _StorageType(name, _TORCH_STORAGES[name])
    if module == 'torch' and name == 'BFloat16Storage' and _bfloat16() is not None:
      return _StorageType(name, _bfloat16())
    raise UnsafeCheckpointError(
        f'{self._path}: refused: loading it would call {module}.{name}, which a file of weights '
        f'does not need (and which could run arbitrary code). {_REFUSED_HINT}')

  def persistent_load(self, pid: Any) -> np.ndarray:
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == 'storage'
            and isinstance(pid[1], _StorageType)):
      raise UnsafeCheckpointError(f'{self._path}: refused: unknown persistent id {pid!r}. '
                                  f'{_REFUSED_HINT}')
    _, storage_type, key, _, numel = pid
    key = str(key)
    if key not in self._storages:
      if not re.fullmatch(r'[0-9A-Za-z_]+', key):
        raise UnsafeCheckpointError(f'{self._path}: refused: bad storage key {key!r}')
      raw = self._archive.read(f'{self._prefix}/data/{key}')
      dtype = storage_type.dtype.newbyteorder(self._byteorder)
      if len(raw) < int(numel) * dtype.itemsize:
        raise ValueError(f'{self._path}: storage {key} holds {len(raw)} bytes, needs '
                         f'{int(numel) * dtype.itemsize}')
      self._storages[key] = np.frombuffer(raw, dtype, count=int(numel))
    return self._storages[key]


def _read_torch_builtin(path: str) -> Any:
  if not zipfile.is_zipfile(path):
    raise UnsafeCheckpointError(
        f'{path}: refused: not a torch.save zip archive but a legacy (pre-1.6) torch file or a '
        'plain pickle, which the built-in reader does not unpickle. Install torch (it reads '
        'legacy files with weights_only=True) or convert the file to .safetensors.')
  with zipfile.ZipFile(path) as archive:
    pkls = [n for n in archive.namelist() if n.endswith('/data.pkl') and n.count('/') == 1]
    if len(pkls) != 1:
      raise ValueError(f'{path}: not a torch.save archive (no <name>/data.pkl)')
    prefix = pkls[0].split('/')[0]
    byteorder = 'little'
    if f'{prefix}/byteorder' in archive.namelist():
      byteorder = archive.read(f'{prefix}/byteorder').decode().strip()
    unpickler = _RestrictedUnpickler(io.BytesIO(archive.read(pkls[0])), archive, prefix,
                                     byteorder, path)
    try:
      return unpickler.load()
    except UnsafeCheckpointError:
      raise
    except (pickle.UnpicklingError, AttributeError, TypeError) as e:
      raise UnsafeCheckpointError(f'{path}: refused: {e}. {_REFUSED_HINT}') from None


def _read_torch_with_torch(path: str) -> Any:
  import torch  # pylint: disable=g-import-not-at-top
  try:
    obj = torch.load(path, map_location='cpu', weights_only=True)
  except pickle.UnpicklingError as e:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    why = next((ln for ln in lines if 'Unsupported global' in ln or 'WeightsUnpickler' in ln),
               lines[0] if lines else type(e).__name__)
    why = re.sub(r'\x1b\[[0-9;]*m', '', why).split('. Please use')[0]
    raise UnsafeCheckpointError(
        f'{path}: refused by torch.load(weights_only=True): {why}. {_REFUSED_HINT}') from None

  def to_numpy(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
      x = x.detach().cpu()
      if x.dtype == torch.bfloat16:
        x = x.float()
      return x.numpy()
    if isinstance(x, Mapping):
      return collections.OrderedDict((k, to_numpy(v)) for k, v in x.items())
    if isinstance(x, (list, tuple)):
      return type(x)(to_numpy(v) for v in x)
    return x
  return to_numpy(obj)


def _torch_available() -> bool:
  try:
    import torch  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    return True
  except ImportError:
    return False


def _is_safetensors(path: str) -> bool:
  if path.endswith('.safetensors'):
    return True
  with open(path, 'rb') as f:
    head = f.read(9)
  return len(head) == 9 and head[8:9] == b'{' and not zipfile.is_zipfile(path)


def _state_dict_of(obj: Any, path: str) -> dict[str, np.ndarray]:
  if isinstance(obj, Mapping):
    for key in ('state_dict', 'model', 'model_state_dict'):
      if isinstance(obj.get(key), Mapping):
        obj = obj[key]
        break
  if not isinstance(obj, Mapping):
    raise ValueError(f'{path}: expected a state dict (name -> tensor), got {type(obj).__name__}')
  out = {}
  for name, value in obj.items():
    if not isinstance(value, np.ndarray):
      raise ValueError(f'{path}: {name!r} is a {type(value).__name__}, not a tensor: not a '
                       'state dict')
    out[name[len('module.'):] if name.startswith('module.') else name] = value
  return out


def read_state_dict(path: str, reader: str = 'auto') -> dict[str, np.ndarray]:
  """``{torch name: numpy array}`` of a ``.safetensors`` or ``torch.save`` file, without running
  code from it. ``reader``: ``'auto'`` (torch when installed, else the built-in unpickler),
  ``'torch'`` or ``'builtin'`` (ignored for safetensors)."""
  if reader not in READERS:
    raise ValueError(f'reader={reader!r}; allowed: {READERS}')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such file')
  if _is_safetensors(path):
    return read_safetensors(path)
  use_torch = reader == 'torch' or (reader == 'auto' and _torch_available())
  obj = _read_torch_with_torch(path) if use_torch else _read_torch_builtin(path)
  return _state_dict_of(obj, path)
