"""Mini-Kinetics-200 from the Kinetics-400 annotations (``bat_cvpr2020.md`` §4.1, after Xie et al.,
"Rethinking spatiotemporal feature learning", ECCV 2018): 200 classes, 400 training and 25
validation videos per class.

    python -m bat_jax.data.mini_kinetics --annotations kinetics400/train.csv \
        [--val-annotations kinetics400/validate.csv] --out data/mini_kinetics200 \
        [--videos kinetics400] [--seed 0] [--require-files] \
        [--train-ids train_ytid_list.txt --val-ids val_ytid_list.txt]

Writes ``OUT/train.csv`` and ``OUT/val.csv`` in the Kinetics format
(``label,youtube_id,time_start,time_end,split``, rows in annotation order), ``OUT/classes.txt``
(the 200 class names, sorted) and ``OUT/mini_kinetics.json`` (what was done: seed, sources,
counts). With ``--videos KINETICS_ROOT`` it also links ``OUT/train`` and ``OUT/val`` to the
Kinetics video folders, so that ``--config.data.name=mini_kinetics200
--config.data.root=OUT`` trains on it through :mod:`bat_jax.data.kinetics` unchanged.

Selection (deterministic for a seed):

* classes: the 200 classes with the most training annotations (Xie et al.'s rule; ties broken
  by name), among those with at least 400 training and 25 validation candidates; ``--classes
  random`` draws them uniformly instead;
* per class: 400 training rows drawn without replacement from the class's training
  annotations, and 25 validation rows from its validation annotations (``--val-annotations``;
  without it, from the class's training rows not drawn for training, so the splits stay
  disjoint);
* ``--require-files`` (with ``--videos``) draws only among annotations whose video file exists,
  useful for partial downloads; the default draws from the annotations alone, like the paper.
* ``--train-ids`` / ``--val-ids``: files with one YouTube id per line (an official Mini-Kinetics
  list): those rows are used instead of a random draw (class counts are then whatever the lists
  have).

Per-class draws use ``np.random.default_rng([seed, class_rank, split])``, so a class's rows do
not depend on which other classes were chosen.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from typing import Sequence

import numpy as np

from bat_jax.data import kinetics

NUM_CLASSES = 200
TRAIN_PER_CLASS = 400
VAL_PER_CLASS = 25
FIELDS = ('label', 'youtube_id', 'time_start', 'time_end', 'split')


def _read_ids(path: str) -> list[str]:
  with open(path) as f:
    ids = []
    for line in f:
      line = line.strip()
      if line and not line.startswith('#'):
        ids.append(line.split(',')[0].split()[0])
  return ids


def _has_file(index: dict[str, list[str]], row: dict) -> bool:
  return kinetics._resolve(row, index) is not None  # pylint: disable=protected-access


def select(train_rows: Sequence[dict], val_rows: Sequence[dict] | None, *, seed: int = 0,
           num_classes: int = NUM_CLASSES, train_per_class: int = TRAIN_PER_CLASS,
           val_per_class: int = VAL_PER_CLASS, classes: str = 'most'
           ) -> tuple[list[str], list[dict], list[dict]]:
  """(class names sorted, train rows, val rows), rows in their annotation order.

  ``val_rows`` None: validation rows come from the training annotations left over.
  """
  by_class: dict[str, list[int]] = {}
  for i, r in enumerate(train_rows):
    if r['label']:
      by_class.setdefault(r['label'], []).append(i)
  val_by_class: dict[str, list[int]] = {}
  if val_rows is not None:
    for i, r in enumerate(val_rows):
      if r['label']:
        val_by_class.setdefault(r['label'], []).append(i)

  def enough(c: str) -> bool:
    if val_rows is None:
      return len(by_class[c]) >= train_per_class + val_per_class
    return len(by_class[c]) >= train_per_class and len(val_by_class.get(c, ())) >= val_per_class

  eligible = sorted(c for c in by_class if enough(c))
  if len(eligible) < num_classes:
    raise ValueError(f'only {len(eligible)} classes have >= {train_per_class} training and '
                     f'{val_per_class} validation videos; {num_classes} needed')
  if classes == 'most':
    ranked = sorted(eligible, key=lambda c: (-len(by_class[c]), c))
    chosen = sorted(ranked[:num_classes])
  elif classes == 'random':
    rng = np.random.default_rng([seed, 0xC1A5])
    chosen = sorted(np.asarray(eligible)[rng.choice(len(eligible), num_classes, replace=False)])
    chosen = [str(c) for c in chosen]
  else:
    raise ValueError(f"classes={classes!r}; allowed: 'most', 'random'")

  train_idx, val_idx = [], []
  for rank, c in enumerate(chosen):
    pool = np.asarray(by_class[c])
    rng = np.random.default_rng([seed, rank, 0])
    perm = rng.permutation(len(pool))
    train_idx += pool[perm[:train_per_class]].tolist()
    if val_rows is None:
      val_idx += pool[perm[train_per_class:train_per_class + val_per_class]].tolist()
    else:
      vpool = np.asarray(val_by_class[c])
      vrng = np.random.default_rng([seed, rank, 1])
      val_idx += vpool[vrng.permutation(len(vpool))[:val_per_class]].tolist()
  train = [dict(train_rows[i], split='train') for i in sorted(train_idx)]
  source = train_rows if val_rows is None else val_rows
  val = [dict(source[i], split='val') for i in sorted(val_idx)]
  return chosen, train, val


def write_csv(path: str, rows: Sequence[dict]) -> None:
  with open(path, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(FIELDS)
    for r in rows:
      w.writerow([r['label'], r['youtube_id'], r['time_start'], r['time_end'], r['split']])


def _link(target: str, link: str) -> None:
  if os.path.islink(link):
    if os.path.realpath(link) == os.path.realpath(target):
      return
    os.remove(link)
  elif os.path.exists(link):
    raise FileExistsError(f'{link} exists and is not a link; remove it or choose another --out')
  os.symlink(os.path.abspath(target), link, target_is_directory=True)


def build(annotations: str, out: str, *, val_annotations: str | None = None,
          videos: str | None = None, seed: int = 0, classes: str = 'most',
          require_files: bool = False, train_ids: str | None = None,
          val_ids: str | None = None, num_classes: int = NUM_CLASSES,
          train_per_class: int = TRAIN_PER_CLASS, val_per_class: int = VAL_PER_CLASS) -> dict:
  """Writes the split (see the module docstring); returns the summary also written to
  ``OUT/mini_kinetics.json``."""
  train_rows = kinetics.read_annotations(annotations)
  val_rows = kinetics.read_annotations(val_annotations) if val_annotations else None
  split_dirs = {}
  if videos:
    for split in ('train', 'val'):
      split_dirs[split] = kinetics.find_split_dir(videos, split)
    if split_dirs['train'] is None:
      raise FileNotFoundError(f'no train/ folder under --videos {videos!r}')
  dropped = {'train': 0, 'val': 0}
  if require_files:
    if not videos:
      raise ValueError('--require-files needs --videos')
    for split, rows in (('train', train_rows), ('val', val_rows)):
      if rows is None:
        continue
      d = split_dirs[split]
      index = kinetics._index_videos(d) if d else {}  # pylint: disable=protected-access
      kept = [r for r in rows if _has_file(index, r)]
      dropped[split] = len(rows) - len(kept)
      rows[:] = kept
  if train_ids or val_ids:
    if not (train_ids and val_ids):
      raise ValueError('--train-ids and --val-ids go together')
    tr_ids, va_ids = set(_read_ids(train_ids)), set(_read_ids(val_ids))
    train = [dict(r, split='train') for r in train_rows if r['youtube_id'] in tr_ids]
    pool = val_rows if val_rows is not None else train_rows
    val = [dict(r, split='val') for r in pool if r['youtube_id'] in va_ids]
    chosen = sorted({r['label'] for r in train})
    unknown = sorted({r['label'] for r in val} - set(chosen))
    if unknown:
      raise ValueError(f'validation ids of classes without training ids: {unknown[:5]}')
  else:
    chosen, train, val = select(train_rows, val_rows, seed=seed, num_classes=num_classes,
                                train_per_class=train_per_class, val_per_class=val_per_class,
                                classes=classes)
  os.makedirs(out, exist_ok=True)
  write_csv(os.path.join(out, 'train.csv'), train)
  write_csv(os.path.join(out, 'val.csv'), val)
  with open(os.path.join(out, 'classes.txt'), 'w') as f:
    f.write(''.join(c + '\n' for c in chosen))
  if videos:
    _link(split_dirs['train'], os.path.join(out, 'train'))
    if split_dirs['val'] is not None and val_rows is not None:
      _link(split_dirs['val'], os.path.join(out, 'val'))
    elif val_rows is None:  # validation rows come from the training videos
      _link(split_dirs['train'], os.path.join(out, 'val'))
  summary = {
      'num_classes': len(chosen), 'num_train': len(train), 'num_val': len(val),
      'seed': seed, 'classes': classes if not train_ids else 'id lists',
      'annotations': os.path.abspath(annotations),
      'val_annotations': os.path.abspath(val_annotations) if val_annotations else None,
      'val_from': 'val annotations' if val_rows is not None else 'training leftovers',
      'videos': os.path.abspath(videos) if videos else None,
      'dropped_without_file': dropped if require_files else None,
  }
  with open(os.path.join(out, 'mini_kinetics.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  return summary


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog='python -m bat_jax.data.mini_kinetics',
                              description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--annotations', required=True, help='Kinetics-400 train.csv')
  p.add_argument('--val-annotations', help='Kinetics-400 validate.csv (val rows are drawn from '
                 'it; default: from the training rows not drawn)')
  p.add_argument('--out', required=True, help='output folder')
  p.add_argument('--videos', help='Kinetics-400 root with train/ and val/ (or validate/): '
                 'linked as OUT/train, OUT/val')
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--classes', choices=('most', 'random'), default='most',
                 help='which 200 classes: the most frequent (Xie et al.) or random')
  p.add_argument('--require-files', action='store_true',
                 help='draw only among videos present under --videos')
  p.add_argument('--train-ids', help='official list: one YouTube id per line')
  p.add_argument('--val-ids', help='official list: one YouTube id per line')
  p.add_argument('--num-classes', type=int, default=NUM_CLASSES)
  p.add_argument('--train-per-class', type=int, default=TRAIN_PER_CLASS)
  p.add_argument('--val-per-class', type=int, default=VAL_PER_CLASS)
  a = p.parse_args(argv)
  try:
    s = build(a.annotations, a.out, val_annotations=a.val_annotations, videos=a.videos,
              seed=a.seed, classes=a.classes, require_files=a.require_files,
              train_ids=a.train_ids, val_ids=a.val_ids, num_classes=a.num_classes,
              train_per_class=a.train_per_class, val_per_class=a.val_per_class)
  except (ValueError, FileNotFoundError, FileExistsError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f"wrote {s['num_train']} train + {s['num_val']} val rows of {s['num_classes']} classes "
        f"to {a.out} (seed {a.seed}, val from {s['val_from']})")
  return 0


if __name__ == '__main__':
  sys.exit(main())
