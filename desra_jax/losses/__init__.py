"""Losses: pure functions returning batch-mean scalars, jit-safe."""
