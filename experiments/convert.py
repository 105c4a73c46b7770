r"""Converts a PyTorch checkpoint into a desra-jax model directory (desra_jax.models.directory layout).

    python -m experiments.convert rrdbnet RealESRGAN_x4plus.pth models/realesrgan_x4 [--scale 4] [--num_in_ch 3]
    python -m experiments.convert discriminator net_d.pth models/unet_d
    python -m experiments.convert vgg19 vgg19.pth models/vgg19 [--overwrite]

IN is a ``.pth`` (read with torch.load, weights_only) or ``.safetensors`` file; BasicSR's ``params_ema`` /
``params`` wrappers are unwrapped. OUT is written atomically; it is loaded again with
``desra_jax.models.directory.load_model(OUT)``. An unreadable or mismatched IN is reported by file name
with exit status 1.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

from desra_jax.models.directory import count_parameters, module_config, save_model

_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace OUT if it exists.")
_SCALE = flags.DEFINE_enum("scale", None, ["1", "2", "4"], "rrdbnet: output scale, when conv_first is ambiguous.")
_NUM_IN_CH = flags.DEFINE_integer("num_in_ch", None, "rrdbnet: input colour channels (default: 3).")


def _load_rrdbnet(path: str):
    from desra_jax.convert import load_rrdbnet

    scale = None if _SCALE.value is None else int(_SCALE.value)
    model, params = load_rrdbnet(path, num_in_ch=_NUM_IN_CH.value, scale=scale)
    return model, {"params": params}


def _load_discriminator(path: str):
    from desra_jax.convert import load_discriminator

    return load_discriminator(path)


def _load_vgg19(path: str):
    from desra_jax.convert import load_vgg19

    model, params = load_vgg19(path)
    return model, {"params": params}


#: Subcommand -> reader returning ``(module, variables)`` with ``variables["params"]``.
LOADERS = {"rrdbnet": _load_rrdbnet, "discriminator": _load_discriminator, "vgg19": _load_vgg19}


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[1] not in LOADERS:
        raise app.UsageError(f"usage: python -m experiments.convert {{{','.join(LOADERS)}}} IN OUT [flags]")
    kind, source, target = argv[1:]
    if not flags.FLAGS["verbosity"].present:  # orbax logs every step of a save at INFO
        logging.set_verbosity(logging.WARNING)
    try:
        module, variables = LOADERS[kind](source)
        extra = {name: tree for name, tree in variables.items() if name != "params"}
        written = save_model(target, module, variables["params"], extra, overwrite=_OVERWRITE.value)
    except (OSError, ValueError, ImportError) as error:  # read_state_dict and the converters name the file
        print(f"error: {error}", file=sys.stderr)
        return 1
    config = ", ".join(
        f"{name}={value['dtype'] if isinstance(value, dict) else value}"  # dtypes are stored as {"dtype": name}
        for name, value in module_config(module)["config"].items()
    )
    print(f"wrote {written}")
    print(f"  architecture: {type(module).__name__}({config})")
    print(f"  parameters: {count_parameters(variables['params']):,} (from {source})")
    if extra:
        print(f"  other collections: {', '.join(sorted(extra))}")
    return 0


if __name__ == "__main__":
    app.run(main)
