"""UCF-101 (101 actions, ``.avi`` files) with the official split lists -> the shared video
pipeline (:mod:`bat_jax.data.pipeline`).

Layout under ``config.data.root`` (the ``UCF101.rar`` and ``UCF101TrainTestSplits-
RecognitionTask.zip`` downloads unpacked side by side)::

    UCF-101/<Class>/v_<Class>_g<group>_c<clip>.avi
    ucfTrainTestlist/classInd.txt          '<1-based label> <Class>' per line
    ucfTrainTestlist/trainlist0{1,2,3}.txt '<Class>/<file>.avi <1-based label>' per line
    ucfTrainTestlist/testlist0{1,2,3}.txt  '<Class>/<file>.avi' per line (label from classInd
                                           via the class folder)

``config.data.split_id`` (1, 2 or 3; default 1) picks the lists; ``config.data.videos_dir`` and
``config.data.lists_dir`` (optional) override the two folders. Split names: ``train`` and
``test``. Labels are ``classInd - 1`` (0..100), found through each listed file's class folder.
Each record is ``(path, label)``, decoded by
:mod:`bat_jax.data.decode` (PyAV reads the Xvid ``.avi`` files), so clip sampling, augmentation,
sharding, iterator state and broken-file handling are those of :mod:`bat_jax.data.pipeline`. A
listed video that is missing or undecodable stays a record: it is reported by
:func:`broken_files` and substituted (training) or masked (evaluation).
"""

from __future__ import annotations

import os

from bat_jax.data import annotated, annotation_files
from bat_jax.data.annotated import Split
from bat_jax.data.core import config_get, config_require
from bat_jax.data.core import broken_files, reset_broken_files  # pylint: disable=unused-import

__all__ = ['NUM_CLASSES', 'VIDEOS_DIR', 'LISTS_DIR', 'SPLIT_IDS', 'Split', 'read_class_index',
           'read_list', 'load_split', 'make_train_iterator', 'make_eval_iterator',
           'broken_files', 'reset_broken_files']

NUM_CLASSES = 101
VIDEOS_DIR = 'UCF-101'
LISTS_DIR = 'ucfTrainTestlist'
SPLIT_IDS = (1, 2, 3)
_LIST_NAMES = {'train': 'trainlist', 'test': 'testlist'}


def read_class_index(path: str) -> list[str]:
  """Class names of ``classInd.txt`` (``<label> <Class>``, labels 1..N in any line order)."""
  names: dict[int, str] = {}
  for n, line in annotation_files.text_lines(path, 'UCF-101 class index'):
    parts = line.split()
    if len(parts) != 2 or not parts[0].isdigit():
      raise ValueError(f'{path}:{n}: expected "<label> <Class>", got {line!r}')
    if int(parts[0]) in names:
      raise ValueError(f'{path}:{n}: label {parts[0]} listed twice')
    names[int(parts[0])] = parts[1]
  if sorted(names) != list(range(1, len(names) + 1)):
    raise ValueError(f'{path}: labels are not 1..{len(names)}')
  return [names[i] for i in range(1, len(names) + 1)]


def read_list(path: str, class_names: list[str]) -> list[tuple[str, int]]:
  """``(<Class>/<file>.avi, 0-based label)`` rows of a train or test list. A train list's label
  must agree with its class folder; a test list's comes from the folder."""
  label_of = {c: i for i, c in enumerate(class_names)}
  rows = []
  for n, line in annotation_files.text_lines(path, 'UCF-101 split list'):
    parts = line.split()
    rel = parts[0].replace('\\', '/')
    folder = rel.split('/')[0] if '/' in rel else ''
    label = label_of.get(folder)
    if len(parts) > 2 or label is None:
      raise ValueError(f'{path}:{n}: expected "<Class>/<file>.avi [label]" with a class of '
                       f'classInd.txt, got {line!r}')
    if len(parts) == 2:
      if not parts[1].isdigit() or int(parts[1]) - 1 != label:
        raise ValueError(f'{path}:{n}: label {parts[1]!r} is not that of class {folder!r} '
                         f'({label + 1} in classInd.txt)')
    rows.append((rel, label))
  if not rows:
    raise ValueError(f'{path}: no videos listed')
  return rows


def load_split(root: str, split: str, split_id: int = 1, *, videos_dir: str | None = None,
               lists_dir: str | None = None) -> Split:
  """Records of ``split`` (``train`` or ``test``) of official split ``split_id`` (1, 2, 3)."""
  if split not in _LIST_NAMES:
    raise ValueError(f'UCF-101 split {split!r} (config.data.train_split / eval_split); '
                     f'allowed: {sorted(_LIST_NAMES)}')
  if split_id not in SPLIT_IDS:
    raise ValueError(f'config.data.split_id={split_id!r}; allowed: {list(SPLIT_IDS)}')
  root = os.fspath(root)
  lists_dir = os.fspath(lists_dir) if lists_dir else os.path.join(root, LISTS_DIR)
  videos_dir = os.fspath(videos_dir) if videos_dir else os.path.join(root, VIDEOS_DIR)
  class_names = read_class_index(os.path.join(lists_dir, 'classInd.txt'))
  annotation = os.path.join(lists_dir, f'{_LIST_NAMES[split]}{split_id:02d}.txt')
  records = [(os.path.join(videos_dir, rel), label)
             for rel, label in read_list(annotation, class_names)]
  return Split(records, class_names, annotation)


def _load(data_config, split: str) -> Split:
  return load_split(config_require(data_config, 'root'), split,
                    int(config_get(data_config, 'split_id', 1)),
                    videos_dir=config_get(data_config, 'videos_dir', None),
                    lists_dir=config_get(data_config, 'lists_dir', None))


make_train_iterator, make_eval_iterator = annotated.entry_points(_load, 'UCF-101',
                                                                 eval_split='test')
