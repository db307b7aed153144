"""Frame stores: each video's frames as JPEG records in its own ArrayRecord shard, plus an index.

Written by ``python -m bat_jax.data.prepare_videos --format=frames`` (:mod:`bat_jax.data.
prepare_videos`); read, a clip's frames only, by :func:`bat_jax.data.decode.read_store` wherever a
video path is accepted (training clips, multi-view evaluation).

Layout of a store root::

    ROOT/frames_index.csv                        the index (INDEX_FIELDS; one row per video)
    ROOT/<same relative path as the video>.array_record    one shard per video
    ROOT/<the annotation CSVs of the source>     rows of broken videos left out

A shard holds ``frames + 1`` records: records ``0 .. frames - 1`` are the frames in order, each a
baseline JPEG of the RGB frame; the last record is a JSON header (frames, fps, height, width,
source, jpeg_quality). Written with ``group_size:1`` (every record its own chunk, so reading a
frame reads and checks only its bytes: random access) and ``uncompressed`` (JPEG is compressed).

Why one shard per video. Resuming is then the same rule as for re-encoded videos: a shard is
written under a temporary name (``.partial``) and renamed when complete, so an existing shard is
a finished video and nothing else is ever half-written. The tree mirrors the source, so the
Kinetics reader resolves the annotation CSVs by file stem exactly as for videos; a damaged shard
costs one video; workers need no coordination. The price is ArrayRecord's fixed size per file (at
least 128 KiB: its 64 KiB blocks), a few per cent of a 10 s Kinetics video's frames at short side
256-320 (several MB of JPEGs), more for very short clips.

A folder is a store when ``ROOT/frames_index.csv`` exists (:func:`is_store`): the Kinetics
reader then lists shards instead of videos (:func:`bat_jax.data.kinetics.load_split`).

numpy-free and JAX-free: this module only moves bytes (decoding is :mod:`bat_jax.data.decode`).
"""

from __future__ import annotations

import csv
import json
import os
from typing import Iterable, Sequence

from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter

__all__ = ['SHARD_EXTENSION', 'INDEX_NAME', 'INDEX_FIELDS', 'PARTIAL_SUFFIX', 'is_store',
           'is_shard', 'write_shard', 'Shard', 'read_header', 'write_index', 'read_index']

SHARD_EXTENSION = '.array_record'
INDEX_NAME = 'frames_index.csv'
# video: the source's path relative to --src; shard: relative to the store root; first_record:
# the record of frame 0 in the shard; label: class name ('' when no annotation names one).
INDEX_FIELDS = ('video', 'split', 'shard', 'first_record', 'frames', 'fps', 'height', 'width',
                'label')
PARTIAL_SUFFIX = '.partial'
_WRITER_OPTIONS = 'group_size:1,uncompressed'
_READER_OPTIONS = 'readahead_buffer_size:0,max_parallelism:1'  # random access, one thread


def is_store(root: str) -> bool:
  """Whether ``root`` is a frame store (it holds :data:`INDEX_NAME`)."""
  return os.path.isfile(os.path.join(os.fspath(root), INDEX_NAME))


def is_shard(path) -> bool:
  """Whether ``path`` names a frame-store shard (by its extension)."""
  return os.fspath(path).endswith(SHARD_EXTENSION)


def write_shard(path: str, jpegs: Iterable[bytes], header: dict) -> int:
  """Writes the frames ``jpegs`` (in order) and then ``header`` + ``{'frames': count}`` as one
  shard at ``path`` (``header`` is read after the last frame, so the iterator may fill it in),
  atomically (``path + '.partial'``, renamed when complete; removed if
  writing fails, including when iterating ``jpegs`` raises). Returns the frame count."""
  tmp = path + PARTIAL_SUFFIX
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  writer = ArrayRecordWriter(tmp, _WRITER_OPTIONS)
  n = 0
  try:
    for jpeg in jpegs:
      writer.write(jpeg)
      n += 1
    writer.write(json.dumps(dict(header, frames=n), sort_keys=True).encode())
    writer.close()
  except BaseException:
    writer.close()
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  os.replace(tmp, path)
  return n


class Shard:
  """An open shard for random access: ``num_frames`` and ``read(indices)`` (JPEG bytes).

  Raises ``RuntimeError`` (ArrayRecord's error: not a shard, truncated, checksum mismatch) or
  ``ValueError`` (no header record) when the file is damaged.
  """

  def __init__(self, path: str):
    self.path = os.fspath(path)
    self._reader = ArrayRecordReader(self.path, _READER_OPTIONS)
    if not self._reader.ok():
      raise RuntimeError(f'cannot open {self.path} as an ArrayRecord shard')
    self.num_frames = self._reader.num_records() - 1
    if self.num_frames < 0:
      raise ValueError(f'{self.path}: empty shard (no header record)')

  def read(self, indices: Sequence[int]) -> list[bytes]:
    """The JPEG bytes of frames ``indices`` (each in ``[0, num_frames)``)."""
    bad = [i for i in indices if not 0 <= i < self.num_frames]
    if bad:
      raise ValueError(f'{self.path}: frames {bad} not in [0, {self.num_frames})')
    return self._reader.read([int(i) for i in indices])

  def header(self) -> dict:
    return json.loads(self._reader.read([self.num_frames])[0])

  def close(self) -> None:
    self._reader.close()

  def __enter__(self) -> 'Shard':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def read_header(path: str) -> dict:
  """The JSON header of the shard at ``path`` (frames, fps, height, width, source, ...)."""
  with Shard(path) as shard:
    return shard.header()


def write_index(root: str, rows: Sequence[dict]) -> str:
  """Writes ``ROOT/frames_index.csv`` (rows sorted by shard) atomically; returns its path."""
  path = os.path.join(root, INDEX_NAME)
  os.makedirs(root, exist_ok=True)
  with open(path + PARTIAL_SUFFIX, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=INDEX_FIELDS)
    writer.writeheader()
    for row in sorted(rows, key=lambda r: r['shard']):
      writer.writerow({k: row[k] for k in INDEX_FIELDS})
  os.replace(path + PARTIAL_SUFFIX, path)
  return path


def read_index(root: str) -> list[dict]:
  """Rows of ``ROOT/frames_index.csv`` (numbers as int / float); [] when there is none."""
  path = os.path.join(root, INDEX_NAME)
  if not os.path.isfile(path):
    return []
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  for r in rows:
    missing = [k for k in INDEX_FIELDS if k not in r]
    if missing:
      raise ValueError(f'{path}: not a frame-store index (missing columns {missing})')
    for k in ('first_record', 'frames', 'height', 'width'):
      r[k] = int(r[k])
    r['fps'] = float(r['fps'])
  return rows
