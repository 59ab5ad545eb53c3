"""nmrladder: denoise 1D NMR spectra learned from SNR ladders.

Subpackages (one import namespace over the repository's top-level folders):

- ``nmrladder.runtime``  (runtime/): torch-free preprocessing, sessions, Denoiser, file I/O
- ``nmrladder.kernels``  (csrc/):    compiled preprocessing kernels
- ``nmrladder.train``    (train/):   simulator, model, losses, training, evaluation
- ``nmrladder.export``   (export/):  ONNX / TensorRT export and parity
"""

__version__ = "0.1.0"
