"""A small synthetic video data set in the Kinetics-400 layout, as real encoded mp4 files.

    python -m bat_jax.data.toy_video --out data/toy_video [--num-per-class 40 --num-val-per-class 10
        --seed 0 --size 64 --frames 32 --fps 8 --workers 2]

Writes ``OUT/{train,val}/<class>/<id>.mp4`` (libx264, yuv420p) and ``OUT/{train,val}.csv`` in
the Kinetics annotation format ``label,youtube_id,time_start,time_end,split`` (youtube_id = file
stem, time_start 0, time_end = duration in whole seconds), so the clips resolve through
:mod:`bat_jax.data.kinetics` exactly like the real data set.

Classes (8 = 2 appearances x 4 motions), named ``<colour>_<motion>``:

* appearance: the target is a red or a blue disc;
* motion: ``up`` / ``down`` (the disc moves vertically) or ``grow`` / ``shrink`` (it expands or
  contracts in place). ``down`` clips are rendered as ``up`` clips played backwards and
  ``shrink`` as ``grow`` played backwards, so the two classes of each pair have the same
  distribution of frame *sets* and differ only in temporal order: a model that pools over time
  without temporal interaction (e.g. C2D without temporal blocks) cannot tell them apart, while
  temporal attention can. The motions are invariant to horizontal flips, so the standard flip
  augmentation does not change labels.

Nuisances: a random low-frequency background texture with a colour tint, per-frame pixel
noise, 2-3 distractor squares (green / yellow / grey / white, never red or blue) following
random walks with momentum and bouncing off the borders, random start positions, speeds and
sizes. The target is drawn on top of the distractors.

Each clip is generated from its own ``np.random.default_rng([seed, split, class, index])``, so
the output does not depend on the number of workers or on generation order; libx264 runs
single-threaded, so the same seed gives byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import time
from concurrent import futures

import numpy as np

from bat_jax.data.decode import write_video

COLOURS = {'red': (215, 35, 35), 'blue': (35, 75, 225)}
MOTIONS = ('up', 'down', 'grow', 'shrink')
REVERSED = {'down': 'up', 'shrink': 'grow'}  # class = base motion played backwards
CLASS_NAMES = tuple(sorted(f'{c}_{m}' for c in COLOURS for m in MOTIONS))
DISTRACTOR_COLOURS = ((40, 190, 60), (220, 210, 40), (150, 150, 150), (235, 235, 235))
SPLITS = ('train', 'val')


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
  """Low-frequency grey texture with a random tint, float32 (size, size, 3)."""
  g = int(rng.integers(4, 9))
  coarse = rng.uniform(50, 150, (g, g)).astype(np.float32)
  pos = np.linspace(0, g - 1, size, dtype=np.float32)
  i0 = np.minimum(np.floor(pos).astype(int), g - 2)
  f = pos - i0
  rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]  # (size, g)
  tex = rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]  # (size, size)
  tint = rng.uniform(0.85, 1.15, 3).astype(np.float32)
  return tex[:, :, None] * tint


def _disc_alpha(yy, xx, cy, cx, r):
  return np.clip(r + 0.5 - np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2), 0.0, 1.0)


def _square_alpha(yy, xx, cy, cx, half):
  d = np.maximum(np.abs(yy - cy), np.abs(xx - cx))
  return np.clip(half + 0.5 - d, 0.0, 1.0)


def _target_track(motion: str, rng: np.random.Generator, size: int, frames: int):
  """Per-frame (cy, cx, radius) of the target for a base motion ('up' or 'grow')."""
  s = size / 64.0
  t = np.arange(frames, dtype=np.float64)
  if motion == 'up':
    r = rng.uniform(5.0, 8.0) * s
    v_max = (size - 2 * r - 2) / max(frames - 1, 1)
    v = min(rng.uniform(0.8, 1.6) * s, v_max)
    travel = v * (frames - 1)
    y0 = rng.uniform(r + 1 + travel, size - r - 1)
    cy = y0 - v * t
    amp = rng.uniform(0.0, 2.0) * s
    x0 = rng.uniform(r + 1 + amp, size - r - 1 - amp)
    cx = x0 + amp * np.sin(2 * np.pi * t / frames * rng.uniform(0.5, 1.5) + rng.uniform(0, 6.3))
    radius = np.full(frames, r)
  elif motion == 'grow':
    r0 = rng.uniform(2.5, 4.5) * s
    r1 = rng.uniform(11.0, 15.0) * s
    radius = r0 + (r1 - r0) * t / max(frames - 1, 1)
    cy0 = rng.uniform(r1 + 1, size - r1 - 1)
    cx0 = rng.uniform(r1 + 1, size - r1 - 1)
    drift = rng.uniform(-0.1, 0.1, 2) * s
    cy, cx = cy0 + drift[0] * (t - frames / 2), cx0 + drift[1] * (t - frames / 2)
  else:
    raise ValueError(motion)
  return np.stack([cy, cx, radius], axis=1)


def _distractor_tracks(rng: np.random.Generator, size: int, frames: int, num: int):
  """Random walks with momentum, bouncing off the borders: (num, frames, 3) (cy, cx, half)."""
  s = size / 64.0
  out = np.zeros((num, frames, 3))
  for k in range(num):
    half = rng.uniform(2.5, 4.5) * s
    lo, hi = half + 1, size - half - 1
    p = rng.uniform(lo, hi, 2)
    vel = rng.normal(0, 1.0, 2) * s
    for i in range(frames):
      out[k, i] = (p[0], p[1], half)
      vel = 0.8 * vel + rng.normal(0, 0.6, 2) * s
      p = p + vel
      for d in range(2):
        if p[d] < lo:
          p[d], vel[d] = 2 * lo - p[d], -vel[d]
        elif p[d] > hi:
          p[d], vel[d] = 2 * hi - p[d], -vel[d]
        p[d] = min(max(p[d], lo), hi)
  return out


def render_clip(class_name: str, rng: np.random.Generator, size: int = 64, frames: int = 32):
  """Renders one clip of ``class_name``: (uint8 (T, size, size, 3), target track (T, 3)).

  The track holds the target's (centre y, centre x, radius) per frame, in the clip's time order.
  """
  colour, motion = class_name.split('_')
  base = REVERSED.get(motion, motion)
  bg = _background(rng, size)
  target_rgb = np.clip(np.asarray(COLOURS[colour], np.float32) + rng.uniform(-20, 20, 3), 0, 255)
  track = _target_track(base, rng, size, frames)
  num_d = int(rng.integers(2, 4))
  d_tracks = _distractor_tracks(rng, size, frames, num_d)
  d_cols = np.asarray(DISTRACTOR_COLOURS, np.float32)[rng.choice(len(DISTRACTOR_COLOURS), num_d)]
  noise_std = rng.uniform(3.0, 8.0)
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  video = np.empty((frames, size, size, 3), np.uint8)
  for i in range(frames):
    img = bg.copy()
    for k in range(num_d):
      a = _square_alpha(yy, xx, *d_tracks[k, i])[:, :, None]
      img = img * (1 - a) + d_cols[k] * a
    a = _disc_alpha(yy, xx, *track[i])[:, :, None]
    img = img * (1 - a) + target_rgb * a
    img += rng.normal(0.0, noise_std, img.shape).astype(np.float32)
    video[i] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
  if base != motion:  # the reversed class: the same kind of scene played backwards
    video, track = video[::-1].copy(), track[::-1].copy()
  return video, track


def clip_seed(seed: int, split: str, class_name: str, index: int) -> list[int]:
  return [int(seed), SPLITS.index(split), CLASS_NAMES.index(class_name), int(index)]


def video_id(split: str, class_name: str, index: int) -> str:
  return f'{class_name}_{split}_{index:04d}'


def _make_one(job):
  out, split, class_name, index, seed, size, frames, fps = job
  rng = np.random.default_rng(clip_seed(seed, split, class_name, index))
  video, _ = render_clip(class_name, rng, size, frames)
  vid = video_id(split, class_name, index)
  path = os.path.join(out, split, class_name, vid + '.mp4')
  write_video(path, video, fps=fps)
  return split, class_name, vid


def generate(out: str, num_per_class: int = 40, num_val_per_class: int = 10, seed: int = 0,
             size: int = 64, frames: int = 32, fps: int = 8, workers: int = 1,
             progress=print) -> dict:
  """Writes the data set under ``out``; returns {'train': n, 'val': n, 'seconds': t}."""
  if size % 2:
    raise ValueError(f'size must be even (yuv420p), got {size}')
  t0 = time.time()
  counts = {'train': num_per_class, 'val': num_val_per_class}
  jobs = []
  for split in SPLITS:
    for class_name in CLASS_NAMES:
      os.makedirs(os.path.join(out, split, class_name), exist_ok=True)
      jobs += [(out, split, class_name, i, seed, size, frames, fps) for i in range(counts[split])]
  duration = int(frames // fps)
  rows = {s: [] for s in SPLITS}
  if workers > 1:
    # spawn, not fork: the caller may have JAX (multithreaded) loaded.
    with futures.ProcessPoolExecutor(workers,
                                    mp_context=multiprocessing.get_context('spawn')) as ex:
      results = ex.map(_make_one, jobs, chunksize=8)
      done = [_progress(i, len(jobs), r, progress) for i, r in enumerate(results)]
  else:
    done = [_progress(i, len(jobs), _make_one(j), progress) for i, j in enumerate(jobs)]
  for split, class_name, vid in done:
    rows[split].append((class_name, vid, 0, duration, split))
  for split in SPLITS:
    with open(os.path.join(out, f'{split}.csv'), 'w', newline='') as f:
      w = csv.writer(f)
      w.writerow(['label', 'youtube_id', 'time_start', 'time_end', 'split'])
      w.writerows(rows[split])
  secs = time.time() - t0
  if progress:
    progress(f'wrote {len(rows["train"])} train + {len(rows["val"])} val clips '
             f'({len(CLASS_NAMES)} classes, {frames} frames {size}x{size} @ {fps} fps) '
             f'to {out} in {secs:.1f}s')
  return {'train': len(rows['train']), 'val': len(rows['val']), 'seconds': secs}


def _progress(i, n, result, progress):
  if progress and ((i + 1) % 50 == 0 or i + 1 == n):
    progress(f'  {i + 1}/{n} clips')
  return result


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--out', required=True)
  p.add_argument('--num-per-class', type=int, default=40, help='train clips per class')
  p.add_argument('--num-val-per-class', type=int, default=10)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--size', type=int, default=64, help='frame height = width (even)')
  p.add_argument('--frames', type=int, default=32)
  p.add_argument('--fps', type=int, default=8)
  p.add_argument('--workers', type=int, default=min(2, os.cpu_count() or 1))
  a = p.parse_args(argv)
  generate(a.out, a.num_per_class, a.num_val_per_class, a.seed, a.size, a.frames, a.fps,
           a.workers)


if __name__ == '__main__':
  main()
