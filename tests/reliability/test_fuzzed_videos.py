"""Bad inputs, fuzzed (issue 16, item 7, videos): real mp4s damaged with seeded byte flips,
truncations, swapped headers and zero-byte files go through the training pipeline (one epoch,
2 grain workers) and 30-view evaluation; both complete, no file hangs (``data.decode_timeout_s``)
or kills a worker, and every file is either decoded or listed in the broken-file report -- exactly
so in evaluation, where each video is either predicted or masked.

CI: 16 videos; ``BAT_JAX_RELIABILITY_LONG=1``: 200."""

import csv
import os

import numpy as np

from bat_jax.data import pipeline
from bat_jax.data import decode as D
from tests.reliability.conftest import LONG, record
from tests.test_video_data import _cfg, _coded_frames

MUTATIONS = ('flip', 'truncate', 'swap_header', 'zero', 'intact')


def write_set(root: str, n_train: int, n_val: int) -> dict[str, list[str]]:
  """Kinetics layout (train/<class>/..., flat val/) of tiny coded videos; the paths per split."""
  paths: dict[str, list[str]] = {}
  for split, n in (('train', n_train), ('val', n_val)):
    rows, paths[split] = [], []
    for i in range(n):
      label, yid = f'class {"abc"[i % 3]}', f'{split[:2]}{i:04d}x'
      folder = os.path.join(root, split, label) if split == 'train' else os.path.join(root, split)
      os.makedirs(folder, exist_ok=True)
      path = os.path.join(folder, f'{yid}_000000_000001.mp4')
      D.write_video(path, _coded_frames(i % 20), fps=8, gop_size=4)
      rows.append((label, yid, 0, 1, split, 0))
      paths[split].append(path)
    with open(os.path.join(root, f'{split}.csv'), 'w', newline='') as f:
      w = csv.writer(f)
      w.writerow(['label', 'youtube_id', 'time_start', 'time_end', 'split', 'is_cc'])
      w.writerows(rows)
  return paths


def mutate(path: str, kind: str, donor: bytes, rng: np.random.Generator) -> None:
  data = bytearray(open(path, 'rb').read())
  if kind == 'flip':
    for i in rng.integers(0, len(data), int(rng.integers(1, 64))):
      data[i] ^= int(rng.integers(1, 256))
  elif kind == 'truncate':
    data = data[:int(rng.integers(0, len(data)))]
  elif kind == 'swap_header':
    n = int(rng.integers(16, min(len(data), len(donor), 2048)))
    data[:n] = donor[:n]
  elif kind == 'zero':
    data = bytearray()
  with open(path, 'wb') as f:
    f.write(bytes(data))


def test_fuzzed_videos_are_decoded_or_reported(tmp_path):
  n_train, n_val = (140, 60) if LONG else (10, 6)
  root = str(tmp_path / 'fuzz')
  paths = write_set(root, n_train, n_val)
  donor = open(paths['train'][-1], 'rb').read()
  rng = np.random.default_rng(16)
  # Every 4th file intact (training substitutes at most 16 damaged records in a row).
  kinds = {p: str(rng.choice(MUTATIONS)) if i % 4 else 'intact'
           for i, p in enumerate(paths['train'] + paths['val'])}
  for p, kind in kinds.items():
    if kind != 'intact':
      mutate(p, kind, donor, rng)
  cfg = _cfg(root, num_workers=2, decode_timeout_s=20.0)
  pipeline.reset_broken_files()
  it = pipeline.make_train_iterator(cfg, 2, 0, 1, seed=4)
  for _ in range(n_train // 2):  # one epoch
    assert next(it)['video'].shape == (2, 4, 24, 24, 3)
  it.close()
  ev = pipeline.make_eval_iterator(cfg, 6, num_clips=10, num_crops=3, crop_size=32)
  views: dict[int, list[bool]] = {}
  for b in ev:
    for i, m in zip(b['video_index'], b['mask']):
      if i >= 0:
        views.setdefault(int(i), []).append(bool(m))
  report = pipeline.broken_files()
  pipeline.reset_broken_files()
  listed = {(e['path'], e['split']) for e in report}
  assert all(kinds[p] != 'intact' for p, _ in listed)  # nothing good is reported
  assert sorted(views) == list(range(n_val)) and all(len(v) == 30 for v in views.values())
  for i, p in enumerate(paths['val']):  # each val video: all 30 views decoded, or reported
    assert all(views[i]) != ((p, 'val') in listed), (p, kinds[p], views[i])
  damaged = sum(k != 'intact' for k in kinds.values())
  record('fuzzed videos (flips, truncations, swapped headers, zero bytes)', injected=damaged,
         survived=damaged, details=f'{len(listed)} listed as broken, the rest decoded; '
         f'training epoch and 30-view eval completed')
