"""Official layouts of RSA's other data sets, generated for the tests: Something-Something V2
(VP8 webm written by PyAV + JSON), Diving-48 (H.264 mp4 + JSON) and FineGym Gym99 / Gym288
(sub-action mp4s + element lists), each split with real videos, one listed video without a file
and one broken file."""

import json
import os

import av
import ml_collections
import numpy as np

from bat_jax.data import decode, diving48, finegym, registry
from bat_jax.data import something_something as ss


T, H, W = 10, 32, 48
NUM_FRAMES, CROP = 4, 24


def coded_frames(seed):
  """uint8 (T, H, W, 3): red = frame index ramp, green / blue = a per-video pattern."""
  rng = np.random.default_rng(seed)
  f = np.zeros((T, H, W, 3), np.uint8)
  f[..., 0] = (np.arange(T) * 24)[:, None, None]
  f[..., 1] = np.linspace(0, 240, W).astype(np.uint8)[None, None, :]
  f[..., 2] = rng.integers(0, 255)
  return f


def write_webm(path, frames, fps=8):
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


def video_name(name, ds):
  if ds.startswith('gym'):
    return f'{name}xyz_E_000100_000200_A_0001_0003'
  return name


def write_layout(root, ds, frames=coded_frames):
  ext = '.webm' if ds == 'something_something_v2' else '.mp4'
  vdir = os.path.join(root, VIDEO_DIR[ds])
  os.makedirs(vdir)
  labels = LABEL_MAP[ds]
  ann = os.path.join(root, 'annotations')  # the annotation files' second place
  os.makedirs(ann)
  for split, rows in SPLITS.items():
    for n, (name, _, kind) in enumerate(rows):
      path = os.path.join(vdir, video_name(name, ds) + ext)
      if kind == 'ok':
        if ext == '.webm':
          write_webm(path, frames(n))
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
        f.write(''.join(f'{video_name(name, ds)} {labels[l]}\n' for name, l, _ in rows))
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


def data_config(ds, root, **kw):
  cfg = dict(name=ds, root=root, num_frames=NUM_FRAMES, frame_stride=1, crop_size=CROP,
             train_short_side=(H, H), eval_short_side=H, num_workers=0, num_threads=1,
             sampling='segments', no_flip_keywords=('left', 'right'))
  cfg.update(kw)
  return cfg


def data_module(ds):
  return registry.data_module(ml_collections.ConfigDict({'name': ds}))


def video_path(ds, root, name):
  ext = '.webm' if ds == 'something_something_v2' else '.mp4'
  return os.path.join(root, VIDEO_DIR[ds], video_name(name, ds) + ext)
