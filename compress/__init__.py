"""facecompress: train, prune, quantize, export and benchmark the paper's MobileNet face-recognition model."""

__version__ = "0.1.0"
