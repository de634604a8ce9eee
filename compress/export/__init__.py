"""Export: a trained (optionally quantized) model -> a file each target board's runtime loads, with parity
records (see formats.FORMATS for the table of formats)."""

from .in_memory import export_model
from .formats import FORMATS, Format, format_for_target
from .parity import parity_record
from .runtimes import LiteRtEmbedder, OpenVinoEmbedder, load_runner

__all__ = ["export_model", "FORMATS", "Format", "format_for_target", "parity_record", "load_runner",
           "OpenVinoEmbedder", "LiteRtEmbedder"]
