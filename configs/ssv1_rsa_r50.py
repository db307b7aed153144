"""RSA TSN ResNet-50 on Something-Something V1: RSA supplement Table 2b '7, stage2-5' (51.5
top-1, 35.9 GFLOPs, 22.0 M; 8 frames); also Table 2a 'L = 8' with ``--config.model.rsa.latent=16``
(20.9 M, 34.7 G) and Table 2c 'L2-norm.'. Argument ``frames`` (8, default, or 16): supplement §1
"We sample 8 or 16 frames from each video" -- the 16-frame SS-V1 row is ``:frames=16`` (clip
length and ``model.input_size``; every other field as the 8-frame row).

conv2 of res2 {2}, res3 {1,3}, res4 {1,3,5}, res5 {1} is an RSA layer (L = 8 queries, 5x7x7
kernel, D = dk = C/8, V+R kernel and context); those bottlenecks start with bn3 = 0. 174
classes: 22,034,302 params, 35.88 GMACs at 8 frames (docs/rsa_tsm.md). Training (supplement §1;
facts): batch 64, lr 0.02, 5 warm-up epochs then cosine, 50 epochs, SGD momentum 0.9 with
Nesterov (``config.nesterov``), wd 5e-4, label smoothing 0.1, dropout 0.3 before the classifier,
grad-norm clip 100; stochastic depth 0.2 (``config.model.stochastic_depth``: per-sample drop of
each bottleneck's residual branch, rate rising linearly from 0 at the first of the 16 blocks to
0.2 at the last, :mod:`bat_jax.models.regularizers`, as the released ``ops/ResNet.py``); TSN
segment sampling (``data.sampling='segments'``: one random frame per each of the 8 equal
segments in training, segment centres in evaluation; ``frame_stride`` unused); random horizontal
flip except for classes whose name has the word 'left' or 'right' (``data.no_flip_keywords``;
gives the released code's classes 86, 87, 93, 94, 166, 167). Not reproduced: the released
multi-scale corner cropping (GroupMultiScaleCrop) and 240x320 frames in training; this uses the
base scale jittering + random 224 crop. Testing (supplement §1 "Testing"; ``evaluate.py
--protocol=rsa``): 1 clip (``eval_num_clips``; "one or two clips"), frames resized to 240 x 320
(``data.eval_frame_size``, H x W), centre 224 crop. Data: the JPEG frame folders and CSVs of the
official release (``bat_jax.data.something_something``, ``data.root``)."""

from configs import args
from configs import base_kinetics as base

RSA_FRAMES = (8, 16)  # supplement §1: "We sample 8 or 16 frames from each video"


def get_config(arg: str | None = None):
  a = args.parse(arg, frames=8)
  if a.frames not in RSA_FRAMES:
    raise ValueError(f'config argument frames={a.frames}; allowed (RSA supplement §1): '
                     f'{list(RSA_FRAMES)}')
  config = base.get_config()
  config.model.bn_group_size = base.BN_GROUP_RSA
  config.model.name = 'rsa_resnet50'
  config.model.num_classes = 174
  config.model.dropout_rate = 0.3
  config.model.input_size = (a.frames, 224, 224)
  config.data.name = 'something_something_v1'
  config.data.num_frames = a.frames
  config.global_batch_size = 64
  config.base_learning_rate = 0.02
  config.lr_base_batch_size = 64
  config.num_epochs = 50
  config.schedule = 'cosine'
  config.warmup_epochs = 5
  config.weight_decay = 5e-4
  config.label_smoothing = 0.1
  config.grad_clip_norm = 100.0
  config.nesterov = True
  config.model.stochastic_depth = 0.2
  config.data.sampling = 'segments'
  config.data.no_flip_keywords = ('left', 'right')
  config.data.train_augment = 'scale_jitter'  # see the docstring
  config.data.train_short_side = (256, 320)
  config.data.mean = (0.485, 0.456, 0.406)  # 0-1 RGB, ImageNet mean / std (torchvision)
  config.data.std = (0.229, 0.224, 0.225)
  config.data.eval_frame_size = (240, 320)  # --protocol=rsa: H x W, not the short side
  config.eval_num_clips = 1  # --protocol=rsa
  return config
