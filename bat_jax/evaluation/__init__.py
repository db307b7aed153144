"""Evaluation protocols: view sampling and aggregation (``views``); the drivers are in
``bat_jax.training.loop`` (``PROTOCOLS``, ``evaluate_checkpoint``) behind ``evaluate.py``."""
