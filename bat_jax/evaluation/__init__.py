"""Evaluation protocols; the drivers are in ``bat_jax.training.loop`` (``PROTOCOLS``,
``evaluate_checkpoint``) behind ``evaluate.py``, the view geometry in ``bat_jax.data.views``."""
