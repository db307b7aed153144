"""RSA's other data sets in their official layouts: Something-Something V2 (webm + JSON),
Diving-48 (mp4 + JSON) and FineGym Gym99 / Gym288 (sub-action mp4s + element lists); and
``--protocol=rsa`` (frames resized to a fixed H x W, centre crop, softmax averaged over clips).

Each layout is generated with a few real videos (PyAV: VP8 in webm, H.264 in mp4), one listed
video without a file and one broken file per split.
"""

import json
import os

import av
import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from bat_jax.data import decode, diving48, finegym, registry
from bat_jax.data import mesh as mesh_lib
from bat_jax.data import something_something as ss
from bat_jax.data import video
from bat_jax.evaluation import protocols
from configs import args as config_args
from tests import helpers_train

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
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = 'yuv420p'
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


def _write_layout(root, ds, frames=_frames):
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
          _write_webm(path, frames(n))
        else:
          decode.write_video(path, frames(n))
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


# ------------------------------------------------------------------------------------------------
# --protocol=rsa on Something-Something V2 webm files whose frames are linear ramps (a resize of a
# linear ramp is the same ramp, so a float64 NumPy bilinear resize is a reference to within the
# codec's and the resampler's rounding).

RH, RW = 40, 80  # source frames, 1:2
FRAME_SIZE = (48, 64)  # stands for RSA's 240 x 320 (3:4): the aspect ratio changes
RCROP = 32


def _ramp_frames(seed):
  """R = 20 + 4 y (row), G = 30 + 2 x (column), B = 20 + 20 t (frame)."""
  del seed
  f = np.empty((T, RH, RW, 3), np.uint8)
  f[..., 0] = (20 + 4 * np.arange(RH))[None, :, None]
  f[..., 1] = (30 + 2 * np.arange(RW))[None, None, :]
  f[..., 2] = (20 + 20 * np.arange(T))[:, None, None]
  return f


@pytest.fixture(scope='module')
def ramp_root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('rsa_protocol'))
  _write_layout(root, 'something_something_v2', _ramp_frames)
  return root


def _ramp_config(root):
  # mean 0, std 1/255: the pipeline's values are pixel values (whether normalised or uint8).
  return ml_collections.ConfigDict(_config(
      'something_something_v2', root, crop_size=RCROP, train_short_side=(RCROP, RCROP),
      eval_short_side=RCROP, eval_frame_size=FRAME_SIZE, mean=(0., 0., 0.),
      std=(1 / 255,) * 3))


def _bilinear(frames, out_h, out_w):
  """float64 bilinear resize of (T, h, w, C) with pixel centres aligned (half-pixel rule)."""
  _, h, w, _ = frames.shape
  y = np.clip((np.arange(out_h) + 0.5) * h / out_h - 0.5, 0, h - 1)
  x = np.clip((np.arange(out_w) + 0.5) * w / out_w - 0.5, 0, w - 1)
  y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
  y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
  wy, wx = (y - y0)[None, :, None, None], (x - x0)[None, None, :, None]
  f = frames.astype(np.float64)
  rows = f[:, y0] * (1 - wy) + f[:, y1] * wy
  return rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx


def _rsa_views(root, num_clips):
  it = ss.make_eval_iterator(_ramp_config(root), 4, num_clips=num_clips, frame_size=FRAME_SIZE)
  batches = list(it)
  it.close()
  cat = {k: np.concatenate([b[k] for b in batches]) for k in ('video', 'video_index', 'mask',
                                                               'label')}
  return cat


@pytest.fixture(scope='module')
def ramp_folders(tmp_path_factory):
  """Something-Something V1 layout (JPEG frame folders) of the same ramp videos."""
  root = str(tmp_path_factory.mktemp('rsa_protocol_v1'))
  names = [n for n, _, k in SPLITS['val'] if k == 'ok']
  for name in names:
    folder = os.path.join(root, ss.FRAMES_DIR, name)
    os.makedirs(folder)
    for i, f in enumerate(_ramp_frames(0)):
      Image.fromarray(f).save(os.path.join(folder, f'{i + 1:05d}.jpg'), quality=95,
                              subsampling=0)
  with open(os.path.join(root, 'something-something-v1-labels.csv'), 'w') as f:
    f.write('\n'.join(SSV2_CLASSES[i] for i in range(3)) + '\n')
  with open(os.path.join(root, 'something-something-v1-validation.csv'), 'w') as f:
    f.write(''.join(f'{n};{SSV2_CLASSES[0]}\n' for n in names))
  return root, names


def _view_errors(cfg, paths, num_clips):
  """|pipeline view - NumPy bilinear resize to FRAME_SIZE + centre crop of the decoded frames|,
  (views, T, crop, crop, 3), for every view of ``paths`` (all decodable)."""
  it = ss.make_eval_iterator(cfg, 4, num_clips=num_clips, frame_size=FRAME_SIZE)
  batches = list(it)
  it.close()
  video = np.concatenate([b['video'] for b in batches])
  index = np.concatenate([b['video_index'] for b in batches])
  mask = np.concatenate([b['mask'] for b in batches])
  top, left = (FRAME_SIZE[0] - RCROP) // 2, (FRAME_SIZE[1] - RCROP) // 2
  errors = []
  for row in np.flatnonzero(mask):
    native = decode.decode_segments(paths[index[row]], NUM_FRAMES, train=False,
                                    clip_index=row % num_clips, num_clips=num_clips)
    assert native.shape[1:3] == (RH, RW)
    want = _bilinear(native, *FRAME_SIZE)[:, top:top + RCROP, left:left + RCROP]
    errors.append(np.asarray(video[row], np.float64) - want)
  assert len(errors) == len(paths) * num_clips
  return np.stack(errors)


@pytest.mark.parametrize('num_clips', [1, 2])
def test_rsa_views_of_frame_folders_are_resize_then_centre_crop(ramp_folders, num_clips):
  """Frame folders (PIL bilinear resize): equal to the NumPy reference to within rounding (PIL's
  fixed-point weights, JPEG noise). A crop one pixel off would miss by 2.5 (columns) to 3.3
  (rows) everywhere, a short-side resize by up to 20."""
  root, names = ramp_folders
  cfg = _ramp_config(root)
  cfg.name = 'something_something_v1'
  err = _view_errors(cfg, [os.path.join(root, ss.FRAMES_DIR, n) for n in names], num_clips)
  assert np.abs(err).max() <= 1.5 and np.abs(err).mean() < 0.5, np.abs(err).max()


@pytest.mark.parametrize('num_clips', [1, 2])
def test_rsa_views_of_webm_videos_are_resize_then_centre_crop(ramp_root, num_clips):
  """webm (swscale resizes while converting from YUV): a colour offset of a few levels and a
  ripple against the reference, which converts first; the row and column profiles (the
  geometry) have the reference's slopes."""
  paths = [_path('something_something_v2', ramp_root, n) for n, _, k in SPLITS['val']
           if k != 'missing']
  err = _view_errors(_ramp_config(ramp_root), paths[:2], num_clips)
  bias = err.mean(axis=(0, 1, 2, 3))
  assert np.abs(bias).max() <= 3.5, bias
  rows = err[..., 0].mean(axis=(0, 1, 3))  # R ramp along the rows
  cols = err[..., 1].mean(axis=(0, 1, 2))  # G ramp along the columns
  # The error's trend over the crop: a short-side resize (48 x 96) would give 0.8 per column.
  slopes = [np.polyfit(np.arange(RCROP), p, 1)[0] for p in (rows, cols)]
  assert np.abs(slopes).max() < 0.05, slopes
  assert np.abs(rows - bias[0]).mean() < 1.0 and np.abs(cols - bias[1]).mean() < 1.0


class _PixelClassifier(nn.Module):
  """Logits = a dense layer on the whole clip: every view gets its own scores."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    return nn.Dense(3)(x.reshape(x.shape[0], -1) / 255.0)


@pytest.fixture(scope='module')
def tiny_model():
  cfg = helpers_train.get_config('video')
  cfg.model.num_classes = 3
  model = _PixelClassifier()
  variables = model.init(jax.random.key(0), np.zeros((1, NUM_FRAMES, RCROP, RCROP, 3)))
  return cfg, model, variables, mesh_lib.make_mesh()


def test_rsa_protocol_averages_the_softmax_of_its_clips(ramp_root, tiny_model):
  cfg, model, variables, mesh = tiny_model
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  cfg.data = _ramp_config(ramp_root)
  cfg.eval_num_clips = 2
  cfg.eval_batch_size = 4
  spec = protocols.rsa_view_spec(cfg)
  assert (spec.num_clips, spec.num_crops, spec.frame_size) == (2, 1, FRAME_SIZE)
  acc, info = protocols.predict_views(cfg, model, variables, mesh, spec, label='rsa')
  assert info['frame_size'] == FRAME_SIZE and info['num_clips'] == 2

  views = _rsa_views(ramp_root, 2)
  apply = jax.jit(lambda x: model.apply(variables, x, train=False))
  logits = np.asarray(apply(np.asarray(views['video'][:4], np.float32)), np.float64)
  e = np.exp(logits - logits.max(1, keepdims=True))
  probs = e / e.sum(1, keepdims=True)
  hand = np.stack([probs[0:2].mean(0), probs[2:4].mean(0)])  # videos 0, 1: two clips each
  assert acc.video_ids().tolist() == [0, 1] and acc.view_counts().tolist() == [2, 2]
  np.testing.assert_allclose(acc.mean_probs(), hand, rtol=1e-4, atol=1e-6)

  result = protocols.PROTOCOLS['rsa'](cfg, model, variables, mesh)
  labels = views['label'][[0, 2]]
  assert result['top1'] == pytest.approx(np.mean(np.argmax(hand, 1) == labels))
  assert result['num_examples'] == 2 and result['num_views'] == 4
  assert result['num_videos_skipped'] == 1  # the broken webm


def test_rsa_protocol_config_errors(ramp_root, tiny_model):
  cfg = ml_collections.ConfigDict(tiny_model[0].to_dict())
  cfg.data = _ramp_config(ramp_root)
  cfg.eval_num_clips = 0
  with pytest.raises(protocols.ConfigError, match='config.eval_num_clips=0'):
    protocols.rsa_view_spec(cfg)
  cfg.eval_num_clips = 1
  cfg.data.eval_frame_size = (24, 320)
  with pytest.raises(protocols.ConfigError, match='config.data.eval_frame_size'):
    protocols.rsa_view_spec(cfg)


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
