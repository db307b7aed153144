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
in [256, 320], random 224 x 224 crop, random flip; uint8 out (the recipe's mean / std are applied
on the device by the jitted steps, :mod:`bat_jax.data.normalization`, so they are not part of the
workers' cost). Per worker count it reports
clips/s after the first batch (which includes starting the worker processes), and the start-up
time. Prints the machine (CPU model, cores) and writes everything to ``--json``.

``--threads`` is grain's read threads per worker (or in the main process with 0 workers); the
trainer's default is 2.

``--compare`` instead runs the reader comparison, one process, one thread, in interleaved
rounds (every reader and video once per round; ratios are medians of per-round ratios; times are
the process's CPU seconds, so clips/s are per core and hold on a shared machine), on
three videos it writes: 340 x 256 with keyframe interval 250, the same after
``prepare_videos`` (short side 256, interval 32), and 640 x 360 with interval 250. Per video:
the sequential decode-only frames/s (the codec's limit), training clips/s of
:func:`bat_jax.data.video.train_transform` and of the PySlowFast-style reader
(:mod:`benchmarks.peer_pyslowfast`, which normalises to float32 on the host as PySlowFast does),
where a training clip's time goes (open, seek, frames decoded before the window, the window, RGB
conversion + resize, crop/flip: views of the uint8 frames the workers return),
and for 30-view evaluation the frames decoded per video and views/s, per view
(:func:`bat_jax.data.video.eval_transform`) against one decode
(:mod:`bat_jax.data.multiview`). The frame-store rows: the same source written as a frame store
(``prepare_videos --format=frames``: short side 256 as the prepared video, JPEG quality 95), read
by the same ``train_transform`` in the same rounds (which resizes only each JPEG's crop box,
:func:`store_breakdown`); clips/s against the prepared video's, the
JPEG read + decode alone (no resize, crop or normalisation), and the disk size of both.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bat_jax.data import multiview  # noqa: E402  pylint: disable=g-import-not-at-top
from bat_jax.data import pipeline  # noqa: E402  pylint: disable=g-import-not-at-top
from bat_jax.data import prepare_videos  # noqa: E402  pylint: disable=g-import-not-at-top
from bat_jax.data import frame_store  # noqa: E402  pylint: disable=g-import-not-at-top
from bat_jax.data import decode as D  # noqa: E402  pylint: disable=g-import-not-at-top
from bat_jax.data import video as V  # noqa: E402  pylint: disable=g-import-not-at-top
from benchmarks import peer_pyslowfast  # noqa: E402  pylint: disable=g-import-not-at-top


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
  D.write_video(path, frames, fps=fps, gop_size=gop, crf=23, preset='veryfast')
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


# ------------------------------------------------------------------------------------------------
# --compare: our reader against the PySlowFast-style one, stage breakdown, multi-view decoding.

# Clips/s per core: the --compare timings are CPU seconds of this process (all its threads), which
# other jobs sharing the cores inflate far less than wall time (a run at load average ~14 on 2
# cores got ~1/6 of a core: wall-time ratios there are noise).
clock = time.process_time

TRAIN = dict(num_frames=8, stride=8, crop_size=224, short_side_range=(256, 320))


def decode_only_fps(path: str) -> float:
  """Sequential decode of every frame, no conversion: frames per second (one thread)."""
  t0 = clock()
  container = D.open_video(path)
  n = sum(1 for _ in container.decode(video=0))
  container.close()
  return n / (clock() - t0)


def clip_breakdown(path: str, rng: np.random.Generator) -> dict:
  """Seconds per stage of one training clip, mirroring ``train_transform``'s steps."""
  t = {}
  t0 = clock()
  short = int(rng.integers(256, 321))
  container = D.open_video(path)
  stream = container.streams.video[0]
  fps, n = D.stream_info(container, stream)
  out_hw = D.short_side_shape(stream.codec_context.height, stream.codec_context.width, short)
  t1 = clock()
  t['open'] = t1 - t0
  window = (TRAIN['num_frames'] - 1) * TRAIN['stride'] + 1
  start = int(rng.integers(0, n - window + 1))
  wanted = D.clip_indices(n, TRAIN['num_frames'], TRAIN['stride'], start)
  seek_decode_timed = {'before': 0.0, 'window': 0.0, 'frames_before': 0, 'frames_window': 0}
  frames = D.decoded_frames

  def timed(container, stream, errors, skip=None):
    tick = clock()
    for f in frames(container, stream, errors, skip):
      tock = clock()
      idx = int(round(float((f.pts - (stream.start_time or 0)) * stream.time_base) * fps))
      key = 'before' if idx < wanted[0] else 'window'
      seek_decode_timed[key] += tock - tick
      seek_decode_timed['frames_' + key] += 1
      yield f
      tick = clock()

  D.decoded_frames = timed
  try:
    ts = clock()
    picked = D.seek_decode(container, stream, wanted, fps)
    t2 = clock()
  finally:
    D.decoded_frames = frames
  t['seek'] = (t2 - ts) - seek_decode_timed['before'] - seek_decode_timed['window']
  t['decode_before_window'] = seek_decode_timed['before']
  t['decode_window'] = seek_decode_timed['window']
  arrays = np.stack([D.to_rgb(f, out_hw) for f in picked])
  container.close()
  t3 = clock()
  t['rgb_resize'] = t3 - t2
  clip = V.random_crop(arrays, TRAIN['crop_size'], rng)
  if rng.random() < 0.5:
    clip = V.horizontal_flip(clip)
  t['crop_flip'] = clock() - t3  # views: uint8 out, normalised on the device
  t['frames_before_window'] = seek_decode_timed['frames_before']
  t['frames_window'] = seek_decode_timed['frames_window']
  return t


def _count_decoded(fn) -> int:
  """Frames the decoder returned while ``fn()`` ran."""
  frames, count = D.decoded_frames, [0]

  def counting(container, stream, errors, skip=None):
    for f in frames(container, stream, errors, skip):
      count[0] += 1
      yield f

  D.decoded_frames = counting
  try:
    fn()
  finally:
    D.decoded_frames = frames
  return count[0]


def _views_per_view(path, clips=10, crops=3, short=256):
  for v in range(clips * crops):
    V.eval_transform(path, num_frames=8, stride=8, crop_size=short, short_side=short,
                     clip_index=v // crops, num_clips=clips, crop_index=v % crops,
                     num_crops=crops)


def _views_one_decode(path, clips=10, crops=3, short=256):
  c = multiview.decode_eval_clips(path, num_frames=8, stride=8, num_clips=clips,
                                  short_side=short)
  for v in range(clips * crops):
    multiview.cut_view(c, v // crops, v % crops, num_crops=crops, crop_size=short)


def _train_without_skipping(path: str, rng: np.random.Generator) -> np.ndarray:
  """``train_transform`` decoding every frame (no ``skip_frame``): the reader before that cut."""
  seek_decode = D.seek_decode
  D.seek_decode = lambda c, s, w, f, skip_nonref=True: seek_decode(c, s, w, f, False)
  try:
    return V.train_transform(path, rng, **TRAIN)
  finally:
    D.seek_decode = seek_decode


def store_breakdown(path: str, rng: np.random.Generator) -> dict:
  """Seconds per stage of one frame-store training clip, mirroring ``train_transform`` on a
  shard (:func:`bat_jax.data.decode.read_store` with a crop): open + read the 8 records and the
  crop box drawn from the size in the JPEG header, JPEG decode, PIL resize of the crop box only
  (to 224 x 224 from the source pixels), flip (uint8 out, as ``train_transform``)."""
  t = {}
  t0 = clock()
  short = int(rng.integers(256, 321))
  window = (TRAIN['num_frames'] - 1) * TRAIN['stride'] + 1
  with frame_store.Shard(path) as shard:
    start = int(rng.integers(0, shard.num_frames - window + 1))
    blobs = shard.read(list(D.clip_indices(shard.num_frames, TRAIN['num_frames'],
                                           TRAIN['stride'], start)))
  images = [Image.open(io.BytesIO(b)) for b in blobs]  # headers only: nothing decoded yet
  nh, nw = D.short_side_shape(images[0].height, images[0].width, short)
  box = V.random_crop_box(nh, nw, TRAIN['crop_size'], rng)
  sy, sx = images[0].height / nh, images[0].width / nw
  src_box = (box.x * sx, box.y * sy, (box.x + box.width) * sx, (box.y + box.height) * sy)
  t1 = clock()
  t['open_read'] = t1 - t0
  for im in images:
    im.load()
  t2 = clock()
  t['jpeg_decode'] = t2 - t1
  clip = np.stack([np.asarray(im.resize((box.size, box.size), Image.BILINEAR, box=src_box))
                   for im in images])
  t3 = clock()
  t['resize'] = t3 - t2
  if rng.random() < 0.5:
    clip = V.horizontal_flip(clip)
  t['crop_flip'] = clock() - t3
  return t


def _store_decode_only(path: str, rng: np.random.Generator) -> np.ndarray:
  """A random 8 x 8 clip of a frame-store shard at its stored size: records read + JPEG decode."""
  return D.decode_clip(path, TRAIN['num_frames'], TRAIN['stride'], None, rng)


def compare(tmp: str, rounds: int, clips: int) -> dict:
  """The --compare run (module docstring); returns rows for the JSON and prints the tables."""
  src = os.path.join(tmp, 'k250_340x256.mp4')
  videos = {'340x256 keyint 250': make_video(src, 256, 340, 30, 10, 250)}
  prep = os.path.join(tmp, 'prepared_340x256.mp4')
  prepare_videos.convert_video(src, prep, 256, 32)
  videos['340x256 prepared (keyint 32)'] = dict(videos['340x256 keyint 250'], path=prep, gop=32,
                                                bytes=os.path.getsize(prep))
  store = os.path.join(tmp, 'store_340x256.array_record')
  store_info = prepare_videos.extract_frames(src, store, 256)
  videos['640x360 keyint 250'] = make_video(os.path.join(tmp, 'k250_640x360.mp4'), 360, 640, 30,
                                            10, 250)
  window = (TRAIN['num_frames'] - 1) * TRAIN['stride'] + 1
  readers = {'ours': lambda p, r: V.train_transform(p, r, **TRAIN),
             'ours_no_skip': _train_without_skipping,
             'pyslowfast': peer_pyslowfast.train_clip}
  times = {(v, r): [] for v in videos for r in readers}
  prepared = '340x256 prepared (keyint 32)'
  store_readers = {'frames': lambda p, r: V.train_transform(p, r, **TRAIN),
                   'frames_decode_only': _store_decode_only}
  store_times = {r: [] for r in store_readers}
  store_stages = []
  fps = {v: [] for v in videos}
  stages = {v: [] for v in videos}
  for rnd in range(rounds):
    for v, info in videos.items():
      fps[v].append(decode_only_fps(info['path']))
      for r, fn in readers.items():
        rng = np.random.default_rng([rnd, 1])
        t0 = clock()
        for _ in range(clips):
          fn(info['path'], rng)
        times[(v, r)].append((clock() - t0) / clips)
      for r, fn in store_readers.items() if v == prepared else ():
        rng = np.random.default_rng([rnd, 1])
        t0 = clock()
        for _ in range(clips):
          fn(store, rng)
        store_times[r].append((clock() - t0) / clips)
      if v == prepared:
        rng = np.random.default_rng([rnd, 2])
        store_stages += [store_breakdown(store, rng) for _ in range(clips)]
      rng = np.random.default_rng([rnd, 2])
      stages[v] += [clip_breakdown(info['path'], rng) for _ in range(clips)]
  rows = []
  for v, info in videos.items():
    ours, peer = np.asarray(times[(v, 'ours')]), np.asarray(times[(v, 'pyslowfast')])
    before = np.asarray(times[(v, 'ours_no_skip')])
    limit = float(np.median(fps[v])) / window
    rows.append({'video': v, 'bytes': info['bytes'], 'gop': info['gop'],
                 'decode_only_fps': round(float(np.median(fps[v])), 1),
                 'limit_clips_per_s': round(limit, 2),
                 'ours_clips_per_s': round(1 / float(np.median(ours)), 2),
                 'pyslowfast_clips_per_s': round(1 / float(np.median(peer)), 2),
                 'ours_over_pyslowfast': round(float(np.median(peer / ours)), 3),
                 'ours_no_skip_clips_per_s': round(1 / float(np.median(before)), 2),
                 'skip_speedup': round(float(np.median(before / ours)), 3),
                 'ours_over_limit': round(1 / float(np.median(ours)) / limit, 3),
                 'stages_ms': {k: round(1000 * float(np.mean([s[k] for s in stages[v]])), 2)
                               for k in stages[v][0] if not k.startswith('frames')},
                 'frames_before_window': float(np.mean([s['frames_before_window']
                                                        for s in stages[v]])),
                 'frames_window': float(np.mean([s['frames_window'] for s in stages[v]])),
                 'ours_ms_per_clip': round(1000 * float(np.median(ours)), 2)})
  print(f"{'video':<30} | {'MB':>5} | {'decode fps':>10} | {'limit clips/s':>13} | "
        f"{'ours':>6} | {'no skip':>7} | {'PySlowFast':>10} | {'ours/peer':>9} | "
        f"{'ours/limit':>10} | {'skip gain':>9}")
  for r in rows:
    print(f"{r['video']:<30} | {r['bytes'] / 1e6:>5.2f} | {r['decode_only_fps']:>10.0f} | "
          f"{r['limit_clips_per_s']:>13.1f} | {r['ours_clips_per_s']:>6.1f} | "
          f"{r['ours_no_skip_clips_per_s']:>7.1f} | {r['pyslowfast_clips_per_s']:>10.1f} | "
          f"{r['ours_over_pyslowfast']:>9.2f} | {r['ours_over_limit']:>10.2f} | "
          f"{r['skip_speedup']:>9.2f}")
  print('where an ours clip goes (ms, mean; frames decoded before / in the window):')
  for r in rows:
    print(f"  {r['video']:<30} total {r['ours_ms_per_clip']:.1f}: " +
          ', '.join(f'{k} {v:.1f}' for k, v in r['stages_ms'].items()) +
          f"; frames {r['frames_before_window']:.0f} + {r['frames_window']:.0f}")
  video_s, store_s = np.asarray(times[(prepared, 'ours')]), np.asarray(store_times['frames'])
  fs = {'video': prepared, 'jpeg_quality': prepare_videos.JPEG_QUALITY, 'short_side': 256,
        'frames': store_info['frames'], 'store_bytes': store_info['bytes'],
        'mp4_bytes': videos[prepared]['bytes'],
        'size_ratio': round(store_info['bytes'] / videos[prepared]['bytes'], 2),
        'clips_per_s': round(1 / float(np.median(store_s)), 2),
        'video_clips_per_s': round(1 / float(np.median(video_s)), 2),
        'frames_over_video': round(float(np.median(video_s / store_s)), 3),
        'decode_only_clips_per_s': round(1 / float(np.median(store_times['frames_decode_only'])),
                                         2),
        'stages_ms': {k: round(1000 * float(np.mean([s[k] for s in store_stages])), 2)
                      for k in store_stages[0]}}
  print(f"frame store of the prepared video (JPEG q{fs['jpeg_quality']}, short side 256): "
        f"{fs['store_bytes'] / 1e6:.2f} MB vs {fs['mp4_bytes'] / 1e6:.2f} MB mp4 "
        f"({fs['size_ratio']:.1f}x); training clips/s {fs['clips_per_s']:.1f} vs "
        f"{fs['video_clips_per_s']:.1f} from the video ({fs['frames_over_video']:.2f}x); "
        f"records read + JPEG decode only {fs['decode_only_clips_per_s']:.1f} clips/s; a store "
        'clip (ms): ' + ', '.join(f'{k} {v:.1f}' for k, v in fs['stages_ms'].items()))
  # 30-view evaluation of the first video: decoded frames and views/s, per view vs one decode
  path = videos['340x256 keyint 250']['path']
  mv = {'per_view_frames': _count_decoded(lambda: _views_per_view(path)),
        'one_decode_frames': _count_decoded(lambda: _views_one_decode(path))}
  tv = {'per_view': [], 'one_decode': []}
  for _ in range(max(1, rounds // 2)):
    for k, fn in (('per_view', _views_per_view), ('one_decode', _views_one_decode)):
      t0 = clock()
      fn(path)
      tv[k].append(clock() - t0)
  mv['per_view_views_per_s'] = round(30 / float(np.median(tv['per_view'])), 2)
  mv['one_decode_views_per_s'] = round(30 / float(np.median(tv['one_decode'])), 2)
  mv['frames_ratio'] = round(mv['per_view_frames'] / mv['one_decode_frames'], 2)
  mv['speedup'] = round(float(np.median(np.asarray(tv['per_view']) /
                                        np.asarray(tv['one_decode']))), 2)
  print(f"30-view evaluation, 340x256 keyint 250: decoded frames per video {mv['per_view_frames']}"
        f" per view -> {mv['one_decode_frames']} one decode ({mv['frames_ratio']:.1f}x fewer); "
        f"views/s {mv['per_view_views_per_s']:.1f} -> {mv['one_decode_views_per_s']:.1f} "
        f"({mv['speedup']:.2f}x)")
  for info in videos.values():
    info.pop('path', None)
  return {'videos': videos, 'rows': rows, 'multiview_30view': mv, 'frame_store': fs,
          'rounds': rounds,
          'clips_per_round': clips}


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
  p.add_argument('--compare', action='store_true',
                 help='reader comparison against the PySlowFast-style reader (docstring)')
  p.add_argument('--rounds', type=int, default=5, help='--compare: interleaved rounds')
  p.add_argument('--clips', type=int, default=6, help='--compare: clips per reader and round')
  a = p.parse_args(argv)
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.FLAGS.mark_as_parsed()  # grain multiprocessing outside absl.app.run

  import av  # pylint: disable=g-import-not-at-top
  machine = {'cpu': cpu_model(), 'cores': usable_cores(), 'cpu_count': os.cpu_count(),
             'python': platform.python_version(), 'pyav': av.__version__,
             'platform': platform.platform()}
  print(f"machine: {machine['cpu']}, {machine['cores']} usable cores (nproc), "
        f"Python {machine['python']}, PyAV {machine['pyav']}")
  if a.compare:
    with tempfile.TemporaryDirectory() as tmp:
      out = {'machine': machine, 'load_average': os.getloadavg(),
             **compare(tmp, a.rounds, a.clips)}
    out['load_average_after'] = os.getloadavg()
    if a.json:
      os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
      with open(a.json, 'w') as f:
        json.dump(out, f, indent=2)
      print(f'wrote {a.json}')
    return 0
  with tempfile.TemporaryDirectory() as tmp:
    info = make_video(os.path.join(tmp, 'kinetics_like.mp4'), a.height, a.width, a.fps,
                      a.seconds, a.gop)
    print(f"video: {info['width']}x{info['height']}, {info['fps']} fps, {info['frames']} frames "
          f"({info['seconds']:.0f} s), {info['codec']}, keyframe every {info['gop']} frames, "
          f"{info['bytes'] / 1e6:.2f} MB")
    print('transform: 8 frames x stride 8, short side U[256, 320], random 224 crop, flip, '
          f'uint8 out; batch {a.batch_size}, {a.batches} timed batches, '
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
