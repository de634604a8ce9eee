"""A stand-in for pycuda, for tests only: "device" memory is host memory (see ../tensorrt.py)."""
