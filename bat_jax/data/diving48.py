"""Diving-48 (V2 annotations; trimmed mp4 clips) -> the shared video pipeline.

Layout under ``config.data.root`` (the official download: ``Diving48_rgb.tar.gz`` unpacks
``rgb/``; the annotation files may also sit in ``root/annotations/``, as MMAction2's
``tools/data/diving48`` arranges them)::

    rgb/<vid_name>.mp4
    Diving48_vocab.json       48 lists [take-off, somersault, twist, flight]; list index = label
    Diving48_V2_train.json    [{"vid_name", "label", "start_frame", "end_frame"}, ...]
    Diving48_V2_test.json

Each record is ``(rgb/<vid_name>.mp4, label)``; the class name is the vocabulary entry joined by
spaces (``'Back 15som 05Twis FREE'``). The mp4s are the trimmed dives, so ``start_frame`` /
``end_frame`` are not used (MMAction2's ``parse_diving48_splits`` also keeps only ``vid_name``
and ``label``). Splits: ``train``; ``val`` / ``test`` (the data set has no separate validation
set; RSA's Diving-48 numbers are on the test split). ``config.data.videos_dir`` overrides
``root/rgb``. Listed videos without a file are left out and reported once (``missing``); a video
that does not decode is reported and substituted (training) or masked (evaluation)
(:mod:`bat_jax.data.annotated`).
"""

from __future__ import annotations

import os

from bat_jax.data import annotated, annotation_files
from bat_jax.data.annotated import Split
from bat_jax.data.core import config_get, config_require
from bat_jax.data.core import broken_files, reset_broken_files  # pylint: disable=unused-import

__all__ = ['NUM_CLASSES', 'VIDEOS_DIR', 'read_vocab', 'load_split', 'make_train_iterator',
           'make_eval_iterator', 'broken_files', 'reset_broken_files']

NUM_CLASSES = 48
VIDEOS_DIR = 'rgb'
_SPLIT_FILES = {'train': 'train', 'training': 'train', 'val': 'test', 'validation': 'test',
                'test': 'test'}


def read_vocab(path: str) -> list[str]:
  """The 48 class names of ``Diving48_vocab.json`` (each entry's words joined by spaces)."""
  vocab = annotation_files.read_json(path)
  if not isinstance(vocab, list) or len(vocab) != NUM_CLASSES:
    raise ValueError(f'{path}: expected a list of {NUM_CLASSES} class entries')
  return [' '.join(str(w) for w in v) if isinstance(v, list) else str(v) for v in vocab]


def load_split(root: str, split: str, *, videos_dir: str | None = None) -> Split:
  """Records of ``split`` ('train' or 'test' / 'val'); listed videos without a file go to
  ``missing``."""
  root = os.fspath(root)
  key = _SPLIT_FILES.get(split)
  if key is None:
    raise ValueError(f'Diving-48 split {split!r}: use train or test (val)')
  class_names = read_vocab(annotation_files.find_file(root, 'Diving48_vocab.json'))
  annotation = annotation_files.find_file(root, f'Diving48_V2_{key}.json')
  videos_dir = os.fspath(videos_dir) if videos_dir else os.path.join(root, VIDEOS_DIR)
  listed = [(os.path.join(videos_dir, f'{e["vid_name"]}.mp4'), int(e['label']))
            for e in annotation_files.json_entries(annotation, ('vid_name', 'label'))]
  annotation_files.check_labels([l for _, l in listed], NUM_CLASSES, annotation)
  records, missing = annotated.split_present(listed)
  return Split(records, class_names, annotation, missing)


def _load(data_config, split: str) -> Split:
  return load_split(config_require(data_config, 'root'), split,
                    videos_dir=config_get(data_config, 'videos_dir', None))


make_train_iterator, make_eval_iterator = annotated.entry_points(_load, 'Diving-48')
