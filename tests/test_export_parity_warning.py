"""An int8 export far from its float model is said, in one line, with what to do (a narrow pruned MobileFaceNet's
per-tensor PTQ reached cosine 0.42 with nothing printed but the figure)."""
from compress.export.parity import LOW_INT8_COSINE, low_int8_warning


def test_low_int8_cosine_warns_in_one_line_and_a_close_one_does_not():
    w = low_int8_warning(0.42, "parity vs_float")
    assert w is not None and w.startswith("warning: parity vs_float") and "\n" not in w
    assert "--keep-float" in w and "qat" in w
    assert low_int8_warning(LOW_INT8_COSINE, "x") is None and low_int8_warning(0.97, "x") is None
