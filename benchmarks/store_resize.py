"""Frame-store decode + resize alternatives: CPU time and accuracy for one training clip's frames.

    python benchmarks/store_resize.py [--rounds 60] [--json benchmarks/results/store_resize.json]

The frame store's reader (:func:`bat_jax.data.decode.read_store`) decodes a clip's 8 JPEG records
with PIL; without a crop (evaluation views) it resizes each whole frame to the short side with
PIL's bilinear filter (``decode._load_image``). This script times, at the training jitter's
short sides (U[256, 320]: ``bat_cvpr2020.md`` §4.1), the alternatives on two stores it writes
as ``prepare_videos --format=frames`` does (swscale to the short side, PIL JPEG quality 95) from the noisy benchmark video of ``benchmarks/pipeline.py``:

* 340 x 256 frames (short side 256, the ``--compare`` store): every jittered size is an upscale;
* 426 x 320 frames (short side 320, ``prepare_videos``' default): every size is a downscale.

Alternatives (8 frames in, uint8 (8, h, w, 3) out):

* ``decode_only``: PIL JPEG decode at the stored size (what every alternative pays at least);
* ``pil``: the reader without a crop (``_load_image``: decode, ``resize(..., BILINEAR)``);
* ``pil_reducing_gap``: the same with ``reducing_gap=2`` (an integer ``reduce`` first when the
  size shrinks 2x or more);
* ``pil_draft``: ``Image.draft('RGB', size)`` (libjpeg's DCT scaling by 1/2, 1/4, 1/8 when the
  size shrinks 2x or more), then the resize;
* ``swscale``: PIL decode, then FFmpeg's swscale (PyAV ``reformat``, bilinear, one thread), as the
  video path's :func:`bat_jax.data.decode.to_rgb`;
* ``swscale_ycbcr``: PIL decodes to YCbCr (no colour conversion in libjpeg), swscale converts
  full-range yuv444p to RGB while resizing, in one pass as for the mp4s' yuv420p;
* ``numpy_batched``: one separable bilinear resize of the 8 stacked frames in float32 numpy;
* ``pil_crop_box``: PIL resizes only the 224 x 224 crop the clip keeps (``resize(box=...)``), the
  crop drawn as ``random_crop_box`` draws it: the reader's training path (``read_store`` with a
  ``crop``).

Timing: CPU time of the calling thread (``time.thread_time``: other jobs on a shared machine
inflate it far less than wall time), interleaved rounds with a fresh short side per round; the
ratio to ``pil`` is the median of per-round ratios. Accuracy on 0-255: mean |x - the video path's
frames| (swscale from the decoded video at the same size, i.e. ``decode_clip`` of the source) and
max |x - pil| (cropped alike for ``pil_crop_box``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from typing import Callable

import av
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bat_jax.data import decode as D  # noqa: E402  pylint: disable=g-import-not-at-top
from bat_jax.data import frame_store  # noqa: E402  pylint: disable=g-import-not-at-top
from bat_jax.data import prepare_videos  # noqa: E402  pylint: disable=g-import-not-at-top
from benchmarks import pipeline  # noqa: E402  pylint: disable=g-import-not-at-top

FRAMES = np.arange(8) * 8  # 8 frames at stride 8, the Kinetics clip


def _decoded(blob: bytes) -> Image.Image:
  im = Image.open(io.BytesIO(blob))
  im.load()
  return im


def _swscale(frame: av.VideoFrame, hw) -> np.ndarray:
  return D.to_rgb(frame, hw)


def _numpy_bilinear(frames: np.ndarray, hw) -> np.ndarray:
  """Separable 2-tap bilinear (half-pixel centres, edges clamped) of (T, H, W, 3) in float32."""
  out = frames.astype(np.float32)
  for axis, m in ((1, hw[0]), (2, hw[1])):
    n = out.shape[axis]
    s = np.clip((np.arange(m) + 0.5) * n / m - 0.5, 0, n - 1)
    lo = np.floor(s).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    shape = [1, 1, 1, 1]
    shape[axis] = m
    a = (s - lo).astype(np.float32).reshape(shape)
    out = np.take(out, lo, axis) * (1 - a) + np.take(out, hi, axis) * a
  return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _pil_resized(blob: bytes, hw, **kwargs) -> np.ndarray:
  with Image.open(io.BytesIO(blob)) as im:
    if kwargs.pop('draft', False):
      im.draft('RGB', (hw[1], hw[0]))
    return np.asarray(im.resize((hw[1], hw[0]), Image.BILINEAR, **kwargs))


def _swscale_ycbcr(blob: bytes, hw) -> np.ndarray:
  with Image.open(io.BytesIO(blob)) as im:
    im.draft('YCbCr', None)
    planes = np.ascontiguousarray(np.asarray(im).transpose(2, 0, 1))
  return _swscale(av.VideoFrame.from_ndarray(planes, format='yuvj444p'), hw)


def _crop_box(blob: bytes, hw, crop) -> np.ndarray:
  y, x, size = crop
  with Image.open(io.BytesIO(blob)) as im:
    sy, sx = im.height / hw[0], im.width / hw[1]
    box = (x * sx, y * sy, (x + size) * sx, (y + size) * sy)
    return np.asarray(im.resize((size, size), Image.BILINEAR, box=box))


# name -> f(blobs, (h, w), short side, crop (y, x, size)) -> uint8 (8, h', w', 3)
ALTERNATIVES: dict[str, Callable] = {
    'decode_only': lambda b, hw, s, c: np.stack([np.asarray(_decoded(x)) for x in b]),
    'pil': lambda b, hw, s, c: np.stack([D._load_image(io.BytesIO(x), s) for x in b]),  # pylint: disable=protected-access
    'pil_reducing_gap': lambda b, hw, s, c: np.stack([_pil_resized(x, hw, reducing_gap=2.0)
                                                      for x in b]),
    'pil_draft': lambda b, hw, s, c: np.stack([_pil_resized(x, hw, draft=True) for x in b]),
    'swscale': lambda b, hw, s, c: np.stack([_swscale(av.VideoFrame.from_ndarray(
        np.asarray(_decoded(x)), format='rgb24'), hw) for x in b]),
    'swscale_ycbcr': lambda b, hw, s, c: np.stack([_swscale_ycbcr(x, hw) for x in b]),
    'numpy_batched': lambda b, hw, s, c: _numpy_bilinear(
        np.stack([np.asarray(_decoded(x)) for x in b]), hw),
    'pil_crop_box': lambda b, hw, s, c: np.stack([_crop_box(x, hw, c) for x in b]),
}


def make_store(tmp: str, height: int, width: int, short_side: int) -> tuple[list, list]:
  """(JPEG records of frames FRAMES of a store of the benchmark video, the decoded video frames)."""
  src = os.path.join(tmp, f'v{height}.mp4')
  pipeline.make_video(src, height, width, 30, (FRAMES[-1] + 1) / 30, 250)
  shard = os.path.join(tmp, f'v{height}.array_record')
  prepare_videos.extract_frames(src, shard, short_side)
  with frame_store.Shard(shard) as s:
    blobs = s.read(list(FRAMES))
  container = D.open_video(src)
  frames = [f for i, f in enumerate(container.decode(video=0)) if i in set(FRAMES)]
  container.close()
  return blobs, frames


def run(height: int, width: int, short_side: int, rounds: int, jitter=(256, 320),
        crop_size: int = 224, seed: int = 0) -> dict:
  """Times and checks every alternative on one store size; returns its row."""
  with tempfile.TemporaryDirectory() as tmp:
    blobs, video_frames = make_store(tmp, height, width, short_side)
  stored = np.asarray(_decoded(blobs[0])).shape[:2]
  rng = np.random.default_rng(seed)
  times = {k: [] for k in ALTERNATIVES}
  mp4_err = {k: [] for k in ALTERNATIVES if k != 'decode_only'}
  pil_err = {k: [] for k in mp4_err}
  for r in range(rounds):
    short = int(rng.integers(jitter[0], jitter[1] + 1))
    hw = D.short_side_shape(stored[0], stored[1], short)
    crop = (int(rng.integers(0, hw[0] - crop_size + 1)),
            int(rng.integers(0, hw[1] - crop_size + 1)), crop_size)
    outs = {}
    for k in list(ALTERNATIVES)[::1 if r % 2 else -1]:
      t0 = time.thread_time()
      outs[k] = ALTERNATIVES[k](blobs, hw, short, crop)
      times[k].append(time.thread_time() - t0)
    video = np.stack([_swscale(f, hw) for f in video_frames]).astype(np.float64)
    for k in mp4_err:
      full = outs[k].shape[1:3] == hw
      box = np.s_[:, crop[0]:crop[0] + crop_size, crop[1]:crop[1] + crop_size]
      ref = video if full else video[box]
      pil = outs['pil'] if full else outs['pil'][box]
      mp4_err[k].append(float(np.abs(outs[k] - ref).mean()))
      pil_err[k].append(int(np.abs(outs[k].astype(np.int64) - pil).max()))
  base = np.asarray(times['pil'])
  return {'stored': f'{stored[1]}x{stored[0]}', 'short_side_range': list(jitter),
          'crop_size': crop_size, 'rounds': rounds,
          'alternatives': {k: {'cpu_ms': round(1000 * float(np.median(v)), 2),
                               'over_pil': round(float(np.median(np.asarray(v) / base)), 3),
                               'mean_abs_vs_video': (round(float(np.mean(mp4_err[k])), 2)
                                                     if k in mp4_err else None),
                               'max_abs_vs_pil': max(pil_err[k]) if k in pil_err else None}
                           for k, v in times.items()}}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--rounds', type=int, default=60)
  p.add_argument('--json', default=os.path.join('benchmarks', 'results', 'store_resize.json'))
  a = p.parse_args(argv)
  rows = [run(256, 340, 256, a.rounds), run(320, 426, 320, a.rounds)]
  for row in rows:
    print(f"{row['stored']} store -> short side U{row['short_side_range']}, {len(FRAMES)} frames,"
          f" {row['rounds']} rounds: CPU ms (median), / pil, mean |x - video| , max |x - pil|")
    for k, v in row['alternatives'].items():
      print(f"  {k:<17} {v['cpu_ms']:7.2f} {v['over_pil']:6.3f} "
            f"{v['mean_abs_vs_video'] if v['mean_abs_vs_video'] is not None else '':>6} "
            f"{v['max_abs_vs_pil'] if v['max_abs_vs_pil'] is not None else '':>4}")
  if a.json:
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, 'w') as f:
      json.dump({'machine': pipeline.cpu_model(), 'cores': pipeline.usable_cores(),
                 'load_average': os.getloadavg(), 'rows': rows}, f, indent=2)
    print(f'wrote {a.json}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
