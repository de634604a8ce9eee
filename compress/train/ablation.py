"""The ArcFace-w ablation: one recipe, the loss swapped (ArcFace-w with N = 1, 2, 3 terms, ArcFace, softmax),
each trained with the same budget and scored with the same LFW protocol, collected into one table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifacts import write_json
from ..errors import UserError
from .config import make_config
from .trainer import MANIFEST_FILE, train

VARIANTS: dict[str, dict[str, Any]] = {
    "arcface_w-N1": {"loss": "arcface_w", "terms": 1},
    "arcface_w-N2": {"loss": "arcface_w", "terms": 2},
    "arcface_w-N3": {"loss": "arcface_w", "terms": 3},
    "arcface": {"loss": "arcface"},
    "softmax": {"loss": "softmax"},
}


def run_ablation(recipe: str | Path, out: str | Path, epochs: int | None = None,
                 variants: list[str] | None = None, **overrides: Any) -> list[dict[str, Any]]:
    out = Path(out)
    names = variants or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise UserError(f"unknown ablation variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    check_table_out(out)  # before hours of training, not after
    rows = []
    for name in names:
        cfg = make_config(recipe, epochs=epochs, **VARIANTS[name], **overrides)
        run_dir = out / name
        done = run_dir / MANIFEST_FILE
        if done.is_file():
            import json

            manifest = json.loads(done.read_text())
            if manifest["config"] != cfg.to_dict():
                raise UserError(f"{run_dir} holds a run with other settings; remove it or choose another --out")
        else:
            manifest = train(cfg, run_dir, overwrite=True)
        rows.append(_row(name, manifest))
        write_table(rows, out)
    return rows


TABLE_HEAD = "| variant | loss |"  # how ablation.md starts (write_table)


def check_table_out(out: Path) -> None:
    """OUT may receive the table: not a special folder or a file, and an ablation.md / .json / .png already
    there is one this command wrote (a user's file of that name is never replaced)."""
    import json

    from ..artifacts import refuse_special_folder
    from ..outputs import check_output

    refuse_special_folder(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; choose a folder for the ablation runs")
    md, js = out / "ablation.md", out / "ablation.json"
    if md.is_file() and not md.read_text(errors="replace").startswith(TABLE_HEAD):
        raise UserError(f"{md} exists and was not written by compress ablation; move it away or choose another --out")
    if js.is_file():
        try:
            ok = all(isinstance(r, dict) and "variant" in r for r in json.loads(js.read_text()))
        except (ValueError, TypeError):
            ok = False
        if not ok:
            raise UserError(f"{js} exists and was not written by compress ablation; move it away or choose another "
                            f"--out")
    if out.is_dir():
        check_output(out / "ablation.png", "--out", "png")


def _row(name: str, manifest: dict[str, Any]) -> dict[str, Any]:
    lfw = manifest["metrics"].get("lfw") or {}
    res = lfw.get("results", {})
    return {
        "variant": name, "loss": manifest["loss"], "epochs": manifest["config"]["epochs"],
        "lfw_no_flip": res.get("no_flip", {}).get("accuracy_mean"),
        "lfw_no_flip_std": res.get("no_flip", {}).get("accuracy_std"),
        "lfw_flip": res.get("flip", {}).get("accuracy_mean"),
        "lfw_flip_std": res.get("flip", {}).get("accuracy_std"),
        "tar_at_far_1e-3": res.get("flip", {}).get("tar_at_far", {}).get("1e-3"),
        "final_loss": manifest["metrics"]["final_loss"],
    }


def write_table(rows: list[dict[str, Any]], out: Path) -> str:
    def pct(v: float | None, sd: float | None = None) -> str:
        if v is None:
            return "n/a"
        return f"{100 * v:.2f}" + (f" +- {100 * sd:.2f}" if sd is not None else "")

    lines = [TABLE_HEAD + " epochs | LFW acc % (no flip) | LFW acc % (flip) | TAR@FAR=1e-3 % (flip) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['loss']} | {r['epochs']} | {pct(r['lfw_no_flip'], r['lfw_no_flip_std'])} "
                     f"| {pct(r['lfw_flip'], r['lfw_flip_std'])} | {pct(r['tar_at_far_1e-3'])} |")
    text = "\n".join(lines) + ("\n\nLFW deep-funneled View 2, 6000 pairs, 10-fold (threshold on 9 folds), "
                               "MTCNN-aligned, pytorch runtime.\n")
    out.mkdir(parents=True, exist_ok=True)
    from ..artifacts import atomic_write_text

    atomic_write_text(out / "ablation.md", text)
    write_json(out / "ablation.json", rows)
    if any(r["lfw_flip"] is not None for r in rows):
        plot_ablation(rows, out / "ablation.png")
    return text


def plot_ablation(rows: list[dict[str, Any]], path: Path) -> Path:
    """Bar chart of LFW accuracy (flip fusion) per variant with the 10-fold std as error bars: whether the
    losses differ by more than the fold-to-fold spread is the question the ablation answers."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..artifacts import atomic_write

    scored = [r for r in rows if r["lfw_flip"] is not None]
    fig = Figure(figsize=(6.4, 3.8), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    acc = [100 * r["lfw_flip"] for r in scored]
    err = [100 * (r["lfw_flip_std"] or 0.0) for r in scored]
    ax.bar([r["variant"] for r in scored], acc, yerr=err, capsize=4, color="tab:blue", alpha=0.8)
    for i, a in enumerate(acc):
        ax.text(i, a + err[i] + 0.3, f"{a:.2f}", ha="center", fontsize=8)
    low = min(a - e for a, e in zip(acc, err))
    ax.set_ylim(max(0.0, low - 5), min(100.0, max(a + e for a, e in zip(acc, err)) + 3))
    ax.set_ylabel("LFW accuracy %, flip fusion (10-fold mean +- std)")
    epochs = sorted({r["epochs"] for r in scored})
    ax.set_title(f"loss ablation, same recipe, {'/'.join(map(str, epochs))} epochs", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    from ..outputs import PNG_SOFTWARE  # the tag that lets a later run replace this file

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": PNG_SOFTWARE}))
    return path
