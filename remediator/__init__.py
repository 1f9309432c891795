"""remediator: find and fix NVIDIA driver / CUDA / cuDNN / framework mismatches across a GPU fleet."""

__version__ = "0.1.0"
