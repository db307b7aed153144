"""RSA TSN ResNet-50 on Diving-48 (48 classes, V2 annotations): RSA supplement §1, "For
Diving-48, we sample 16 frames from each video and train for total 30 epochs. We use dropout of
0.5 before the final classifier for regularization"; "Testing ... For Diving-48, we sample two
clips consist of 16 frames, and average softmax scores for inference".

Fields as ``ssv1_rsa_r50`` (supplement §1's general training paragraph: ImageNet initialisation,
batch 64, lr 0.02, 5 warm-up epochs then cosine, SGD momentum 0.9; the released code's Nesterov,
wd 5e-4, grad clip 100; TSN segment sampling; no flip for 'left' / 'right' classes, which no
Diving-48 class has) except: 16 frames, 30 epochs, dropout 0.5, and no label smoothing and no
stochastic depth (§1 gives those two for SS-V1 & V2 only; the Diving-48 sentence names dropout
as its regularisation -- our reading). Test (``evaluate.py --protocol=rsa``): 2 clips
(``eval_num_clips``), frames resized to 240 x 320, centre 224 crop, softmax averaged; on the
test split (Diving-48 has no validation split). Data: ``bat_jax.data.diving48``
(``rgb/<vid_name>.mp4`` + ``Diving48_V2_{train,test}.json`` + ``Diving48_vocab.json``)."""

from configs import ssv1_rsa_r50


def get_config():
  config = ssv1_rsa_r50.get_config('frames=16')
  config.model.num_classes = 48
  config.model.dropout_rate = 0.5
  config.model.stochastic_depth = 0.0
  config.label_smoothing = 0.0
  config.num_epochs = 30
  config.data.name = 'diving48'
  config.data.eval_split = 'test'
  config.eval_num_clips = 2
  return config
