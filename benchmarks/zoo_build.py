"""Put trained runs into the model zoo: copy the weights into compress/zoo/NAME/, score the copied file on LFW,
and write its record (reports/zoo/NAME-lfw.json, naming the weights' sha256), manifest and model card.

Run after benchmarks/zoo_chain.sh (needs ../shared: LFW and the runs' manifests):
    .venv/bin/python benchmarks/zoo_build.py            # both entries
    .venv/bin/python benchmarks/zoo_build.py table3     # one
The card's figures are read from the record this script writes, never typed in.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compress.artifacts import file_sha256, host_description, now_iso, versions, write_json  # noqa: E402
from compress.evaluate.embed import TorchEmbedder  # noqa: E402
from compress.evaluate.lfw import evaluate_lfw  # noqa: E402
from compress.model.complexity import count_macs  # noqa: E402
from compress.model.io import load_model  # noqa: E402
from compress.zoo import ZOO_DIR, ZOO_KIND  # noqa: E402

LFW = ROOT.parent / "shared" / "data" / "lfw"
CHAIN = "benchmarks/zoo_chain.sh"
COMMANDS = [  # the exact commands of benchmarks/zoo_chain.sh, in order
    "compress train --recipe celeba-table2 --epochs 12 --out runs/celeba-table2",
    "compress train --recipe celeba-table2 --init-model runs/celeba-table2 --epochs 20 --out runs/celeba-table2-32",
    "compress prune --model runs/celeba-table2-32 --schedule table3 --criterion taylor --steps 3 --finetune-steps 40 "
    "--data ../shared/data/celeba-299 --align --out runs/table2-32-pruned",
    "compress train --recipe table2-pruned-ft-online --out runs/table2-32-pruned-ft35-online",
]
ENTRIES: dict[str, dict[str, Any]] = {
    "table2": {
        "run": "runs/celeba-table2-32", "chain": COMMANDS[:2], "recipe": "profiles/celeba-table2.toml",
        "description": "Table 2 network (1.75 M params), ArcFace-w + distillation on CelebA-299: the source for pruning",
        "runs": ["runs/celeba-table2", "runs/celeba-table2-32"],
    },
    "table3": {
        "run": "runs/table2-32-pruned-ft35-online", "chain": COMMANDS, "recipe": "profiles/table2-pruned-ft-online.toml",
        "description": "Table 3 network (0.43 M params) pruned from zoo:table2 and fine-tuned with distillation "
                       "(online teacher views + mixup): the deployable model",
        "runs": ["runs/celeba-table2", "runs/celeba-table2-32", "runs/table2-32-pruned", "runs/table2-32-pruned-ft35-online"],
    },
}
ENTRIES["table3-faces"] = {
    "run": "runs/more-faces-ft-both", "recipe": "profiles/more-faces-ft-both.toml",
    "chain": COMMANDS + ["compress train --recipe more-faces-ft-both --out runs/more-faces-ft-both"],
    "chain_script": "benchmarks/more_faces_runs.sh",
    "description": "zoo:table3 fine-tuned with 21,480 more unlabelled faces (UTKFace adults, AsianFaces, LFW people "
                   "in no test pair) in the distillation term, LFW-leakage-filtered: same network, higher TAR at "
                   "low FAR (reports/more-faces)",
    "runs": ["runs/more-faces-ft-both"],
    "terms": ("CelebA (training identities) is for non-commercial research only; LFW (people in no LFW test pair, "
              "distillation only) is for research use; UTKFace is for non-commercial research only; AsianFaces "
              "carries no licence and is treated as non-commercial research use; the MobileFaceNet teacher was "
              "trained on MS1M, whose terms are non-commercial research. These weights inherit those terms: "
              "non-commercial research use."),
}
MFN_TEACHER = "../shared/models/mobilefacenet-teacher/MobileFaceNet.onnx"
MFN_TERMS = ENTRIES["table3-faces"]["terms"]


def _mfn(budget: str, tag: str, epochs: int | None = None, min_keep: float | None = None,
         policy: str | None = None, polish: tuple[int, ...] = (), polish_lr: float = 0.0005,
         source: tuple[str, str] | None = None, run_tag: str | None = None) -> dict[str, Any]:
    """A MobileFaceNet entry: the teacher pruned to `budget` MACs, recovered by distillation, optionally polished
    in rounds (more epochs with mirror-only augmentation, each round from the last) (`BUDGET=... [EPOCHS MIN_KEEP
    POLICY POLISH=N,N2] benchmarks/mfn_chain.sh`; its commands, in order). source=(entry, run): prune that run of
    another entry's chain instead of the teacher (iterative pruning: `SOURCE=run TAG=run_tag`); the chain then
    starts with the source entry's commands up to that run, and run folders are named by run_tag."""
    more = (f" --epochs {epochs}" if epochs else "") + (f" --augment-policy {policy}" if policy else "")
    keep = f" --min-keep {min_keep:g}" if min_keep else ""
    t = run_tag or budget
    chain, runs, model = [], [], MFN_TEACHER
    if source:  # the source entry's chain and runs are aligned: command i makes run i
        entry, model = ENTRIES[source[0]], source[1]
        upto = entry["runs"].index(model) + 1
        chain, runs = list(entry["chain"][:upto]), list(entry["runs"][:upto])
    ft = f"runs/mfn-chain/ft-{t}"
    chain += [f"compress prune --model {model} --macs {budget}{keep} --allocation importance "
              f"--data ../shared/data/celeba-299 --align --out runs/mfn-chain/pruned-{t}",
              f"compress train --recipe mfn-distill --init-model runs/mfn-chain/pruned-{t} "
              f"--teacher {MFN_TEACHER}{more} --out {ft}"]
    runs += [f"runs/mfn-chain/pruned-{t}", ft]
    for i, n in enumerate(polish, 1):
        out = f"{ft}-polish" + (f"-r{i}" if i > 1 else "")
        chain.append(f"compress train --recipe mfn-distill --init-model {runs[-1]} --teacher {MFN_TEACHER} "
                     f"--epochs {n} --augment-policy mirror --lr {polish_lr:g} --out {out}")
        runs.append(out)
    how = (f"pruned to {budget} MACs" if not source else
           f"pruned iteratively: from `{model}` (a run of zoo:{source[0]}'s chain, itself pruned from the "
           f"teacher) to {budget} MACs")
    return {
        "run": runs[-1], "recipe": "profiles/mfn-distill.toml",
        "chain_script": "benchmarks/mfn_chain.sh", "family": "mobilefacenet", "open_set": True, "chain": chain,
        "description": f"MobileFaceNet (the teacher's network) {how} by `compress prune --macs` "
                       "(Taylor importance on CelebA-299 faces), each step recovered by distillation from the "
                       f"unpruned teacher on 26,641 faces: {tag}",
        "runs": runs, "terms": MFN_TERMS}


ENTRIES["mfn-113m"] = _mfn("113.5M", "the most accurate pruned point", epochs=3, polish=(2, 3, 3, 3))
# Iterative pruning (session 16): from zoo:mfn-113m's second polish round, not from the teacher. At 57M it beat
# the direct chain (95.73%) by 2.23 pp on all 10 LFW folds after three polish rounds (reports/mfn)
ENTRIES["mfn-57m"] = _mfn("57M", "a quarter of the teacher's MACs", epochs=6, policy="mirror", polish=(4, 4, 4),
                          source=("mfn-113m", "runs/mfn-chain/ft-113.5M-polish-r2"), run_tag="57M-from113m")
ENTRIES["mfn-18m"] = _mfn("18.1M", "the paper's Table 3 budget, every width kept >= 20% of the teacher's",
                           epochs=4, min_keep=0.2, policy="mirror", polish=(5, 4))
# PTQ lost 0.32 pp of LFW on mfn-18m (0.25 with 1,024 calibration faces); QAT's default 300 steps on its own
# training faces keep it within 0.1 pp (reports/mfn, session 15)
ENTRIES["mfn-18m"]["int8_qat"] = True
TERMS = ("CelebA (training identities) is for non-commercial research only; LFW (1,542 images of people in no "
         "LFW test pair, distillation only) is for research use; the MobileFaceNet teacher was trained on MS1M, "
         "whose terms are non-commercial research. These weights inherit those terms: non-commercial research use.")


def _run_summary(run: Path) -> dict[str, Any]:
    m = json.loads((run / "manifest.json").read_text())
    where = run.relative_to(ROOT) if run.is_relative_to(ROOT) else run
    out: dict[str, Any] = {"run": str(where), "kind": m.get("kind"), "created": m.get("created"),
                           "host": m.get("host"), "versions": m.get("versions")}
    if m.get("kind") == "train":
        cfg = m["config"]
        out.update({"schedule": m["schedule"]["name"], "data": m["data"], "teacher": m.get("teacher"),
                    "init_model": m.get("init_model"), "loss": m.get("loss"), "epochs": cfg["epochs"],
                    "config": cfg, "train_seconds": m["metrics"].get("train_seconds_this_run"),
                    "final_train_accuracy": m["metrics"].get("final_train_accuracy"),
                    "final_distill_loss": m["history"][-1].get("distill_loss"),
                    "images_per_s_last_epoch": m["history"][-1].get("images_per_s")})
        per_epoch = cfg["batch_size"] * (m["data"]["images"] // cfg["batch_size"])
        out.update({"images_per_epoch": per_epoch, "images_per_s": [h["images_per_s"] for h in m["history"]],
                    "epoch_seconds": [round(per_epoch / h["images_per_s"], 1) for h in m["history"]]})
    else:
        out.update({"method": m.get("method"), "params": m.get("params"), "macs": m.get("macs"),
                    "source_model": m.get("source_model")})
    return out


def _figures(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: {"accuracy_mean": r["accuracy_mean"], "accuracy_std": r["accuracy_std"],
                "tar_at_far": r["tar_at_far"], "far_false_accepts": r["far_false_accepts"], "auc": r["auc"]}
            for k, r in rec["results"].items()}


def build(name: str) -> dict[str, Any]:
    spec = ENTRIES[name]
    run = ROOT / spec["run"]
    folder = ZOO_DIR / name
    folder.mkdir(exist_ok=True)
    shutil.copyfile(run / "model.pt", folder / "model.pt")
    sha = file_sha256(folder / "model.pt")
    model = load_model(folder / "model.pt")  # the shipped file, not the run's
    s = model.schedule
    rec_path = ROOT / "reports" / "zoo" / f"{name}-lfw.json"
    record = _same_weights(rec_path, sha)  # a re-run after a failed later step does not score the same file again
    if record is None:
        record = evaluate_lfw(TorchEmbedder(model, name=f"zoo:{name} ({s.name}, sha256 {sha[:12]})"), LFW,
                              roc_path=ROOT / "reports" / "zoo" / f"{name}-lfw-roc.png")
        record.update({"zoo_entry": f"zoo:{name}", "model_file": f"compress/zoo/{name}/model.pt", "model_sha256": sha})
        write_json(rec_path, record)
    runs = [_run_summary(ROOT / r) for r in spec["runs"]]
    last = runs[-1]
    manifest = {
        "kind": ZOO_KIND, "name": name, "family": spec.get("family", "paper"), "created": now_iso(),
        "description": spec["description"],
        "weights": {"file": "model.pt", "sha256": sha, "bytes": (folder / "model.pt").stat().st_size,
                    "format": "compress.model/1 (model.pt of a train run: weights + schedule)"},
        "schedule": s.to_dict(), "params": sum(p.numel() for p in model.parameters()),
        "macs": count_macs(model, (3, s.input_size, s.input_size)),
        "macs_counted_by": "ptflops 0.7.5, pytorch backend, batch 1",
        "lfw": {**_figures(record), "record": str(rec_path.relative_to(ROOT)), "host": record["host"],
                "runtime": record["runtime"], "dataset": record["dataset"], "protocol": record["protocol"],
                "aligner": record["aligner"]},
        "recipe": spec["recipe"], "chain_script": spec.get("chain_script", CHAIN), "chain": spec["chain"],
        "config": last.get("config"),  # the last training run's settings (QAT reuses its loss)
        "training_runs": runs, "terms": spec.get("terms", TERMS), "built_on": host_description(), "build_versions": versions(),
    }
    if spec.get("open_set"):
        manifest["open_set"] = open_set_record(name, model, sha)
    write_json(folder / "manifest.json", manifest)
    if spec.get("open_set"):  # the int8 export needs the entry resolvable as zoo:NAME
        manifest["int8"] = int8_record(name, record, qat=spec.get("int8_qat", False))
        write_json(folder / "manifest.json", manifest)
    (folder / "MODEL_CARD.md").write_text(card(manifest))
    print(f"zoo:{name}: sha256 {sha[:16]}, LFW {record['summary']['flip']}")
    return manifest


def _same_weights(path: Path, sha: str) -> dict[str, Any] | None:
    """The record at `path` if it was made for these weights."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if rec.get("model_sha256") == sha else None


def _summary(path: Path, results: dict[str, Any]) -> dict[str, Any]:
    g = results["100"]
    print(f"{path.name}: gallery 100: rank-1 {100 * g['rank1']:.2f}%, DIR@FAR=1% {100 * g['dir@far=0.01']:.2f}%")
    return {"record": str(path.relative_to(ROOT)), "gallery_100": {k: g[k] for k in g if k.startswith(("rank1", "dir@"))},
            "gallery_all": {k: v for k, v in results["all"].items() if k.startswith(("rank1", "dir@"))}}


def open_set_record(name: str, model: Any, sha: str) -> dict[str, Any]:
    """Open-set 1:N on all of LFW (benchmarks/lfw_open_set.py's protocol and code) for the shipped weights:
    writes reports/zoo/NAME-open-set.json and returns the manifest's summary (gallery 100)."""
    import lfw_open_set as los

    from compress.evaluate.lfw import align_benchmark_images, locate_lfw

    path = ROOT / "reports" / "zoo" / f"{name}-open-set.json"
    done = _same_weights(path, sha)
    if done is not None:
        return _summary(path, done["results"])
    _, root = locate_lfw(LFW)
    split = los.lfw_split(root)
    images, align = align_benchmark_images(split["files"], None, progress=True)
    emb = TorchEmbedder(model, name=f"zoo:{name}").embed(images, batch_size=64, flip=True, progress=True)
    results = los.evaluate(emb, split)
    write_json(path, {
        "format": "compress.identify.lfw_open_set/1", "created": now_iso(), "zoo_entry": f"zoo:{name}",
        "model_file": f"compress/zoo/{name}/model.pt", "model_sha256": sha, "sha256": sha,
        "runtime": "PyTorch (torch) float32",
        "host": host_description(), "versions": versions(), "measured_by": "benchmarks/zoo_build.py (lfw_open_set protocol)",
        "dataset": f"LFW deep-funneled, all {len(split['files'])} images",
        "protocol": los.__doc__.split("Protocol (issue 19): ")[1].split("\n\n")[0].replace("\n", " "),
        "counts": {"people_with_2plus": len(split["people"]), "genuine_probes": len(split["probes"]),
                   "impostor_probes": len(split["impostors"])},
        "alignment": {k: v for k, v in align.items() if k != "failed_images"}, "results": results})
    return _summary(path, results)


def int8_record(name: str, float_record: dict[str, Any], qat: bool = False) -> dict[str, Any]:
    """NNCF PTQ calibrated on 256 aligned CelebA-299 faces (qat: then `compress quantize --mode qat`'s fine-tuning
    on the same folder), exported int8 for onnxruntime, LFW in that runtime (`compress quantize` + `compress export
    --lfw`); the export's manifest is the record."""
    import subprocess

    c = str(ROOT / ".venv" / "bin" / "compress")
    mode = "qat" if qat else "ptq"
    q, e = ROOT / "runs" / "zoo-int8" / f"{name}-{mode}", ROOT / "runs" / "zoo-int8" / f"{name}-onnx-int8-{mode}"
    sha = file_sha256(ZOO_DIR / name / "model.pt")
    made = (e / "parity.json").is_file() and sha in (q / "manifest.json").read_text()  # exported from these weights
    celeba = str(LFW.parent / "celeba-299")
    qat_args = ["--mode", "qat", "--train-data", celeba, "--threads", "1"] if qat else []
    cmds = [[c, "quantize", "--model", f"zoo:{name}", "--out", str(q), "--calibration", celeba, *qat_args,
             "--align", "--calibration-images", "256", "--overwrite", "--no-progress"],
            [c, "export", "--target", "onnx", "--precision", "int8", "--model", str(q), "--lfw", str(LFW),
             "--out", str(e), "--overwrite", "--no-progress"]]
    for cmd in [] if made else cmds:
        subprocess.run(cmd, check=True, cwd=ROOT)
    m = json.loads((e / "manifest.json").read_text())
    lfw = json.loads((e / "parity.json").read_text())["lfw"]
    rec = {"zoo_entry": f"zoo:{name}", "float_sha256": sha, "model_sha256": m["model_sha256"], "lfw": lfw,
           "parity": m["parity"], "export_manifest": m,
           "commands": ["compress quantize --model zoo:NAME --calibration ../shared/data/celeba-299 "
                        + ("--mode qat --train-data ../shared/data/celeba-299 " if qat else "")
                        + "--align --calibration-images 256",
                        "compress export --target onnx --precision int8 --lfw ../shared/data/lfw"]}
    path = ROOT / "reports" / "zoo" / f"{name}-int8-lfw.json"
    write_json(path, rec)
    f_acc, i_acc = float_record["results"]["flip"]["accuracy_mean"], lfw["results"]["flip"]["accuracy_mean"]
    print(f"zoo:{name} int8 (onnxruntime): LFW {100 * i_acc:.2f}% vs float {100 * f_acc:.2f}%")
    return {"record": str(path.relative_to(ROOT)), "runtime": lfw["runtime"], "lfw_flip": i_acc,
            "lfw_flip_std": lfw["results"]["flip"]["accuracy_std"], "delta_pp_vs_float": 100 * (i_acc - f_acc),
            "calibration": "NNCF PTQ, 256 MTCNN-aligned CelebA-299 faces"
                           + ("; then QAT (compress quantize --mode qat defaults) on CelebA-299" if qat else "")}


def _pct(r: dict[str, Any]) -> str:
    return f"{100 * r['accuracy_mean']:.2f}% +- {100 * r['accuracy_std']:.2f}"


def _init_model(m: dict[str, Any]) -> str | None:
    """The zoo entry or run the first training run started from, if the chain did not make it (None: trained
    from scratch, or from the chain's own pruning)."""
    init = next((r.get("init_model") for r in m["training_runs"] if r["kind"] == "train"), None)
    return None if init in {r["run"] for r in m["training_runs"]} else init


def _from(m: dict[str, Any]) -> str:
    init = _init_model(m)
    return f" on top of {init}, whose chain comes first" if init else " in all"


def _init_line(m: dict[str, Any]) -> str:
    init = _init_model(m)
    return f"\n- **Starting point**: fine-tuned from `{init}`; see that card for how it was made." if init else ""


def _source_name(src: str) -> str:
    if src.startswith("lfw-unpaired:"):
        return "LFW people in no test pair"
    parts = [q for q in src.split(":", 1)[-1].split("/") if q and q != "faces"]
    return {"utkface-adult": "UTKFace adults", "asianfaces": "AsianFaces"}.get(parts[-1], parts[-1])


def _data_lines(data: dict[str, Any], teacher: dict[str, Any], terms: str) -> str:
    """The card's data list, from the first training run's manifest (sources, cleaning, leakage filter)."""
    lines = [f"- Labelled (ArcFace-w margin loss): CelebA, 299 identities ({data['identities']} classes after cleaning;",
             f"  {data['labelled_images']:,} labelled images; dropped by cleaning: {data['dropped_by_cleaning']})."]
    leak = data.get("lfw_leakage_filter")
    if leak:
        lines.append(f"- Unlabelled (distillation only), after the LFW leakage filter (a face within cosine "
                     f"{leak['threshold']} of any LFW test-pair person by the teacher is dropped; "
                     f"{leak['dropped']:,} dropped in all):")
        lines += [f"  - {_source_name(src)}: {c['images'] - c['dropped']:,} of {c['images']:,}"
                  for src, c in leak["per_source"].items() if "celeba" not in src]
    else:
        lines += [f"- Unlabelled (distillation only): {data['images'] - data['labelled_images']:,} LFW images of the "
                  "people who appear in no", "  LFW test pair (never an image of a test-pair person)."]
    lines += [f"- Teacher: MobileFaceNet (ONNX, sha256 `{teacher.get('sha256', '')[:16]}...`), trained on MS1M.",
              f"- Terms: {terms}"]
    return "\n".join(lines)


TEACHER_LFW = 0.9942  # reports/mfn/lfw-imported-teacher.json (flip), the figure every card compares with


def _network(m: dict[str, Any]) -> str:
    if m.get("family") == "mobilefacenet":
        return ("MobileFaceNet (Chen et al. 2018, the teacher's network: depthwise-separable stem, bottlenecks, GDC "
                "head) with widths derived by `compress prune --macs`")
    return "the paper's MobileNet-v2 face network"


def _gap(f: dict[str, Any]) -> str:
    d = 100 * (TEACHER_LFW - f["accuracy_mean"])
    return f"{d:.2f} pp below" if d > 0.005 else f"{-d:.2f} pp above" if d < -0.005 else "level with"


def _extra_rows(m: dict[str, Any]) -> str:
    rows = []
    o = m.get("open_set")
    if o:
        g, a = o["gallery_100"], o["gallery_all"]
        rows.append(f"| open-set 1:N, LFW, gallery 100 (10 draws) | rank-1 **{100 * g['rank1']:.2f}% +- "
                    f"{100 * g['rank1_std']:.2f}**, DIR@FAR=1% {100 * g['dir@far=0.01']:.2f}% +- "
                    f"{100 * g['dir@far=0.01_std']:.2f}; all 1,680 people: rank-1 {100 * a['rank1']:.2f}%, "
                    f"DIR@FAR=1% {100 * a['dir@far=0.01']:.2f}% (record `{o['record']}`) |")
    q = m.get("int8")
    if q:
        rows.append(f"| int8 (onnxruntime, {q['calibration']}) | LFW flip {100 * q['lfw_flip']:.2f}% +- "
                    f"{100 * q['lfw_flip_std']:.2f} ({q['delta_pp_vs_float']:+.2f} pp vs float; record `{q['record']}`) |")
    return "".join("\n" + r for r in rows)


def _mfn_limit(m: dict[str, Any]) -> str:
    if m.get("family") != "mobilefacenet":
        return ""
    return ("\n- **Inherited from the teacher**: the MobileFaceNet teacher was trained on MS1M (celebrities, mostly "
            "white adults) by its authors;\n  this network was recovered by imitating it, so it carries the teacher's "
            "biases and cannot be better than it.")


def _timing(m: dict[str, Any]) -> str:
    """Wall time and images/s of each training run, from its manifest (epoch by epoch: a resumed run's epochs
    count once each)."""
    lines = []
    for r in m["training_runs"]:
        if r["kind"] == "train" and r.get("epoch_seconds"):
            secs = r["epoch_seconds"]
            lines.append(f"Training `{r['run']}` on {r['host']}: {sum(secs) / 60:.0f} min for {len(secs)} epochs "
                         f"({r['images_per_epoch']:,} images each), {min(r['images_per_s'])}-{max(r['images_per_s'])} "
                         "images/s per epoch (the trainer's figure: data, student forward/backward, optimizer).")
    return "\n" + "\n".join(lines) + "\n" if lines else ""


def card(m: dict[str, Any]) -> str:
    f, nf = m["lfw"]["flip"], m["lfw"]["no_flip"]
    train_runs = [r for r in m["training_runs"] if r["kind"] == "train"]
    data = train_runs[0]["data"]
    teacher = train_runs[0].get("teacher") or {}
    steps = "\n".join(f"{i}. `{c}`" for i, c in enumerate(m["chain"], 1))
    epochs = " + ".join(str(r["epochs"]) for r in train_runs)
    return f"""# Model card: zoo:{m['name']}

{m['description']}.

| | |
|---|---|
| network | {_network(m)}, schedule `{m['schedule']['name']}`, {m['params']:,} parameters, {m['macs']:,} MACs at 112x112 ({m['macs_counted_by']}) |
| output | {m['schedule']['embedding_size']}-d face embedding (L2-normalise, compare by cosine) |
| input | aligned 112x112 RGB face (5-point MTCNN alignment to the ArcFace template: `compress data align`), ImageNet normalisation |
| weights | `compress/zoo/{m['name']}/model.pt`, sha256 `{m['weights']['sha256']}` |
| LFW, flip fusion | **{_pct(f)}**; TAR@FAR=1e-3 {100 * f['tar_at_far']['1e-3']:.2f}% ({f['far_false_accepts']['1e-3']} false accepts allowed), TAR@FAR=1e-2 {100 * f['tar_at_far']['1e-2']:.2f}% |
| LFW, no flip | {_pct(nf)}; TAR@FAR=1e-3 {100 * nf['tar_at_far']['1e-3']:.2f}%, TAR@FAR=1e-2 {100 * nf['tar_at_far']['1e-2']:.2f}% |
| how measured | {m['lfw']['dataset']}; {m['lfw']['protocol']}; {m['lfw']['runtime']} float32 on {m['lfw']['host']}; record `{m['lfw']['record']}` (names this sha256) |{_extra_rows(m)}

## Intended use
Verifying (1:1) and identifying (1:N, small galleries such as a ward's patients) **cooperative, roughly frontal
faces** seen by a robot's camera at close range, after face detection and 5-point alignment, on boards from a
Raspberry Pi to a Jetson. Not for surveillance, not for identifying people who have not enrolled, and not as the
only check where a wrong match harms someone (a nursing robot matching medication must confirm by a second
means, e.g. a wristband or a nurse).

## Training data and their terms
{_data_lines(data, teacher, m['terms'])}

## Known limits
- **Accuracy**: {_gap(f)} the teacher (99.42% on LFW through the same aligner and protocol); at FAR=1e-3 it
  accepts {100 * f['tar_at_far']['1e-3']:.0f}% of genuine pairs; set thresholds on your own gallery.
- **Pose**: trained and tested on roughly frontal, aligned faces; profile views and strong tilt are out of scope.
- **Age**: CelebA and LFW are mostly adults aged 20-60; the paper's users (middle-aged and elderly patients)
  are under-represented, and accuracy on them is not measured.
- **Ethnicity**: CelebA and LFW are mostly white; the paper's users are Asian. Accuracy per group is not
  measured; expect it to be lower for under-represented groups.
- **Lighting and capture**: web photos of celebrities (good light, posed); a ward's lighting, motion blur and
  a robot's camera are not represented. Masks and sunglasses are not in the training data.
- **Small data**: 299 labelled identities; the distillation term carries most of the accuracy.{_init_line(m)}{_mfn_limit(m)}

## How it was made ({epochs} training epochs{_from(m)}; `{m['chain_script']}`)
{steps}
{_timing(m)}

Recipe: `{m['recipe']}`. Trained on {train_runs[-1]['host']}; library versions in `manifest.json`
(`training_runs`). Then `.venv/bin/python benchmarks/zoo_build.py {m['name']}` copied the weights here, scored the
copy on LFW and wrote the record, this card and the manifest.

## Reproduce the figure
`compress evaluate --model zoo:{m['name']} --lfw ../shared/data/lfw` (needs LFW; `tests/test_zoo.py` checks it is
within 0.2 pp of this card when `../shared` is present).
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", default=list(ENTRIES))
    for name in ap.parse_args().names:
        build(name)


if __name__ == "__main__":
    main()
