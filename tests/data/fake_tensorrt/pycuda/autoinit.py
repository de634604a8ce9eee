"""Stand-in for pycuda.autoinit: there is no CUDA context to create."""
