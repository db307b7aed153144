"""bat_jax: non-local attention blocks (BAT, NL, ChebySNL, ...) for image and video classification."""

from bat_jax.models.registry import build_model

__all__ = ['build_model']
