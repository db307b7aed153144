r"""PyTorch weights -> an Orbax checkpoint of this code base's variables.

  python -m bat_jax.tools.import_torch --checkpoint=resnet50.pth \
      --config=configs/imagenet_r50.py --out=workdirs/r50_torchvision [--strict]
  python train.py --config=configs/kinetics_c2d_3dbat.py --workdir=workdirs/k400 \
      --config.init_from=workdirs/r50_torchvision
  python evaluate.py --config=configs/imagenet_r50.py --workdir=workdirs/r50_torchvision

``--out DIR`` gets a workdir layout: ``DIR/checkpoints/0/state`` (``params`` and
``batch_stats`` only), ``DIR/config.json`` (the config it was converted for) and
``DIR/import_report.json`` (what went where). ``config.init_from=DIR`` and ``evaluate.py
--workdir=DIR`` read it.

Layouts (state-dict names; a ``module.`` prefix from ``DataParallel`` is dropped, and a checkpoint
dict's ``state_dict`` / ``model`` / ``model_state_dict`` entry is taken):

* torchvision ResNet-18/34/50/101/152 and ResNeXt: ``conv1``, ``bn1``,
  ``layer{1..4}.{i}.conv{1,2,3}`` / ``.bn{1,2,3}`` / ``.downsample.{0,1}``, ``fc`` ->
  ``conv1``, ``bn1``, ``res{2..5}_block{i}/conv{n}`` / ``bn{n}`` / ``downsample_conv`` /
  ``downsample_bn``, ``fc``. Conv weights ``(out, in, h, w)`` -> kernels ``(1, h, w, in, out)``;
  ``fc.weight (classes, in)`` -> ``fc/kernel (in, classes)``; BN ``weight, bias, running_mean,
  running_var`` -> ``scale, bias`` (params) and ``mean, var`` (batch_stats);
  ``num_batches_tracked`` is counted as skipped (flax's BN has no counter).
* The BAT authors' released models (BA-Transform/BAT-Image-Classification ``nlnet.py``,
  BAT-Video-Classification ``models/resnet.py``): the same backbone names; video weights are
  Conv3d ``(out, in, t, h, w)`` -> ``(t, h, w, in, out)`` and the video ``fc`` is a ``1x1x1``
  Conv3d ``(classes, in, 1, 1, 1)``. The image code's SE (``layer.i.se_block.excitation.{0,2}``,
  ``nn.Linear``) -> ``se/fc1``, ``se/fc2``. BAT blocks are stored inside the stage's
  ``nn.Sequential`` as ``layer{L}.nl{i}``, added after residual block ``i`` (``i % m == m - 1``,
  the name carries ``i``), i.e. exactly our ``res{L+1}_bat{i}`` (``layer2.nl1`` -> ``res3_bat1``,
  ``layer3.nl5`` -> ``res4_bat5``). Inside a block::

      conv1.0 (conv, bias) / conv1.1 (BN)                  -> conv1 / bn1
      batransform.conv1.0 / .1    (C -> k, BN)              -> predictor/conv / predictor/bn
      batransform.conv_p  (k -> s*s*k, kernel (s, 1))        -> predictor/predict_p/conv
      batransform.conv_q  (k -> s*s*k, kernel (1, s))        -> predictor/predict_q/conv
      batransform.conv_t  (k -> ts*ts*tk, kernel (ts, 1, 1)) -> predictor/predict_t/conv
      batransform.conv2.0 / .1    (C -> C, BN)              -> conv2 / bn2
      conv2.0 / conv2.1           (C -> D, BN)              -> conv3 / bn3

  The window convs slide over the pooled ``s`` cells (a ``(s, 1)`` conv on ``(s, 1)`` row-pooled
  features is a 1-D conv over ``s``): weight ``(s*s*k, k, s, 1)`` (video ``(s*s*k, k, 1, s, 1)``,
  ``conv_t (ts*ts*tk, k, ts, 1, 1)``) -> flax ``nn.Conv`` kernel ``(s, k, s*s*k)``,
  ``kernel[a, c, o] = weight[o, c, a]``. Both codes read output channel ``o = g*s*s + i*s + j``
  as entry ``(i, j)`` of group ``g`` (``view(n, k, s, s)``), as ours does, so the channel order
  is kept.
* The released video code's Non-local blocks (``--nltype nl3d``, ``models/non_local.py``
  ``NONLocalBlock3D``: embedded Gaussian, ``C^-1/2`` scale, ``(1, 2, 2)`` max pool before ``phi``
  and ``g``), for C2D+NL and I3D+NL: ``layer{L}.nl{i}`` -> ``res{L+1}_nonlocal{i}``, with
  ``theta`` -> ``theta``, ``phi.1`` / ``g.1`` (``phi`` / ``g`` without sub-sampling) -> ``phi`` /
  ``g``, ``W.0`` -> ``w``, ``W.1`` (BN) -> ``bn``; all convs have a bias. The released models
  pool the stem with padding 0: import them for a config with ``model.pool1_padding=0``.

Reading (``bat_jax.tools.torch_reader``) never executes code from the file.

Every tensor is accounted for: the report lists loaded (and inflated), skipped
(``num_batches_tracked``), missing (in the model only), unexpected (in the file only) and
shape-mismatched names; ``--strict`` fails on any of the last three. Without it, what does not
fit keeps the model's initial value (seed ``--seed``), e.g. a 1000-class ``fc`` in a 400-class
model. A 2-D checkpoint converted for an I3D config is inflated (``bat_jax.training.transfer``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from bat_jax.models.registry import BACKBONES, build_model
from bat_jax.models.resnet import STAGES
from bat_jax.tools.torch_reader import READERS, UnsafeCheckpointError, read_state_dict
from bat_jax.training import checkpoint as ckpt_lib
from bat_jax.training import transfer
from bat_jax.training.metrics import quiet_library_logs
from bat_jax.training.state import init_input_shape


class ImportMismatchError(ValueError):
  """``--strict`` and something is missing, unexpected or shape-mismatched."""


# ---------------------------------------------------------------------------------------------
# Names and layouts.

_BN_FIELDS = {'weight': ('params', 'scale'), 'bias': ('params', 'bias'),
              'running_mean': ('batch_stats', 'mean'), 'running_var': ('batch_stats', 'var'),
              'num_batches_tracked': None}
# Inside a released BAT block: torch sub-module -> (our sub-module, kind).
_BAT_PARTS = {
    'conv1.0': ('conv1', 'conv'), 'conv1.1': ('bn1', 'bn'),
    'batransform.conv1.0': ('predictor/conv', 'conv'),
    'batransform.conv1.1': ('predictor/bn', 'bn'),
    'batransform.conv_p': ('predictor/predict_p/conv', 'window_h'),
    'batransform.conv_q': ('predictor/predict_q/conv', 'window_w'),
    'batransform.conv_t': ('predictor/predict_t/conv', 'window_t'),
    'batransform.conv2.0': ('conv2', 'conv'), 'batransform.conv2.1': ('bn2', 'bn'),
    'conv2.0': ('conv3', 'conv'), 'conv2.1': ('bn3', 'bn'),
}
# Inside a released ``nl3d`` block (``NONLocalBlock3D``, sub_sample=True puts a max pool at index 0
# of ``phi`` / ``g``, so their convs are ``phi.1`` / ``g.1``) -> our ``NonLocalBlock``.
_NL_PARTS = {
    'theta': ('theta', 'conv'), 'phi': ('phi', 'conv'), 'phi.1': ('phi', 'conv'),
    'g': ('g', 'conv'), 'g.1': ('g', 'conv'), 'W.0': ('w', 'conv'), 'W.1': ('bn', 'bn'),
}
# Our block type (model.block.type) -> the released block's sub-module names.
_BLOCK_PARTS = {'bat': _BAT_PARTS, 'nonlocal': _NL_PARTS}
SKIPPED = 'skipped'  # a known tensor our variables do not hold (num_batches_tracked)


def map_name(name: str, stage_names: Sequence[str] = ('res2', 'res3', 'res4', 'res5'),
             insert_name: str = 'bat') -> tuple[str, str] | str | None:
  """``(our name, kind)`` of a torch state-dict name; ``SKIPPED``; or ``None`` (unknown).

  ``kind`` says how the tensor is converted (:func:`convert`).
  """
  def stage(layer: str) -> str | None:
    i = int(layer) - 1
    return stage_names[i] if 0 <= i < len(stage_names) else None

  def module(prefix: str, sub: str, field: str, kind: str) -> tuple[str, str] | str | None:
    if kind == 'bn':
      target = _BN_FIELDS.get(field, ())
      if target is None:
        return SKIPPED
      if not target:
        return None
      return f'{target[0]}/{prefix}{sub}/{target[1]}', 'vector'
    if field == 'weight':
      return f'params/{prefix}{sub}/kernel', kind
    if field == 'bias':
      return f'params/{prefix}{sub}/bias', 'vector'
    return None

  if m := re.fullmatch(r'(conv1|bn1)\.(\w+)', name):
    return module('', m.group(1), m.group(2), 'conv' if m.group(1) == 'conv1' else 'bn')
  if m := re.fullmatch(r'fc\.(weight|bias)', name):
    return module('', 'fc', m.group(1), 'fc')
  if m := re.fullmatch(r'layer(\d+)\.(\d+)\.(conv|bn)(\d)\.(\w+)', name):
    s = stage(m.group(1))
    kind = 'conv' if m.group(3) == 'conv' else 'bn'
    return s and module(f'{s}_block{int(m.group(2))}/', f'{m.group(3)}{m.group(4)}',
                        m.group(5), kind)
  if m := re.fullmatch(r'layer(\d+)\.(\d+)\.downsample\.([01])\.(\w+)', name):
    s = stage(m.group(1))
    sub, kind = ('downsample_conv', 'conv') if m.group(3) == '0' else ('downsample_bn', 'bn')
    return s and module(f'{s}_block{int(m.group(2))}/', sub, m.group(4), kind)
  if m := re.fullmatch(r'layer(\d+)\.(\d+)\.se_block\.excitation\.([02])\.(weight|bias)', name):
    s = stage(m.group(1))
    sub = 'se/fc1' if m.group(3) == '0' else 'se/fc2'
    return s and module(f'{s}_block{int(m.group(2))}/', sub, m.group(4), 'linear_as_conv')
  if m := re.fullmatch(r'layer(\d+)\.nl(\d+)\.(.+)\.(\w+)', name):
    s = stage(m.group(1))
    part = _BLOCK_PARTS.get(insert_name, {}).get(m.group(3))
    if s is None or part is None:
      return None
    return module(f'{s}_{insert_name}{int(m.group(2))}/', part[0], m.group(4), part[1])
  return None


def _window(w: np.ndarray, axis: int, name: str) -> np.ndarray:
  """A predictor conv ``(out, in, *spatial)`` whose only extent > 1 is ``spatial[axis]`` ->
  flax 1-D kernel ``(s, in, out)``."""
  spatial = w.shape[2:]
  if not spatial or any(n != 1 for i, n in enumerate(spatial) if i != axis % len(spatial)):
    raise ValueError(f'{name}: a window conv must extend along spatial axis {axis} only, got '
                     f'weight {w.shape}')
  return np.transpose(w.reshape(w.shape[0], w.shape[1], -1), (2, 1, 0))


def convert(kind: str, w: np.ndarray, name: str = '') -> np.ndarray:
  """A torch tensor in our layout (see the module docstring)."""
  if kind == 'vector':
    if w.ndim != 1:
      raise ValueError(f'{name}: expected a vector, got {w.shape}')
    return w
  if kind == 'conv':
    if w.ndim == 4:  # (out, in, h, w) -> (1, h, w, in, out)
      return np.transpose(w, (2, 3, 1, 0))[None]
    if w.ndim == 5:  # (out, in, t, h, w) -> (t, h, w, in, out)
      return np.transpose(w, (2, 3, 4, 1, 0))
    raise ValueError(f'{name}: expected a Conv2d/Conv3d weight, got {w.shape}')
  if kind == 'fc':  # nn.Linear (classes, in) or a 1x1(x1) conv -> Dense (in, classes)
    if w.ndim >= 2 and all(n == 1 for n in w.shape[2:]):
      return np.transpose(w.reshape(w.shape[0], w.shape[1]))
    raise ValueError(f'{name}: expected a Linear or 1x1x1 conv classifier, got {w.shape}')
  if kind == 'linear_as_conv':  # nn.Linear (out, in) -> 1x1x1 conv (1, 1, 1, in, out)
    if w.ndim != 2:
      raise ValueError(f'{name}: expected a Linear weight, got {w.shape}')
    return np.transpose(w)[None, None, None]
  if kind == 'window_h':  # conv_p: 2-D (o, k, s, 1), 3-D (o, k, 1, s, 1)
    return _window(w, -2, name)
  if kind == 'window_w':  # conv_q: 2-D (o, k, 1, s), 3-D (o, k, 1, 1, s)
    return _window(w, -1, name)
  if kind == 'window_t':  # conv_t: 3-D (o, k, ts, 1, 1)
    if w.ndim != 5:
      raise ValueError(f'{name}: expected a Conv3d weight, got {w.shape}')
    return _window(w, 0, name)
  raise ValueError(f'unknown kind {kind!r}')


@dataclasses.dataclass
class ConvertedStateDict:
  arrays: dict[str, np.ndarray]  # our name -> array in our layout
  source: dict[str, str]  # our name -> torch name
  skipped: list[str]  # torch names not needed (num_batches_tracked)
  unknown: list[str]  # torch names with no counterpart
  bad: list[tuple[str, str]]  # (torch name, why) that could not be converted


def convert_state_dict(state_dict: Mapping[str, np.ndarray],
                       stage_names: Sequence[str] = ('res2', 'res3', 'res4', 'res5'),
                       insert_name: str = 'bat') -> ConvertedStateDict:
  arrays, source, skipped, unknown, bad = {}, {}, [], [], []
  for name in sorted(state_dict):
    target = map_name(name, stage_names, insert_name)
    if target == SKIPPED:
      skipped.append(name)
      continue
    if target is None:
      unknown.append(name)
      continue
    ours, kind = target
    try:
      arrays[ours] = np.asarray(convert(kind, np.asarray(state_dict[name]), name), np.float32)
    except ValueError as e:
      bad.append((name, str(e)))
      continue
    source[ours] = name
  return ConvertedStateDict(arrays, source, skipped, unknown, bad)


# ---------------------------------------------------------------------------------------------
# Converting for a model config and writing the checkpoint (imports JAX).


@dataclasses.dataclass
class ImportReport:
  checkpoint: str
  num_tensors: int
  plan: Any  # bat_jax.training.transfer.TransferPlan over our names
  converted: ConvertedStateDict

  @property
  def unexpected(self) -> list[str]:
    """Torch names with no place in the model (unknown names, and known ones the model lacks)."""
    return sorted(set(self.converted.unknown)
                  | {self.converted.source[n] for n in self.plan.unexpected})

  @property
  def mismatched(self) -> list[tuple[str, str, tuple[int, ...], tuple[int, ...], str]]:
    """``(our name, torch name, checkpoint shape (our layout), model shape, hint)``, plus
    tensors that could not be converted at all."""
    out = [(n, self.converted.source[n], s, t, h) for n, s, t, h in self.plan.mismatched]
    return out + [('', tname, (), (), why) for tname, why in self.converted.bad]

  @property
  def ok(self) -> bool:
    return not (self.plan.missing or self.unexpected or self.mismatched)

  def describe(self) -> str:
    lines = [f'{self.checkpoint}: {self.num_tensors} tensors',
             f'  loaded: {len(self.plan.load) + len(self.plan.inflate)}'
             + (f' ({len(self.plan.inflate)} inflated 2-D -> 3-D)' if self.plan.inflate else ''),
             f'  skipped (num_batches_tracked; flax BN keeps no counter): '
             f'{len(self.converted.skipped)}',
             f'  missing (in the model only, kept at init): {len(self.plan.missing)}',
             f'  unexpected (in the file only): {len(self.unexpected)}',
             f'  shape-mismatched (kept at init): {len(self.mismatched)}']
    listed = lambda xs: ''.join(f'\n    {x}' for x in xs[:40]) + (  # noqa: E731
        f'\n    ... and {len(xs) - 40} more' if len(xs) > 40 else '')
    if self.plan.inflate:
      lines.append('inflated:' + listed([f'{n} t={t}' for n, t in self.plan.inflate.items()]))
    if self.plan.missing:
      lines.append('missing:' + listed(self.plan.missing))
    if self.unexpected:
      lines.append('unexpected:' + listed(self.unexpected))
    if self.mismatched:
      lines.append('shape-mismatched:' + listed(
          [f'{t} -> {n} checkpoint {s} vs model {m}' + (f'  [{h}]' if h else '')
           if n else f'{t}: {h}' for n, t, s, m, h in self.mismatched]))
    return '\n'.join(lines)

  def as_dict(self) -> dict[str, Any]:
    return {'checkpoint': self.checkpoint, 'num_tensors': self.num_tensors,
            'loaded': {n: self.converted.source[n] for n in self.plan.load},
            'inflated': {n: {'from': self.converted.source[n], 't': t}
                         for n, t in self.plan.inflate.items()},
            'skipped': self.converted.skipped, 'missing': self.plan.missing,
            'unexpected': self.unexpected,
            'mismatched': [{'name': n, 'torch': t, 'checkpoint': list(s), 'model': list(m),
                            'hint': h} for n, t, s, m, h in self.mismatched]}


def _flat(tree: Any, prefix: str = '') -> dict[str, Any]:
  out = {}
  for k, v in tree.items():
    name = f'{prefix}/{k}' if prefix else str(k)
    if isinstance(v, Mapping):
      out.update(_flat(v, name))
    else:
      out[name] = v
  return out


def _unflat(flat: Mapping[str, Any]) -> dict[str, Any]:
  out: dict[str, Any] = {}
  for name, v in flat.items():
    node = out
    *parents, leaf = name.split('/')
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return out


def import_checkpoint(checkpoint: str, config: Any, out: str | None = None, *,
                      strict: bool = False, seed: int = 0, reader: str = 'auto',
                      flip_input_channels: bool = False,
                      log: Callable[[str], None] | None = print) -> ImportReport:
  """Converts ``checkpoint`` for ``config.model`` and (``out`` given) writes the checkpoint.

  Raises :class:`ImportMismatchError` under ``strict`` when anything is missing, unexpected or
  mismatched (nothing is written then). Names that do not fit keep the model's initial values
  (``model.init`` with ``seed``), computed only when there are any. ``flip_input_channels``
  reverses ``conv1``'s input channels, for a network trained on BGR frames (OpenCV / Caffe2
  pipelines) to take this code base's RGB frames. The released BAT video models need no flip:
  their ``main.py`` decodes RGB (lintel RGB24, ``Stack(roll=False)``) and subtracts
  (103.939, 116.779, 123.68) from R, G, B, which is the Kinetics recipes' ``data.mean`` /
  ``data.std``. The report (log and ``import_report.json``, ``input``) gives the input
  normalisation of ``config.data`` the weights will be used with.
  """

  state_dict = read_state_dict(checkpoint, reader)
  model = build_model(config.model)
  stage_names = tuple(BACKBONES[config.model.name].get('stage_names', STAGES))
  converted = convert_state_dict(state_dict, stage_names, model.insert_name)
  if flip_input_channels and 'params/conv1/kernel' in converted.arrays:
    converted.arrays['params/conv1/kernel'] = np.ascontiguousarray(
        converted.arrays['params/conv1/kernel'][..., ::-1, :])

  shape = init_input_shape(config.model)
  init = lambda key: model.init({'params': key, 'dropout': key},  # noqa: E731
                                jnp.zeros(shape, jnp.float32), train=False)
  abstract = jax.eval_shape(init, jax.random.key(seed))
  abstract = {'params': abstract['params'], 'batch_stats': abstract.get('batch_stats', {})}
  target = {n: tuple(v.shape) for n, v in _flat(abstract).items()}
  plan = transfer.plan_transfer({n: a.shape for n, a in converted.arrays.items()}, target)
  report = ImportReport(checkpoint, len(state_dict), plan, converted)
  data = config.get('data') or {}
  pixels = {'mean_255': [round(255.0 * float(m), 4) for m in data.get('mean', ())],
            'std_255': [round(255.0 * float(x), 4) for x in data.get('std', ())],
            'flip_input_channels': bool(flip_input_channels)}
  if log:
    log(report.describe())
    log(f'input: RGB 0-255 minus {pixels["mean_255"]}, divided by {pixels["std_255"]} '
        f'(config.data.mean / std x 255)' + (', conv1 channels reversed (BGR-trained weights)'
                                             if flip_input_channels else ''))
  if strict and not report.ok:
    raise ImportMismatchError(f'--strict: {checkpoint} does not fit config.model:\n'
                              f'{report.describe()}')
  if out is None:
    return report
  initial = None
  if plan.kept_at_init:
    variables = jax.jit(init)(jax.random.key(seed))
    initial = {n: np.asarray(v) for n, v in _flat(
        {'params': variables['params'], 'batch_stats': variables.get('batch_stats', {})}).items()}
  values = transfer.apply_plan(plan, converted.arrays, initial)
  variables = _unflat({n: jnp.asarray(v, jnp.float32) for n, v in values.items()})
  variables.setdefault('batch_stats', {})
  ckpt_lib.write_variables_checkpoint(out, variables, config=config,
                                      extra={'import_report.json': {**report.as_dict(),
                                                                    'input': pixels}})
  if log:
    log(f'wrote {os.path.join(out, "checkpoints", "0")}: use --config.init_from={out} or '
        f'evaluate.py --workdir={out}')
  return report


def main(argv: Sequence[str] | None = None) -> None:
  config = config_flags.DEFINE_config_file('config', None, 'The recipe the weights are for.',
                                           lock_config=True)
  checkpoint = flags.DEFINE_string('checkpoint', None, '.pth / .pt / .safetensors state dict.')
  out = flags.DEFINE_string('out', None, 'Output directory (workdir layout).')
  strict = flags.DEFINE_bool('strict', False, 'Fail on any missing / unexpected / '
                             'shape-mismatched tensor.')
  seed = flags.DEFINE_integer('seed', 0, 'Initialisation of what the file does not provide.')
  reader = flags.DEFINE_enum('reader', 'auto', list(READERS), 'How .pth files are read: torch '
                             '(torch.load weights_only=True), builtin (restricted unpickler, no '
                             'torch needed), auto (torch if installed).')
  flip = flags.DEFINE_bool('flip_input_channels', False, 'Reverse conv1\'s input channels, '
                           'for weights trained on BGR frames (OpenCV / Caffe2 pipelines). Not '
                           'for the released BAT video models: they were trained on RGB frames '
                           'minus (103.939, 116.779, 123.68), the Kinetics recipes\' data.mean.')
  flags.mark_flags_as_required(['config', 'checkpoint', 'out'])

  def run(args: list[str]) -> None:
    if len(args) > 1:
      raise app.UsageError(f'unexpected arguments: {args[1:]}')
    quiet_library_logs()
    try:
      import_checkpoint(checkpoint.value, config.value, out.value, strict=strict.value,
                        seed=seed.value, reader=reader.value,
                        flip_input_channels=flip.value)
    except (UnsafeCheckpointError, ImportMismatchError, FileNotFoundError, ValueError) as e:
      sys.exit(f'import_torch: {e}')

  app.run(run, argv=list(argv) if argv is not None else None)


if __name__ == '__main__':
  main()
