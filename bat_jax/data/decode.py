"""Video decoding (PyAV) and frame folders (PIL): numpy + PyAV only, safe inside grain workers.

Clip sampling follows the BAT / non-local video recipe (``bat_cvpr2020.md`` §4.1,
``bat_supplementary.md`` §1): a clip is ``num_frames`` frames taken every ``stride`` frames
(8 x 8 = a 64-frame window for Kinetics); training picks the window at random, single-clip
evaluation takes the centre window and multi-view evaluation takes ``K`` windows evenly
spread over the video (``start = k / (K - 1)`` as a fraction of the valid start range, exactly:
:mod:`bat_jax.data.views`).

TSN segment sampling (``data.sampling='segments'``, RSA on Something-Something: supplement §1,
released ``ops/dataset.py``): the video is split into ``num_frames`` equal segments and one frame
is taken per segment, at a random offset in training and at the segment centre in evaluation
(:func:`segment_indices`, :func:`decode_segments`); ``frame_stride`` is then unused.

Too-short videos: a video with fewer frames than the clip window loops its frames (indices
modulo its length, :func:`clip_indices`); a one-frame video gives a still clip. Broken files
(missing, zero-byte, not a video, no decodable frame) raise :class:`VideoDecodeError`, which the
pipeline turns into a substitution (training) or a masked view (evaluation) and a report entry.

Frame folders: ``path`` may also be a directory of frame images (``00001.jpg``, ...; the
Something-Something V1 layout): :func:`decode_clip` and :func:`decode_segments` then count the
files as the video's frames and read the picked ones with PIL, with the same index logic; a
folder without frame images raises :class:`VideoDecodeError` (a missing one as a missing file).

Frame stores: a ``path`` ending in ``.array_record`` is a shard of a frame store
(:mod:`bat_jax.data.frame_store`, written by ``prepare_videos --format=frames``): the same index
logic on its frame count, and only the JPEG records of the picked frames are read and decoded
(:func:`read_store`); a damaged shard or record raises :class:`VideoDecodeError`.

Crop first: :func:`decode_clip` and :func:`decode_segments` take ``crop``, a function of the
resized frames' size that gives the :class:`CropBox` the clip keeps (a training crop; it may
draw from an rng, and is called once per clip, after the frame indices are drawn). Frame stores
and frame folders know the size from the image header before decoding, so PIL resizes only the
box from the source pixels (one resize instead of resizing the whole frame, then cropping:
``benchmarks/store_resize.py``, docs/performance.md); videos resize the whole frame while
converting it (swscale) and then cut the box (:func:`apply_box`).

The building blocks (:func:`open_video`, :func:`stream_info`, :func:`seek_decode`,
:func:`decoded_frames`, :func:`decode_all`, :func:`to_rgb`, :func:`frame_files`,
:func:`read_frames`, :func:`pick_start`) are public: :mod:`bat_jax.data.multiview` (one decode
per multi-view video) and :mod:`bat_jax.data.prepare_videos` reuse them.
:func:`write_video` encodes (toy data set, tests).

Nothing here imports JAX: these functions run in grain worker processes.
"""

from __future__ import annotations

import dataclasses
import fractions
import io
import os
from typing import Callable, Sequence

import av
import numpy as np
from PIL import Image

from bat_jax.data import frame_store

__all__ = [
    'VideoDecodeError',
    'CropBox',
    'apply_box',
    'write_video',
    'short_side_shape',
    'frame_shape',
    'clip_indices',
    'pick_start',
    'open_video',
    'stream_info',
    'to_rgb',
    'frame_index',
    'seek_decode',
    'decoded_frames',
    'decode_all',
    'FRAME_EXTENSIONS',
    'frame_files',
    'read_frames',
    'read_store',
    'decode_clip',
    'segment_offsets',
    'segment_indices',
    'decode_segments',
]


class VideoDecodeError(Exception):
  """A video that cannot be opened or has no decodable frames (missing, empty, truncated, ...)."""

  def __init__(self, path, reason: str):
    self.path = str(path)
    self.reason = str(reason)
    super().__init__(f'{self.path}: {self.reason}')

  def __reduce__(self):  # picklable across grain worker processes
    return (VideoDecodeError, (self.path, self.reason))


@dataclasses.dataclass(frozen=True)
class CropBox:
  """Rows ``y:y + height`` and columns ``x:x + width`` of the frames resized to the clip's short
  side, resized (bilinear) to ``size x size`` when the box is not that size already."""
  y: int
  x: int
  height: int
  width: int
  size: int


# (height, width) of the resized frames -> the box a clip keeps (see the module docstring)
CropFn = Callable[[int, int], CropBox]


def apply_box(frames: np.ndarray, box: CropBox) -> np.ndarray:
  """The box of uint8 (T, H, W, C) frames: a view when it is ``size x size``, else each frame's
  box resized with PIL (bilinear, as TSN's ``GroupMultiScaleCrop``)."""
  frames = np.asarray(frames)
  cut = frames[:, box.y:box.y + box.height, box.x:box.x + box.width]
  if (box.height, box.width) == (box.size, box.size):
    return cut
  out = np.empty((frames.shape[0], box.size, box.size, frames.shape[3]), np.uint8)
  for i, f in enumerate(cut):
    out[i] = np.asarray(Image.fromarray(np.ascontiguousarray(f)).resize(
        (box.size, box.size), Image.BILINEAR))
  return out


def _once(crop: CropFn) -> CropFn:
  """``crop`` called on the first frame's size only (a clip's frames share one box and one rng
  draw); a later frame whose size differs raises ``ValueError``."""
  first = []

  def call(height: int, width: int) -> CropBox:
    if not first:
      first.append(((height, width), crop(height, width)))
    elif first[0][0] != (height, width):
      raise ValueError('frames of different sizes')
    return first[0][1]

  return call


# ----------------------------------------------------------------------------------------
# Encoding (toy data set, tests).
# ----------------------------------------------------------------------------------------


def write_video(path, frames: np.ndarray, fps: int = 8, *, codec: str = 'libx264',
                crf: int = 18, gop_size: int = 12, preset: str = 'veryfast',
                faststart: bool = False) -> None:
  """Encodes uint8 RGB ``frames`` (T, H, W, 3) into an mp4 file (yuv420p, even H and W).

  ``faststart`` puts the index (moov atom) before the data, as web downloads often have.

  libx264 runs single-threaded without lookahead, so the same frames give byte-identical files.
  """
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise ValueError(f'frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}')
  t, h, w, _ = frames.shape
  if h % 2 or w % 2:
    raise ValueError(f'yuv420p needs even frame sizes, got {h}x{w}')
  options = {'movflags': 'faststart'} if faststart else {}
  with av.open(str(path), 'w', format='mp4', options=options) as container:
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = w, h, 'yuv420p'
    stream.codec_context.gop_size = gop_size
    stream.codec_context.thread_count = 1
    if codec == 'libx264':
      # x264's lookahead / macroblock-tree rate control is not bit-reproducible here (the same
      # frames sometimes gave different files); without them the output is deterministic.
      stream.options = {'crf': str(crf), 'preset': preset,
                        'x264-params': 'rc-lookahead=0:mbtree=0'}
    for i in range(t):
      frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format='rgb24')
      # Explicit single-threaded RGB -> YUV conversion: the encoder's implicit conversion
      # is not bit-reproducible (the same frames gave different files).
      frame = frame.reformat(format='yuv420p', threads=1)
      container.mux(stream.encode(frame))
    container.mux(stream.encode())


# ----------------------------------------------------------------------------------------
# Decoding.
# ----------------------------------------------------------------------------------------


def short_side_shape(height: int, width: int, size: int) -> tuple[int, int]:
  """(new_height, new_width) with the short side equal to ``size`` and the aspect ratio kept."""
  if height <= width:
    return size, max(1, int(round(width * size / height)))
  return max(1, int(round(height * size / width))), size


def frame_shape(height: int, width: int, size: int | Sequence[int]) -> tuple[int, int]:
  """(new_height, new_width) of a ``height x width`` frame for a resize ``size``: an int is the
  short side (aspect ratio kept, :func:`short_side_shape`); an ``(H, W)`` pair is that exact size
  (aspect ratio not kept: RSA's 240 x 320 test frames, ``rsa_neurips2021_supplementary.md`` §1)."""
  if isinstance(size, (int, np.integer)):
    return short_side_shape(height, width, int(size))
  h, w = (int(x) for x in size)
  return h, w


def _start_fraction(start, rng) -> float | int | fractions.Fraction:
  """Resolves the ``start`` argument of :func:`decode_clip` to a fraction or an int index."""
  if start is None:
    rng = np.random.default_rng() if rng is None else rng
    return float(rng.random())  # in [0, 1): uniform over the valid starts, see pick_start
  if isinstance(start, str):
    if start != 'center':
      raise ValueError(f"start must be None, 'center', a float fraction or an int, got {start!r}")
    return fractions.Fraction(1, 2)
  if isinstance(start, (bool, np.bool_)):
    raise ValueError(f'start must not be a bool, got {start!r}')
  if isinstance(start, (int, np.integer)):
    return int(start)
  if isinstance(start, fractions.Fraction):  # exact: multi-view clip k of K is Fraction(k, K - 1)
    if not 0 <= start <= 1:
      raise ValueError(f'a fractional start must lie in [0, 1], got {start}')
    return start
  start = float(start)
  if not 0.0 <= start <= 1.0:
    raise ValueError(f'a fractional start must lie in [0, 1], got {start}')
  return start


def pick_start(spec, max_start: int, random: bool) -> int:
  """The start frame in ``[0, max_start]`` for a start ``spec`` of :func:`decode_clip` (an int
  index, clamped; a random uniform in [0, 1); or a fraction of the range, rounded half up)."""
  if max_start <= 0:
    return 0
  if isinstance(spec, int):
    return min(max(spec, 0), max_start)
  if random:  # u in [0, 1): every start in [0, max_start] equally likely
    return min(int(spec * (max_start + 1)), max_start)
  if isinstance(spec, fractions.Fraction):  # exact, as bat_jax.data.views.clip_start
    return int((spec * max_start + fractions.Fraction(1, 2)).__floor__())
  return int(np.floor(spec * max_start + 0.5))  # round half up: 'center' = ceil(max_start / 2)


def clip_indices(num_video_frames: int, num_frames: int, stride: int, start: int) -> np.ndarray:
  """Frame indices of a clip; a video shorter than the clip window loops (indices mod length)."""
  idx = start + np.arange(num_frames) * stride
  return idx % num_video_frames


def open_video(path):
  """An open PyAV container of ``path`` with a decodable video stream, or
  :class:`VideoDecodeError` (missing, not a file, zero-byte, unreadable, no video stream)."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise VideoDecodeError(path, 'file does not exist')
  if not os.path.isfile(path):
    raise VideoDecodeError(path, 'not a regular file')
  if os.path.getsize(path) == 0:
    raise VideoDecodeError(path, 'zero-byte file')
  try:
    container = av.open(path, 'r')
  except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
    raise VideoDecodeError(path, f'cannot open container ({type(e).__name__}: {e})') from None
  if not container.streams.video:
    container.close()
    raise VideoDecodeError(path, 'no video stream')
  if container.streams.video[0].codec_context is None:  # a damaged header (fuzzed files)
    container.close()
    raise VideoDecodeError(path, 'the video stream has no decoder')
  return container


def stream_info(container, stream) -> tuple[float, int]:
  """(frames per second, frame count estimate from the container; 0 when unknown).

  mp4 headers hold the exact count; webm / mkv only a duration (an estimate: if it is too
  high the seek path finds the stream ending early and decode_clip decodes everything).
  """
  rate = stream.average_rate or stream.guessed_rate or stream.base_rate
  fps = float(rate) if rate else 0.0
  n = int(stream.frames or 0)
  if n <= 0 and fps > 0:
    if stream.duration and stream.time_base:
      n = int(float(stream.duration * stream.time_base) * fps)
    elif container.duration:
      n = int(container.duration / av.time_base * fps)
  return fps, n


def to_rgb(frame, out_hw) -> np.ndarray:
  """uint8 RGB (H, W, 3), resized by swscale (bilinear) to ``out_hw`` if given. One swscale
  thread: the same pixels as swscale's default threading, 1.4x faster per frame where the
  cores are busy (every grain worker already has one)."""
  if out_hw is None:
    return frame.reformat(format='rgb24', threads=1).to_ndarray()
  h, w = out_hw
  return frame.reformat(width=w, height=h, format='rgb24', interpolation='BILINEAR',
                        threads=1).to_ndarray()


def frame_index(frame, start_time: int, tb, fps: float) -> int:
  """Index of a decoded frame (or a packet) in the video: ``round((pts - start_time) *
  time_base * fps)``."""
  return int(round(float((frame.pts - start_time) * tb) * fps))


def seek_decode(container, stream, wanted: np.ndarray, fps: float, skip_nonref: bool = True):
  """Seeks to the keyframe before ``wanted[0]`` and decodes forward; returns frames or None.

  Each decoded frame gets the index ``round((pts - start_time) * time_base * fps)``; a wanted
  index that no frame carries (variable frame rate, dropped frame) gets the next frame. Returns
  None (caller falls back to a full sequential decode) if timestamps are missing, the seek
  landed after the first wanted frame, or the stream ended before the last wanted frame.

  ``skip_nonref``: packets whose frame is not wanted are decoded with FFmpeg's
  ``skip_frame='NONREF'`` (a non-reference frame that is not kept is not decoded at all; no other
  frame depends on it). If a wanted index then had no frame of its own (it would take the next
  one, which may have been skipped), the window is decoded again without skipping.
  """
  start_time = stream.start_time or 0
  tb = stream.time_base
  first = int(wanted[0])
  if first > 0 or not skip_nonref:  # (a second pass must rewind)
    target = start_time + int(first / fps / float(tb)) - 1
    container.seek(max(target, start_time), stream=stream, backward=True, any_frame=False)
  skip = None
  if skip_nonref:
    wanted_set = {int(w) for w in wanted}

    def skip(packet) -> bool:
      return packet.pts is not None and frame_index(packet, start_time, tb, fps) not in wanted_set

  out = [None] * len(wanted)
  k = 0
  checked_first = False
  exact = True
  try:
    for frame in decoded_frames(container, stream, [], skip):
      if frame.pts is None:
        return None
      idx = frame_index(frame, start_time, tb, fps)
      if not checked_first:
        checked_first = True
        if idx > first:
          return None  # seek overshoot
      while k < len(wanted) and idx >= wanted[k]:
        exact &= idx == wanted[k]
        out[k] = frame
        k += 1
      if k == len(wanted):
        break
  finally:
    stream.codec_context.skip_frame = 'DEFAULT'
  if k < len(wanted):
    return None
  if skip_nonref and not exact:
    return seek_decode(container, stream, wanted, fps, skip_nonref=False)
  return out


def decoded_frames(container, stream, errors: list, skip: Callable | None = None):
  """Decoded frames in presentation order; stops at the first damaged packet (the error is
  appended to ``errors``) and still drains the frames the decoder holds. ``skip(packet)``: when
  it is true the packet is decoded with ``skip_frame='NONREF'`` (see :func:`seek_decode`)."""
  codec = stream.codec_context
  try:
    for packet in container.demux(stream):
      if packet.size == 0:
        continue  # the demuxer's end marker; flushed below
      if skip is not None:
        codec.skip_frame = 'NONREF' if skip(packet) else 'DEFAULT'
      try:
        yield from codec.decode(packet)
      except av.FFmpegError as e:
        errors.append(e)
        break
  except av.FFmpegError as e:  # demuxing (reading) failed
    errors.append(e)
  try:
    yield from codec.decode(None)
  except av.FFmpegError as e:
    errors.append(e)


def decode_all(container, stream, path) -> list:
  """Every frame that decodes (up to the first damaged packet); :class:`VideoDecodeError` if
  none does."""
  errors = []
  frames = list(decoded_frames(container, stream, errors))
  if not frames:
    why = f' ({type(errors[0]).__name__}: {errors[0]})' if errors else ''
    raise VideoDecodeError(path, 'no decodable frames' + why)
  return frames  # with a damaged tail: the frames before the damage


FRAME_EXTENSIONS = ('.jpg', '.jpeg', '.png')


def _frame_key(name: str):
  stem = os.path.splitext(name)[0]
  return (0, int(stem), name) if stem.isdigit() else (1, 0, name)


def frame_files(folder: str) -> list[str]:
  """The frame images of a frame folder in frame order (numeric file stems: ``00001.jpg``, ...;
  other names after them, sorted). Raises :class:`VideoDecodeError` if there are none."""
  try:
    names = [e.name for e in os.scandir(folder)
             if e.is_file() and os.path.splitext(e.name)[1].lower() in FRAME_EXTENSIONS]
  except OSError as e:
    raise VideoDecodeError(folder, f'cannot list frame folder ({type(e).__name__}: {e})') from None
  if not names:
    raise VideoDecodeError(folder, 'frame folder has no frame images')
  return [os.path.join(folder, n) for n in sorted(names, key=_frame_key)]


def _load_image(source, short_side: int | Sequence[int] | None,
                crop: CropFn | None = None) -> np.ndarray:
  """uint8 RGB (H, W, 3) of an image file or file object (PIL; bilinear resize to
  ``short_side``: a short side or an exact ``(H, W)``, :func:`frame_shape`; antialiased when
  shrinking). ``crop``: the box of the resized frame to keep (:class:`CropBox`), resized
  straight from the source pixels (``Image.resize(box=...)``: the same sample positions as
  resizing the whole frame and cropping, up to the filter taps at the box's edges), so only the
  box is resized. Raises PIL's / the OS's errors.

  PIL's resize is the fastest of the resizes measured for a store clip's jittered short side
  (``benchmarks/store_resize.py``: swscale, a YCbCr decode + swscale, numpy, ``reducing_gap``,
  ``draft``, the crop box; docs/performance.md)."""
  with Image.open(source) as im:
    if im.mode != 'RGB':  # (convert would copy an RGB image)
      im = im.convert('RGB')
    nh, nw = (im.height, im.width) if short_side is None else frame_shape(im.height, im.width,
                                                                           short_side)
    if crop is None:
      if (nh, nw) != (im.height, im.width):
        im = im.resize((nw, nh), Image.BILINEAR)
      return np.asarray(im, dtype=np.uint8)
    b = crop(nh, nw)
    if (nh, nw) == (im.height, im.width):
      return apply_box(np.asarray(im, dtype=np.uint8)[None], b)[0]
    sy, sx = im.height / nh, im.width / nw
    return np.asarray(im.resize((b.size, b.size), Image.BILINEAR,
                                box=(b.x * sx, b.y * sy, (b.x + b.width) * sx,
                                     (b.y + b.height) * sy)), dtype=np.uint8)


def read_frames(folder: str, files: Sequence[str], indices,
                short_side: int | Sequence[int] | None,
                crop: CropFn | None = None) -> np.ndarray:
  """Frames ``indices`` of a frame folder (PIL, RGB; bilinear resize to ``short_side``: a short
  side or an exact ``(H, W)``, :func:`frame_shape`; only ``crop``'s box when given, see
  :func:`_load_image`)."""
  crop = None if crop is None else _once(crop)
  cache: dict[int, np.ndarray] = {}
  out = []
  for i in (int(i) for i in indices):
    if i not in cache:
      try:
        cache[i] = _load_image(files[i], short_side, crop)
      except (OSError, ValueError, SyntaxError) as e:
        raise VideoDecodeError(folder, f'cannot read frame {files[i]} '
                                       f'({type(e).__name__}: {e})') from None
    out.append(cache[i])
  if any(a.shape != out[0].shape for a in out):
    raise VideoDecodeError(folder, 'frames of different sizes')
  return np.stack(out)


def read_store(path: str, indices: Callable[[int], np.ndarray],
               short_side: int | Sequence[int] | None,
               crop: CropFn | None = None) -> np.ndarray:
  """Frames ``indices(n)`` of a frame-store shard of ``n`` frames (:mod:`bat_jax.data.
  frame_store`), uint8 RGB: only the JPEG records of the distinct wanted frames are read and
  decoded (PIL; bilinear resize to ``short_side``, only ``crop``'s box when given, as
  :func:`read_frames`). A missing, damaged or empty shard, or a record that is no image, raises
  :class:`VideoDecodeError`."""
  path = os.fspath(path)
  crop = None if crop is None else _once(crop)
  if not os.path.exists(path):
    raise VideoDecodeError(path, 'file does not exist')
  try:
    with frame_store.Shard(path) as shard:
      if shard.num_frames < 1:
        raise VideoDecodeError(path, 'frame store shard has no frames')
      wanted = [int(i) for i in indices(shard.num_frames)]
      distinct = sorted(set(wanted))
      blobs = dict(zip(distinct, shard.read(distinct)))
  except (RuntimeError, OSError, ValueError) as e:
    raise VideoDecodeError(path, f'cannot read frame store shard ({type(e).__name__}: {e})'
                           ) from None
  frames = {}
  for i in distinct:
    try:
      frames[i] = _load_image(io.BytesIO(blobs[i]), short_side, crop)
    except (OSError, ValueError, SyntaxError) as e:
      raise VideoDecodeError(path, f'cannot decode frame record {i} ({type(e).__name__}: {e})'
                             ) from None
  if any(a.shape != frames[distinct[0]].shape for a in frames.values()):
    raise VideoDecodeError(path, 'frames of different sizes')
  return np.stack([frames[i] for i in wanted])


def _decode_indices(path: str, indices: Callable[[int], np.ndarray], min_frames: int,
                    short_side: int | Sequence[int] | None,
                    thread_type: str | None, crop: CropFn | None) -> np.ndarray:
  """The frames ``indices(n)`` of a video of ``n`` frames (or of a frame folder or store), uint8
  RGB, ``crop``'s box of them when given (stores and folders: resized box only; videos: the
  whole frame resized by swscale, then :func:`apply_box`).

  Seeks when the header gives ``n >= min_frames`` and a frame rate; otherwise, or when seeking
  fails, decodes the whole video and calls ``indices`` with the number of frames that decoded.
  """
  if os.path.isdir(path):  # a folder of frame images (Something-Something V1)
    files = frame_files(path)
    return read_frames(path, files, indices(len(files)), short_side, crop)
  if frame_store.is_shard(path):  # a frame store's shard (prepare_videos --format=frames)
    return read_store(path, indices, short_side, crop)
  container = open_video(path)
  try:
    stream = container.streams.video[0]
    if thread_type:
      stream.thread_type = thread_type
    h, w = stream.codec_context.height, stream.codec_context.width
    out_hw = None
    if short_side is not None and h > 0 and w > 0:
      out_hw = frame_shape(h, w, short_side)
    fps, n_est = stream_info(container, stream)
    picked = None
    if n_est >= min_frames and fps > 0:
      picked = seek_decode(container, stream, indices(n_est), fps)
    if picked is None:  # full sequential decode from the beginning
      container.close()
      container = open_video(path)
      stream = container.streams.video[0]
      if thread_type:
        stream.thread_type = thread_type
      frames = decode_all(container, stream, path)
      picked = [frames[i] for i in indices(len(frames))]
    if out_hw is None and short_side is not None:
      out_hw = frame_shape(picked[0].height, picked[0].width, short_side)
    try:
      arrays = [to_rgb(f, out_hw) for f in picked]
    except (av.FFmpegError, ValueError) as e:
      raise VideoDecodeError(path, f'frame conversion failed ({e})') from None
    frames = np.stack(arrays)
    return frames if crop is None else apply_box(frames, crop(*frames.shape[1:3]))
  except VideoDecodeError:
    raise
  except (av.FFmpegError, OSError) as e:
    raise VideoDecodeError(path, f'{type(e).__name__}: {e}') from None
  finally:
    container.close()


def decode_clip(path, num_frames: int, stride: int, start=None,
                rng: np.random.Generator | None = None, *,
                short_side: int | Sequence[int] | None = None,
                thread_type: str | None = None, crop: CropFn | None = None) -> np.ndarray:
  """Decodes a clip of ``num_frames`` frames, ``stride`` frames apart, as uint8 (T, H, W, 3) RGB.

  Args:
    path: video file, or a folder of frame images (see the module docstring).
    num_frames, stride: clip length and frame stride (window ``(num_frames - 1) * stride + 1``).
    start: where the window starts among the valid starts ``[0, n - window]``:
      ``None`` = uniformly at random from ``rng`` (training); ``'center'`` = the middle;
      a float or ``fractions.Fraction`` in [0, 1] = that fraction of the valid range, rounded
      half up (``floor(f * (n - window) + 0.5)``; multi-view clip ``k`` of ``K`` passes the exact
      ``Fraction(k, K - 1)``, see :func:`bat_jax.data.views.clip_start`);
      an int = that frame index (clamped to the valid range).
    rng: numpy Generator for ``start=None`` (a fresh unseeded one if omitted).
    short_side: if given, frames are resized (bilinear, by FFmpeg's swscale while converting
      to RGB, so cheaply) to this short side, keeping the aspect ratio; an ``(H, W)`` pair
      resizes to exactly that size (:func:`frame_shape`).
    thread_type: PyAV codec threading ('AUTO', 'SLICE', 'FRAME'; None = PyAV's default).
      'AUTO' (frame threading) gave no speed-up for 8-frame clips of 340x256 H.264 on 2 cores
      and starts one thread per core in every grain worker, so it is off by default.
    crop: given the resized frames' (H, W), the :class:`CropBox` to keep (called once, after the
      start is drawn); the clip is then (T, size, size, 3). Frame stores and folders resize only
      the box (see the module docstring).

  A video with fewer than ``window`` frames loops: the clip starts at frame 0 and takes
  indices ``(i * stride) mod n`` (e.g. 3 frames, 8 x stride 1 -> 0 1 2 0 1 2 0 1).

  The frame count comes from the container header; the decoder seeks to the keyframe before
  the window and decodes forward. If the header is missing or wrong (or timestamps are
  unusable), the whole video is decoded and the window is picked among the frames that
  actually decode, so a video with a damaged tail still yields a clip.

  Raises:
    VideoDecodeError: missing, zero-byte, truncated or non-video file, or no decodable frames.
  """
  if num_frames < 1 or stride < 1:
    raise ValueError(f'num_frames and stride must be >= 1, got {num_frames}, {stride}')
  path = os.fspath(path)
  spec = _start_fraction(start, rng)
  is_random = start is None
  window = (num_frames - 1) * stride + 1

  def indices(n: int) -> np.ndarray:
    return clip_indices(n, num_frames, stride, pick_start(spec, n - window, is_random))

  return _decode_indices(path, indices, window, short_side, thread_type, crop)


def segment_offsets(num_frames: int, rng: np.random.Generator | None) -> np.ndarray:
  """The random part of a training segment sample: ``num_frames`` uniforms in [0, 1).

  Drawn once per clip, before the video's length is known, so a clip whose header frame count
  turns out wrong (full-decode fallback) uses the same draws on the true length.
  """
  rng = np.random.default_rng() if rng is None else rng
  return rng.random(int(num_frames))


def segment_indices(num_video_frames: int, num_frames: int, offsets=None, *,
                    clip_index: int = 0, num_clips: int = 1) -> np.ndarray:
  """0-based frame indices of TSN segment sampling (sorted, one per segment).

  Training (``offsets``: uniforms in [0, 1), :func:`segment_offsets`), with ``n`` video frames and
  ``T = num_frames`` segments of ``d = n // T`` frames: frame ``i * d + floor(u_i * d)`` of
  segment ``i`` (TSN's ``i * d + randint(d)``; the last ``n - T * d`` frames are never taken). A
  video shorter than ``T`` takes ``floor((i + u_i) * n / T)`` (frames repeat; TSN would take
  frame 0 ``T`` times).

  Evaluation (``offsets=None``): the segment centres ``floor((2 i + 1) n / (2 T))``, TSN's
  ``int(tick / 2 + tick * i)`` with ``tick = n / T`` in exact integer arithmetic, for every
  ``n >= 1`` (TSN takes frame 0 ``T`` times when ``n <= T``). ``num_clips > 1`` (multi-view)
  takes clip ``k`` at the fraction ``(k + 1/2) / K`` of each segment:
  ``floor((2 K i + 2 k + 1) n / (2 K T))``, which is the centre for ``K = 1``.
  """
  n, t = int(num_video_frames), int(num_frames)
  if n < 1 or t < 1:
    raise ValueError(f'need >= 1 video frame and >= 1 segment, got {n}, {t}')
  i = np.arange(t, dtype=np.int64)
  if offsets is None:
    k, kk = int(clip_index), int(num_clips)
    if not 0 <= k < kk:
      raise ValueError(f'clip_index {k} not in [0, {kk})')
    return (2 * kk * i + 2 * k + 1) * n // (2 * kk * t)
  u = np.asarray(offsets, np.float64)
  if u.shape != (t,) or np.any(u < 0) or np.any(u >= 1):
    raise ValueError(f'offsets must be {t} numbers in [0, 1), got {offsets!r}')
  d = n // t
  if d > 0:
    return i * d + np.minimum(np.floor(u * d).astype(np.int64), d - 1)
  return np.minimum(np.floor((i + u) * n / t).astype(np.int64), n - 1)


def decode_segments(path, num_frames: int, rng: np.random.Generator | None = None, *,
                    train: bool, clip_index: int = 0, num_clips: int = 1,
                    short_side: int | Sequence[int] | None = None,
                    thread_type: str | None = None, crop: CropFn | None = None) -> np.ndarray:
  """Decodes a TSN segment-sampled clip (:func:`segment_indices`) as uint8 (T, H, W, 3) RGB.

  ``train``: random offsets within the segments from ``rng``; otherwise the segment centres
  (clip ``clip_index`` of ``num_clips``). Seeks as :func:`decode_clip` when the header holds a
  frame count, else (or if the header was wrong) decodes everything and samples the frames that
  decode. ``crop`` as :func:`decode_clip`. Raises :class:`VideoDecodeError` as
  :func:`decode_clip`.
  """
  if num_frames < 1:
    raise ValueError(f'num_frames must be >= 1, got {num_frames}')
  path = os.fspath(path)
  offsets = segment_offsets(num_frames, rng) if train else None

  def indices(n):
    return segment_indices(n, num_frames, offsets, clip_index=clip_index, num_clips=num_clips)

  return _decode_indices(path, indices, 1, short_side, thread_type, crop)


# ----------------------------------------------------------------------------------------
# Transforms on uint8 (T, H, W, C) clips.
# ----------------------------------------------------------------------------------------
