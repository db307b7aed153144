"""Kinetics-400 annotations -> (path, label) records (pure Python; no JAX, no decoding).

Supported layouts under ``root``:

* official annotations ``label,youtube_id,time_start,time_end,split`` (extra columns such as
  ``is_cc`` are ignored), found as ``root/{split}.csv``, ``root/annotations/{split}.csv``,
  ``root/kinetics-400_{split}.csv``, ``root/kinetics_400_{split}.csv`` (or the same names under
  ``annotations/``); ``val`` also matches ``validate``;
* videos named ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` (the downloader's naming) or
  ``<youtube_id>.<ext>`` under ``root/{split}/`` directly or in class sub-folders (class names
  with spaces or underscores); ``val`` may be ``val/``, ``validate/``, ``validation/`` or
  ``valid/``;
* no CSV at all: ``root/{split}/<class_name>/<video>.<ext>`` (class = folder name).

A frame store (``root/frames_index.csv``, written by ``prepare_videos --format=frames``,
:mod:`bat_jax.data.frame_store`) is listed the same way with its shards
(``<stem>.array_record``) in place of the video files.

The synthetic set of :mod:`bat_jax.data.toy_video` uses the first layout (``youtube_id`` = file
stem) and resolves through the same code.

Labels are indices into the sorted class names of the *training* annotations (or of the
split's own annotations / folders if there are none), so every host and both splits agree.
Records keep the annotation file's order. Annotated videos whose file is absent are dropped
and returned in ``missing`` (and logged), so a partially downloaded Kinetics still trains.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
from typing import Sequence

from bat_jax.data import frame_store

__all__ = ['VIDEO_EXTENSIONS', 'Split', 'load_split', 'find_annotation', 'read_annotations',
           'class_names_for']

VIDEO_EXTENSIONS = ('.mp4', '.webm', '.mkv', '.avi', '.mov', '.m4v')
_SPLIT_ALIASES = {'val': ('val', 'validate', 'validation', 'valid'),
                  'validate': ('validate', 'val', 'validation', 'valid'),
                  'train': ('train', 'training'),
                  'test': ('test', 'testing')}


@dataclasses.dataclass
class Split:
  """One split: ``records`` are (path, label) pairs; ``missing`` are annotated but absent
  videos as dicts {youtube_id, label, time_start, time_end}."""
  records: list[tuple[str, int]]
  class_names: list[str]
  missing: list[dict]
  annotation: str | None

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def __len__(self) -> int:
    return len(self.records)


def _aliases(split: str) -> Sequence[str]:
  return _SPLIT_ALIASES.get(split, (split,))


def find_annotation(root: str, split: str) -> str | None:
  """The annotation CSV of ``split`` under ``root``, or None."""
  for name in _aliases(split):
    for d in (root, os.path.join(root, 'annotations')):
      for pattern in ('{}.csv', 'kinetics-400_{}.csv', 'kinetics_400_{}.csv',
                      'kinetics400_{}.csv'):
        p = os.path.join(d, pattern.format(name))
        if os.path.isfile(p):
          return p
  return None


def find_split_dir(root: str, split: str) -> str | None:
  for name in _aliases(split):
    p = os.path.join(root, name)
    if os.path.isdir(p):
      return p
  return None


def read_annotations(path: str) -> list[dict]:
  """Rows of a Kinetics CSV as dicts with keys label, youtube_id, time_start, time_end."""
  rows = []
  with open(path, newline='') as f:
    reader = csv.DictReader(f)
    fields = set(reader.fieldnames or ())
    if 'youtube_id' not in fields:
      raise ValueError(f'{path}: not a Kinetics annotation file (columns {reader.fieldnames})')
    for r in reader:
      rows.append({
          'label': (r.get('label') or '').strip(),
          'youtube_id': r['youtube_id'].strip(),
          'time_start': int(float(r.get('time_start') or 0)),
          'time_end': int(float(r.get('time_end') or 0)),
      })
  return rows


def _extensions(root: str) -> tuple[str, ...]:
  """The file extensions that are videos under ``root``: shards in a frame store."""
  return (frame_store.SHARD_EXTENSION,) if frame_store.is_store(root) else VIDEO_EXTENSIONS


def _index_videos(split_dir: str, extensions: Sequence[str] = VIDEO_EXTENSIONS
                  ) -> dict[str, list[str]]:
  """Maps file stem -> paths of the files with ``extensions`` under ``split_dir``
  (recursively)."""
  index: dict[str, list[str]] = {}
  for dirpath, dirnames, filenames in os.walk(split_dir):
    dirnames.sort()
    for fn in sorted(filenames):
      stem, ext = os.path.splitext(fn)
      if ext.lower() in extensions:
        index.setdefault(stem, []).append(os.path.join(dirpath, fn))
  return index


def _norm_class(name: str) -> str:
  return name.replace('_', ' ').strip('"\' ').lower()


def _resolve(row: dict, index: dict[str, list[str]]) -> str | None:
  yid = row['youtube_id']
  stems = (f"{yid}_{row['time_start']:06d}_{row['time_end']:06d}", yid)
  for stem in stems:
    paths = index.get(stem)
    if not paths:
      continue
    if len(paths) == 1 or not row['label']:
      return paths[0]
    want = _norm_class(row['label'])
    for p in paths:  # the same id in several class folders: prefer the annotated class
      if _norm_class(os.path.basename(os.path.dirname(p))) == want:
        return p
    return paths[0]
  return None


def class_names_for(root: str) -> list[str] | None:
  """Sorted class names from the training annotations (or training folders), or None."""
  ann = find_annotation(root, 'train')
  if ann:
    return sorted({r['label'] for r in read_annotations(ann) if r['label']})
  d = find_split_dir(root, 'train')
  if d:
    return sorted(e.name for e in os.scandir(d) if e.is_dir())
  return None


def load_split(root: str, split: str, *, annotation: str | None = None,
               class_names: Sequence[str] | None = None) -> Split:
  """Records of ``split`` ('train' or 'val'); see the module docstring for the layouts.

  Args:
    root: Kinetics folder.
    split: 'train' or 'val' (aliases are tried for files and folders).
    annotation: explicit CSV (default: searched under ``root``).
    class_names: the label order; default: sorted classes of the training annotations.
  """
  root = os.fspath(root)
  split_dir = find_split_dir(root, split)
  annotation = annotation or find_annotation(root, split)
  if class_names is None:
    class_names = class_names_for(root)
  if annotation is None:
    if split_dir is None:
      raise FileNotFoundError(f'no annotations and no {split}/ folder under {root!r}')
    folders = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
    extensions = _extensions(root)
    class_names = list(class_names) if class_names is not None else folders
    label_of = {c: i for i, c in enumerate(class_names)}
    records = []
    for c in folders:
      if c not in label_of:
        raise ValueError(f'class folder {c!r} of {split_dir} not among the training classes')
      for fn in sorted(os.listdir(os.path.join(split_dir, c))):
        if os.path.splitext(fn)[1].lower() in extensions:
          records.append((os.path.join(split_dir, c, fn), label_of[c]))
    return Split(records, list(class_names), [], None)

  rows = read_annotations(annotation)
  if class_names is None:
    class_names = sorted({r['label'] for r in rows if r['label']})
  class_names = list(class_names)
  label_of = {c: i for i, c in enumerate(class_names)}
  index = _index_videos(split_dir, _extensions(root)) if split_dir else {}
  records, missing = [], []
  for r in rows:
    if r['label'] not in label_of:
      raise ValueError(f'{annotation}: label {r["label"]!r} not among the {len(class_names)} '
                       'training classes')
    path = _resolve(r, index)
    if path is None:
      missing.append(dict(r))
    else:
      records.append((path, label_of[r['label']]))
  if missing:
    logging.warning('%s: %d of %d annotated videos not found under %s (e.g. %s)', split,
                    len(missing), len(rows), split_dir or root, missing[0]['youtube_id'])
  return Split(records, class_names, missing, annotation)
