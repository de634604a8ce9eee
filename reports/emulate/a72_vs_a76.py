"""Arm vs Arm: the same .tflite on the emulated Cortex-A72 (Pi 4 bundle) and Cortex-A76 (Pi 5 bundle)."""
# usage: .venv/bin/python reports/emulate/SCRIPT.py OUT.json BUNDLES_DIR   (BUNDLES_DIR holds pi{4,5}-{int8,fp32}.tar.gz)
import json, sys, tempfile
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from compress.bench import emulate as em
from compress.artifacts import write_json, file_sha256
from emulate_measure import compare
out = {"what": __doc__, "pairs": {}}
for prec in ("int8", "fp32"):
    b4, b5 = Path(sys.argv[2]) / (f"pi4-{prec}.tar.gz"), Path(sys.argv[2]) / (f"pi5-{prec}.tar.gz")
    with tempfile.TemporaryDirectory() as tmp:
        faces = np.load(em.open_bundle(b5, Path(tmp)) / "parity_faces.npz")["images"]
    e4, e5 = em.embed_on_board(b4, faces), em.embed_on_board(b5, faces)
    out["pairs"][prec] = {"a72_vs_a76": compare(e4, e5), "faces": "the bundle's 32 parity faces"}
    print(prec, out["pairs"][prec], flush=True)
write_json(sys.argv[1], out)
