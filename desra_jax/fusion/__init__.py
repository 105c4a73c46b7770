"""Merging restoration results: DeSRA's pseudo ground truth (eq. 10) and multi-model fusion for deraining."""
from desra_jax.fusion.pseudo_gt import feather_mask, pseudo_gt
from desra_jax.fusion.multi_model import confidence_weights, fuse
