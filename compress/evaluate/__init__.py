"""Evaluation: face-verification protocol (k-fold accuracy, TAR@FAR, ROC), benchmarks (LFW) and embedders."""
