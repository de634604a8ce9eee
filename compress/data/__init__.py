"""Data pipeline: MTCNN face detection, 5-point alignment to 112x112, Haar-cascade cleaning."""
