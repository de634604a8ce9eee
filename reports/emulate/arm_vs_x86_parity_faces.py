"""Arm (emulated, each bundle's board CPU) vs x86 embeddings of the bundle's 32 parity faces, cosine in float64."""
# usage: .venv/bin/python reports/emulate/SCRIPT.py OUT.json BUNDLES_DIR   (BUNDLES_DIR holds pi{4,5}-{int8,fp32}.tar.gz)
import sys, tempfile
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from compress.bench import emulate as em
from compress.artifacts import write_json
from emulate_measure import compare, host_embed
out = {"what": __doc__, "bundles": {}}
for name in ("pi5-int8", "pi5-fp32", "pi4-int8", "pi4-fp32"):
    b = Path(sys.argv[2]) / (f"{name}.tar.gz")
    with tempfile.TemporaryDirectory() as tmp:
        faces = np.load(em.open_bundle(b, Path(tmp)) / "parity_faces.npz")["images"]
    out["bundles"][name] = compare(em.embed_on_board(b, faces), host_embed(b, faces))
    print(name, out["bundles"][name], flush=True)
write_json(sys.argv[1], out)
