"""Re-encodes a Kinetics-style video tree for fast training reads: H.264 with a short keyframe
interval, or a frame store (JPEG frames in ArrayRecord shards).

    python -m bat_jax.data.prepare_videos --src DIR --dst DIR --short-side 320 \\
        [--keyframe-interval 32] [--crf 23] [--workers K]
    python -m bat_jax.data.prepare_videos --src DIR --dst DIR --format=frames \\
        [--jpeg-quality 95] [--short-side 320] [--workers K]

Every video file under ``--src`` (the extensions :data:`bat_jax.data.kinetics.VIDEO_EXTENSIONS`,
in any layout the Kinetics reader accepts) is decoded with PyAV and written to the same relative
path under ``--dst`` with the extension ``.mp4``: H.264 (libx264, ``--crf``, yuv420p), frames
resized (bilinear, swscale) so the short side is ``--short-side`` (both sides rounded to even
numbers, as yuv420p needs), a keyframe every ``--keyframe-interval`` frames, the source's average
frame rate, no audio. The stem of each file is kept, so the annotation CSVs still resolve; the
CSVs found under ``--src`` (:func:`bat_jax.data.kinetics.find_annotation`) are written to the
same relative paths under ``--dst`` with the rows of videos that failed to convert left out.

A training clip seeks to the keyframe before its window and decodes forward from there, so the
keyframe interval bounds the frames decoded but not kept; ``docs/data.md`` gives the measured
trade of file size against clips/s (32 is the default for that reason).

``--format=frames`` writes instead, per video, its frames (the same swscale bilinear resize to
the even short side, RGB) as JPEGs (PIL, ``--jpeg-quality``; default 95, what MMAction2's
``tools/data/build_rawframes.py --use-opencv`` writes: ``mmcv.imwrite`` -> ``cv2.imwrite``,
whose JPEG quality defaults to 95) into one ArrayRecord shard per video at the same relative path
with the extension ``.array_record``, plus the index ``DST/frames_index.csv`` (video, split, shard,
first record, frame count, fps, size, class name) and the annotation CSVs as above; the format
and why one shard per video: :mod:`bat_jax.data.frame_store`. The Kinetics pipeline reads such a
store when ``config.data.root`` points at it (detected by its index).

Resumable: an output that exists is skipped; a video or shard is written under a temporary name
(``<name>.mp4.partial``, ``<name>.array_record.partial``) and renamed when complete, so an
interrupted run never leaves a partial output behind (the Kinetics reader ignores ``.partial``
files); the index is rebuilt at the end of every run from this run's shards, the previous index
and the header record of any other finished shard, and written the same way. Inputs that cannot
be decoded are skipped and listed, with the reason, in ``DST/prepare_report.json``. A progress
line (done / total, videos per second, ETA) is printed as files finish.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import csv
import fractions
import io
import json
import multiprocessing
import os
import sys
import time
from typing import Callable, Sequence

import av
from PIL import Image

from bat_jax.data import decode as D
from bat_jax.data import frame_store
from bat_jax.data import kinetics

__all__ = ['FORMATS', 'JPEG_QUALITY', 'even_short_side_shape', 'find_videos', 'output_path',
           'convert_video', 'extract_frames', 'prepare', 'main']

REPORT_NAME = 'prepare_report.json'
PARTIAL_SUFFIX = '.partial'
FORMATS = ('mp4', 'frames')  # --format
JPEG_QUALITY = 95  # MMAction2 build_rawframes.py --use-opencv: cv2.imwrite's default quality


def even_short_side_shape(height: int, width: int, short_side: int) -> tuple[int, int]:
  """(height, width) with the short side ``short_side`` and both sides even (yuv420p)."""
  if short_side < 2 or short_side % 2:
    raise ValueError(f'--short-side must be an even number >= 2, got {short_side}')
  h, w = D.short_side_shape(height, width, short_side)
  return max(2, 2 * round(h / 2)), max(2, 2 * round(w / 2))


def find_videos(src: str) -> list[str]:
  """Relative paths of the video files under ``src`` (sorted, recursive)."""
  out = []
  for dirpath, dirnames, filenames in os.walk(src):
    dirnames.sort()
    for fn in sorted(filenames):
      if os.path.splitext(fn)[1].lower() in kinetics.VIDEO_EXTENSIONS:
        out.append(os.path.relpath(os.path.join(dirpath, fn), src))
  return out


def output_path(dst: str, rel: str, fmt: str = 'mp4') -> str:
  """Where the video ``rel`` (relative to ``--src``) goes under ``dst`` in format ``fmt``."""
  ext = frame_store.SHARD_EXTENSION if fmt == 'frames' else '.mp4'
  return os.path.join(dst, os.path.splitext(rel)[0] + ext)


def convert_video(src_path: str, dst_path: str, short_side: int, keyframe_interval: int,
                  crf: int = 23, preset: str = 'veryfast') -> dict:
  """Re-encodes one video (see the module docstring); returns {frames, height, width, bytes}.

  Writes ``dst_path + '.partial'`` and renames it to ``dst_path`` when complete. Raises
  :class:`bat_jax.data.decode.VideoDecodeError` if the input has no decodable frame (the partial
  file is removed).
  """
  tmp = dst_path + PARTIAL_SUFFIX
  os.makedirs(os.path.dirname(os.path.abspath(dst_path)), exist_ok=True)
  container = D.open_video(src_path)
  n = 0
  try:
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate or 30
    errors: list = []
    with av.open(tmp, 'w', format='mp4') as out:
      ostream = None
      for frame in D.decoded_frames(container, stream, errors):
        if ostream is None:
          h, w = even_short_side_shape(frame.height, frame.width, short_side)
          ostream = out.add_stream('libx264', rate=rate)
          ostream.width, ostream.height, ostream.pix_fmt = w, h, 'yuv420p'
          ostream.codec_context.gop_size = keyframe_interval
          tb = fractions.Fraction(1, 1) / fractions.Fraction(rate)
          ostream.options = {'crf': str(crf), 'preset': preset,
                             'x264-params': f'keyint={keyframe_interval}:scenecut=0'}
        yuv = frame.reformat(width=w, height=h, format='yuv420p', interpolation='BILINEAR')
        yuv.pts, yuv.time_base = n, tb  # constant frame rate at the source's average rate
        out.mux(ostream.encode(yuv))
        n += 1
      if ostream is None:
        why = f' ({type(errors[0]).__name__}: {errors[0]})' if errors else ''
        raise D.VideoDecodeError(src_path, 'no decodable frames' + why)
      out.mux(ostream.encode())
  except (av.FFmpegError, OSError, D.VideoDecodeError) as e:
    if os.path.exists(tmp):
      os.remove(tmp)
    if isinstance(e, D.VideoDecodeError):
      raise
    raise D.VideoDecodeError(src_path, f'{type(e).__name__}: {e}') from None
  finally:
    container.close()
  os.replace(tmp, dst_path)
  return {'frames': n, 'height': h, 'width': w, 'bytes': os.path.getsize(dst_path)}


def extract_frames(src_path: str, dst_path: str, short_side: int,
                   jpeg_quality: int = JPEG_QUALITY, source: str = '') -> dict:
  """Writes one video's frames as a frame-store shard (see the module docstring); returns
  {frames, height, width, fps, bytes}.

  Every frame that decodes (up to the first damaged packet, as ``convert_video``) is converted to
  RGB at the even short side ``short_side`` (swscale bilinear, :func:`bat_jax.data.decode.to_rgb`)
  and JPEG-encoded by PIL at ``jpeg_quality``; :func:`bat_jax.data.frame_store.write_shard`
  writes them atomically. Raises :class:`bat_jax.data.decode.VideoDecodeError` if the input has
  no decodable frame (nothing is left behind).
  """
  if not 1 <= jpeg_quality <= 100:
    raise ValueError(f'--jpeg-quality must be in [1, 100], got {jpeg_quality}')
  container = D.open_video(src_path)
  header: dict = {'source': source or os.path.basename(src_path), 'jpeg_quality': jpeg_quality,
                  'short_side': short_side}
  errors: list = []

  def jpegs():
    stream = container.streams.video[0]
    header['fps'] = D.stream_info(container, stream)[0]
    hw = None
    for frame in D.decoded_frames(container, stream, errors):
      if hw is None:
        hw = even_short_side_shape(frame.height, frame.width, short_side)
        header['height'], header['width'] = hw
      buf = io.BytesIO()
      Image.fromarray(D.to_rgb(frame, hw)).save(buf, 'JPEG', quality=jpeg_quality)
      yield buf.getvalue()
    if hw is None:
      why = f' ({type(errors[0]).__name__}: {errors[0]})' if errors else ''
      raise D.VideoDecodeError(src_path, 'no decodable frames' + why)

  try:
    n = frame_store.write_shard(dst_path, jpegs(), header)
  except (av.FFmpegError, OSError, RuntimeError, ValueError) as e:
    raise D.VideoDecodeError(src_path, f'{type(e).__name__}: {e}') from None
  finally:
    container.close()
  return {'frames': n, 'height': header['height'], 'width': header['width'],
          'fps': header['fps'], 'bytes': os.path.getsize(dst_path)}


def _job(args) -> tuple[str, dict | None, str | None]:
  rel, src, dst, fmt, short_side, keyframe_interval, crf, jpeg_quality = args
  try:
    if fmt == 'frames':
      info = extract_frames(os.path.join(src, rel), output_path(dst, rel, fmt), short_side,
                            jpeg_quality, rel)
    else:
      info = convert_video(os.path.join(src, rel), output_path(dst, rel), short_side,
                           keyframe_interval, crf)
    return rel, info, None
  except D.VideoDecodeError as e:
    return rel, None, e.reason


def _fmt_eta(seconds: float) -> str:
  s = int(round(seconds))
  return f'{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}'


def _write_annotations(src: str, dst: str, failed_stems: set[str]) -> list[str]:
  """Copies the split CSVs under ``src`` to ``dst`` without the rows of failed videos."""
  written = []
  for split in ('train', 'val', 'test'):
    ann = kinetics.find_annotation(src, split)
    if ann is None:
      continue
    out_path = os.path.join(dst, os.path.relpath(ann, src))
    if out_path in written:
      continue
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(ann, newline='') as f, open(out_path + PARTIAL_SUFFIX, 'w', newline='') as g:
      reader = csv.DictReader(f)
      writer = csv.DictWriter(g, fieldnames=reader.fieldnames)
      writer.writeheader()
      for row in reader:
        yid = row['youtube_id'].strip()
        stems = {yid}
        try:
          stems.add(f"{yid}_{int(float(row.get('time_start') or 0)):06d}_"
                    f"{int(float(row.get('time_end') or 0)):06d}")
        except ValueError:
          pass
        if not stems & failed_stems:
          writer.writerow(row)
    os.replace(out_path + PARTIAL_SUFFIX, out_path)
    written.append(out_path)
  return written


def _labels(src: str) -> dict[str, tuple[str, str]]:
  """Relative video path -> (split, class name) from the annotations / class folders under
  ``src`` (the Kinetics reader's listing); videos no split lists are absent."""
  out: dict[str, tuple[str, str]] = {}
  for split in ('train', 'val', 'test'):
    try:
      sp = kinetics.load_split(src, split)
    except (FileNotFoundError, ValueError):
      continue
    for path, label in sp.records:
      out.setdefault(os.path.relpath(path, src), (split, sp.class_names[label]))
  return out


def _index_rows(src: str, dst: str, rels: Sequence[str], new: dict[str, dict],
                broken: list[dict]) -> list[dict]:
  """The frame store's index rows: one per finished shard of ``rels``, from this run's results
  ``new``, else the previous index, else the shard's header record (a shard whose header cannot
  be read is appended to ``broken``)."""
  old = {r['shard']: r for r in frame_store.read_index(dst)}
  labels = _labels(src)
  rows = []
  for rel in rels:
    path = output_path(dst, rel, 'frames')
    shard = os.path.relpath(path, dst)
    if rel in new:
      info = new[rel]
    elif shard in old:
      info = old[shard]
    elif os.path.exists(path):
      try:
        info = frame_store.read_header(path)
      except (RuntimeError, ValueError, OSError) as e:
        broken.append({'path': rel, 'reason': f'finished shard unreadable ({e})'})
        continue
    else:
      continue
    split, label = labels.get(rel, ('', ''))
    rows.append({'video': rel, 'split': split, 'shard': shard, 'first_record': 0,
                 'frames': info['frames'], 'fps': info['fps'], 'height': info['height'],
                 'width': info['width'], 'label': label})
  return rows


def prepare(src: str, dst: str, short_side: int = 320, keyframe_interval: int = 32,
            crf: int = 23, workers: int = 1,
            progress: Callable[[str], None] | None = print, *, fmt: str = 'mp4',
            jpeg_quality: int = JPEG_QUALITY) -> dict:
  """Converts the tree (see the module docstring); returns the report it writes to ``dst``.

  Report: {converted, skipped (already done), broken: [{path, reason}], annotations, seconds,
  and for ``fmt='frames'``: index (its path relative to ``dst``), frames}.
  """
  if fmt not in FORMATS:
    raise ValueError(f'--format={fmt!r}; allowed: {list(FORMATS)}')
  if not 1 <= jpeg_quality <= 100:
    raise ValueError(f'--jpeg-quality must be in [1, 100], got {jpeg_quality}')
  if keyframe_interval < 1:
    raise ValueError(f'--keyframe-interval must be >= 1, got {keyframe_interval}')
  if workers < 1:
    raise ValueError(f'--workers must be >= 1, got {workers}')
  even_short_side_shape(2, 2, short_side)  # validates short_side
  if not os.path.isdir(src):
    raise FileNotFoundError(f'--src {src!r} is not a folder')
  if os.path.abspath(src) == os.path.abspath(dst):
    raise ValueError('--dst must differ from --src')
  t0 = time.time()
  rels = find_videos(src)
  todo = [r for r in rels if not os.path.exists(output_path(dst, r, fmt))]
  skipped = len(rels) - len(todo)
  if progress:
    progress(f'{len(rels)} videos under {src}; {skipped} already converted, {len(todo)} to do')
  jobs = [(r, src, dst, fmt, short_side, keyframe_interval, crf, jpeg_quality) for r in todo]
  converted, broken, done = 0, [], {}
  every = max(1, len(jobs) // 100)  # about 100 progress lines, plus one per broken input
  t_start = time.time()

  def consume(results):
    nonlocal converted
    for i, (rel, info, reason) in enumerate(results):
      if info is None:
        broken.append({'path': rel, 'reason': reason})
      else:
        converted += 1
        done[rel] = info
      if progress and (info is None or (i + 1) % every == 0 or i + 1 == len(jobs)):
        rate = (i + 1) / max(time.time() - t_start, 1e-9)
        progress(f'  {i + 1}/{len(jobs)} videos, {rate:.2f} videos/s, '
                 f'ETA {_fmt_eta((len(jobs) - i - 1) / rate)}'
                 + (f'  (broken: {rel}: {reason})' if info is None else ''))

  if workers > 1 and len(jobs) > 1:
    # spawn, not fork: the caller may have JAX (multithreaded) loaded.
    with futures.ProcessPoolExecutor(workers,
                                    mp_context=multiprocessing.get_context('spawn')) as ex:
      consume(ex.map(_job, jobs))
  else:
    consume(map(_job, jobs))
  failed = {os.path.splitext(os.path.basename(b['path']))[0] for b in broken}
  annotations = _write_annotations(src, dst, failed)
  extra: dict = {'keyframe_interval': keyframe_interval, 'crf': crf}
  if fmt == 'frames':
    rows = _index_rows(src, dst, rels, done, broken)
    extra = {'jpeg_quality': jpeg_quality,
             'index': os.path.relpath(frame_store.write_index(dst, rows), dst),
             'frames': sum(r['frames'] for r in rows)}
  report = {'src': src, 'dst': dst, 'format': fmt, 'short_side': short_side, **extra,
            'videos': len(rels),
            'converted': converted, 'skipped': skipped, 'broken': broken,
            'annotations': [os.path.relpath(a, dst) for a in annotations],
            'seconds': round(time.time() - t0, 2)}
  os.makedirs(dst, exist_ok=True)
  with open(os.path.join(dst, REPORT_NAME), 'w') as f:
    json.dump(report, f, indent=2)
  if progress:
    progress(f'converted {converted}, skipped {skipped} (done before), broken {len(broken)} '
             f'in {report["seconds"]:.1f} s; report: {os.path.join(dst, REPORT_NAME)}')
  return report


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--src', required=True, help='Kinetics-style folder to read')
  p.add_argument('--dst', required=True, help='folder to write (same layout)')
  p.add_argument('--format', choices=FORMATS, default='mp4',
                 help='mp4: H.264 re-encode; frames: JPEG frame store (ArrayRecord shards)')
  p.add_argument('--short-side', type=int, default=320, help='output short side (even)')
  p.add_argument('--keyframe-interval', type=int, default=32,
                 help='mp4: frames between keyframes (docs/data.md: size vs clips/s)')
  p.add_argument('--crf', type=int, default=23, help='mp4: x264 constant rate factor')
  p.add_argument('--jpeg-quality', type=int, default=JPEG_QUALITY,
                 help='frames: JPEG quality 1-100 (MMAction2 frame extraction: 95)')
  p.add_argument('--workers', type=int, default=min(2, os.cpu_count() or 1))
  a = p.parse_args(argv)
  report = prepare(a.src, a.dst, a.short_side, a.keyframe_interval, a.crf, a.workers,
                   fmt=a.format, jpeg_quality=a.jpeg_quality)
  return 1 if report['broken'] and not report['converted'] and not report['skipped'] else 0


if __name__ == '__main__':
  sys.exit(main())
