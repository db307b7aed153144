"""Charades v1 (official CSVs; 24 fps frame folders or mp4s) -> the shared video pipeline.

Layout under ``config.data.root`` (the official downloads; the CSVs may also sit in
``root/Charades/``, where ``Charades.zip`` unpacks them)::

    Charades_v1_train.csv     id,subject,scene,quality,relevance,verified,script,objects,
    Charades_v1_test.csv      descriptions,actions,length  (actions: 'c### start end;...' in
                              seconds, may be empty; length in seconds)
    Charades_v1_classes.txt   'c000 Holding some clothes', ... (157 lines; c### = label index)
    Charades_v1_rgb/<id>/<id>-000001.jpg, ...   the released frames at 24 fps, or
    Charades_v1_480/<id>.mp4 or Charades_v1/<id>.mp4

``config.data.videos`` (optional) names the frame-folder or mp4 folder; by default the first of
``Charades_v1_rgb/``, ``Charades_v1_480/``, ``Charades_v1/`` that exists under the root is used.
Splits: ``train`` = ``Charades_v1_train.csv``; ``test`` (or ``val``) = ``Charades_v1_test.csv``
(the Non-local paper's "train/val" row of Table 4 trains on the first and tests on the second).

Labels are multi-hot float32 vectors over the 157 classes (``label``: (B, 157)).

* Evaluation: the whole video's action set (video-level classification, as Charades'
  ``Charades_v1_classify.m`` scores it).
* Training: the actions that overlap the sampled window. The Non-local paper's released code
  (facebookresearch/video-nonlocal-net) has no Charades code; its authors' follow-up code that
  trains the same I3D / NL I3D R101 on Charades from Kinetics (facebookresearch/
  video-long-term-feature-banks, ``lib/datasets/charades.py``: ``labels.append(aggregate_labels(
  [image_labels[frame] for frame in range(seq[0], seq[-1] + 1)]))``, video-level labels only for
  the test split, ``_convert_to_video_level_labels``) and PySlowFast (``slowfast/datasets/
  charades.py``: ``aggregate_labels([labels[i] for i in range(seq[0], seq[-1] + 1)])`` in
  training, ``convert_to_video_level_labels`` in testing) both label a training clip by the union
  of the per-frame labels of the frames its window spans. Here frame ``j`` lies at ``j / fps``
  seconds (``fps`` = 24 for the released frame folders, the stream's rate for mp4s) and carries
  action ``c`` when ``start <= j / fps <= end``; the window spans frames ``first .. last`` of the
  clip (the whole video when it is shorter than the window and loops).

The window's first frame is drawn uniformly over the valid starts
(:func:`bat_jax.data.decode.pick_start`), then the clip is decoded with the shared
:func:`bat_jax.data.video.train_transform` at that start. Everything else (augmentation,
sharding, iterator state, evaluation views, broken-file handling) is :mod:`bat_jax.data.pipeline`'s:
a listed video whose folder / mp4 is missing or unreadable stays a record, is reported by
:func:`broken_files` and substituted (training) or masked (evaluation).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Sequence

import numpy as np

from bat_jax.data import annotation_files, core, decode, pipeline
from bat_jax.data.core import config_get, config_require
from bat_jax.data.core import broken_files, reset_broken_files  # pylint: disable=unused-import

__all__ = ['NUM_CLASSES', 'FRAMES_FPS', 'VIDEO_DIRS', 'Action', 'Split', 'read_classes',
           'read_annotations', 'load_split', 'multi_hot', 'window_label',
           'video_length', 'WindowLabels', 'make_train_iterator', 'make_eval_iterator',
           'broken_files', 'reset_broken_files']

NUM_CLASSES = 157
FRAMES_FPS = 24.0  # Charades_v1_rgb: "frames extracted at 24fps" (the release's README)
VIDEO_DIRS = ('Charades_v1_rgb', 'Charades_v1_480', 'Charades_v1')
_CSV = {'train': 'Charades_v1_train.csv', 'test': 'Charades_v1_test.csv',
        'val': 'Charades_v1_test.csv'}
_CLASSES = 'Charades_v1_classes.txt'
_COLUMNS = ('id', 'actions')


@dataclasses.dataclass(frozen=True)
class Action:
  """One annotated action: class index and its interval in seconds."""
  label: int
  start: float
  end: float


@dataclasses.dataclass
class Split:
  """``ids`` and ``actions`` in CSV order; ``paths``: frame folder or mp4 per video."""
  ids: list[str]
  actions: list[tuple[Action, ...]]
  paths: list[str]
  class_names: list[str]
  annotation: str

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def __len__(self) -> int:
    return len(self.ids)

  def records(self) -> list[tuple[str, np.ndarray]]:
    """(path, video-level multi-hot label) per video."""
    return [(p, multi_hot([a.label for a in acts], self.num_classes))
            for p, acts in zip(self.paths, self.actions)]


def read_classes(path: str) -> list[str]:
  """Class names of ``Charades_v1_classes.txt`` (``c### name`` lines, codes c000, c001, ...)."""
  names = []
  for n, line in annotation_files.text_lines(path):
    code, _, name = line.partition(' ')
    if code != f'c{len(names):03d}' or not name.strip():
      raise ValueError(f'{path}:{n}: expected "c{len(names):03d} <name>", got {line!r}')
    names.append(name.strip())
  return names


def _parse_actions(text: str, num_classes: int, where: str) -> tuple[Action, ...]:
  out = []
  for item in filter(None, (t.strip() for t in text.split(';'))):
    parts = item.split()
    if len(parts) != 3 or not parts[0].startswith('c') or not parts[0][1:].isdigit():
      raise ValueError(f'{where}: action {item!r} is not "c### start end"')
    label, start, end = int(parts[0][1:]), float(parts[1]), float(parts[2])
    if label >= num_classes:
      raise ValueError(f'{where}: class {parts[0]} outside the {num_classes} classes')
    out.append(Action(label, start, end))
  return tuple(out)


def read_annotations(path: str, num_classes: int = NUM_CLASSES
                     ) -> list[tuple[str, tuple[Action, ...]]]:
  """``(id, actions)`` rows of an official CSV, in file order."""
  rows = []
  with open(path, newline='', encoding='utf-8') as f:
    reader = csv.DictReader(f)
    missing = [c for c in _COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
      raise ValueError(f'{path}: not a Charades annotation file (no column(s) {missing})')
    for r in reader:
      vid = (r['id'] or '').strip()
      if not vid:
        raise ValueError(f'{path}:{reader.line_num}: empty id')
      rows.append((vid, _parse_actions(r['actions'] or '', num_classes,
                                       f'{path}:{reader.line_num}')))
  return rows


def _video_dir(root: str, videos: str | None) -> str:
  if videos:
    if not os.path.isdir(videos):
      raise FileNotFoundError(f'config.data.videos={videos!r} is not a folder')
    return os.fspath(videos)
  for name in VIDEO_DIRS:
    d = os.path.join(root, name)
    if os.path.isdir(d):
      return d
  raise FileNotFoundError(f'none of {list(VIDEO_DIRS)} under {root!r}; set config.data.videos')


def _holds_frame_folders(video_dir: str) -> bool:
  """``Charades_v1_rgb/`` or any folder with sub-folders (frame folders); else mp4s."""
  if os.path.basename(os.path.normpath(video_dir)) == VIDEO_DIRS[0]:
    return True
  return any(e.is_dir() for e in os.scandir(video_dir))


def load_split(root: str, split: str, *, videos: str | None = None) -> Split:
  """Videos of ``split`` ('train', or 'test' / 'val') with their actions and files."""
  root = os.fspath(root)
  if split not in _CSV:
    raise ValueError(f'Charades split {split!r}; allowed: {sorted(_CSV)}')
  class_names = read_classes(annotation_files.find_file(root, _CLASSES, 'Charades'))
  annotation = annotation_files.find_file(root, _CSV[split], 'Charades')
  rows = read_annotations(annotation, len(class_names))
  if not rows:
    raise ValueError(f'{annotation}: no videos')
  video_dir = _video_dir(root, videos)
  ext = '' if _holds_frame_folders(video_dir) else '.mp4'
  return Split([v for v, _ in rows], [a for _, a in rows],
               [os.path.join(video_dir, v + ext) for v, _ in rows], class_names, annotation)


def multi_hot(labels: Sequence[int], num_classes: int) -> np.ndarray:
  """float32 (num_classes,) with ones at ``labels``."""
  out = np.zeros(num_classes, np.float32)
  out[list(labels)] = 1.0
  return out


def window_label(actions: Sequence[Action], first: int, last: int, fps: float,
                 num_classes: int) -> np.ndarray:
  """Multi-hot label of frames ``first .. last`` (inclusive): the actions ``c`` with some frame
  ``j`` in that range and ``start <= j / fps <= end``."""
  hit = []
  for a in actions:
    lo, hi = max(first, math.ceil(a.start * fps)), min(last, math.floor(a.end * fps))
    if lo <= hi:
      hit.append(a.label)
  return multi_hot(hit, num_classes)


def video_length(path: str) -> tuple[int, float]:
  """(frame count, frames per second) of a frame folder (24 fps) or a video file (its header;
  the frames are counted by decoding when the header has no count)."""
  if os.path.isdir(path):
    return len(decode.frame_files(path)), FRAMES_FPS
  container = decode.open_video(path)
  try:
    stream = container.streams.video[0]
    fps, n = decode.stream_info(container, stream)
    if n <= 0:
      n = len(decode.decode_all(container, stream, path))
  finally:
    container.close()
  if fps <= 0:
    raise decode.VideoDecodeError(path, 'no frame rate in the header')
  return n, fps


class WindowLabels:
  """Training clip sampling + label (``pipeline.make_train_iterator``'s ``window_labels``):
  ``(path, record, rng) -> (first frame, multi-hot label of the window)``."""

  def __init__(self, actions: Sequence[Sequence[Action]], num_frames: int, stride: int,
               num_classes: int):
    self.actions = [tuple(a) for a in actions]
    self.window = (int(num_frames) - 1) * int(stride) + 1
    self.num_classes = int(num_classes)

  def __call__(self, path: str, record: int, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    n, fps = video_length(path)
    start = decode.pick_start(float(rng.random()), n - self.window, True)
    last = min(start + self.window, n) - 1  # shorter videos loop: the window is all of it
    return start, window_label(self.actions[record], start, last, fps, self.num_classes)


def _load(data_config, split: str) -> Split:
  root = config_require(data_config, 'root')
  return load_split(root, split, videos=config_get(data_config, 'videos', None))


def make_train_iterator(data_config, global_batch_size: int, process_index: int = 0,
                        process_count: int = 1, seed: int = 0, *,
                        num_epochs: int | None = None) -> core.GrainIterator:
  """:func:`bat_jax.data.pipeline.make_train_iterator` on the Charades records, each clip
  labelled by the actions overlapping its window (:class:`WindowLabels`)."""
  sp = _load(data_config, config_get(data_config, 'train_split', 'train'))
  labels = WindowLabels(sp.actions, int(config_require(data_config, 'num_frames')),
                        int(config_require(data_config, 'frame_stride')), sp.num_classes)
  return pipeline.make_train_iterator(data_config, global_batch_size, process_index,
                                      process_count, seed, num_epochs=num_epochs,
                                      records=sp.records(), class_names=sp.class_names,
                                      window_labels=labels)


def make_eval_iterator(data_config, global_batch_size: int, process_index: int = 0,
                       process_count: int = 1, *, num_clips: int = 1, num_crops: int = 1,
                       crop_size: int | None = None) -> core.GrainIterator:
  """:func:`bat_jax.data.pipeline.make_eval_iterator` on the Charades records (video-level
  multi-hot labels)."""
  sp = _load(data_config, config_get(data_config, 'eval_split', 'test'))
  it = pipeline.make_eval_iterator(data_config, global_batch_size, process_index, process_count,
                                   num_clips=num_clips, num_crops=num_crops,
                                   crop_size=crop_size, records=sp.records())
  it.class_names, it.num_classes = list(sp.class_names), sp.num_classes
  return it
