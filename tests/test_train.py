import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from compress.errors import UserError
from compress.model.io import load_model
from compress.train.config import TrainConfig, make_config
from compress.train.trainer import train

from .conftest import toy_faces, write_image_folder


def cfg(**kw) -> TrainConfig:
    base = dict(schedule="table3", epochs=2, batch_size=24, lr=0.05, s=16, m=0.2, warmup_epochs=0.5,
                progress=False, threads=2, augment=True)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.slow
def test_few_steps_reduce_the_loss(tmp_path, faces):
    m = train(cfg(epochs=4, augment=False), tmp_path / "run", faces=faces)
    losses = [h["loss"] for h in m["history"]]
    assert losses[-1] < 0.8 * losses[0]
    assert (tmp_path / "run" / "model.pt").is_file()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["data"]["fingerprint"] == faces.fingerprint()
    assert manifest["config"]["loss"] == "arcface_w" and "torch" in manifest["versions"]
    model = load_model(tmp_path / "run")
    assert model(torch.zeros(1, 3, 112, 112)).shape == (1, 128)


@pytest.mark.slow
def test_resume_continues_the_same_run(tmp_path, faces):
    straight = train(cfg(epochs=2), tmp_path / "a", faces=faces)
    first = train(cfg(epochs=2), tmp_path / "b", faces=faces, _stop_after_epoch=1)
    assert first == {"interrupted_after_epoch": 1}
    assert not (tmp_path / "b" / "model.pt").exists() and not (tmp_path / "b" / "manifest.json").exists()
    resumed = train(cfg(epochs=2), tmp_path / "b", faces=faces, resume=tmp_path / "b")
    assert [h["loss"] for h in resumed["history"]] == pytest.approx([h["loss"] for h in straight["history"]], rel=1e-5)
    a, b = load_model(tmp_path / "a").state_dict(), load_model(tmp_path / "b").state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)


def test_resume_errors(tmp_path, faces):
    with pytest.raises(UserError, match="not found"):
        train(cfg(), tmp_path / "x", faces=faces, resume=tmp_path / "missing")
    junk = tmp_path / "junk.pt"
    torch.save({"hello": 1}, junk)
    with pytest.raises(UserError, match="not a compress training checkpoint"):
        train(cfg(), tmp_path / "x", faces=faces, resume=junk)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        train(cfg(), tmp_path / "x", faces=faces, resume=garbage)
    train(cfg(epochs=2), tmp_path / "r", faces=faces, _stop_after_epoch=1)
    with pytest.raises(UserError, match="another run .*loss"):
        train(cfg(epochs=2, loss="arcface"), tmp_path / "r", faces=faces, resume=tmp_path / "r")
    with pytest.raises(UserError, match="different data"):
        train(cfg(epochs=2), tmp_path / "r", faces=toy_faces(seed=1), resume=tmp_path / "r")


@pytest.mark.slow
def test_existing_runs_are_not_overwritten(tmp_path, faces):
    train(cfg(epochs=1), tmp_path / "r", faces=faces)
    before = (tmp_path / "r" / "model.pt").read_bytes()
    with pytest.raises(UserError, match="already holds a finished run"):
        train(cfg(epochs=1), tmp_path / "r", faces=faces)
    assert (tmp_path / "r" / "model.pt").read_bytes() == before
    train(cfg(epochs=1, seed=3), tmp_path / "r", faces=faces, overwrite=True)
    assert (tmp_path / "r" / "model.pt").read_bytes() != before


def test_failed_run_leaves_no_model(tmp_path, faces, monkeypatch):
    import compress.train.trainer as trainer

    # a diverging run: lr = 1e30 is refused by the config now, so the schedule hands it to the optimizer
    monkeypatch.setattr(trainer, "lr_at", lambda *a: 1e30)
    with pytest.raises(RuntimeError, match="loss became"):
        train(cfg(epochs=1, augment=False), tmp_path / "r", faces=faces)
    assert not (tmp_path / "r" / "model.pt").exists()
    assert not (tmp_path / "r" / "manifest.json").exists()


def test_config_validation_and_recipe(tmp_path):
    with pytest.raises(UserError, match="unknown loss"):
        TrainConfig(loss="cosface").validate()
    r = tmp_path / "r.toml"
    r.write_text("[train]\nepochs = 3\nbogus = 1\n")
    with pytest.raises(UserError, match="unknown \\[train\\] key 'bogus'"):
        make_config(r)
    r.write_text("[train]\nepochs = 3\nloss = 'arcface'\n")
    c = make_config(r, epochs=5, loss=None)
    assert (c.epochs, c.loss) == (5, "arcface")


@pytest.mark.slow
def test_torchrun_ddp_two_processes(tmp_path):
    """The same training code under torchrun: 2 CPU processes (gloo) finish and write one model."""
    data = write_image_folder(tmp_path / "faces", toy_faces(classes=4, per_class=8))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           "-m", "compress.cli", "train", "--data", str(data), "--epochs", "1", "--batch-size", "8",
           "--scale", "16", "--margin", "0.2", "--device", "cpu", "--threads", "1", "--no-progress", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == 2
    assert load_model(out)(torch.zeros(1, 3, 112, 112)).shape == (1, 128)


@pytest.mark.slow
def test_distillation_pulls_student_towards_teacher(tmp_path, faces, monkeypatch):
    """A teacher ONNX model + unlabelled images: the distillation term falls and is recorded."""
    from PIL import Image

    from compress.model import build_model

    monkeypatch.setenv("COMPRESS_TEACHER_CACHE", str(tmp_path / "tcache"))
    torch.manual_seed(1)
    teacher = tmp_path / "teacher.onnx"
    torch.onnx.export(build_model("table3").eval(), torch.zeros(1, 3, 112, 112), teacher, input_names=["x"],
                      output_names=["e"], dynamic_axes={"x": {0: "b"}, "e": {0: "b"}}, dynamo=False)
    unl = tmp_path / "unlabelled" / "anyone"
    unl.mkdir(parents=True)
    for i, img in enumerate(toy_faces(classes=2, per_class=6, seed=5).images):
        Image.fromarray(img).save(unl / f"{i}.png")
    c = cfg(epochs=4, teacher=str(teacher), distill_weight=5.0, unlabelled=str(tmp_path / "unlabelled"), augment=False)
    m = train(c, tmp_path / "run", faces=faces)
    d = [h["distill_loss"] for h in m["history"]]
    assert d[-1] < d[0]
    assert m["data"]["images"] == len(faces) + 12 and m["data"]["labelled_images"] == len(faces)
    assert m["teacher"]["sha256"]
    assert list((tmp_path / "tcache").glob("*.npz"))  # teacher targets cached for the next run
    with pytest.raises(UserError, match="needs both teacher"):
        train(cfg(distill_weight=1.0), tmp_path / "bad", faces=faces)


@pytest.mark.slow
def test_ablation_runs_each_variant_and_writes_table(tmp_path):
    from compress.train.ablation import run_ablation

    data = write_image_folder(tmp_path / "faces", toy_faces(classes=4, per_class=8))
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[train]\ndata = "{data}"\nbatch_size = 16\ns = 16.0\nm = 0.2\nthreads = 2\nprogress = false\n')
    rows = run_ablation(recipe, tmp_path / "abl", epochs=1, variants=["arcface_w-N1", "softmax"])
    assert [r["variant"] for r in rows] == ["arcface_w-N1", "softmax"]
    assert "N=1" in rows[0]["loss"] and rows[1]["loss"].startswith("softmax")
    table = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| arcface_w-N1 |" in table and "| softmax |" in table
    # finished variants are reused, not retrained
    before = (tmp_path / "abl" / "softmax" / "model.pt").stat().st_mtime_ns
    run_ablation(recipe, tmp_path / "abl", epochs=1, variants=["softmax"])
    assert (tmp_path / "abl" / "softmax" / "model.pt").stat().st_mtime_ns == before
    with pytest.raises(UserError, match="unknown ablation variant"):
        run_ablation(recipe, tmp_path / "abl", variants=["cosface"])


def test_ablation_table_gains_a_plot_once_rows_are_scored(tmp_path):
    from compress.train.ablation import write_table

    row = {"variant": "softmax", "loss": "softmax", "epochs": 3, "lfw_no_flip": None, "lfw_no_flip_std": None,
           "lfw_flip": None, "lfw_flip_std": None, "tar_at_far_1e-3": None, "final_loss": 1.0}
    write_table([row], tmp_path)
    assert "| n/a |" in (tmp_path / "ablation.md").read_text() and not (tmp_path / "ablation.png").exists()
    scored = [{**row, "lfw_flip": 0.85, "lfw_flip_std": 0.02}, {**row, "variant": "arcface", "lfw_flip": 0.74,
                                                                 "lfw_flip_std": 0.019}]
    text = write_table(scored, tmp_path)
    assert "85.00 +- 2.00" in text and (tmp_path / "ablation.png").read_bytes()[:4] == b"\x89PNG"


def test_recipe_inherits_from_base(tmp_path):
    (tmp_path / "a.toml").write_text("[train]\nepochs = 7\nloss = 'arcface'\n")
    (tmp_path / "b.toml").write_text(f"base = '{tmp_path / 'a.toml'}'\n[train]\nloss = 'softmax'\n")
    c = make_config(tmp_path / "b.toml")
    assert (c.epochs, c.loss) == (7, "softmax")
    (tmp_path / "c.toml").write_text(f"base = '{tmp_path / 'c.toml'}'\n[train]\n")
    with pytest.raises(UserError, match="its own base"):
        make_config(tmp_path / "c.toml")


@pytest.mark.slow
def test_fine_tune_from_pruned_model_with_unpruned_teacher(tmp_path, faces, monkeypatch):
    """Prune -> fine-tune: start from the pruned artifact, distil from the unpruned artifact."""
    from compress.model import build_model
    from compress.model.io import save_model
    from compress.prune import prune_to_schedule

    monkeypatch.setenv("COMPRESS_TEACHER_CACHE", str(tmp_path / "tc"))
    torch.manual_seed(0)
    big = build_model("table2").eval()
    save_model(big, tmp_path / "t2" / "model.pt")
    save_model(prune_to_schedule(big, "table3"), tmp_path / "p" / "model.pt")
    m = train(cfg(epochs=2, init_model=str(tmp_path / "p"), teacher=str(tmp_path / "t2"), distill_weight=10.0,
                  lr=1e-3, augment=False), tmp_path / "ft", faces=faces)
    assert m["init_model"] == str(tmp_path / "p") and m["schedule"]["name"] == "table3"
    assert all(np.isfinite(h["loss"]) for h in m["history"])
    # the pruned network starts near its teacher (its BNs re-expressed around the training faces, so train-mode
    # BN keeps its function: 0.45 here, 1.01 = unrelated without) and distillation does not drive it away
    first, last = m["history"][0]["distill_loss"], m["history"][-1]["distill_loss"]
    assert first < 0.8 and last < 1.05 * first
    # with a vanishing learning rate the weights stay those of the pruned model: it really is the start point
    train(cfg(epochs=1, init_model=str(tmp_path / "p"), lr=1e-12, augment=False), tmp_path / "still", faces=faces)
    # (conv kernels unchanged; BNs re-expressed around the training faces' statistics: the same function)
    a, b = load_model(tmp_path / "p").state_dict(), load_model(tmp_path / "still").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a if k.endswith("weight") and a[k].ndim > 1)
    x = torch.randn(4, 3, 112, 112)
    with torch.no_grad():
        assert torch.allclose(load_model(tmp_path / "p")(x), load_model(tmp_path / "still")(x), atol=1e-3)


@pytest.mark.slow
def test_online_teacher_matches_cached_targets_without_augmentation(tmp_path, faces, monkeypatch):
    """With no augmentation the teacher sees the same images either way, so online and cached distillation are
    the same computation: identical first-epoch losses. With strong augmentation and mixup the run differs,
    stays finite, and the manifest says how it was distilled."""
    from compress.model import build_model
    from compress.model.io import save_model

    monkeypatch.setenv("COMPRESS_TEACHER_CACHE", str(tmp_path / "tc"))
    torch.manual_seed(3)
    save_model(build_model("table3").eval(), tmp_path / "t" / "model.pt")
    # a vanishing learning rate keeps the student fixed, so the epoch's losses depend on the targets alone
    common = dict(epochs=1, teacher=str(tmp_path / "t"), distill_weight=10.0, augment=False, threads=1, lr=1e-12)
    cached = train(cfg(**common), tmp_path / "cached", faces=faces)
    online = train(cfg(teacher_views="online", **common), tmp_path / "online", faces=faces)
    assert online["history"][0]["distill_loss"] == pytest.approx(cached["history"][0]["distill_loss"], rel=1e-5)
    assert online["history"][0]["loss"] == pytest.approx(cached["history"][0]["loss"], rel=1e-5)
    strong = train(cfg(**{**common, "augment": True, "lr": 0.05}, teacher_views="online", augment_policy="strong", mixup=0.25),
                   tmp_path / "strong", faces=faces)
    assert np.isfinite(strong["history"][0]["loss"])
    assert strong["history"][0]["distill_loss"] != pytest.approx(online["history"][0]["distill_loss"], rel=1e-3)
    assert (strong["config"]["teacher_views"], strong["config"]["augment_policy"]) == ("online", "strong")


def test_online_distillation_settings_are_validated():
    with pytest.raises(UserError, match="mixup images are distilled only"):
        cfg(mixup=0.2, teacher="t.onnx", distill_weight=1.0).validate()
    with pytest.raises(UserError, match="unknown augment_policy 'heavy'"):
        cfg(augment_policy="heavy").validate()
    with pytest.raises(UserError, match="unknown teacher_views"):
        cfg(teacher_views="live").validate()
    with pytest.raises(UserError, match=r"mixup is a fraction"):
        cfg(mixup=1.5, teacher="t.onnx", distill_weight=1.0, teacher_views="online").validate()


def test_every_shipped_profile_loads():
    """Each profiles/*.toml is a schedule, a training recipe or a pipeline recipe, and loads as one: a typo in
    a recipe fails here, not an hour into a user's run."""
    import tomllib

    from compress.recipe import read_sections
    from compress.schedules import load_schedule, profiles_dir

    kinds = {}
    for p in sorted(profiles_dir().glob("*.toml")):
        raw = tomllib.loads(p.read_text())
        if "stages" in raw:
            kinds[p.stem] = load_schedule(p.stem).name
            continue
        sections = read_sections(p)
        assert sections, p
        if "train" in sections:
            assert make_config(p.stem).epochs >= 1
        kinds[p.stem] = "pipeline" if set(sections) - {"train"} else "train"
    assert kinds["table3"] == "table3" and kinds["celeba-table3"] == "train" and kinds["demo"] == "pipeline"
    assert make_config("table2-pruned-ft").init_model and make_config("table2-pruned-ft").distill_weight > 50


@pytest.mark.slow
def test_feature_distillation_targets_the_teachers_maps(tmp_path, faces, monkeypatch):
    """Block-wise feature distillation compares the student's stem/stage/head maps with the teacher's: ~0 when
    the teacher is the student's own start, large for an unrelated teacher of the same widths; a teacher whose
    widths differ is refused with the first point that differs."""
    from compress.model import build_model
    from compress.model.io import save_model
    from compress.prune.in_memory import prune_to_schedule

    monkeypatch.setenv("COMPRESS_TEACHER_CACHE", str(tmp_path / "tc"))
    torch.manual_seed(5)
    save_model(build_model("table3").eval(), tmp_path / "a" / "model.pt")
    save_model(build_model("table3").eval(), tmp_path / "b" / "model.pt")
    common = dict(epochs=1, init_model=str(tmp_path / "a"), distill_weight=10.0, feature_weight=5.0, augment=False,
                  threads=1, lr=1e-12, teacher_views="online")
    own = train(cfg(teacher=str(tmp_path / "a"), **common), tmp_path / "own", faces=faces)
    other = train(cfg(teacher=str(tmp_path / "b"), **common), tmp_path / "other", faces=faces)
    f_own, f_other = own["history"][0]["feature_loss"], other["history"][0]["feature_loss"]
    assert f_own < 0.05 and f_other > 0.5, (f_own, f_other)
    assert own["teacher"]["online_runtime"].startswith("pytorch")
    big = build_model("table2").eval()
    save_model(big, tmp_path / "t2" / "model.pt")
    save_model(prune_to_schedule(big, "table3"), tmp_path / "p" / "model.pt")
    with pytest.raises(UserError, match=r"feature distillation: teacher t2 has 7 stages, table3 6; use the network"):
        train(cfg(**{**common, "init_model": str(tmp_path / "p")}, teacher=str(tmp_path / "t2")), tmp_path / "x",
              faces=faces)


def test_feature_distillation_needs_an_online_teacher():
    with pytest.raises(UserError, match="feature distillation runs the teacher on every batch"):
        cfg(feature_weight=1.0, teacher="t.onnx", distill_weight=1.0).validate()
    with pytest.raises(UserError, match="feature distillation runs the teacher on every batch"):
        cfg(feature_weight=1.0).validate()
