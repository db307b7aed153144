"""A minimal numpy reimplementation of PySlowFast's PyAV training-clip path (the benchmark's peer).

Read from facebookresearch/SlowFast, ``slowfast/datasets/decoder.py`` (``get_start_end_idx``,
``pyav_decode``, ``pyav_decode_stream``, ``temporal_sampling``) and ``slowfast/datasets/utils.py``
/ ``transform.py`` (``tensor_normalize``, ``spatial_sampling``: ``random_short_side_scale_jitter``,
``random_crop``, ``horizontal_flip``), Kinetics training defaults (8 x 8 at 30 fps, jitter
[256, 320], crop 224):

1. clip size ``sampling_rate * num_frames / target_fps * fps`` frames; start uniform in
   ``[0, frames - clip_size]``; pts = index x ``duration / frames``;
2. seek to ``start_pts - 1024`` (the "margin" pts), keyframe before; decode, keep every frame
   with ``start_pts <= pts <= end_pts`` and stop at the first frame past ``end_pts``;
3. ``frame.to_rgb().to_ndarray()`` for every kept frame (the whole window, ~64 frames);
4. ``temporal_sampling``: ``linspace(0, len - 1, num_frames)`` clamped, truncated to int (the
   second, frame-level ``get_start_end_idx`` with clip 0 of 1 on the decoded window);
5. ``/ 255``, ``(x - mean) / std`` in float32;
6. short side to ``round(uniform(256, 320))`` by bilinear interpolation (``F.interpolate``,
   ``align_corners=False``; here numpy), random 224 crop, horizontal flip with p = 0.5.

Single thread, numpy only (no torch), so it runs in the repository's venv.
"""

from __future__ import annotations

import math

import av
import numpy as np

MEAN = np.asarray((0.45, 0.45, 0.45), np.float32)  # PySlowFast's Kinetics DATA.MEAN / STD
STD = np.asarray((0.225, 0.225, 0.225), np.float32)


def _bilinear_axis(x: np.ndarray, size: int, axis: int) -> np.ndarray:
  """``F.interpolate(mode='bilinear', align_corners=False)`` along one axis."""
  n = x.shape[axis]
  scale = n / size
  src = np.maximum((np.arange(size, dtype=np.float32) + 0.5) * scale - 0.5, 0)
  i0 = np.minimum(np.floor(src).astype(np.int64), n - 1)
  i1 = np.minimum(i0 + 1, n - 1)
  w = (src - i0).astype(np.float32)
  shape = [1] * x.ndim
  shape[axis] = size
  w = w.reshape(shape)
  return np.take(x, i0, axis=axis) * (1 - w) + np.take(x, i1, axis=axis) * w


def train_clip(path: str, rng: np.random.Generator, num_frames: int = 8, sampling_rate: int = 8,
               target_fps: int = 30, crop_size: int = 224,
               short_side_range: tuple[int, int] = (256, 320)) -> np.ndarray:
  """One training clip, float32 (T, crop, crop, 3), the PySlowFast way (module docstring)."""
  container = av.open(path)
  try:
    stream = container.streams.video[0]
    fps = float(stream.average_rate)
    frames_length, duration = stream.frames, stream.duration
    clip_size = sampling_rate * num_frames / target_fps * fps
    delta = max(frames_length - clip_size, 0)
    start_idx = rng.uniform(0, delta)
    timebase = duration / frames_length
    start_pts, end_pts = int(start_idx * timebase), int((start_idx + clip_size - 1) * timebase)
    container.seek(max(start_pts - 1024, 0), any_frame=False, backward=True, stream=stream)
    kept = {}
    for frame in container.decode(video=0):
      if frame.pts < start_pts:
        continue
      kept[frame.pts] = frame
      if frame.pts > end_pts:
        break
    video = np.stack([kept[p].to_rgb().to_ndarray() for p in sorted(kept)])
  finally:
    container.close()
  index = np.clip(np.linspace(0, len(video) - 1, num_frames), 0, len(video) - 1).astype(np.int64)
  x = video[index].astype(np.float32) / 255.0
  x = (x - MEAN) / STD
  size = int(round(rng.uniform(*short_side_range)))
  h, w = x.shape[1:3]
  nh, nw = (size, int(math.floor(w * size / h))) if h <= w else (int(math.floor(h * size / w)),
                                                                  size)
  x = _bilinear_axis(_bilinear_axis(x, nh, 1), nw, 2)
  y0 = int(rng.integers(0, nh - crop_size + 1))
  x0 = int(rng.integers(0, nw - crop_size + 1))
  x = x[:, y0:y0 + crop_size, x0:x0 + crop_size]
  if rng.random() < 0.5:
    x = x[:, :, ::-1]
  return np.ascontiguousarray(x)
