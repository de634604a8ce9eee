"""int8 quantization with NNCF (PTQ, QAT) and the quantized-model artifact that `compress export` reads.

in_memory.py: NNCF on a model in memory; folders.py: the stage on artifact folders (quantize_artifact);
artifact.py: the quantized artifact's own format."""

from .artifact import (CALIBRATION_FILE, QUANTIZED_FILE, QUANTIZED_FORMAT, QuantizedArtifact, is_quantized_artifact,
                       load_quantized, save_quantized)
from .calibration import calibration_and_held_out, calibration_faces
from .folders import MODES, quantize_artifact
from .in_memory import (DEFAULT_KEEP_FLOAT, OVERFLOW_FIX, fake_quant_cosine, float_weights, ignored_scope_for, ptq,
                         qat, quantizer_placement, resolve_keep_float)

__all__ = [
    "CALIBRATION_FILE", "DEFAULT_KEEP_FLOAT", "MODES", "OVERFLOW_FIX", "QUANTIZED_FILE", "QUANTIZED_FORMAT",
    "QuantizedArtifact",
    "calibration_and_held_out", "calibration_faces", "fake_quant_cosine", "float_weights", "ignored_scope_for",
    "is_quantized_artifact", "load_quantized", "ptq", "qat", "quantize_artifact", "quantizer_placement",
    "resolve_keep_float", "save_quantized",
]
