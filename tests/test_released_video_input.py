"""End to end, the released BAT video model's input: a released-layout C2D + 3D-BAT state dict
(random weights and BN statistics), imported with ``bat_jax.tools.import_torch``, fed one decoded
mp4 clip through this code base's evaluation pipeline with the Kinetics recipes' ``data.mean`` /
``data.std``, gives the logits of a float64 NumPy transcription of the released forward
(``models/resnet.py``: conv1 1x7x7 stride (1, 2, 2), max pool 1x3x3 stride (1, 2, 2), pool2
``MaxPool3d((2, 1, 1))``, bottlenecks strided on the 3x3, BAT blocks ``layer{L}.nl{i}``, average
pool, 1x1x1 conv classifier) on the same clip decoded as RGB (PyAV ``rgb24``, as lintel's
RGB24) minus (103.939, 116.779, 123.68) on R, G, B with std 1 (``main.py``'s
``GroupNormalize``). No channel flip anywhere. Width 8, 8 frames of 64x64, the toy demo's block
settings (k=4, s=4, tk=2, ts=4 after res3 block 1 and res4 block 1).

One architectural difference is this code base's documented choice (docs/models.md): its max pool
pads 1 (res2 56x56 at 224, the paper's table) where the released code pads 0 (55x55); the
reference pools with padding 1 (``-inf``, as ``nn.MaxPool3d``) so that the comparison is about
the input."""

import av
import numpy as np
import orbax.checkpoint as ocp
from numpy.lib.stride_tricks import sliding_window_view

from bat_jax import build_model
from bat_jax.data import normalization, pipeline
from bat_jax.data import decode as D
from bat_jax.tools import import_torch as it
from bat_jax.training.checkpoint import resolve_state_dir
from configs import base_kinetics, demo_toy_c2d_3dbat
from tests.test_import_torch import released_bat_forward, released_state_dict

RELEASED_MEAN = np.asarray([103.939, 116.779, 123.68])  # main.py input_mean, applied to R, G, B
BAT = dict(k=4, s=4, tk=2, ts=4)
NL = {2: (1,), 3: (1,)}


def _conv(x, w, stride=(1, 1, 1), pad=(0, 0, 0)):
  """``nn.Conv3d`` without bias on ``x (n, c, t, h, w)``, float64."""
  x = np.pad(x, ((0, 0), (0, 0), *((p, p) for p in pad)))
  win = sliding_window_view(x, w.shape[2:], axis=(2, 3, 4))
  win = win[:, :, ::stride[0], ::stride[1], ::stride[2]]
  return np.einsum('ncthwabd,ocabd->nothw', win, w, optimize=True)


def _maxpool(x, kernel, stride, pad=(0, 0, 0)):
  x = np.pad(x, ((0, 0), (0, 0), *((p, p) for p in pad)), constant_values=-np.inf)
  win = sliding_window_view(x, kernel, axis=(2, 3, 4))
  return win[:, :, ::stride[0], ::stride[1], ::stride[2]].max(axis=(5, 6, 7))


def released_c2d_forward(sd, clip):
  """The released ``c2d_resnet50`` in eval mode; ``clip (n, 3, t, h, w)`` already normalised."""
  g = lambda name: np.asarray(sd[name], np.float64)  # noqa: E731

  def bn(x, name):
    sh = (1, -1, 1, 1, 1)
    return ((x - g(f'{name}.running_mean').reshape(sh))
            / np.sqrt(g(f'{name}.running_var').reshape(sh) + 1e-5)
            * g(f'{name}.weight').reshape(sh) + g(f'{name}.bias').reshape(sh))

  relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
  x = relu(bn(_conv(clip, g('conv1.weight'), (1, 2, 2), (0, 3, 3)), 'bn1'))
  x = _maxpool(x, (1, 3, 3), (1, 2, 2), (0, 1, 1))  # released: padding 0 (module docstring)
  for layer, blocks in enumerate((3, 4, 6, 3), start=1):
    for i in range(blocks):
      p = f'layer{layer}.{i}'
      stride = 2 if (i == 0 and layer > 1) else 1
      y = relu(bn(_conv(x, g(f'{p}.conv1.weight')), f'{p}.bn1'))
      y = relu(bn(_conv(y, g(f'{p}.conv2.weight'), (1, stride, stride), (0, 1, 1)), f'{p}.bn2'))
      y = bn(_conv(y, g(f'{p}.conv3.weight')), f'{p}.bn3')
      if i == 0:
        x = bn(_conv(x, g(f'{p}.downsample.0.weight'), (1, stride, stride)), f'{p}.downsample.1')
      x = relu(x + y)
      if i in NL.get(layer, ()):
        x = released_bat_forward(sd, f'layer{layer}.nl{i}', x, video=True, **BAT)
    if layer == 1:
      x = _maxpool(x, (2, 1, 1), (2, 1, 1))  # pool2
  pooled = x.mean(axis=(2, 3, 4))
  return pooled @ g('fc.weight')[:, :, 0, 0, 0].T + g('fc.bias')


def test_released_c2d_3dbat_on_a_decoded_clip_gives_the_released_logits(tmp_path):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  sd = released_state_dict(rng, width=8, num_classes=8, nl=NL, video=True, **BAT)
  save_file(sd, str(tmp_path / 'c2d_3dbat.safetensors'))
  cfg = demo_toy_c2d_3dbat.get_config()
  recipe = base_kinetics.get_config().data  # the released normalisation
  cfg.data.mean, cfg.data.std = recipe.mean, recipe.std
  cfg.data.frame_stride = 1
  it.import_checkpoint(str(tmp_path / 'c2d_3dbat.safetensors'), cfg, str(tmp_path / 'out'),
                       strict=True, log=None)
  variables = ocp.StandardCheckpointer().restore(resolve_state_dir(str(tmp_path / 'out')))

  # An 8-frame 64x64 clip with structure in colour, space and time (all 8 frames are the clip).
  yy, xx = np.mgrid[0:64, 0:64]
  frames = np.stack([np.stack([(xx * 4 + 20 * t) % 256, (yy * 3 + 7 * t) % 256,
                               (xx + yy + 30 * t) % 256], -1) for t in range(8)]).astype(np.uint8)
  path = str(tmp_path / 'clip.mp4')
  D.write_video(path, frames, fps=8)

  it_eval = pipeline.make_eval_iterator(cfg.data, 1, records=[(path, 3)])
  batch = next(iter(it_eval))
  it_eval.close()
  x = normalization.normalize(batch['video'], normalization.input_stats(cfg.data))  # as the steps
  got = np.asarray(build_model(cfg.model).apply(
      {'params': variables['params'], 'batch_stats': variables['batch_stats']}, x, train=False))

  with av.open(path) as container:  # the reference decodes RGB itself
    decoded = np.stack([f.to_ndarray(format='rgb24') for f in container.decode(video=0)])
  assert decoded.shape == (8, 64, 64, 3)
  clip = (decoded.astype(np.float64) - RELEASED_MEAN).transpose(3, 0, 1, 2)[None]  # std 1
  np.testing.assert_allclose(np.asarray(x[0], np.float64),
                             clip[0].transpose(1, 2, 3, 0), atol=1e-3)
  want = released_c2d_forward(sd, clip)
  assert np.abs(want).max() > 1e-2 and np.std(want) > 1e-3  # a non-trivial output
  np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
  # The same clip with channels reversed (what a BGR reading would feed) gives other logits.
  flipped = released_c2d_forward(sd, (decoded[..., ::-1].astype(np.float64) - RELEASED_MEAN)
                                 .transpose(3, 0, 1, 2)[None])
  assert np.abs(flipped - want).max() > 10 * 1e-3 * np.abs(want).max()
