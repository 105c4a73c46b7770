r"""Converts a PyTorch checkpoint or an ncnn model into a desra-jax model directory
(desra_jax.models.directory layout), and a model directory into ncnn files.

    python -m experiments.convert rrdbnet RealESRGAN_x4plus.pth models/realesrgan_x4 [--scale 4] [--num_in_ch 3]
    python -m experiments.convert srvgg realesr-general-x4v3.pth models/general_x4v3
    python -m experiments.convert discriminator net_d.pth models/unet_d
    python -m experiments.convert vgg19 vgg19.pth models/vgg19 [--overwrite]
    python -m experiments.convert ncnn realesrgan-x4plus.param models/realesrgan_x4plus
    python -m experiments.convert to-ncnn models/realesrgan_x4plus exported/x4plus [--storage fp16|fp32] \
        [--overwrite]

IN is a ``.pth`` (read with torch.load, weights_only) or ``.safetensors`` file; BasicSR's ``params_ema`` /
``params`` wrappers are unwrapped. ``ncnn`` reads an ncnn ``.param`` and the ``.bin`` beside it (RRDBNet,
SRVGGNetCompact or SPAN, recognised from the graph), or the bare name of a model an installed package ships
(``realesrgan-x4plus``, ``spanx4_ch48``, ...). OUT is written atomically; it is loaded again with
``desra_jax.models.directory.load_model(OUT)``. ``to-ncnn`` writes a model directory's RRDBNet (x4),
SRVGGNetCompact or SPAN as ``OUT.param`` + ``OUT.bin``, weights in float16 (as Real-ESRGAN ships them) or
float32, for the ncnn runtimes (input blob ``data``, output ``output``, values in [0, 1]); the ``.bin`` appears
before the ``.param``, so a reader never sees a ``.param`` with another model's ``.bin``, and an existing pair is
replaced only with ``--overwrite``. An unreadable or
mismatched IN is reported by file name with exit status 1.
"""

from __future__ import annotations

from absl import app, flags

from desra_jax.models.directory import count_parameters, module_config, save_model
from experiments.command import run_command

_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace OUT (to-ncnn: OUT.param and OUT.bin) if it exists.")
_SCALE = flags.DEFINE_enum("scale", None, ["1", "2", "4"], "rrdbnet: output scale, when conv_first is ambiguous.")
_NUM_IN_CH = flags.DEFINE_integer("num_in_ch", None, "rrdbnet: input colour channels (default: 3).")
_STORAGE = flags.DEFINE_enum("storage", "fp16", ["fp16", "fp32"], "to-ncnn: how the weight blobs are stored.")


def _read(kind: str, source: str):
    """``(module, variables)`` of ``source`` read as ``kind``, ``variables["params"]`` among them."""
    from desra_jax import convert

    if kind == "discriminator":
        return convert.load_discriminator(source)
    if kind == "rrdbnet":
        scale = None if _SCALE.value is None else int(_SCALE.value)
        module, params = convert.load_rrdbnet(source, num_in_ch=_NUM_IN_CH.value, scale=scale)
    elif kind == "ncnn":
        path = convert.resolve_model(source)
        if not path.endswith(".param"):
            raise ValueError(f"{path}: expected an ncnn .param file (its .bin beside it)")
        module, params = convert.load_ncnn(path)
        print(f"read {path}")
    else:
        module, params = {"srvgg": convert.load_srvgg, "vgg19": convert.load_vgg19}[kind](source)
    return module, {"params": params}


SUBCOMMANDS = ("rrdbnet", "srvgg", "discriminator", "vgg19", "ncnn", "to-ncnn")


def to_ncnn(source: str, prefix: str) -> list[str]:
    """Writes the model directory ``source`` as ``prefix.param`` + ``prefix.bin``; returns the lines to print."""
    from desra_jax.convert import write_ncnn
    from desra_jax.models.directory import load_model

    module, variables = load_model(source)
    written = write_ncnn(module, variables["params"], f"{prefix}.param", storage=_STORAGE.value,
                         overwrite=_OVERWRITE.value)
    return [f"wrote {' and '.join(written)} ({type(module).__name__}, {_STORAGE.value} weights, from {source})"]


def to_directory(kind: str, source: str, target: str) -> list[str]:
    """Converts ``source``, read as ``kind``, into the model directory ``target``; returns the lines to print."""
    module, variables = _read(kind, source)
    extra = {name: tree for name, tree in variables.items() if name != "params"}
    written = save_model(target, module, variables["params"], extra, overwrite=_OVERWRITE.value)
    config = ", ".join(
        f"{name}={value['dtype'] if isinstance(value, dict) else value}"  # dtypes are stored as {"dtype": name}
        for name, value in module_config(module)["config"].items()
    )
    return [f"wrote {written}", f"  architecture: {type(module).__name__}({config})",
            f"  parameters: {count_parameters(variables['params']):,} (from {source})"] + (
        [f"  other collections: {', '.join(sorted(extra))}"] if extra else [])


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[1] not in SUBCOMMANDS:
        raise app.UsageError(f"usage: python -m experiments.convert {{{','.join(SUBCOMMANDS)}}} IN OUT [flags]")
    kind, source, target = argv[1:]
    # the converters and load_model name the file, the key or the architecture that does not fit
    lines = run_command(argv, lambda: to_ncnn(source, target) if kind == "to-ncnn" else
                        to_directory(kind, source, target), (OSError, ValueError, ImportError), arguments=True)
    if lines is None:
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    app.run(main)
