"""Something-Something V1 (JPEG frame folders) -> the shared video pipeline.

Layout under ``config.data.root`` (as the 20BN download unpacks)::

    20bn-something-something-v1/<video_id>/00001.jpg, 00002.jpg, ...
    something-something-v1-labels.csv        one class name per line; line order = label index
    something-something-v1-train.csv         '<video_id>;<class name>' per line
    something-something-v1-validation.csv

The CSVs may also sit in ``root/annotations/``; ``config.data.frames_dir`` (optional) overrides
the frame folder location. Each record is ``(frame folder, label)``; the frame folder is decoded
by :func:`bat_jax.data.decode.decode_clip` / :func:`~bat_jax.data.decode.decode_segments` (frame
count = number of images), so sampling (``data.sampling='segments'`` for TSN / RSA),
augmentation, no-flip keywords, sharding, iterator state and broken-file handling are those of
:mod:`bat_jax.data.pipeline`. A listed video whose folder is missing or empty stays a record: it
is reported by :func:`broken_files` and substituted (training) or masked (evaluation), and never
stops iteration. Split names: ``train``; ``val`` / ``validation``; ``test`` has no labels and is
not supported.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

from bat_jax.data import core, pipeline
from bat_jax.data.core import config_get, config_require
from bat_jax.data.core import broken_files, reset_broken_files  # pylint: disable=unused-import

__all__ = ['FRAMES_DIR', 'Split', 'read_class_names', 'read_split_csv', 'find_csv', 'load_split',
           'make_train_iterator', 'make_eval_iterator', 'broken_files', 'reset_broken_files']

FRAMES_DIR = '20bn-something-something-v1'
_PREFIX = 'something-something-v1-'
_SPLIT_FILES = {'train': 'train', 'training': 'train', 'val': 'validation',
                'valid': 'validation', 'validation': 'validation', 'validate': 'validation'}


@dataclasses.dataclass
class Split:
  """``records``: (frame folder, label) pairs in CSV order; ``class_names``: the labels CSV."""
  records: list[tuple[str, int]]
  class_names: list[str]
  annotation: str

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def __len__(self) -> int:
    return len(self.records)


def find_csv(root: str, name: str) -> str:
  """``root/something-something-v1-<name>.csv`` (or under ``root/annotations/``)."""
  for d in (root, os.path.join(root, 'annotations')):
    p = os.path.join(d, f'{_PREFIX}{name}.csv')
    if os.path.isfile(p):
      return p
  raise FileNotFoundError(f'{_PREFIX}{name}.csv not found under {root!r} (or annotations/)')


def read_class_names(path: str) -> list[str]:
  """Class names, one per non-empty line; the line order is the label index."""
  with open(path, encoding='utf-8') as f:
    names = [line.strip() for line in f if line.strip()]
  if len(set(names)) != len(names):
    raise ValueError(f'{path}: duplicate class names')
  return names


def read_split_csv(path: str) -> list[tuple[str, str]]:
  """``(video_id, class name)`` rows of a ``<video_id>;<class name>`` file."""
  rows = []
  with open(path, encoding='utf-8') as f:
    for n, line in enumerate(f, 1):
      line = line.strip()
      if not line:
        continue
      vid, sep, name = line.partition(';')
      if not sep or not vid.strip() or not name.strip():
        raise ValueError(f'{path}:{n}: expected "<video_id>;<class name>", got {line!r}')
      rows.append((vid.strip(), name.strip()))
  return rows


def load_split(root: str, split: str, *, frames_dir: str | None = None) -> Split:
  """Records of ``split`` ('train' or 'val'); labels from the labels CSV's line order."""
  root = os.fspath(root)
  key = _SPLIT_FILES.get(split)
  if key is None:
    raise ValueError(f'Something-Something V1 split {split!r}: use train or val (validation)')
  class_names = read_class_names(find_csv(root, 'labels'))
  label_of = {c: i for i, c in enumerate(class_names)}
  folded = {c.lower(): i for i, c in enumerate(class_names)}
  annotation = find_csv(root, key)
  frames_dir = os.fspath(frames_dir) if frames_dir else os.path.join(root, FRAMES_DIR)
  records = []
  for vid, name in read_split_csv(annotation):
    label = label_of.get(name, folded.get(name.lower()))
    if label is None:
      raise ValueError(f'{annotation}: class {name!r} of video {vid} not in the labels file')
    records.append((os.path.join(frames_dir, vid), label))
  if not records:
    raise ValueError(f'{annotation}: no videos')
  return Split(records, class_names, annotation)


def _load(data_config, split: str) -> Split:
  root = config_require(data_config, 'root')
  return load_split(root, split, frames_dir=config_get(data_config, 'frames_dir', None))


def make_train_iterator(data_config, global_batch_size: int, process_index: int = 0,
                        process_count: int = 1, seed: int = 0, *,
                        num_epochs: int | None = None) -> core.GrainIterator:
  """:func:`bat_jax.data.pipeline.make_train_iterator` on the Something-Something V1 records."""
  sp = _load(data_config, config_get(data_config, 'train_split', 'train'))
  return pipeline.make_train_iterator(data_config, global_batch_size, process_index,
                                      process_count, seed, num_epochs=num_epochs,
                                      records=sp.records, class_names=sp.class_names)


def make_eval_iterator(data_config, global_batch_size: int, process_index: int = 0,
                       process_count: int = 1, *, num_clips: int = 1, num_crops: int = 1,
                       crop_size: int | None = None) -> core.GrainIterator:
  """:func:`bat_jax.data.pipeline.make_eval_iterator` on the Something-Something V1 records."""
  sp = _load(data_config, config_get(data_config, 'eval_split', 'val'))
  it = pipeline.make_eval_iterator(data_config, global_batch_size, process_index, process_count,
                                   num_clips=num_clips, num_crops=num_crops,
                                   crop_size=crop_size, records=sp.records)
  it.class_names, it.num_classes = list(sp.class_names), sp.num_classes
  return it
