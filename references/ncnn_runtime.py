"""The ``ncnn`` runtime on the CPU, in fp32 throughout, as the reference for converted ncnn models."""

import ncnn
import numpy as np


def load_net(param_path: str, bin_path: str | None = None, num_threads: int = 1) -> "ncnn.Net":
    """An ncnn Net of ``param_path`` (+ the ``.bin`` beside it) with Vulkan and every fp16 option off, so that
    ncnn computes in float32 as the JAX model does."""
    net = ncnn.Net()
    for option in ("use_vulkan_compute", "use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic"):
        setattr(net.opt, option, False)
    net.opt.num_threads = num_threads
    assert net.load_param(param_path) == 0, f"ncnn cannot load {param_path}"
    bin_path = bin_path or param_path[: -len(".param")] + ".bin"
    assert net.load_model(bin_path) == 0, f"ncnn cannot load {bin_path}"
    return net


def run_net(net: "ncnn.Net", image: np.ndarray) -> np.ndarray:
    """Runs ``net`` on ``image`` (1, H, W, C) float32 -> (1, H', W', C'). The input blob is ``data`` and the output
    ``output``, as in Real-ESRGAN's and SPAN's files; ncnn holds images as CHW."""
    # ncnn.Mat wraps this array's memory without copying: it must stay alive (bound here) until extract.
    chw = np.ascontiguousarray(image[0].transpose(2, 0, 1), np.float32)
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(chw))
    status, out = extractor.extract("output")
    assert status == 0, f"ncnn failed to run ({status})"
    return np.array(out).transpose(1, 2, 0)[None].copy()


def run_ncnn(param_path: str, image: np.ndarray, bin_path: str | None = None) -> np.ndarray:
    """Runs ``param_path`` (+ the ``.bin`` beside it) on ``image`` (1, H, W, C) float32 -> (1, H', W', C'),
    single-threaded (`load_net`, `run_net`)."""
    return run_net(load_net(param_path, bin_path), image)
