"""``bat_jax.tools.visualize``: the maps are Eq. 8 and supplement Eq. 1 of the sown P, Q; the PNGs
decode and have the documented sizes.

One command-line run on a width-4 C2D + 3D-BAT 'run' (a checkpoint written with
``write_variables_checkpoint``, a ``metrics.jsonl``) and a real mp4; then the saved arrays are
checked against a hand computation.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from bat_jax import build_model
from bat_jax.data.decode import write_video
from bat_jax.tools import visualize
from bat_jax.training.checkpoint import write_variables_checkpoint
from tests import helpers_train as h

CONFIG = '''
import ml_collections
from tests import helpers_train


def get_config():
  config = helpers_train.get_config('video')  # width-4 C2D ResNet-50, 32x32 crops
  config.model.input_size = (8, 32, 32)
  config.data.num_frames = 8
  config.model.block = ml_collections.ConfigDict(dict(
      type='bat', groups=2, size=2, matrix='block', temporal_groups=2, temporal_size=2,
      normalization='softmax', reduction=2, dropout_rate=0.0))
  config.model.insertions = ml_collections.ConfigDict({'res3': (1,), 'res4': (1,)})
  return config
'''
POSITIONS = [(1, 2), (3, 0)]


def _load_config(path):
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location('vis_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  d = tmp_path_factory.mktemp('vis')
  config_path = str(d / 'config.py')
  with open(config_path, 'w') as f:
    f.write(CONFIG)
  cfg = _load_config(config_path)
  model = build_model(cfg.model)
  shapes = jax.eval_shape(lambda k: model.init({'params': k, 'dropout': k},
                                               jnp.zeros((1, 8, 32, 32, 3)), train=False),
                          jax.random.key(0))
  rng = np.random.default_rng(0)

  def draw(path, leaf):
    name, shape = jax.tree_util.keystr(path), leaf.shape
    if name.endswith("['var']") or name.endswith("['scale']"):
      value = rng.uniform(0.5, 1.5, shape)
    elif name.endswith("['kernel']"):
      value = rng.normal(0.0, np.sqrt(2.0 / (np.prod(shape[:-2]) * shape[-1])), shape)
    else:
      value = rng.normal(0.0, 0.1, shape)
    return jnp.asarray(value, jnp.float32)

  workdir = str(d / 'run')
  write_variables_checkpoint(workdir, jax.tree_util.tree_map_with_path(draw, dict(shapes)),
                             step=30, config=cfg)
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
    for step in range(10, 31, 10):
      f.write(json.dumps({'step': step, 'train_loss': 2.0 - step / 30, 'train_top1': 0.2,
                          'learning_rate': 0.01 * step / 30}) + '\n')
      if step % 20 == 0:
        f.write(json.dumps({'step': step, 'eval_top1': step / 60, 'eval_loss': 1.0}) + '\n')
  video = str(d / 'clip.mp4')
  yy, xx = np.mgrid[0:40, 0:48]
  frames = np.stack([np.stack([(xx * 5 + 9 * t) % 256, (yy * 6) % 256,
                               np.full_like(xx, 40 * (t % 3))], -1) for t in range(12)])
  write_video(video, frames.astype(np.uint8), fps=8)
  out = str(d / 'out')
  proc = subprocess.run(
      [sys.executable, '-m', 'bat_jax.tools.visualize', f'--config={config_path}',
       f'--workdir={workdir}', f'--video={video}', f'--out={out}', '--block=res3_bat1',
       '--positions=' + ';'.join(f'{i},{j}' for i, j in POSITIONS)],
      cwd=h.REPO, env=h.env_for(1), capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return out, proc.stdout


def _size(path):
  with Image.open(path) as im:
    im.load()  # decodes the whole file
    return im.size


def test_pngs_are_written_with_the_documented_sizes(run):
  out, stdout = run
  assert 'res3_bat1 at step 30' in stdout
  px = visualize.PANEL_PIXELS
  maps = np.load(os.path.join(out, 'maps.npz'))
  t, k = maps['W'].shape[:2]
  tk = maps['T'].shape[0]
  assert (t, k, tk) == (4, 2, 2)  # 8 frames -> 4 after pool2; groups 2; temporal groups 2
  assert _size(os.path.join(out, 'res3_bat1_attention.png')) == ((k + 1) * px, t * px)
  assert _size(os.path.join(out, 'res3_bat1_contribution.png')) == ((k + 1) * px,
                                                                    len(POSITIONS) * px)
  assert _size(os.path.join(out, 'res3_bat1_temporal.png')) == (tk * px, px)
  w, hgt = visualize.CURVES_SIZE_INCHES
  assert _size(os.path.join(out, 'training_curves.png')) == (int(w * visualize.DPI),
                                                             int(hgt * visualize.DPI))
  with Image.open(os.path.join(out, 'res3_bat1_attention.png')) as im:
    pixels = np.asarray(im.convert('RGB'))
  assert pixels.std() > 10  # not a blank canvas
  assert maps['frames'].shape == (8, 32, 32, 3) and maps['frames'].dtype == np.uint8


def test_maps_are_eq8_and_supplement_eq1_of_the_sown_p_q(run):
  out, _ = run
  maps = np.load(os.path.join(out, 'maps.npz'))
  p, q, w, c = (maps[k].astype(np.float64) for k in ('P', 'Q', 'W', 'C'))
  t, k, hh, _ = p.shape
  ww = q.shape[-1]
  assert (hh, ww) == (4, 4)  # res3 at 32x32 input
  # Sown P, Q are the block's normalised matrices at full resolution: P rows and Q columns
  # sum to 1 (kron(P_s, I_2) keeps that), and they are not uniform.
  np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(q.sum(-2), 1.0, rtol=1e-5)
  np.testing.assert_allclose(maps['T'].sum(-1), 1.0, rtol=1e-5)
  assert p.std() > 0.01
  ones = np.ones((hh, ww))
  for f in range(t):
    for g in range(k):
      pf, qf = p[f, g], q[f, g]
      np.testing.assert_allclose(w[f, g], pf.T @ ones @ qf.T, rtol=1e-5, atol=1e-7)  # Eq. 8
      for r, (i, j) in enumerate(POSITIONS):
        hand = np.array([[pf[i, m] * qf[n, j] for n in range(ww)] for m in range(hh)])
        np.testing.assert_allclose(c[r, f, g], hand, rtol=1e-5, atol=1e-8)  # supp. Eq. 1
  np.testing.assert_array_equal(maps['positions'], np.asarray(POSITIONS))


def test_helpers():
  assert visualize.parse_positions('1,2;0,3') == [(1, 2), (0, 3)]
  assert visualize.parse_positions('') is None
  p = np.full((1, 1, 4, 4), 0.25)
  with pytest.raises(ValueError, match='outside'):
    visualize.contribution_maps(p, p, [(4, 0)])
  assert visualize.bat_blocks({'params': {'res4_bat5': {'predictor': {}},
                                          'res3_bat1': {'predictor': {}},
                                          'res4_bat1': {'predictor': {}},
                                          'res3_block0': {}}}) == [
                                              'res3_bat1', 'res4_bat1', 'res4_bat5']


def test_image_input_for_a_video_model(tmp_path):
  cfg = _load_config_text(tmp_path)
  path = str(tmp_path / 'img.jpg')
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 40, 3), np.uint8)).save(path)
  x, frames = visualize.load_input(cfg, image=path)
  assert x.shape == (8, 32, 32, 3) and x.dtype == np.float32
  assert frames.shape == (8, 32, 32, 3) and (frames == frames[:1]).all()
  with pytest.raises(ValueError, match='exactly one'):
    visualize.load_input(cfg)


def _load_config_text(tmp_path):
  path = tmp_path / 'config.py'
  path.write_text(CONFIG)
  return _load_config(str(path))
