"""Flax (linen) networks, NHWC, float32 in [0, 1]."""
