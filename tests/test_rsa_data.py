"""RSA's other data sets in their official layouts (``tests/rsa_layouts.py``): Something-Something
V2 (webm + JSON), Diving-48 (mp4 + JSON) and FineGym Gym99 / Gym288 (sub-action mp4s + element
lists): records, missing and broken files, resumable training iterators, evaluation views equal
to the shared transform; and the RSA recipes against the supplement's §1."""

import json

import numpy as np
import pytest

from bat_jax.data import diving48, finegym, registry
from bat_jax.data import something_something as ss
from bat_jax.data import video
from configs import args as config_args
from tests.rsa_layouts import (CROP, DATASETS, H, LABEL_MAP, NUM_FRAMES, SPLITS, SSV2_CLASSES,
                               data_config, data_module, video_path, write_layout)


@pytest.fixture(scope='module', params=DATASETS)
def layout(request, tmp_path_factory):
  root = str(tmp_path_factory.mktemp(request.param))
  write_layout(root, request.param)
  return request.param, root


def _load(ds, root, split):
  if ds == 'something_something_v2':
    return ss.load_split_v2(root, split)
  if ds == 'diving48':
    return diving48.load_split(root, split)
  return finegym.load_split(root, split, ds)


def test_registry_serves_every_new_name():
  assert data_module('something_something_v2') is ss and data_module('diving48') is diving48
  assert data_module('gym99') is finegym and data_module('gym288') is finegym


@pytest.mark.parametrize('split', ['train', 'val'])
def test_load_split_labels_and_missing(layout, split):
  ds, root = layout
  sp = _load(ds, root, split)
  labels = LABEL_MAP[ds]
  rows = SPLITS[split]
  assert sp.records == [(video_path(ds, root, n), labels[l]) for n, l, k in rows if k != 'missing']
  assert sp.missing == [(video_path(ds, root, n), labels[l]) for n, l, k in rows if k == 'missing']
  expected_classes = {'something_something_v2': 3, 'diving48': 48, 'gym99': 99, 'gym288': 288}
  assert sp.num_classes == expected_classes[ds]
  if ds == 'something_something_v2':
    assert sp.class_names == [SSV2_CLASSES[i] for i in range(3)]
  elif ds == 'diving48':
    assert sp.class_names[17] == 'Back 17som NoTwis TUCK'
  elif ds == 'gym288':
    assert sp.class_names[200] == '(VT) element 200'
  else:
    assert sp.class_names[50] == '50'


def test_train_iterator_reports_broken_and_missing_and_resumes(layout):
  ds, root = layout
  module = data_module(ds)
  module.reset_broken_files()
  cfg = data_config(ds, root)
  it = module.make_train_iterator(cfg, 3, seed=1)
  assert it.steps_per_epoch == 1 and it.num_examples == 5
  assert it.missing == [(video_path(ds, root, 'a6'), LABEL_MAP[ds][0])]
  if ds == 'something_something_v2':  # 'Pushing something from left to right' is never flipped
    assert it.no_flip_labels == (1,)
  first = next(it)
  state = it.get_state()
  second, third = next(it), next(it)
  for batch in (first, second, third):
    assert batch['video'].shape == (3, NUM_FRAMES, CROP, CROP, 3)
    assert set(batch['label'].tolist()) <= set(LABEL_MAP[ds])
  it.close()
  resumed = module.make_train_iterator(cfg, 3, seed=1)
  resumed.set_state(state)
  again = next(resumed)
  resumed.close()
  np.testing.assert_array_equal(again['video'], second['video'])
  np.testing.assert_array_equal(again['label'], second['label'])
  report = {b['path']: b for b in module.broken_files()}
  assert set(report) == {video_path(ds, root, 'a5'), video_path(ds, root, 'a6')}
  assert report[video_path(ds, root, 'a6')]['count'] == 1
  assert 'no video file' in report[video_path(ds, root, 'a6')]['reason']


def test_eval_views_equal_the_shared_transform(layout):
  """Two clips per video (RSA's Diving-48 test): every view equals
  :func:`bat_jax.data.video.eval_transform` on the video; the broken one is masked."""
  ds, root = layout
  module = data_module(ds)
  module.reset_broken_files()
  it = module.make_eval_iterator(data_config(ds, root), 4, num_clips=2)
  batches = list(it)
  it.close()
  mask = np.concatenate([b['mask'] for b in batches])
  index = np.concatenate([b['video_index'] for b in batches])
  videos = np.concatenate([b['video'] for b in batches])
  labels = np.concatenate([b['label'] for b in batches])
  present = [r for r in SPLITS['val'] if r[2] != 'missing']
  assert index[:6].tolist() == [0, 0, 1, 1, 2, 2] and mask[:6].tolist() == [True] * 4 + [False] * 2
  assert not mask[6:].any()
  assert labels[:6].tolist() == [LABEL_MAP[ds][l] for _, l, _ in present for _ in range(2)]
  for row in range(4):
    name = present[index[row]][0]
    want = video.eval_transform(video_path(ds, root, name), num_frames=NUM_FRAMES, stride=1,
                                crop_size=CROP, short_side=H, clip_index=row % 2, num_clips=2,
                                sampling='segments')
    np.testing.assert_array_equal(videos[row], want)
  assert {b['path'] for b in module.broken_files()} == {video_path(ds, root, 'b3'),
                                                       video_path(ds, root, 'b4')}


def test_ssv2_template_brackets_and_label_file_checks(tmp_path):
  assert ss.template_class('Putting [something] on [something]') == 'Putting something on something'
  labels = tmp_path / 'something-something-v2-labels.json'
  labels.write_text(json.dumps({'Holding something': '0', 'Moving something': '2'}))
  with pytest.raises(ValueError, match='indices are not 0..1'):
    ss.read_labels_v2(str(labels))
  labels.write_text(json.dumps({'Holding something': '0'}))
  (tmp_path / 'something-something-v2-train.json').write_text(json.dumps(
      [{'id': '7', 'label': 'x', 'template': 'Moving [something]', 'placeholders': []}]))
  with pytest.raises(ValueError, match="template 'Moving \\[something\\]' of video 7"):
    ss.load_split_v2(str(tmp_path), 'train')
  with pytest.raises(ValueError, match="split 'test'"):
    ss.load_split_v2(str(tmp_path), 'test')


def test_bad_annotations_are_named(tmp_path):
  (tmp_path / 'gym99_train_element_v1.1.txt').write_text('clip_a 3\nclip_b 99\n')
  with pytest.raises(ValueError, match='label 99 outside \\[0, 99\\)'):
    finegym.load_split(str(tmp_path), 'train', 'gym99')
  (tmp_path / 'gym99_train_element_v1.1.txt').write_text('clip_a\n')
  with pytest.raises(ValueError, match=':1: expected "<clip_id> <label>"'):
    finegym.load_split(str(tmp_path), 'train', 'gym99')
  with pytest.raises(ValueError, match="config.data.name='gym100'"):
    finegym.make_train_iterator({'name': 'gym100', 'root': str(tmp_path)}, 1)
  (tmp_path / 'Diving48_vocab.json').write_text(json.dumps([['a']] * 47))
  with pytest.raises(ValueError, match='list of 48 class entries'):
    diving48.load_split(str(tmp_path), 'train')
  with pytest.raises(FileNotFoundError, match='Diving48_V2_test.json'):
    (tmp_path / 'Diving48_vocab.json').write_text(json.dumps([['a']] * 48))
    diving48.load_split(str(tmp_path), 'test')


# ------------------------------------------------------------------------------------------------
# The recipes (rsa_neurips2021_supplementary.md §1).

# config -> (data.name, classes, frames, epochs, dropout, label smoothing, stochastic depth,
#            test clips), as §1 gives them
RSA_RECIPES = {
    'ssv1_rsa_r50:frames=16': ('something_something_v1', 174, 16, 50, 0.3, 0.1, 0.2, 1),
    'rsa_ssv2_r50': ('something_something_v2', 174, 8, 50, 0.3, 0.1, 0.2, 1),
    'rsa_ssv2_r50:frames=16': ('something_something_v2', 174, 16, 50, 0.3, 0.1, 0.2, 1),
    'rsa_diving48_r50': ('diving48', 48, 16, 30, 0.5, 0.0, 0.0, 2),
    'rsa_gym99_r50': ('gym99', 99, 8, 50, 0.5, 0.0, 0.0, 1),
    'rsa_gym288_r50': ('gym288', 288, 8, 50, 0.5, 0.0, 0.0, 1),
}


@pytest.mark.parametrize('name', sorted(RSA_RECIPES))
def test_rsa_recipes_differ_from_ssv1_only_where_the_supplement_says(name):
  data, classes, frames, epochs, dropout, smoothing, depth, clips = RSA_RECIPES[name]
  cfg, ssv1 = config_args.load(name), config_args.load('ssv1_rsa_r50')
  assert cfg.data.name == data and data in registry.DATA_SOURCES
  assert (cfg.model.num_classes, cfg.data.num_frames, cfg.model.input_size) == (
      classes, frames, (frames, 224, 224))
  assert (cfg.num_epochs, cfg.model.dropout_rate, cfg.label_smoothing,
          cfg.model.stochastic_depth, cfg.eval_num_clips) == (epochs, dropout, smoothing, depth,
                                                              clips)
  assert tuple(cfg.data.eval_frame_size) == (240, 320) and cfg.data.sampling == 'segments'
  changed = {'num_classes', 'input_size', 'dropout_rate', 'stochastic_depth'}
  assert {k: v for k, v in cfg.model.to_dict().items() if k not in changed} == {
      k: v for k, v in ssv1.model.to_dict().items() if k not in changed}
  for field in ('global_batch_size', 'base_learning_rate', 'schedule', 'warmup_epochs',
                'weight_decay', 'nesterov', 'grad_clip_norm', 'init_from'):
    assert cfg[field] == ssv1[field], field


def test_rsa_frames_argument_is_checked():
  with pytest.raises(ValueError, match=r'frames=32; allowed \(RSA supplement §1\): \[8, 16\]'):
    config_args.load('rsa_ssv2_r50:frames=32')
