"""Something-Something V1 (JPEG frame folders) and V2 (webm videos) -> the shared video pipeline.

V1 layout under ``config.data.root`` (as the 20BN download unpacks)::

    20bn-something-something-v1/<video_id>/00001.jpg, 00002.jpg, ...
    something-something-v1-labels.csv        one class name per line; line order = label index
    something-something-v1-train.csv         '<video_id>;<class name>' per line
    something-something-v1-validation.csv

V2 layout (``data.name='something_something_v2'``; 174 classes)::

    20bn-something-something-v2/<id>.webm
    something-something-v2-labels.json       {"<template>": "<index>", ...}
    something-something-v2-train.json        [{"id", "label", "template", "placeholders"}, ...]
    something-something-v2-validation.json

A V2 video's class is its ``template`` with the square brackets removed
(``"Putting [something] on [something]"`` -> ``"Putting something on something"``), looked up in
the labels file, as the official loaders map them (SlowFast ``datasets/ssv2.py``, TSM
``tools/gen_label_sthv2.py``: ``template.replace('[', '').replace(']', '')``); its ``label``
field (the filled-in description) is not used. Class names are the labels file's keys in index
order.

The annotation files may also sit in ``root/annotations/``; ``config.data.frames_dir`` (V1) or
``config.data.videos_dir`` (V2) overrides the frame / video folder. Sampling
(``data.sampling='segments'`` for TSN / RSA), augmentation, no-flip keywords, sharding, iterator
state and broken-file handling are those of :mod:`bat_jax.data.pipeline`
(:mod:`bat_jax.data.annotated`). V1: a listed video whose folder is missing or empty stays a
record, reported by :func:`broken_files` and substituted (training) or masked (evaluation). V2:
a listed id without a webm file is left out and reported once (``missing``); a webm that does
not decode is reported and substituted / masked. Split names: ``train``; ``val`` /
``validation``; ``test`` has no labels and is not supported.
"""

from __future__ import annotations

import os

from bat_jax.data import annotated, annotation_files
from bat_jax.data.annotated import Split
from bat_jax.data.core import config_get, config_require
from bat_jax.data.core import broken_files, reset_broken_files  # pylint: disable=unused-import

__all__ = ['FRAMES_DIR', 'VIDEOS_DIR_V2', 'Split', 'read_class_names', 'read_split_csv',
           'load_split', 'read_labels_v2', 'template_class', 'load_split_v2',
           'make_train_iterator', 'make_eval_iterator', 'broken_files', 'reset_broken_files']

FRAMES_DIR = '20bn-something-something-v1'
VIDEOS_DIR_V2 = '20bn-something-something-v2'
_PREFIX = {1: 'something-something-v1-', 2: 'something-something-v2-'}
_SPLIT_FILES = {'train': 'train', 'training': 'train', 'val': 'validation',
                'valid': 'validation', 'validation': 'validation', 'validate': 'validation'}
_VERSIONS = {'something_something_v1': 1, 'something_something_v2': 2}


def _split_key(split: str, version: int) -> str:
  key = _SPLIT_FILES.get(split)
  if key is None:
    raise ValueError(f'Something-Something V{version} split {split!r}: use train or val '
                     '(validation)')
  return key


def read_class_names(path: str) -> list[str]:
  """Class names, one per non-empty line; the line order is the label index."""
  names = [line for _, line in annotation_files.text_lines(path)]
  if len(set(names)) != len(names):
    raise ValueError(f'{path}: duplicate class names')
  return names


def read_split_csv(path: str) -> list[tuple[str, str]]:
  """``(video_id, class name)`` rows of a ``<video_id>;<class name>`` file."""
  rows = []
  for n, line in annotation_files.text_lines(path):
    vid, sep, name = line.partition(';')
    if not sep or not vid.strip() or not name.strip():
      raise ValueError(f'{path}:{n}: expected "<video_id>;<class name>", got {line!r}')
    rows.append((vid.strip(), name.strip()))
  return rows


def load_split(root: str, split: str, *, frames_dir: str | None = None) -> Split:
  """V1 records of ``split`` ('train' or 'val'); labels from the labels CSV's line order."""
  root = os.fspath(root)
  key = _split_key(split, 1)
  class_names = read_class_names(annotation_files.find_file(root, f'{_PREFIX[1]}labels.csv'))
  label_of = {c: i for i, c in enumerate(class_names)}
  folded = {c.lower(): i for i, c in enumerate(class_names)}
  annotation = annotation_files.find_file(root, f'{_PREFIX[1]}{key}.csv')
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


def read_labels_v2(path: str) -> list[str]:
  """Class names of ``something-something-v2-labels.json`` (``{template: "index"}``) in index
  order; the indices must be exactly ``0 .. n - 1``."""
  table = annotation_files.read_json(path)
  if not isinstance(table, dict) or not table:
    raise ValueError(f'{path}: expected a non-empty {{"<template>": "<index>"}} object')
  try:
    by_index = {int(v): k for k, v in table.items()}
  except (TypeError, ValueError):
    raise ValueError(f'{path}: every value must be an integer index (as a string)') from None
  if sorted(by_index) != list(range(len(table))):
    raise ValueError(f'{path}: the indices are not 0..{len(table) - 1} once each')
  return [by_index[i] for i in range(len(table))]


def template_class(template: str) -> str:
  """The labels-file key of a V2 ``template``: its square brackets removed."""
  return template.replace('[', '').replace(']', '')


def load_split_v2(root: str, split: str, *, videos_dir: str | None = None) -> Split:
  """V2 records of ``split`` ('train' or 'val'): ``videos_dir/<id>.webm`` with the label of its
  template (module docstring); listed ids without a file go to ``missing``."""
  root = os.fspath(root)
  key = _split_key(split, 2)
  class_names = read_labels_v2(annotation_files.find_file(root, f'{_PREFIX[2]}labels.json'))
  label_of = {c: i for i, c in enumerate(class_names)}
  annotation = annotation_files.find_file(root, f'{_PREFIX[2]}{key}.json')
  videos_dir = os.fspath(videos_dir) if videos_dir else os.path.join(root, VIDEOS_DIR_V2)
  listed = []
  for e in annotation_files.json_entries(annotation, ('id', 'template')):
    label = label_of.get(template_class(str(e['template'])))
    if label is None:
      raise ValueError(f'{annotation}: template {e["template"]!r} of video {e["id"]} not in '
                       'the labels file')
    listed.append((os.path.join(videos_dir, f'{e["id"]}.webm'), label))
  records, missing = annotated.split_present(listed)
  return Split(records, class_names, annotation, missing)


def _load(data_config, split: str) -> Split:
  name = config_get(data_config, 'name', 'something_something_v1')
  version = _VERSIONS.get(name)
  if version is None:
    raise ValueError(f'config.data.name={name!r}; this module serves {sorted(_VERSIONS)}')
  root = config_require(data_config, 'root')
  if version == 1:
    return load_split(root, split, frames_dir=config_get(data_config, 'frames_dir', None))
  return load_split_v2(root, split, videos_dir=config_get(data_config, 'videos_dir', None))


make_train_iterator, make_eval_iterator = annotated.entry_points(_load, 'Something-Something')
