"""facecompress: train, prune, quantize, export and benchmark the paper's MobileNet face-recognition model."""

__version__ = "0.1.0"

import os as _os

# NNCF compiles its C++ fake-quantize extension on first use and gives up after 60 s by default; on a 2-core
# machine that build alone took 109 s, so a first quantize or int8 export failed there. A user's setting wins.
_os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "900")
