"""FineGym element-level sets Gym99 and Gym288 over trimmed sub-action clips -> the shared video
pipeline (``config.data.name``: ``'gym99'`` or ``'gym288'``).

Layout under ``config.data.root`` (the official annotation files from the FineGym site; the clips
as MMAction2's ``tools/data/gym`` cuts them: ``trim_event.py`` then ``trim_subaction.py``)::

    subactions/<clip_id>.mp4                 <youtube_id>_E_<event>_A_<start>_<end>.mp4
    gym99_train_element_v1.1.txt             '<clip_id> <label>' per line
    gym99_val_element.txt
    gym288_train_element_v1.1.txt
    gym288_val_element.txt
    gym99_categories.txt, gym288_categories.txt   optional: 'Clabel: <i>; set: ...; Glabel:
                                                  ...; <name>' per line (class names)

Labels are the files' integers (99 / 288 classes); class names come from the categories file
when it is there, otherwise they are ``'<label>'``. They matter only for
``data.no_flip_keywords`` (RSA's recipes keep 'left' / 'right': without the categories file no
class is exempt from flipping).
The annotation files may also sit in ``root/annotations/``; ``config.data.videos_dir`` overrides
``root/subactions``. Many source videos are no longer on YouTube: listed clips without a file are
left out and reported once (``missing``; MMAction2's ``generate_file_list.py`` drops them too); a
clip that does not decode is reported and substituted (training) or masked (evaluation)
(:mod:`bat_jax.data.annotated`). Splits: ``train``; ``val``.
"""

from __future__ import annotations

import os
import re

from bat_jax.data import annotated, annotation_files
from bat_jax.data.annotated import Split
from bat_jax.data.core import config_get, config_require
from bat_jax.data.core import broken_files, reset_broken_files  # pylint: disable=unused-import

__all__ = ['NUM_CLASSES', 'VIDEOS_DIR', 'ANNOTATION_FILES', 'read_elements', 'read_categories',
           'load_split', 'make_train_iterator', 'make_eval_iterator', 'broken_files',
           'reset_broken_files']

NUM_CLASSES = {'gym99': 99, 'gym288': 288}
VIDEOS_DIR = 'subactions'
ANNOTATION_FILES = {'train': '{}_train_element_v1.1.txt', 'val': '{}_val_element.txt'}
_SPLITS = {'train': 'train', 'training': 'train', 'val': 'val', 'validation': 'val'}
_CATEGORY = re.compile(r'^\s*Clabel:\s*(\d+)\s*;[^;]*;[^;]*;\s*(.*?)\s*$')


def read_elements(path: str) -> list[tuple[str, int]]:
  """``(clip_id, label)`` of a ``<clip_id> <label>`` file."""
  rows = []
  for n, line in annotation_files.text_lines(path):
    parts = line.split()
    if len(parts) != 2 or not parts[1].isdigit():
      raise ValueError(f'{path}:{n}: expected "<clip_id> <label>", got {line!r}')
    rows.append((parts[0], int(parts[1])))
  return rows


def read_categories(path: str, num_classes: int) -> list[str]:
  """Class names of a ``<set>_categories.txt`` (``Clabel: <i>; set: ...; Glabel: ...; <name>``
  lines); every label ``0 .. num_classes - 1`` once."""
  names: dict[int, str] = {}
  for n, line in annotation_files.text_lines(path):
    m = _CATEGORY.match(line)
    if m is None:
      raise ValueError(f'{path}:{n}: expected "Clabel: <i>; set: ...; Glabel: ...; <name>"')
    names[int(m.group(1))] = m.group(2)
  if sorted(names) != list(range(num_classes)):
    raise ValueError(f'{path}: the labels are not 0..{num_classes - 1} once each')
  return [names[i] for i in range(num_classes)]


def load_split(root: str, split: str, gym_set: str = 'gym99', *,
               videos_dir: str | None = None) -> Split:
  """Records of ``split`` ('train' or 'val') of ``gym_set`` ('gym99' or 'gym288'); listed clips
  without a file go to ``missing``."""
  root = os.fspath(root)
  if gym_set not in NUM_CLASSES:
    raise ValueError(f'FineGym set {gym_set!r}; allowed: {sorted(NUM_CLASSES)}')
  key = _SPLITS.get(split)
  if key is None:
    raise ValueError(f'FineGym split {split!r}: use train or val')
  num_classes = NUM_CLASSES[gym_set]
  try:
    class_names = read_categories(
        annotation_files.find_file(root, f'{gym_set}_categories.txt'), num_classes)
  except FileNotFoundError:
    class_names = [str(i) for i in range(num_classes)]
  annotation = annotation_files.find_file(root, ANNOTATION_FILES[key].format(gym_set))
  rows = read_elements(annotation)
  if not rows:
    raise ValueError(f'{annotation}: no clips')
  annotation_files.check_labels([l for _, l in rows], num_classes, annotation)
  videos_dir = os.fspath(videos_dir) if videos_dir else os.path.join(root, VIDEOS_DIR)
  records, missing = annotated.split_present(
      (os.path.join(videos_dir, f'{clip}.mp4'), label) for clip, label in rows)
  return Split(records, class_names, annotation, missing)


def _load(data_config, split: str) -> Split:
  gym_set = config_get(data_config, 'name', 'gym99')
  if gym_set not in NUM_CLASSES:
    raise ValueError(f'config.data.name={gym_set!r}; this module serves {sorted(NUM_CLASSES)}')
  return load_split(config_require(data_config, 'root'), split, gym_set,
                    videos_dir=config_get(data_config, 'videos_dir', None))


make_train_iterator, make_eval_iterator = annotated.entry_points(_load, 'FineGym')
