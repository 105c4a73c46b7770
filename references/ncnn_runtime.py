"""The ``ncnn`` runtime on the CPU, in fp32 throughout, as the reference for converted ncnn models."""

import ncnn
import numpy as np


def run_ncnn(param_path: str, image: np.ndarray, bin_path: str | None = None) -> np.ndarray:
    """Runs ``param_path`` (+ the ``.bin`` beside it) on ``image`` (1, H, W, C) float32 -> (1, H', W', C').

    Vulkan and every fp16 option are off so ncnn computes in float32 as the JAX model does. The input blob is
    ``data`` and the output ``output``, as in Real-ESRGAN's and SPAN's files; ncnn holds images as CHW.
    """
    net = ncnn.Net()
    for option in ("use_vulkan_compute", "use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic"):
        setattr(net.opt, option, False)
    net.opt.num_threads = 1
    assert net.load_param(param_path) == 0, f"ncnn cannot load {param_path}"
    bin_path = bin_path or param_path[: -len(".param")] + ".bin"
    assert net.load_model(bin_path) == 0, f"ncnn cannot load {bin_path}"
    # ncnn.Mat wraps this array's memory without copying: it must stay alive (bound here) until extract.
    chw = np.ascontiguousarray(image[0].transpose(2, 0, 1), np.float32)
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(chw))
    status, out = extractor.extract("output")
    assert status == 0, f"ncnn failed to run {param_path} ({status})"
    return np.array(out).transpose(1, 2, 0)[None].copy()
