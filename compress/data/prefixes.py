"""Prefixes of a data source spec (`lfw-unpaired:DIR`, `aligned:DIR`): constants only, so that compress.recipe
(which resolves the paths after them) and compress.data.sources (which reads them) need not import each other."""

LFW_UNPAIRED = "lfw-unpaired:"
# An unlabelled folder of crops aligned already (e.g. by `compress data align`): never re-aligned, even when the
# recipe aligns its raw photos (MTCNN on a 112x112 crop finds a smaller face and warps it again).
ALIGNED = "aligned:"
PREFIXES = (LFW_UNPAIRED, ALIGNED)
