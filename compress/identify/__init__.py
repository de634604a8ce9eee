"""The robot's job with the compressed model: enrol patients into a SQLite gallery, identify faces 1:N with
open-set rejection (a threshold set at a stated false-accept rate), and check a medication dose against a plan.

Modules: gallery (the database), embedder (which model, in which runtime, with which hash), pipeline (detect,
align, embed, match), enrol (enrolment and the threshold), api (the commands), dose (plan and dose check),
detector (MTCNN's nets exported to ONNX / OpenVINO for the target).
"""
