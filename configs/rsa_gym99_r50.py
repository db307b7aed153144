"""RSA TSN ResNet-50 on FineGym Gym99 (99 element classes): RSA supplement §1, "For FineGym, we
sample 8 frames from each video and train for total 50 epochs. We use dropout of 0.5 before the
final classifier"; "Testing ... For FineGym, we sample a single clip consists of 8 frames".

Fields as ``ssv1_rsa_r50`` (supplement §1's general training paragraph: ImageNet initialisation,
batch 64, lr 0.02, 5 warm-up epochs then cosine, SGD momentum 0.9; the released code's Nesterov,
wd 5e-4, grad clip 100; TSN segment sampling; no flip for classes whose name has 'left' /
'right') except: dropout 0.5, and no label smoothing and no stochastic depth (§1 gives those two
for SS-V1 & V2 only -- our reading). 8 frames, 50 epochs as SS. Test (``evaluate.py
--protocol=rsa``): 1 clip, frames resized to 240 x 320, centre 224 crop. Data:
``bat_jax.data.finegym`` (``subactions/<clip_id>.mp4`` + ``gym99_{train_element_v1.1,
val_element}.txt`` + ``gym99_categories.txt``)."""

from configs import ssv1_rsa_r50


def get_config():
  config = ssv1_rsa_r50.get_config()
  config.model.num_classes = 99
  config.model.dropout_rate = 0.5
  config.model.stochastic_depth = 0.0
  config.label_smoothing = 0.0
  config.data.name = 'gym99'
  config.eval_num_clips = 1
  return config
