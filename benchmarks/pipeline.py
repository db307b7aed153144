"""Video input pipeline throughput: decoded training clips per second for 0, 1, 2 grain workers.

    python benchmarks/pipeline.py [--workers 0 1 2] [--batches 6] [--batch-size 8]
        [--height 256 --width 340 --fps 30 --seconds 10 --gop 250] [--threads 1]
        [--json workdirs/benchmarks/pipeline.json]

Writes one Kinetics-like video with PyAV into a temporary folder (H.264 yuv420p, ``--width`` x
``--height`` (340 x 256 by default, Kinetics' usual short side 256 re-encode), 30 fps, 10 s; a
textured background scrolling under moving blobs plus noise, so the encoder and decoder have real
work; x264's default keyframe interval of 250 frames, as an ffmpeg re-encode of a YouTube video
has) and reads it through :func:`bat_jax.data.pipeline.make_train_iterator` with the BAT
Kinetics training transform: 8 frames at stride 8 (a random 57-frame window), random short side
in [256, 320], random 224 x 224 crop, random flip, normalisation. Per worker count it reports
clips/s after the first batch (which includes starting the worker processes), and the start-up
time. Prints the machine (CPU model, cores) and writes everything to ``--json``.

``--threads`` is grain's read threads per worker (or in the main process with 0 workers); the
trainer's default is 2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bat_jax.data import pipeline  # noqa: E402  pylint: disable=g-import-not-at-top
from bat_jax.data import video as V  # noqa: E402  pylint: disable=g-import-not-at-top


def cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def usable_cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def make_video(path: str, height: int, width: int, fps: int, seconds: float, gop: int,
               seed: int = 0) -> dict:
  """A textured, moving clip (uint8 RGB) encoded with libx264; returns its facts."""
  rng = np.random.default_rng(seed)
  n = int(round(fps * seconds))
  cell = 4
  gh, gw = height // cell + 2, width // cell + 2
  coarse = rng.uniform(40, 215, (gh, gw, 3)).astype(np.float32)
  tex = np.repeat(np.repeat(coarse, cell, 0), cell, 1)  # fine blocky texture, smoothed below
  k = np.ones(3, np.float32) / 3
  for axis in (0, 1):
    tex = np.apply_along_axis(lambda v: np.convolve(v, k, mode='same'), axis, tex)
  yy, xx = np.mgrid[0:height, 0:width]
  blobs = [(rng.uniform(0, height), rng.uniform(0, width), rng.uniform(-3, 3), rng.uniform(-4, 4),
            rng.uniform(15, 40), rng.uniform(0, 255, 3)) for _ in range(4)]
  frames = np.empty((n, height, width, 3), np.uint8)
  for t in range(n):
    f = np.roll(tex, (t // 2, t), axis=(0, 1))[:height, :width].copy()
    for cy, cx, vy, vx, r, colour in blobs:
      y, x = (cy + vy * t) % height, (cx + vx * t) % width
      m = ((yy - y) ** 2 + (xx - x) ** 2) < r * r
      f[m] = colour
    f += rng.normal(0, 10, f.shape).astype(np.float32)  # sensor-like noise: real bitrate
    frames[t] = np.clip(f, 0, 255).astype(np.uint8)
  t0 = time.perf_counter()
  V.write_video(path, frames, fps=fps, gop_size=gop, crf=23, preset='veryfast')
  return {'path': path, 'height': height, 'width': width, 'fps': fps, 'frames': n,
          'seconds': n / fps, 'codec': 'h264 (libx264, crf 23, yuv420p)', 'gop': gop,
          'bytes': os.path.getsize(path), 'encode_seconds': round(time.perf_counter() - t0, 2)}


def measure(path: str, workers: int, threads: int, batches: int, batch_size: int,
            seed: int = 0) -> dict:
  cfg = dict(root='', num_frames=8, frame_stride=8, crop_size=224, train_short_side=(256, 320),
             eval_short_side=256, num_workers=workers, num_threads=threads)
  records = [(path, 0)] * (batch_size * (batches + 1) * 2)
  t0 = time.perf_counter()
  it = pipeline.make_train_iterator(cfg, batch_size, 0, 1, seed, records=records)
  try:
    first = next(it)
    startup = time.perf_counter() - t0
    assert first['video'].shape == (batch_size, 8, 224, 224, 3)
    t1 = time.perf_counter()
    for _ in range(batches):
      next(it)
    elapsed = time.perf_counter() - t1
  finally:
    it.close()
  clips = batches * batch_size
  return {'workers': workers, 'threads': threads, 'clips': clips,
          'seconds': round(elapsed, 3), 'clips_per_second': round(clips / elapsed, 2),
          'ms_per_clip': round(1000 * elapsed / clips, 1),
          'first_batch_seconds': round(startup, 2)}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--workers', type=int, nargs='+', default=[0, 1, 2])
  p.add_argument('--threads', type=int, default=1, help='grain read threads per worker')
  p.add_argument('--batches', type=int, default=12, help='timed batches per setting')
  p.add_argument('--batch-size', type=int, default=8)
  p.add_argument('--height', type=int, default=256)
  p.add_argument('--width', type=int, default=340)
  p.add_argument('--fps', type=int, default=30)
  p.add_argument('--seconds', type=float, default=10.0)
  p.add_argument('--gop', type=int, default=250, help='keyframe interval (x264 default 250)')
  p.add_argument('--json', default=os.path.join('workdirs', 'benchmarks', 'pipeline.json'))
  a = p.parse_args(argv)
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.FLAGS.mark_as_parsed()  # grain multiprocessing outside absl.app.run

  import av  # pylint: disable=g-import-not-at-top
  machine = {'cpu': cpu_model(), 'cores': usable_cores(), 'cpu_count': os.cpu_count(),
             'python': platform.python_version(), 'pyav': av.__version__,
             'platform': platform.platform()}
  print(f"machine: {machine['cpu']}, {machine['cores']} usable cores (nproc), "
        f"Python {machine['python']}, PyAV {machine['pyav']}")
  with tempfile.TemporaryDirectory() as tmp:
    info = make_video(os.path.join(tmp, 'kinetics_like.mp4'), a.height, a.width, a.fps,
                      a.seconds, a.gop)
    print(f"video: {info['width']}x{info['height']}, {info['fps']} fps, {info['frames']} frames "
          f"({info['seconds']:.0f} s), {info['codec']}, keyframe every {info['gop']} frames, "
          f"{info['bytes'] / 1e6:.2f} MB")
    print('transform: 8 frames x stride 8, short side U[256, 320], random 224 crop, flip, '
          f'normalise; batch {a.batch_size}, {a.batches} timed batches, '
          f'{a.threads} read thread(s) per worker')
    rows = [measure(info['path'], w, a.threads, a.batches, a.batch_size) for w in a.workers]
  head = f"{'workers':>7} | {'clips/s':>8} | {'ms/clip':>8} | {'first batch s':>13}"
  print(head)
  print('-' * len(head))
  for r in rows:
    print(f"{r['workers']:>7} | {r['clips_per_second']:>8.2f} | {r['ms_per_clip']:>8.1f} | "
          f"{r['first_batch_seconds']:>13.2f}")
  info.pop('path')
  out = {'machine': machine, 'video': info, 'batch_size': a.batch_size, 'batches': a.batches,
         'transform': {'num_frames': 8, 'frame_stride': 8, 'train_short_side': [256, 320],
                       'crop_size': 224, 'flip': True},
         'results': rows}
  if a.json:
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, 'w') as f:
      json.dump(out, f, indent=2)
    print(f'wrote {a.json}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
