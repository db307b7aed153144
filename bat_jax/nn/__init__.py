"""Shared layers (Conv, BatchNorm, pooling, remat) and, behind one backend switch, the XLA:CPU speed paths."""
