"""Shared helpers of the trainer tests; also a config file for ``train.py``.

``python train.py --config=tests/helpers_train.py:image --workdir=DIR`` trains a width-4
ResNet-18 on 32x32 synthetic images (``:video`` a width-4 C2D-ResNet-50 on 4x32x32 clips), so a
whole run is a few seconds of CPU.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from typing import Any, Sequence

import ml_collections
from etils import epath

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELPERS = os.path.abspath(__file__)


def get_config(kind: str = 'image') -> ml_collections.ConfigDict:
  """A tiny run on the synthetic data set (``kind``: ``image``, ``image_bat`` — with a BAT block
  after res3 block 1 — or ``video``)."""
  sys.path.insert(0, REPO)
  from configs import base_imagenet, base_kinetics  # pylint: disable=g-import-not-at-top
  from bat_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  video = kind == 'video'
  config = (base_kinetics if video else base_imagenet).get_config()
  config.model.name = 'c2d_resnet50' if video else 'resnet18'
  config.model.num_classes = 4
  config.model.width = 4
  config.model.input_size = (4, 32, 32) if video else (32, 32)
  config.model.dropout_rate = 0.5 if video else 0.0
  config.data = synthetic.get_config(num_classes=4, num_frames=4 if video else 0, crop_size=32,
                                     num_train_examples=256, num_eval_examples=20, noise=1.0)
  if kind == 'image_bat':  # res3 is 4x4 with 8 channels here
    config.model.block = ml_collections.ConfigDict(dict(
        type='bat', groups=2, size=4, matrix='block', temporal_groups=0, temporal_size=4,
        normalization='softmax', reduction=2, dropout_rate=0.2))
    config.model.insertions = ml_collections.ConfigDict({'res3': (1,)})
  config.init_from = 'scratch'  # a video model must say so (config_checks.validate_config)
  config.global_batch_size = 16
  config.base_learning_rate = 0.02
  config.lr_base_batch_size = 16
  config.warmup_epochs = 1
  config.lr_decay_epochs = (2,)
  config.num_epochs = 3  # 16 steps/epoch
  config.num_train_steps = -1
  config.log_every_steps = 1
  config.eval_every_steps = 4
  config.checkpoint_every_steps = 4
  config.keep_checkpoints = 10
  return config


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


# Names the suite's shared JAX compilation cache directory (set by tests/conftest.py).
SUITE_CACHE = 'BAT_JAX_TEST_JAX_CACHE'


def env_for(devices: int = 1, cache_dir: str | None = 'suite', **extra: str) -> dict[str, str]:
  """A subprocess environment with ``devices`` simulated CPU devices and a JAX compilation cache:
  ``cache_dir='suite'`` the suite's shared one (tests/conftest.py), a path, or ``None`` for none."""
  if cache_dir == 'suite':
    cache_dir = os.environ.get(SUITE_CACHE)
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(('JAX_', 'XLA_', 'BAT_JAX_'))}
  env.update(XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             JAX_PLATFORMS='cpu', PYTHONPATH=REPO, PYTHONUNBUFFERED='1')
  if cache_dir:
    env.update(JAX_COMPILATION_CACHE_DIR=cache_dir,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
  env.update(extra)
  return env


def train_cmd(workdir: str, kind: str = 'image', overrides: Sequence[str] = (),
              script: str = 'train.py') -> list[str]:
  return [sys.executable, os.path.join(REPO, script), f'--config={HELPERS}:{kind}',
          f'--workdir={workdir}', *overrides]


def run(cmd: Sequence[str], env: dict[str, str], timeout: float = 180
        ) -> subprocess.CompletedProcess:
  return subprocess.run(list(cmd), env=env, cwd=REPO, capture_output=True, text=True,
                        timeout=timeout)


def run_ok(cmd: Sequence[str], env: dict[str, str], timeout: float = 180
           ) -> subprocess.CompletedProcess:
  proc = run(cmd, env, timeout)
  assert proc.returncode == 0, f'{cmd} failed ({proc.returncode}):\n{proc.stderr[-6000:]}'
  return proc


def start(cmd: Sequence[str], env: dict[str, str], log_path: str) -> subprocess.Popen:
  log = open(log_path, 'w')
  return subprocess.Popen(list(cmd), env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def wait_for(path: str, proc: subprocess.Popen, log_path: str, timeout: float = 180) -> None:
  """Waits until ``path`` exists; fails if ``proc`` exits first."""
  deadline = time.time() + timeout
  while not os.path.exists(path):
    if proc.poll() is not None:
      raise AssertionError(f'process exited ({proc.returncode}) before {path} appeared:\n'
                           f'{open(log_path).read()[-6000:]}')
    if time.time() > deadline:
      proc.kill()
      raise AssertionError(f'timed out waiting for {path}')
    time.sleep(0.05)


def metrics_lines(workdir: str) -> list[dict[str, Any]]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def checkpoint_steps(workdir: str) -> list[int]:
  d = os.path.join(workdir, 'checkpoints')
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def load_params(workdir: str, step: int) -> dict[str, Any]:
  """``{'params', 'batch_stats', 'opt_state', 'step', 'rng'}`` of a checkpoint as numpy."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, 'checkpoints', str(step), 'state')
  metadata = ocp.PyTreeCheckpointHandler().metadata(epath.Path(path)).tree
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  restore_args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(sharding=device), metadata)
  restored = ocp.PyTreeCheckpointer().restore(
      path, args=ocp.args.PyTreeRestore(restore_args=restore_args))
  return jax.tree.map(np.asarray, restored)


def assert_same_state(workdir_a: str, workdir_b: str, step: int) -> None:
  """The two runs' checkpoints of ``step`` are bit-identical."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  a, b = flat(load_params(workdir_a, step)), flat(load_params(workdir_b, step))
  assert a.keys() == b.keys()
  different = [k for k in a if not np.array_equal(a[k], b[k])]
  assert not different, different[:10]


def flat(tree: Any) -> dict[str, Any]:
  import jax  # pylint: disable=g-import-not-at-top
  return {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def tensorboard_scalars(logdir: str) -> dict[str, dict[int, float]]:
  """``{tag: {step: value}}`` from the event files in ``logdir`` (TFRecord framing read by hand:
  u64 length, u32 crc, payload, u32 crc; later files override earlier ones)."""
  import struct  # pylint: disable=g-import-not-at-top
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  out: dict[str, dict[int, float]] = {}
  for name in sorted(os.listdir(logdir)):
    with open(os.path.join(logdir, name), 'rb') as f:
      data = f.read()
    pos = 0
    while pos + 12 <= len(data):
      (length,) = struct.unpack('<Q', data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 12 + length + 4
      for v in event.summary.value:
        out.setdefault(v.tag, {})[event.step] = v.simple_value
  return out
