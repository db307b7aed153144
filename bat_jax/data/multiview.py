"""One decode per video for multi-view evaluation (numpy + PyAV only: runs in grain workers).

:func:`bat_jax.data.video.eval_transform` decodes one view: a 30-view evaluation (10 clips x 3
crops) opens and decodes the same video 30 times, a 250-view one 250 times. Here a video's
``K`` clips are decoded together (:func:`decode_eval_clips`) and every view is cut from them
(:func:`cut_view`), with the same frames, positions and numbers as the per-view path.

The decode is one forward pass over the union of the clips' frames. Between two needed frames it
either keeps decoding or seeks, whichever decodes fewer frames: it seeks to the keyframe before
the next needed frame ``w`` only when that keyframe lies after the frame just decoded (so the
frames in between would be decoded for nothing); the keyframe positions come from one
demux-only pass over the packets (no decoding). When the clips cover most of the video this is
a single sequential pass; for 10 clips of 57 frames in a 10 s, 300-frame video it decodes ~300
frames instead of 30 x ~(57 + frames since the keyframe).

Frame identity follows :func:`bat_jax.data.decode.decode_clip`'s seek path: a decoded frame has
index ``round((pts - start_time) * time_base * fps)`` and a wanted index gets the first frame
whose index is not smaller. If timestamps are missing, a seek overshoots or the stream ends
before the last wanted frame (a wrong header), the whole video is decoded and every clip is taken
from the frames that decode (with their true count), as the per-view path does for that view.

Frame folders and frame-store shards (:mod:`bat_jax.data.frame_store`) need no decode pass:
the union of the clips' frames is read once, each distinct frame decoded once.
"""

from __future__ import annotations

import fractions
import os
import av
import numpy as np

from bat_jax.data import decode as D
from bat_jax.data import frame_store
from bat_jax.data import video as V

__all__ = ['eval_clip_indices', 'decode_eval_clips', 'cut_view']


def eval_clip_indices(n: int, *, num_frames: int, stride: int, num_clips: int,
                      sampling: str = 'dense') -> list[np.ndarray]:
  """Frame indices of the ``num_clips`` evaluation clips of an ``n``-frame video, as
  :func:`bat_jax.data.video.eval_transform` picks them (dense: clip ``k`` starts at the exact
  fraction ``k / (K - 1)`` of the valid range, the centre for ``K = 1``; segments: TSN centres)."""
  if sampling == 'segments':
    return [D.segment_indices(n, num_frames, None, clip_index=k, num_clips=num_clips)
            for k in range(num_clips)]
  if sampling != 'dense':
    raise ValueError(f'sampling={sampling!r}; allowed: {list(V.SAMPLINGS)}')
  window = (num_frames - 1) * stride + 1
  out = []
  for k in range(num_clips):
    spec = (fractions.Fraction(1, 2) if num_clips == 1 else fractions.Fraction(k, num_clips - 1))
    start = D.pick_start(spec, n - window, False)
    out.append(D.clip_indices(n, num_frames, stride, start))
  return out


def _keyframes(path: str, fps: float) -> np.ndarray | None:
  """Frame indices of the keyframes, from the packets (demux only); None without timestamps."""
  container = D.open_video(path)
  try:
    stream = container.streams.video[0]
    start_time, tb = stream.start_time or 0, stream.time_base
    out = []
    for packet in container.demux(stream):
      if packet.size and packet.is_keyframe:
        if packet.pts is None:
          return None
        out.append(int(round(float((packet.pts - start_time) * tb) * fps)))
    return np.asarray(sorted(out), np.int64)
  finally:
    container.close()


def _union_decode(container, stream, wanted: np.ndarray, fps: float,
                  keyframes: np.ndarray | None, skip_nonref: bool = True) -> dict | None:
  """{wanted index: frame} by one forward pass with seeks (module docstring); None on failure.

  Unwanted non-reference frames are not decoded, as in
  :func:`bat_jax.data.decode.seek_decode` (again without skipping if a wanted index had no
  frame of its own).
  """
  start_time, tb = stream.start_time or 0, stream.time_base
  wanted_set = {int(w) for w in wanted}

  def skip(packet) -> bool:
    return packet.pts is not None and D.frame_index(packet, start_time, tb, fps) not in wanted_set

  out: dict = {}
  i = 0
  exact = True
  while i < len(wanted):
    first = int(wanted[i])
    if first > 0 or not skip_nonref:  # the same seek as bat_jax.data.decode.seek_decode
      target = start_time + int(first / fps / float(tb)) - 1
      container.seek(max(target, start_time), stream=stream, backward=True, any_frame=False)
    checked = False
    seek_again = False
    matched_before = i  # no new seek before this run matched a frame: always progresses
    for frame in D.decoded_frames(container, stream, [], skip if skip_nonref else None):
      if frame.pts is None:
        return None
      idx = D.frame_index(frame, start_time, tb, fps)
      if not checked:
        checked = True
        if idx > first:
          return None  # seek overshoot
      while i < len(wanted) and idx >= wanted[i]:
        exact &= idx == wanted[i]
        out[int(wanted[i])] = frame
        i += 1
      if i == len(wanted):
        break
      if keyframes is not None and i > matched_before:
        # where the seek for wanted[i] lands: the last keyframe before it (the seek targets
        # one tick before the wanted frame)
        kf = keyframes[max(np.searchsorted(keyframes, wanted[i], side='left') - 1, 0)]
        if kf > idx + 1:  # frames idx + 1 .. kf - 1 are not needed: seek instead
          seek_again = True
          break
    if i == len(wanted):
      break
    if not seek_again:
      return None  # the stream ended before the last wanted frame
  stream.codec_context.skip_frame = 'DEFAULT'
  if skip_nonref and not exact:
    return _union_decode(container, stream, wanted, fps, keyframes, skip_nonref=False)
  return out


def decode_eval_clips(path, *, num_frames: int, stride: int, num_clips: int,
                      short_side: int | Sequence[int] | None, sampling: str = 'dense',
                      thread_type: str | None = None) -> np.ndarray:
  """The ``num_clips`` evaluation clips of a video from one decode, uint8 (K, T, H, W, 3) RGB.

  Clip ``k`` equals ``decode_clip`` / ``decode_segments`` as
  :func:`bat_jax.data.video.eval_transform` calls them for ``clip_index=k`` (frames resized to
  ``short_side`` by swscale while converting to RGB; an ``(H, W)`` pair resizes to exactly that,
  :func:`bat_jax.data.decode.frame_shape`; each distinct frame converted once).
  ``path`` may be a frame folder or a frame-store shard. Raises
  :class:`bat_jax.data.decode.VideoDecodeError` as :func:`bat_jax.data.decode.decode_clip`.
  """
  if num_frames < 1 or stride < 1 or num_clips < 1:
    raise ValueError(f'num_frames, stride and num_clips must be >= 1, got {num_frames}, '
                     f'{stride}, {num_clips}')
  path = os.fspath(path)

  def indices(n):
    return eval_clip_indices(n, num_frames=num_frames, stride=stride, num_clips=num_clips,
                             sampling=sampling)

  if os.path.isdir(path):  # frame folder: read the union of the frames once
    files = D.frame_files(path)
    clips = indices(len(files))
    union = np.unique(np.concatenate(clips))
    frames = D.read_frames(path, files, union, short_side)
    return np.stack([frames[np.searchsorted(union, c)] for c in clips])
  if frame_store.is_shard(path):  # frame store: the union's records, each decoded once
    frames = D.read_store(path, lambda n: np.concatenate(indices(n)), short_side)
    return frames.reshape(num_clips, num_frames, *frames.shape[1:])
  min_frames = 1 if sampling == 'segments' else (num_frames - 1) * stride + 1
  container = D.open_video(path)
  try:
    stream = container.streams.video[0]
    if thread_type:
      stream.thread_type = thread_type
    fps, n_est = D.stream_info(container, stream)
    picked = None
    if n_est >= min_frames and fps > 0:
      clips = indices(n_est)
      union = np.unique(np.concatenate(clips))
      keyframes = _keyframes(path, fps)
      by_index = _union_decode(container, stream, union, fps, keyframes)
      if by_index is not None:
        picked = [[by_index[int(i)] for i in c] for c in clips]
    if picked is None:  # full sequential decode from the beginning
      container.close()
      container = D.open_video(path)
      stream = container.streams.video[0]
      if thread_type:
        stream.thread_type = thread_type
      frames = D.decode_all(container, stream, path)
      picked = [[frames[i] for i in c] for c in indices(len(frames))]
    out_hw = None
    if short_side is not None:
      out_hw = D.frame_shape(picked[0][0].height, picked[0][0].width, short_side)
    rgb: dict[int, np.ndarray] = {}
    try:
      for clip in picked:
        for f in clip:
          if id(f) not in rgb:
            rgb[id(f)] = D.to_rgb(f, out_hw)
    except (av.FFmpegError, ValueError) as e:
      raise D.VideoDecodeError(path, f'frame conversion failed ({e})') from None
    return np.stack([np.stack([rgb[id(f)] for f in clip]) for clip in picked])
  except D.VideoDecodeError:
    raise
  except (av.FFmpegError, OSError) as e:
    raise D.VideoDecodeError(path, f'{type(e).__name__}: {e}') from None
  finally:
    container.close()


def cut_view(clips: np.ndarray, clip_index: int, crop_index: int, *, num_crops: int,
             crop_size: int) -> np.ndarray:
  """View (``clip_index``, ``crop_index``) of :func:`decode_eval_clips`'s output, uint8
  (T, crop, crop, 3): what :func:`bat_jax.data.video.eval_transform` returns for it."""
  return V.spatial_crop(clips[clip_index], crop_size, crop_index, num_crops)
