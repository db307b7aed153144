"""RSA's other data sets in their official layouts: Something-Something V2 (webm + JSON),
Diving-48 (mp4 + JSON) and FineGym Gym99 / Gym288 (sub-action mp4s + element lists).

Each layout is generated with a few real videos (PyAV: VP8 in webm, H.264 in mp4), one listed
video without a file and one broken file per split.
"""

import json
import os

import av
import ml_collections
import numpy as np
import pytest

from bat_jax.data import decode, diving48, finegym, registry
from bat_jax.data import something_something as ss
from bat_jax.data import video

T, H, W = 10, 32, 48
NUM_FRAMES, CROP = 4, 24


def _frames(seed):
  """uint8 (T, H, W, 3): red = frame index ramp, green / blue = a per-video pattern."""
  rng = np.random.default_rng(seed)
  f = np.zeros((T, H, W, 3), np.uint8)
  f[..., 0] = (np.arange(T) * 24)[:, None, None]
  f[..., 1] = np.linspace(0, 240, W).astype(np.uint8)[None, None, :]
  f[..., 2] = rng.integers(0, 255)
  return f


def _write_webm(path, frames, fps=8):
  """VP8 in webm, as the 20BN Something-Something V2 download."""
  with av.open(str(path), 'w', format='webm') as container:
    stream = container.add_stream('libvpx', rate=fps)
    stream.width, stream.height, stream.pix_fmt = W, H, 'yuv420p'
    stream.codec_context.thread_count = 1
    for f in frames:
      frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format='rgb24')
      container.mux(stream.encode(frame.reformat(format='yuv420p', threads=1)))
    container.mux(stream.encode())


# Per data set: class names of the labels in use, and per split the listed videos as
# (name, label, kind): kind 'ok' (a real video), 'broken' (not a video), 'missing' (no file).
SSV2_CLASSES = {0: 'Holding something', 1: 'Pushing something from left to right',
                2: 'Putting something on something'}
SSV2_TEMPLATES = {0: 'Holding [something]', 1: 'Pushing [something] from left to right',
                  2: 'Putting [something] on [something]'}
SPLITS = {
    'train': [('a1', 0, 'ok'), ('a2', 1, 'ok'), ('a3', 2, 'ok'), ('a4', 1, 'ok'),
              ('a5', 2, 'broken'), ('a6', 0, 'missing')],
    'val': [('b1', 2, 'ok'), ('b2', 0, 'ok'), ('b3', 1, 'broken'), ('b4', 1, 'missing')],
}
DATASETS = ('something_something_v2', 'diving48', 'gym99', 'gym288')
LABEL_MAP = {  # the data set's label of SPLITS' label 0 / 1 / 2
    'something_something_v2': (0, 1, 2), 'diving48': (0, 17, 47), 'gym99': (0, 50, 98),
    'gym288': (3, 200, 287)}
VIDEO_DIR = {'something_something_v2': ss.VIDEOS_DIR_V2, 'diving48': diving48.VIDEOS_DIR,
             'gym99': finegym.VIDEOS_DIR, 'gym288': finegym.VIDEOS_DIR}


def _video_name(name, ds):
  if ds.startswith('gym'):
    return f'{name}xyz_E_000100_000200_A_0001_0003'
  return name


def _write_layout(root, ds):
  ext = '.webm' if ds == 'something_something_v2' else '.mp4'
  vdir = os.path.join(root, VIDEO_DIR[ds])
  os.makedirs(vdir)
  labels = LABEL_MAP[ds]
  ann = os.path.join(root, 'annotations')  # the annotation files' second place
  os.makedirs(ann)
  for split, rows in SPLITS.items():
    for n, (name, _, kind) in enumerate(rows):
      path = os.path.join(vdir, _video_name(name, ds) + ext)
      if kind == 'ok':
        if ext == '.webm':
          _write_webm(path, _frames(n))
        else:
          decode.write_video(path, _frames(n))
      elif kind == 'broken':
        with open(path, 'w') as f:
          f.write('not a video')
    if ds == 'something_something_v2':
      entries = [{'id': name, 'label': 'a cup', 'template': SSV2_TEMPLATES[l],
                  'placeholders': ['a cup']} for name, l, _ in rows]
      fname = f'something-something-v2-{"train" if split == "train" else "validation"}.json'
      with open(os.path.join(root, fname), 'w') as f:
        json.dump(entries, f)
    elif ds == 'diving48':
      entries = [{'vid_name': name, 'label': labels[l], 'start_frame': 0, 'end_frame': T}
                 for name, l, _ in rows]
      with open(os.path.join(ann, f'Diving48_V2_{"train" if split == "train" else "test"}.json'),
                'w') as f:
        json.dump(entries, f)
    else:
      fname = finegym.ANNOTATION_FILES[split].format(ds)
      with open(os.path.join(ann, fname), 'w') as f:
        f.write(''.join(f'{_video_name(name, ds)} {labels[l]}\n' for name, l, _ in rows))
  if ds == 'something_something_v2':  # keys without brackets, in a non-sorted index order
    with open(os.path.join(root, 'something-something-v2-labels.json'), 'w') as f:
      json.dump({SSV2_CLASSES[i]: str(i) for i in (2, 0, 1)}, f)
  elif ds == 'diving48':
    with open(os.path.join(root, 'Diving48_vocab.json'), 'w') as f:
      json.dump([['Back', f'{i}som', 'NoTwis', 'TUCK'] for i in range(48)], f)
  elif ds == 'gym288':  # gym99 has none: names are the labels
    with open(os.path.join(ann, 'gym288_categories.txt'), 'w') as f:
      f.write(''.join(f'Clabel: {i}; set: 1; Glabel: {i + 7}; (VT) element {i}\n'
                      for i in range(288)))


@pytest.fixture(scope='module', params=DATASETS)
def layout(request, tmp_path_factory):
  root = str(tmp_path_factory.mktemp(request.param))
  _write_layout(root, request.param)
  return request.param, root


def _config(ds, root, **kw):
  cfg = dict(name=ds, root=root, num_frames=NUM_FRAMES, frame_stride=1, crop_size=CROP,
             train_short_side=(H, H), eval_short_side=H, num_workers=0, num_threads=1,
             sampling='segments', no_flip_keywords=('left', 'right'))
  cfg.update(kw)
  return cfg


def _module(ds):
  return registry.data_module(ml_collections.ConfigDict({'name': ds}))


def _path(ds, root, name):
  ext = '.webm' if ds == 'something_something_v2' else '.mp4'
  return os.path.join(root, VIDEO_DIR[ds], _video_name(name, ds) + ext)


def _load(ds, root, split):
  if ds == 'something_something_v2':
    return ss.load_split_v2(root, split)
  if ds == 'diving48':
    return diving48.load_split(root, split)
  return finegym.load_split(root, split, ds)


def test_registry_serves_every_new_name():
  assert _module('something_something_v2') is ss and _module('diving48') is diving48
  assert _module('gym99') is finegym and _module('gym288') is finegym


@pytest.mark.parametrize('split', ['train', 'val'])
def test_load_split_labels_and_missing(layout, split):
  ds, root = layout
  sp = _load(ds, root, split)
  labels = LABEL_MAP[ds]
  rows = SPLITS[split]
  assert sp.records == [(_path(ds, root, n), labels[l]) for n, l, k in rows if k != 'missing']
  assert sp.missing == [(_path(ds, root, n), labels[l]) for n, l, k in rows if k == 'missing']
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
  module = _module(ds)
  module.reset_broken_files()
  cfg = _config(ds, root)
  it = module.make_train_iterator(cfg, 3, seed=1)
  assert it.steps_per_epoch == 1 and it.num_examples == 5
  assert it.missing == [(_path(ds, root, 'a6'), LABEL_MAP[ds][0])]
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
  assert set(report) == {_path(ds, root, 'a5'), _path(ds, root, 'a6')}
  assert report[_path(ds, root, 'a6')]['count'] == 1
  assert 'no video file' in report[_path(ds, root, 'a6')]['reason']


def test_eval_views_equal_the_shared_transform(layout):
  """Two clips per video (RSA's Diving-48 test): every view equals
  :func:`bat_jax.data.video.eval_transform` on the video; the broken one is masked."""
  ds, root = layout
  module = _module(ds)
  module.reset_broken_files()
  it = module.make_eval_iterator(_config(ds, root), 4, num_clips=2)
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
    want = video.eval_transform(_path(ds, root, name), num_frames=NUM_FRAMES, stride=1,
                                crop_size=CROP, short_side=H, clip_index=row % 2, num_clips=2,
                                sampling='segments')
    np.testing.assert_array_equal(videos[row], want)
  assert {b['path'] for b in module.broken_files()} == {_path(ds, root, 'b3'),
                                                       _path(ds, root, 'b4')}


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
