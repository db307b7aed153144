"""A decode that hangs (issue 16, item 5, second part): a video whose decode takes longer than
``data.decode_timeout_s`` is skipped in training (replaced by the next record) and masked in
evaluation, and listed in the broken-file report with the reason; the slow decode is injected by
wrapping the pipeline's decoders (training clip, multi-view clips) with a sleep for one file."""

import time

import pytest

from bat_jax.data import kinetics, multiview, pipeline
from tests.reliability.conftest import record
from tests.test_video_data import _cfg, _write_coded_set


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('coded'))
  _write_coded_set(root)
  return root


def _slow_for(path, transform):
  def slow(p, *args, **kwargs):
    if p == path:
      time.sleep(2.0)
    return transform(p, *args, **kwargs)
  return slow


def test_slow_decode_is_skipped_and_reported(root, monkeypatch):
  train_slow = kinetics.load_split(root, 'train').records[0][0]
  val_slow = kinetics.load_split(root, 'val').records[1][0]
  monkeypatch.setattr(pipeline, 'train_transform', _slow_for(train_slow, pipeline.train_transform))
  monkeypatch.setattr(multiview, 'decode_eval_clips',
                      _slow_for(val_slow, multiview.decode_eval_clips))
  pipeline.reset_broken_files()
  cfg = _cfg(root, decode_timeout_s=0.5)
  it = pipeline.make_train_iterator(cfg, 2, 0, 1, seed=4)
  for _ in range(len(kinetics.load_split(root, 'train').records) // 2):  # one epoch
    next(it)
  it.close()
  ev = pipeline.make_eval_iterator(cfg, 4)
  masked = [int(i) for b in ev for i, m in zip(b['video_index'], b['mask']) if i >= 0 and not m]
  report = {(e['path'], e['split']): e for e in pipeline.broken_files()}
  pipeline.reset_broken_files()
  assert masked == [1]
  assert set(report) == {(train_slow, 'train'), (val_slow, 'val')}
  assert all('decode took longer than data.decode_timeout_s=0.5 s' in e['reason']
             for e in report.values())
  record('decode slower than data.decode_timeout_s', injected=2, survived=2,
         details='skipped in training, masked in eval, reported')


def test_decode_timeout_must_be_non_negative(root):
  with pytest.raises(ValueError, match='config.data.decode_timeout_s=-1'):
    pipeline.make_train_iterator(_cfg(root, decode_timeout_s=-1), 2, 0, 1, seed=4)
