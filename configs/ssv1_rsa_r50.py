"""RSA TSN ResNet-50 on Something-Something V1, 8 frames: RSA supplement Table 2b '7, stage2-5'
(51.5 top-1, 35.9 GFLOPs, 22.0 M); also Table 2a 'L = 8' with ``--config.model.rsa.latent=16``
(20.9 M, 34.7 G) and Table 2c 'L2-norm.'.

conv2 of res2 {2}, res3 {1,3}, res4 {1,3,5}, res5 {1} is an RSA layer (L = 8 queries, 5x7x7
kernel, D = dk = C/8, V+R kernel and context); those bottlenecks start with bn3 = 0. 174
classes: 22,034,302 params, 35.88 GMACs (docs/rsa_tsm.md). Training (supplement §1; facts):
batch 64, lr 0.02, 5 warm-up epochs then cosine, 50 epochs, momentum 0.9, wd 5e-4, label
smoothing 0.1, dropout 0.3, grad-norm clip 100. Not expressible here yet: Nesterov momentum,
stochastic depth 0.2, TSN segment sampling (``data.name`` has no Something-Something pipeline)."""

from configs import base_kinetics as base


def get_config():
  config = base.get_config()
  config.model.name = 'rsa_resnet50'
  config.model.num_classes = 174
  config.model.dropout_rate = 0.3
  config.data.name = 'something_something_v1'
  config.global_batch_size = 64
  config.base_learning_rate = 0.02
  config.lr_base_batch_size = 64
  config.num_epochs = 50
  config.schedule = 'cosine'
  config.warmup_epochs = 5
  config.weight_decay = 5e-4
  config.label_smoothing = 0.1
  config.grad_clip_norm = 100.0
  return config
