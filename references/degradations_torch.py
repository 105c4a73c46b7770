"""PyTorch / numpy twin of Real-ESRGAN's degradation, written from BasicSR 1.4.2 and Real-ESRGAN as released.

The kernels as ``basicsr/data/degradations.py`` computes them (numpy float64, scipy's J1); ``filter2D`` and
``USMSharp`` as ``basicsr/utils/img_process_util.py``; ``DiffJPEG`` as ``basicsr/utils/diffjpeg.py``; the noise
as ``random_add_gaussian_noise_pt`` / ``random_add_poisson_noise_pt``; the kernels' draws as
``RealESRGANDataset.__getitem__`` and the pipeline as ``RealESRGANModel.feed_data``, which draws the resize,
noise type and final order once per batch. Tensors are NCHW as there; the helpers at the end take and return
NHWC numpy.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from scipy import special
from torch.nn import functional as F

# ----------------------------------------------------------------- kernels (numpy, float64)


def mesh_grid(kernel_size):
    ax = np.arange(-kernel_size // 2 + 1.0, kernel_size // 2 + 1.0)
    xx, yy = np.meshgrid(ax, ax)
    return np.stack([xx, yy], axis=-1)


def sigma_matrix2(sig_x, sig_y, theta):
    d_matrix = np.array([[sig_x**2, 0], [0, sig_y**2]])
    u_matrix = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return u_matrix @ d_matrix @ u_matrix.T


def _quadratic(kernel_size, sig_x, sig_y, theta, isotropic):
    grid = mesh_grid(kernel_size)
    sigma = np.diag([sig_x**2, sig_x**2]) if isotropic else sigma_matrix2(sig_x, sig_y, theta)
    return np.sum((grid @ np.linalg.inv(sigma)) * grid, axis=2)


def bivariate_gaussian(kernel_size, sig_x, sig_y, theta, isotropic=True):
    kernel = np.exp(-0.5 * _quadratic(kernel_size, sig_x, sig_y, theta, isotropic))
    return kernel / kernel.sum()


def bivariate_generalized_gaussian(kernel_size, sig_x, sig_y, theta, beta, isotropic=True):
    kernel = np.exp(-0.5 * np.power(_quadratic(kernel_size, sig_x, sig_y, theta, isotropic), beta))
    return kernel / kernel.sum()


def bivariate_plateau(kernel_size, sig_x, sig_y, theta, beta, isotropic=True):
    kernel = np.reciprocal(np.power(_quadratic(kernel_size, sig_x, sig_y, theta, isotropic), beta) + 1)
    return kernel / kernel.sum()


def circular_lowpass_kernel(cutoff, kernel_size, pad_to=0):
    centre = (kernel_size - 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = np.fromfunction(
            lambda x, y: cutoff
            * special.j1(cutoff * np.sqrt((x - centre) ** 2 + (y - centre) ** 2))
            / (2 * np.pi * np.sqrt((x - centre) ** 2 + (y - centre) ** 2)),
            [kernel_size, kernel_size],
        )
    kernel[(kernel_size - 1) // 2, (kernel_size - 1) // 2] = cutoff**2 / (4 * np.pi)
    kernel = kernel / np.sum(kernel)
    if pad_to > kernel_size:
        pad = (pad_to - kernel_size) // 2
        kernel = np.pad(kernel, ((pad, pad), (pad, pad)))
    return kernel


def pad_kernel(kernel, size=21):
    pad = (size - kernel.shape[0]) // 2
    return np.pad(kernel, ((pad, pad), (pad, pad)))


def random_mixed_kernels(rng, kernel_list, kernel_prob, kernel_size, sigma_range, betag_range, betap_range):
    """``random_mixed_kernels`` with sigma_y_range = sigma_x_range, rotation in [-pi, pi], no noise."""
    kernel_type = kernel_list[rng.choice(len(kernel_list), p=np.asarray(kernel_prob) / np.sum(kernel_prob))]
    isotropic = kernel_type.endswith("iso") and not kernel_type.endswith("aniso")
    sigma_x = rng.uniform(*sigma_range)
    sigma_y, rotation = (sigma_x, 0.0) if isotropic else (rng.uniform(*sigma_range), rng.uniform(-math.pi, math.pi))
    if kernel_type in ("iso", "aniso"):
        return bivariate_gaussian(kernel_size, sigma_x, sigma_y, rotation, isotropic)
    beta_range = betag_range if kernel_type.startswith("generalized") else betap_range
    beta = rng.uniform(beta_range[0], 1) if rng.uniform() < 0.5 else rng.uniform(1, beta_range[1])
    if kernel_type.startswith("generalized"):
        return bivariate_generalized_gaussian(kernel_size, sigma_x, sigma_y, rotation, beta, isotropic)
    return bivariate_plateau(kernel_size, sigma_x, sigma_y, rotation, beta, isotropic)


def dataset_kernels(rng, opt):
    """kernel1, kernel2, sinc_kernel (21 x 21 float32 tensors) as ``RealESRGANDataset.__getitem__`` draws them."""
    kernel_range = [2 * v + 1 for v in range(3, 11)]

    def blur(suffix):
        size = kernel_range[rng.integers(len(kernel_range))]
        if rng.uniform() < opt["sinc_prob" + suffix]:
            cutoff = rng.uniform(np.pi / 3, np.pi) if size < 13 else rng.uniform(np.pi / 5, np.pi)
            kernel = circular_lowpass_kernel(cutoff, size)
        else:
            kernel = random_mixed_kernels(
                rng, opt["kernel_list" + suffix], opt["kernel_prob" + suffix], size, opt["blur_sigma" + suffix],
                opt["betag_range" + suffix], opt["betap_range" + suffix],
            )
        return torch.FloatTensor(pad_kernel(kernel))

    kernel1, kernel2 = blur(""), blur("2")
    if rng.uniform() < opt["final_sinc_prob"]:
        size = kernel_range[rng.integers(len(kernel_range))]
        sinc = torch.FloatTensor(circular_lowpass_kernel(rng.uniform(np.pi / 3, np.pi), size, pad_to=21))
    else:
        sinc = torch.zeros(21, 21)
        sinc[10, 10] = 1
    return kernel1, kernel2, sinc


# ----------------------------------------------------------------- filter2D, USMSharp


def filter2d(img, kernel):
    """BasicSR's ``filter2D``: img (b, c, h, w), kernel (b, k, k) or (1, k, k)."""
    k = kernel.size(-1)
    b, c, h, w = img.size()
    img = F.pad(img, (k // 2, k // 2, k // 2, k // 2), mode="reflect")
    ph, pw = img.size()[-2:]
    if kernel.size(0) == 1:
        return F.conv2d(img.reshape(b * c, 1, ph, pw), kernel.view(1, 1, k, k)).view(b, c, h, w)
    kernel = kernel.view(b, 1, k, k).repeat(1, c, 1, 1).view(b * c, 1, k, k)
    return F.conv2d(img.reshape(1, b * c, ph, pw), kernel, groups=b * c).view(b, c, h, w)


def usm_sharp(img, weight=0.5, radius=50, threshold=10):
    """BasicSR's ``USMSharp(radius)(img, weight, threshold)``."""
    if radius % 2 == 0:
        radius += 1
    kernel = cv2.getGaussianKernel(radius, 0)
    kernel = torch.FloatTensor(np.dot(kernel, kernel.transpose())).unsqueeze_(0)
    blur = filter2d(img, kernel)
    residual = img - blur
    mask = (torch.abs(residual) * 255 > threshold).float()
    soft_mask = filter2d(mask, kernel)
    sharp = torch.clip(img + weight * residual, 0, 1)
    return soft_mask * sharp + (1 - soft_mask) * img


# ----------------------------------------------------------------- DiffJPEG

_Y_TABLE = torch.tensor(
    [[16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
     [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
     [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]],
    dtype=torch.float32,
).T
_C_TABLE = torch.full((8, 8), 99.0)
_C_TABLE[:4, :4] = torch.tensor([[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]).T


def _dct_tensors():
    x, y, u, v = np.meshgrid(*(4 * [np.arange(8)]), indexing="ij")
    forward = np.cos((2 * x + 1) * u * np.pi / 16) * np.cos((2 * y + 1) * v * np.pi / 16)
    inverse = np.cos((2 * u + 1) * x * np.pi / 16) * np.cos((2 * v + 1) * y * np.pi / 16)
    alpha = np.array([1.0 / np.sqrt(2)] + [1] * 7)
    return (torch.from_numpy(forward).float(), torch.from_numpy(inverse).float(),
            torch.from_numpy(np.outer(alpha, alpha)).float())


_DCT, _IDCT, _ALPHA = _dct_tensors()


def quality_to_factor(quality):
    return 5000.0 / quality / 100.0 if quality < 50 else (200.0 - quality * 2) / 100.0


def _compress_decompress(plane, table, factor, rounding):
    """plane (b, h, w) on [0, 255] -> DCT, quantise, dequantise, IDCT, as CompressJpeg / DeCompressJpeg."""
    b, h, w = plane.shape
    blocks = plane.view(b, h // 8, 8, -1, 8).permute(0, 1, 3, 2, 4).contiguous().view(b, -1, 8, 8)
    coefficients = 0.25 * _ALPHA * torch.tensordot(blocks - 128, _DCT, dims=2)
    steps = table.expand(b, 1, 8, 8) * factor.view(b, 1, 1, 1)
    coefficients = rounding(coefficients / steps) * steps
    blocks = 0.25 * torch.tensordot(coefficients * _ALPHA, _IDCT, dims=2) + 128
    return blocks.view(b, h // 8, w // 8, 8, 8).permute(0, 1, 3, 2, 4).contiguous().view(b, h, w)


def diff_jpeg(x, quality, differentiable=False):
    """``DiffJPEG(differentiable)(x, quality)``: x (b, 3, h, w) RGB in [0, 1], quality (b,) tensor."""
    if differentiable:
        def rounding(t):
            return torch.round(t) + (t - torch.round(t)) ** 3
    else:
        rounding = torch.round
    factor = torch.tensor([quality_to_factor(float(q)) for q in quality], dtype=torch.float32)
    h, w = x.shape[-2:]
    x = F.pad(x, (0, -w % 16, 0, -h % 16), mode="constant", value=0)
    matrix = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]).T
    image = torch.tensordot((x * 255).permute(0, 2, 3, 1), matrix, dims=1) + torch.tensor([0.0, 128.0, 128.0])
    y = image[..., 0]
    cb = F.avg_pool2d(image[..., 1].unsqueeze(1), kernel_size=2, stride=(2, 2), count_include_pad=False).squeeze(1)
    cr = F.avg_pool2d(image[..., 2].unsqueeze(1), kernel_size=2, stride=(2, 2), count_include_pad=False).squeeze(1)
    y = _compress_decompress(y, _Y_TABLE, factor, rounding)
    cb = _compress_decompress(cb, _C_TABLE, factor, rounding)
    cr = _compress_decompress(cr, _C_TABLE, factor, rounding)

    def upsample(c):
        return c.unsqueeze(-1).repeat(1, 1, 2, 2).view(-1, c.shape[1] * 2, c.shape[2] * 2)

    image = torch.stack([y, upsample(cb), upsample(cr)], dim=3)
    inverse = torch.tensor([[1.0, 0.0, 1.402], [1, -0.344136, -0.714136], [1, 1.772, 0]]).T
    image = torch.tensordot(image + torch.tensor([0, -128.0, -128.0]), inverse, dims=1).permute(0, 3, 1, 2)
    image = torch.min(255 * torch.ones_like(image), torch.max(torch.zeros_like(image), image)) / 255
    return image[:, :, :h, :w]


# ----------------------------------------------------------------- noise


def random_add_gaussian_noise(img, sigma_range, gray_prob):
    """``random_add_gaussian_noise_pt(img, sigma_range, clip=True, rounds=False, gray_prob)``."""
    b, _, h, w = img.size()
    sigma = (torch.rand(b) * (sigma_range[1] - sigma_range[0]) + sigma_range[0]).view(b, 1, 1, 1)
    gray = (torch.rand(b) < gray_prob).float().view(b, 1, 1, 1)
    noise_gray = (torch.randn(h, w) * sigma / 255.0).view(b, 1, h, w)
    noise = torch.randn(*img.size()) * sigma / 255.0
    noise = noise * (1 - gray) + noise_gray * gray
    return torch.clamp(img + noise, 0, 1)


def _shot_noise(img):
    img = torch.clamp((img * 255.0).round(), 0, 255) / 255.0
    vals = [2 ** np.ceil(np.log2(len(torch.unique(img[i])))) for i in range(img.size(0))]
    vals = img.new_tensor(vals).view(-1, 1, 1, 1)
    return torch.poisson(img * vals) / vals - img


def random_add_poisson_noise(img, scale_range, gray_prob):
    """``random_add_poisson_noise_pt(img, scale_range, gray_prob, clip=True, rounds=False)``."""
    b, _, h, w = img.size()
    scale = (torch.rand(b) * (scale_range[1] - scale_range[0]) + scale_range[0]).view(b, 1, 1, 1)
    gray = (torch.rand(b) < gray_prob).float().view(b, 1, 1, 1)
    weights = torch.tensor([0.2989, 0.587, 0.114]).view(1, 3, 1, 1)
    noise_gray = _shot_noise((img * weights).sum(1, keepdim=True)).expand(b, 3, h, w)
    noise = _shot_noise(img) * (1 - gray) + noise_gray * gray
    return torch.clamp(img + noise * scale, 0, 1)


# ----------------------------------------------------------------- the pipeline (RealESRGANModel.feed_data)


def _random_noise(rng, out, opt, suffix):
    if rng.uniform() < opt["gaussian_noise_prob" + suffix]:
        return random_add_gaussian_noise(out, opt["noise_range" + suffix], opt["gray_noise_prob" + suffix])
    return random_add_poisson_noise(out, opt["poisson_scale_range" + suffix], opt["gray_noise_prob" + suffix])


def _random_factor(rng, probabilities, limits):
    kind = rng.choice(3, p=probabilities)
    return rng.uniform(1, limits[1]) if kind == 0 else rng.uniform(limits[0], 1) if kind == 1 else 1.0


def _jpeg(out, jpeg_range):
    quality = out.new_zeros(out.size(0)).uniform_(*jpeg_range)
    return diff_jpeg(torch.clamp(out, 0, 1), quality)


def degrade(rng, gt, opt):
    """LR of a (b, 3, H, W) GT batch: USM (``gt_usm``), then ``feed_data``'s two stages, one draw per batch.
    rng: numpy Generator for the python/numpy draws (torch's own draws follow torch's global seed)."""
    scale = opt["scale"]
    ori_h, ori_w = gt.shape[2:]
    kernels = [dataset_kernels(rng, opt) for _ in range(gt.size(0))]
    kernel1, kernel2, sinc = (torch.stack(parts) for parts in zip(*kernels))
    modes = ["area", "bilinear", "bicubic"]
    out = usm_sharp(gt) if opt["sharpen_input"] else gt
    out = filter2d(out, kernel1)
    out = F.interpolate(out, scale_factor=_random_factor(rng, opt["resize_prob"], opt["resize_range"]),
                        mode=modes[rng.integers(3)])
    out = _random_noise(rng, out, opt, "")
    out = _jpeg(out, opt["jpeg_range"])
    if rng.uniform() < opt["second_blur_prob"]:
        out = filter2d(out, kernel2)
    factor = _random_factor(rng, opt["resize_prob2"], opt["resize_range2"])
    out = F.interpolate(out, size=(int(ori_h / scale * factor), int(ori_w / scale * factor)),
                        mode=modes[rng.integers(3)])
    out = _random_noise(rng, out, opt, "2")
    if rng.uniform() < 0.5:
        out = F.interpolate(out, size=(ori_h // scale, ori_w // scale), mode=modes[rng.integers(3)])
        out = filter2d(out, sinc)
        out = _jpeg(out, opt["jpeg_range2"])
    else:
        out = _jpeg(out, opt["jpeg_range2"])
        out = F.interpolate(out, size=(ori_h // scale, ori_w // scale), mode=modes[rng.integers(3)])
        out = filter2d(out, sinc)
    return torch.clamp((out * 255.0).round(), 0, 255) / 255.0


def to_torch(images: np.ndarray) -> torch.Tensor:
    """NHWC numpy -> NCHW float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(images, np.float32).transpose(0, 3, 1, 2)))


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """NCHW tensor -> NHWC float32 numpy."""
    return tensor.detach().numpy().transpose(0, 2, 3, 1).copy()
