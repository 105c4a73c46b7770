"""Weights from the formats users hold (PyTorch, Hugging Face, mmseg, ncnn) into Flax parameter trees (never
downloaded)."""
from desra_jax.convert.torch_state import ConversionError, read_state_dict, unwrap_state_dict
from desra_jax.convert.rrdbnet import load_rrdbnet, rrdbnet_from_torch
from desra_jax.convert.discriminators import discriminator_from_torch, load_discriminator
from desra_jax.convert.vgg import load_vgg19, vgg19_from_torch
from desra_jax.convert.lpips import load_lpips, lpips_from_torch
from desra_jax.convert.segformer import load_segformer, segformer_from_state_dict
from desra_jax.convert.deeplab import (deeplabv3_from_torchvision, deeplabv3plus_from_torch, load_backbone_into,
                                      merge_variables, resnet_backbone_from_torch)
from desra_jax.convert.srvgg import load_srvgg, srvgg_from_torch
from desra_jax.convert.ncnn import read_ncnn
from desra_jax.convert.ncnn_write import write_graph
from desra_jax.convert.ncnn_models import graph_from_model, load_ncnn, model_from_ncnn, write_ncnn
from desra_jax.convert.registry import available_models, load_sr_model, resolve_model
