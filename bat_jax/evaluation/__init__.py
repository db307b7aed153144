"""Evaluation: the jitted eval / predict steps (``steps``), metrics from sums and the per-video
view accumulator (``metrics``), the protocols (``protocols``: clip, 30-view, 250-view, ImageNet;
``PROTOCOLS``) and a progress bar (``progress``); view geometry is ``bat_jax.data.views``.
Restoring a checkpoint to evaluate it is training's (``bat_jax.training.evaluate``, behind
``evaluate.py``)."""
