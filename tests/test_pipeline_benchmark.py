"""benchmarks/pipeline.py --compare pieces: the PySlowFast-style peer reader and the breakdown."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import peer_pyslowfast  # noqa: E402  pylint: disable=g-import-not-at-top
from benchmarks import pipeline as bench  # noqa: E402  pylint: disable=g-import-not-at-top
from benchmarks import store_resize  # noqa: E402  pylint: disable=g-import-not-at-top


def _bilinear_reference(x: np.ndarray, size: int) -> np.ndarray:
  """F.interpolate(bilinear, align_corners=False) along axis 0, float64, from its definition:
  output i samples the input at s = (i + 1/2) n / size - 1/2 (clamped at 0), linear between
  floor(s) and floor(s) + 1 (clamped to the last row)."""
  n = x.shape[0]
  out = np.zeros((size,) + x.shape[1:])
  for i in range(size):
    s = max((i + 0.5) * n / size - 0.5, 0.0)
    lo = min(int(np.floor(s)), n - 1)
    hi = min(lo + 1, n - 1)
    out[i] = (1 - (s - lo)) * x[lo] + (s - lo) * x[hi]
  return out


@pytest.mark.parametrize('n, size', [(7, 11), (12, 5), (9, 9)])
def test_peer_interpolation_matches_the_definition(n, size):
  x = np.random.default_rng(n).normal(size=(n, 3)).astype(np.float32)
  got = peer_pyslowfast._bilinear_axis(x, size, 0)
  np.testing.assert_allclose(got, _bilinear_reference(x.astype(np.float64), size), atol=1e-5)


@pytest.fixture(scope='module')
def clip_video(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('bench') / 'v.mp4')
  bench.make_video(path, 32, 48, 30, 3, 30)
  return path


def test_peer_reader_and_breakdown_run_on_a_video(clip_video):
  clip = peer_pyslowfast.train_clip(clip_video, np.random.default_rng(0), crop_size=16,
                                    short_side_range=(20, 24))
  assert clip.shape == (8, 16, 16, 3) and clip.dtype == np.float32
  # normalised with PySlowFast's mean / std: values of uint8 frames stay in their range
  assert clip.min() >= (0 - 0.45) / 0.225 - 1e-5 and clip.max() <= (1 - 0.45) / 0.225 + 1e-5
  t = bench.clip_breakdown(clip_video, np.random.default_rng(0))
  assert t['frames_window'] >= 1 and all(t[k] >= 0 for k in t)
  assert bench.decode_only_fps(clip_video) > 0


def test_frame_store_breakdown_runs_on_a_store(clip_video, tmp_path):
  store = str(tmp_path / 'v.array_record')
  bench.prepare_videos.extract_frames(clip_video, store, 32)
  t = bench.store_breakdown(store, np.random.default_rng(0))
  assert set(t) == {'open_read', 'jpeg_decode', 'resize', 'crop_flip'}
  assert all(v >= 0 for v in t.values())
  clip = bench._store_decode_only(store, np.random.default_rng(0))  # pylint: disable=protected-access
  assert clip.shape == (8, 32, 48, 3)


def test_store_resize_alternatives_run_and_agree():
  """benchmarks/store_resize.py on a tiny store: every alternative runs; at scale factors within
  [3/4, 4/3] PIL's reducing_gap and draft change nothing, and the crop-box resize is within 2
  levels of cropping the full resize."""
  row = store_resize.run(32, 48, 32, rounds=2, jitter=(24, 40), crop_size=16)
  alts = row['alternatives']
  assert set(alts) == set(store_resize.ALTERNATIVES)
  assert all(v['cpu_ms'] > 0 for v in alts.values())
  for k in ('pil', 'pil_reducing_gap', 'pil_draft'):
    assert alts[k]['max_abs_vs_pil'] == 0
  assert alts['pil_crop_box']['max_abs_vs_pil'] <= 2
  # every resize is as close to the video path's frames as the reader's (JPEG error, noisy video)
  for k, v in alts.items():
    if k != 'decode_only':
      assert v['mean_abs_vs_video'] < 1.5 * alts['pil']['mean_abs_vs_video'], k
