"""HR/LR image pairs from a prepared tensorflow-datasets builder (``div2k/bicubic_x4`` by default), without
TensorFlow.

tfds decodes only the array_record file format without TensorFlow (``DatasetBuilder.as_data_source``, random
access through numpy); the older tfrecord format needs ``tf.data``. The images are taken as the encoded bytes
stored in the dataset (``tfds.decode.SkipDecoding``) and decoded by ``image_io.decode_image``, the reader of the
folder datasets, so both sources give the same float32 RGB pixels in [0, 1].

Examples carry no file names (tfds keeps only the features ``hr`` and ``lr`` of the div2k builder, in a shuffled
order fixed at preparation), so the images are named ``<builder>/<split>[<index>]``.
"""

from __future__ import annotations

import numpy as np

from desra_jax.data.image_io import decode_image
from desra_jax.data.sr_pairs import NamedImage

#: The image features of tfds's div2k builder (and of any builder this module reads).
HR_FEATURE, LR_FEATURE = "hr", "lr"


def load_split(
    name: str, split: str, data_dir: str = "", with_lr: bool = True
) -> tuple[list[NamedImage], list[np.ndarray] | None]:
    """The (name, HR image) list of ``split`` of the prepared builder ``name`` and the LR partner of each (None
    with ``with_lr=False``: the LR images are then not decoded).

    name: a tfds builder with its config, e.g. ``'div2k/bicubic_x4'``; data_dir: where it was prepared ('' =
    tfds's default, ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``). Images are float32 RGB (H, W, 3) in [0, 1];
    the LR images are the builder's own (for DIV2K the released MATLAB-bicubic files), (H / s, W / s, 3).

    Raises:
      ValueError naming the builder: tensorflow-datasets not installed, unknown builder or config, not prepared in
      ``data_dir``, prepared only as tfrecord, unknown split, or an undecodable image (``decode_image``).
    """
    tfds = _import_tfds()
    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(f"{name}: no such tensorflow-datasets builder (data_dir {data_dir or 'default'})") from error
    if not builder.is_prepared():
        raise ValueError(
            f"{name}: not prepared in {builder.data_dir}; prepare it once with `tfds build {name} "
            f"--file_format=array_record{f' --data_dir={data_dir}' if data_dir else ''}` "
            "or set config.data.tfds_data_dir"
        )
    skip = tfds.decode.SkipDecoding()
    try:
        source = builder.as_data_source(split, decoders={HR_FEATURE: skip, LR_FEATURE: skip})
    except NotImplementedError as error:
        raise ValueError(
            f"{name}: prepared in {builder.data_dir} as {builder.info.file_format.value}, which only TensorFlow "
            f"reads; rebuild it with `tfds build {name} --file_format=array_record`, or convert it with `tfds "
            f"convert_format --dataset_version_dir={builder.data_dir} --out_file_format=array_record` (that one "
            "needs tensorflow installed)"
        ) from error
    except ValueError as error:  # tfds's message lists the splits there are
        raise ValueError(f"{name}: {error}") from error
    hr_images, lr_images = [], [] if with_lr else None
    for index in range(len(source)):
        label = f"{name}/{split}[{index}]"
        example = source[index]
        hr_images.append((label, decode_image(example[HR_FEATURE], f"{label} {HR_FEATURE}")))
        if with_lr:
            lr_images.append(decode_image(example[LR_FEATURE], f"{label} {LR_FEATURE}"))
    return hr_images, lr_images


def _import_tfds():
    try:
        import tensorflow_datasets
    except ImportError as error:
        raise ValueError(
            "config.data.source='tfds' needs tensorflow-datasets: pip install 'desra-jax[tfds]'"
        ) from error
    return tensorflow_datasets
