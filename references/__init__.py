"""Reference implementations that tests and benchmarks compare the library against: PyTorch twins of the networks,
losses and steps (written from the papers and the released code) and the released detection pipeline in
numpy/cv2. They import torch, numpy, cv2 and scipy, never desra_jax, so that they stay independent of what they
check."""
