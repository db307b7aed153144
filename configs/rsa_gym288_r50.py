"""RSA TSN ResNet-50 on FineGym Gym288 (288 element classes): RSA supplement §1 (FineGym: 8
frames, 50 epochs, dropout 0.5, one 8-frame test clip); every field as ``rsa_gym99_r50`` but the
classes and the annotation files (``gym288_{train_element_v1.1,val_element}.txt``,
``gym288_categories.txt``; ``bat_jax.data.finegym``)."""

from configs import rsa_gym99_r50


def get_config():
  config = rsa_gym99_r50.get_config()
  config.model.num_classes = 288
  config.data.name = 'gym288'
  return config
