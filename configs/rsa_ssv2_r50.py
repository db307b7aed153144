"""RSA TSN ResNet-50 on Something-Something V2 (174 classes): RSA supplement §1, "For training
SS-V1&V2, we train models for 50 epochs": the network and every training field are those of
``ssv1_rsa_r50`` (supplement Table 2b '7, stage2-5': 22.0 M, 35.9 GFLOPs at 8 frames); only the
data set differs. Argument ``frames`` (8, default, or 16; §1 "8 or 16 frames"): the 8- and
16-frame SS-V2 rows.

Data (``bat_jax.data.something_something``, ``data.name='something_something_v2'``): the
official webm videos (``20bn-something-something-v2/<id>.webm``) and JSON label files; a video's
class is its template without the square brackets. Testing: ``evaluate.py --protocol=rsa``
(supplement §1 "Testing": 1 clip, frames resized to 240 x 320, centre 224 crop)."""

from configs import args
from configs import ssv1_rsa_r50


def get_config(arg: str | None = None):
  a = args.parse(arg, frames=8)
  config = ssv1_rsa_r50.get_config(f'frames={a.frames}')
  config.data.name = 'something_something_v2'
  return config
