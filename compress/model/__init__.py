"""The paper's MobileNet-v2 face-embedding network, built from a schedule."""

from .network import FaceMobileNet, build_model

__all__ = ["FaceMobileNet", "build_model"]
