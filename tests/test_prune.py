"""Structured pruning: Table 2 -> Table 3, exactness of the surgery on tiny (a)/(b) networks, depth pruning,
validation, hardware rounding, uniform ratio, iterative steps and fine-tuning after pruning."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from compress.errors import UserError
from compress.model import build_model
from compress.model.io import load_model, save_model
from compress.model.network import FaceMobileNet
from compress.prune import (apply_selection, block_specs, format_plan, plan_pruning, prune_by_ratio,
                            prune_to_schedule, round_schedule, rounding_report, select_channels,
                            zero_pruned_channels)
from compress.prune.surgery import build_spaces
from compress.schedules import Schedule, load_schedule, parse_schedule


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These networks are tiny; with the 2 cores shared, OpenMP threads spin-wait (x100 slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def sched(stages, stem=16, head=64, emb=16, size=32, name="tiny", **top) -> Schedule:
    keys = ("t", "c", "n", "s", "residual", "source")
    st = [dict(zip(keys, s)) for s in stages]
    for d in st:
        if d.get("source") is None:
            d.pop("source", None)
    return parse_schedule({"name": name, "input_size": size, "embedding_size": emb, "stem": {"c": stem, "s": 2},
                           "stages": st, "head": {"c": head}, **top})


# (a) stages, then a (b) stage whose blocks 2-3 split, then a stride-1 (b) stage of the same width: its first
# block splits too, so four split/shuffle blocks chain through one channel space.
SRC = [(1, 8, 1, 1, "a"), (4, 16, 3, 2, "a"), (3, 32, 3, 2, "b"), (2, 32, 2, 1, "b")]
DST = [(1, 6, 1, 1, "a", 1), (3, 8, 3, 2, "a", 2), (2, 16, 3, 2, "b", 3), (2, 16, 2, 1, "b", 4)]


def randomized(schedule: Schedule, seed: int = 0) -> FaceMobileNet:
    """A network whose BatchNorms are not the identity, so the checks see every slice."""
    torch.manual_seed(seed)
    m = FaceMobileNet(schedule)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.2)
                mod.running_mean.normal_(0, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
    return m.eval()


def arch(m: nn.Module):
    return ([(n, p.shape) for n, p in m.named_parameters()], [(n, b.shape) for n, b in m.named_buffers()],
            [(n, type(x)) for n, x in m.named_modules()])


@pytest.fixture(scope="module")
def table3_pruned():
    torch.manual_seed(0)
    return prune_to_schedule(build_model("table2").eval(), "table3")


def test_table2_to_table3_matches_fresh_table3(table3_pruned, tmp_path):
    m = table3_pruned.eval()
    assert m.schedule == load_schedule("table3")
    assert arch(m) == arch(build_model("table3"))
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        y = m(x)
    assert y.shape == (2, 128) and torch.isfinite(y).all()
    save_model(m, tmp_path / "model.pt")
    loaded = load_model(tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(x), y)

    import onnxruntime as ort

    path = tmp_path / "pruned.onnx"
    torch.onnx.export(m, (x,), str(path), dynamo=False, input_names=["input"], output_names=["embedding"],
                      opset_version=13)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"input": x.numpy()})
    np.testing.assert_allclose(out, y.numpy(), rtol=1e-4, atol=1e-4)


def test_table3_plan_mapping_text():
    plan = plan_pruning("table2", "table3")
    assert [(m.target, m.source) for m in plan.stages] == [(0, 0), (1, 1), (2, 2), (3, 3), (4, 5), (5, 6)]
    assert plan.deleted == [4]
    assert plan.stages[4].rewired and not plan.stages[5].rewired
    text = format_plan(plan)
    assert "<- 6" in text and "deleted" in text and "re-wired" in text
    stem = next(lw for lw in plan.layers if lw.name == "stages.4.0.branch.0.0")
    assert (stem.source_name, stem.before, stem.after) == ("stages.5.0.branch.0.0", (576, 96, 1, 1), (96, 32, 1, 1))


@pytest.mark.parametrize("criterion", ["l1", "l2", "bn", "taylor"])
def test_keeping_all_channels_is_identity(criterion):
    src = sched(SRC)
    m = randomized(src)
    target = sched([s + (i + 1,) for i, s in enumerate(SRC)])
    x = torch.randn(4, 3, 32, 32)
    loss = (lambda model, batch: model(batch).pow(2).mean())
    p = prune_to_schedule(m, target, criterion, example_batch=x, loss_fn=loss)
    with torch.no_grad():
        torch.testing.assert_close(p(x), m(x), rtol=0, atol=0)


@pytest.mark.parametrize("criterion", ["l1", "bn"])
def test_pruned_equals_source_with_pruned_channels_zeroed(criterion):
    """Through (a) residual adds, depthwise groups and four chained split/shuffle (b) blocks."""
    src, dst = sched(SRC), sched(DST, stem=12, head=40)
    m = randomized(src, seed=1)
    plan = plan_pruning(src, dst)
    sel = select_channels(m, plan, criterion)
    pruned = apply_selection(m, sel).eval()
    assert arch(pruned) == arch(FaceMobileNet(dst))
    # the split chain space: its kept shortcut half stays in the first half at every split block
    chain = [sp for sp in sel.spaces if sp.child is not None]
    assert len(chain) == 4
    for sp in chain:
        assert (sp.keep[: sp.Wt // 2] < sp.W // 2).all() and (sp.keep[sp.Wt // 2:] >= sp.W // 2).all()
    zeroed = zero_pruned_channels(copy.deepcopy(m), sel).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ref, out, full = zeroed(x), pruned(x), m(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, full, atol=1e-3)  # it really pruned something


def test_depth_pruning_blocks_and_stages():
    src = sched([(1, 8, 1, 1, "a"), (4, 16, 3, 2, "a"), (4, 16, 2, 1, "a"), (3, 32, 3, 2, "b"), (2, 48, 1, 1, "b")])
    m = randomized(src, seed=2)
    # same widths, stage 2 keeps 1 of 3 blocks, stage 3 (stride 1) deleted: stage 4 re-wired, last stage kept
    dst = sched([(1, 8, 1, 1, "a", 1), (4, 16, 1, 2, "a", 2), (3, 32, 2, 2, "b", 4), (2, 48, 1, 1, "b", 5)])
    p = prune_to_schedule(m, dst)
    assert arch(p) == arch(FaceMobileNet(dst))
    with torch.no_grad():
        assert torch.isfinite(p(torch.randn(2, 3, 32, 32))).all()
    # deleting the last stage re-wires the head's input
    dst2 = sched([(1, 8, 1, 1, "a", 1), (4, 12, 2, 2, "a", 2), (3, 16, 3, 2, "b", 4)], head=48)
    p2 = prune_to_schedule(m, dst2, "l2")
    assert arch(p2) == arch(FaceMobileNet(dst2))
    assert any("re-wired" in sp.name for sp in build_spaces(plan_pruning(src, dst2)) if sp.name.startswith("head"))


def test_deleting_trailing_residual_blocks_is_exact_when_they_add_nothing():
    src = sched([(1, 8, 1, 1, "a"), (4, 16, 3, 2, "a")])
    m = randomized(src, seed=3)
    with torch.no_grad():
        for b in (1, 2):  # blocks 2 and 3 of stage 2 add zero to their identity shortcut
            bn = m.stages[1][b].conv[2][1]
            bn.weight.zero_(), bn.bias.zero_()
    dst = sched([(1, 8, 1, 1, "a", 1), (4, 16, 1, 2, "a", 2)])
    p = prune_to_schedule(m, dst).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(p(x), m(x), rtol=1e-5, atol=1e-5)


def test_depth_rule_importance_keeps_the_strongest_blocks():
    src = sched([(1, 8, 1, 1, "a"), (4, 16, 4, 2, "a")])
    m = randomized(src, seed=4)
    with torch.no_grad():
        for b, g in ((1, 0.01), (2, 5.0), (3, 0.02)):
            m.stages[1][b].conv[2][1].weight.fill_(g)
    dst = sched([(1, 8, 1, 1, "a", 1), (4, 16, 2, 2, "a", 2)])
    from compress.prune import prune_plan_for

    assert prune_plan_for(m, dst, depth="importance").stages[1].kept == [0, 2]
    assert prune_plan_for(m, dst).stages[1].kept == [0, 1]


@pytest.mark.parametrize("stages,kw,msg", [
    ([(1, 8, 1, 1, "a", 1), (4, 24, 3, 2, "a", 2)], {}, "stage 2: c = 24 is wider"),
    ([(1, 8, 1, 1, "a", 1), (4, 16, 3, 1, "a", 2)], {}, "stage 2: stride 1 differs"),
    ([(1, 8, 1, 1, "a", 1), (4, 16, 3, 2, "a", 5)], {}, "stage 2: source stage 5 does not exist"),
    ([(1, 8, 1, 1, "a", 1), (4, 16, 2, 1, "a", 3), (4, 16, 3, 2, "a", 2)], {}, "stage 3: source stage 2 does not come after"),
    ([(1, 8, 1, 1, "a", 1), (4, 16, 3, 2, "a")], {}, "stage 2: missing `source`"),
    ([(1, 8, 1, 1, "a", 1), (4, 16, 4, 2, "a", 2)], {}, "n = 4 blocks"),
    ([(1, 8, 1, 1, "a", 1), (8, 16, 3, 2, "a", 2)], {}, "hidden width"),
    ([(1, 8, 1, 1, "a", 1), (4, 16, 3, 2, "b", 2)], {}, "residual 'b' differs"),
    ([(2, 8, 1, 1, "a", 1), (4, 16, 3, 2, "a", 2)], {}, "t = 1"),
    ([(1, 8, 1, 1, "a", 1), (4, 16, 3, 2, "a", 2)], {"emb": 8}, "embedding_size"),
])
def test_plan_validation_errors(stages, kw, msg):
    src = sched([(1, 8, 1, 1, "a"), (4, 16, 3, 2, "a"), (4, 16, 2, 1, "a")])
    with pytest.raises(UserError, match=msg):
        plan_pruning(src, sched(stages, **kw))


def test_plan_rejects_unknown_fields_and_split_mode_change():
    src = sched([(1, 8, 1, 1, "a"), (4, 16, 3, 2, "a")])
    raw = {"name": "bad", "input_size": 32, "embedding_size": 16, "stem": {"c": 16, "s": 2}, "head": {"c": 64},
           "stages": [{"t": 1, "c": 8, "n": 1, "s": 1, "source": 1, "width": 3}]}
    with pytest.raises(UserError, match="unknown field"):
        plan_pruning(src, raw)
    src_b = sched([(1, 8, 1, 1, "a"), (2, 16, 2, 2, "b"), (2, 16, 1, 1, "b")])
    with pytest.raises(UserError, match="split"):  # 16 -> 16 splits in the source; 8 -> 16 cannot
        plan_pruning(src_b, sched([(1, 8, 1, 1, "a", 1), (2, 8, 2, 2, "b", 2), (2, 16, 1, 1, "b", 3)]))


def test_round_to_8_multiples_and_more_macs():
    rep = rounding_report(load_schedule("table2"), "table3", 8, source_macs=False)
    r = rep["rounded"]
    assert [st.c for st in r.stages] == [8, 16, 16, 32, 64, 128]
    for st in block_specs(r):
        for b in st:
            assert b.cout % 8 == 0 and b.hidden % 8 == 0
    assert rep["macs_rounded"] > rep["macs_exact"]
    small = sched([(1, 6, 1, 1, "a", 1), (3, 10, 2, 2, "a", 2)], stem=12, head=40)
    rs = round_schedule(small, 8, limit=sched([(1, 8, 1, 1, "a"), (4, 16, 3, 2, "a")]))
    assert (rs.stem_c, [s.c for s in rs.stages], rs.head_c) == (16, [8, 16], 40)
    assert [b.hidden for b in block_specs(rs)[1]] == [24, 48]


def test_prune_with_round_to_builds_rounded_schedule():
    src = sched(SRC)
    p = prune_to_schedule(randomized(src), sched(DST, stem=12, head=40), round_to=8)
    assert p.schedule.name == "tiny-r8" and p.schedule.stem_c == 16
    assert arch(p) == arch(FaceMobileNet(p.schedule))


def test_prune_by_ratio_records_hidden_widths(tmp_path):
    src = sched(SRC)
    m = randomized(src, seed=5)
    p, s = prune_by_ratio(m, 0.5)
    assert p.schedule == s and [st.c for st in s.stages] == [4, 8, 16, 16] and s.stem_c == 8 and s.head_c == 32
    hid = [[b.hidden for b in st] for st in block_specs(s)]
    assert hid[1] == [16, 32, 32] and hid[2] == [24, 24, 24]  # half of 4 x (8, 16, 16) and of 3 x 16
    assert arch(p) == arch(FaceMobileNet(s))
    save_model(p, tmp_path / "m.pt")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / "m.pt")(x), p.eval()(x))
    p3, s3 = prune_by_ratio(m, 0.3)
    assert any(st.hidden is not None for st in s3.stages)  # 0.3 x 4 x 16 is not 4 x round(0.3 x 16)
    assert arch(p3) == arch(FaceMobileNet(s3))


def test_hidden_field_validation():
    base = {"name": "h", "stem": {"c": 16}, "head": {"c": 64}}
    s = parse_schedule({**base, "stages": [{"t": 4, "c": 16, "n": 2, "s": 2, "hidden": [40, 50]}]})
    assert [b.hidden for b in block_specs(s)[0]] == [40, 50]
    assert FaceMobileNet(s).stages[0][1].conv[0][0].weight.shape == (50, 16, 1, 1)
    with pytest.raises(UserError, match="t = 1"):
        parse_schedule({**base, "stages": [{"t": 1, "c": 16, "n": 1, "s": 1, "hidden": 16}]})
    with pytest.raises(UserError, match="one width per block"):
        parse_schedule({**base, "stages": [{"t": 4, "c": 16, "n": 2, "s": 1, "hidden": [40]}]})


def test_iterative_steps():
    src = sched(SRC)
    m = randomized(src, seed=6)
    seen = []
    p = prune_to_schedule(m, sched(DST, stem=12, head=40), "l2", steps=3,
                          between_steps=lambda model: seen.append([st.c for st in model.schedule.stages]))
    assert len(seen) == 2 and seen[0][1] > seen[1][1] > 8  # (a) widths 16 -> 13 -> 11 -> 8
    assert all(16 <= c[2] <= 32 and c[2] % 16 == 0 for c in seen)  # (b) widths move in splittable steps
    assert p.schedule == sched(DST, stem=12, head=40)
    with pytest.raises(UserError, match="taylor"):
        prune_to_schedule(m, sched(DST, stem=12, head=40), "taylor")
    with pytest.raises(UserError, match="criterion"):
        prune_to_schedule(m, sched(DST, stem=12, head=40), "random")


def test_finetuning_after_pruning_keeps_loss_finite():
    from compress.train.losses import MarginHead

    torch.manual_seed(0)
    p = prune_to_schedule(randomized(sched(SRC), seed=7), sched(DST, stem=12, head=40)).train()
    head = MarginHead(16, 5)
    opt = torch.optim.SGD(list(p.parameters()) + list(head.parameters()), lr=0.05, momentum=0.9)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 5, (16,))
    for _ in range(4):
        loss, _ = head(p(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert math.isfinite(loss.item())


def test_coupling_matches_torch_pruning_on_a_networks():
    """On (a)-only networks torch-pruning's DependencyGraph can trace, our channel groups equal its groups.
    (It cannot trace the (b) channel shuffle: ZeroDivisionError in its reshape index mapping.)"""
    tp = pytest.importorskip("torch_pruning")
    rows = [(1, 8, 1, 1, "a"), (4, 16, 3, 2, "a"), (3, 24, 2, 2, "a")]
    src = sched(rows)
    m = FaceMobileNet(src).eval()
    dg = tp.DependencyGraph().build_dependency(m, example_inputs=torch.randn(1, 3, 32, 32))
    names = {mod: n for n, mod in m.named_modules()}
    mods = dict(m.named_modules())
    for sp in build_spaces(plan_pruning(src, sched([r + (i + 1,) for i, r in enumerate(rows)]))):
        ours = {mb.src for mb in sp.members}
        root = next(mb for mb in sp.members if mb.role in ("out", "dw"))
        fn = tp.prune_depthwise_conv_out_channels if root.role == "dw" else tp.prune_conv_out_channels
        group = dg.get_pruning_group(mods[root.src], fn, idxs=[0])
        theirs = {names[dep.target.module] for dep, _ in group if dep.target.module in names}
        theirs = {n for n in theirs if isinstance(mods[n], (nn.Conv2d, nn.BatchNorm2d))}
        assert theirs == ours, sp.name


def test_prune_artifact_iterative_taylor_with_finetuning_between_steps(tmp_path):
    """The CLI's path: Taylor importance from a loss on real-format data, 2 steps, fine-tuning after each."""
    import json

    from compress.prune.folders import prune_artifact

    from .conftest import toy_faces, write_image_folder

    data = write_image_folder(tmp_path / "faces", toy_faces(classes=4, per_class=6))
    src = randomized(load_schedule("table2"), seed=3)
    save_model(src, tmp_path / "t2" / "model.pt")
    with pytest.raises(UserError, match="need training faces"):
        prune_artifact(tmp_path / "t2", tmp_path / "p", schedule="table3", criterion="taylor")
    man = prune_artifact(tmp_path / "t2", tmp_path / "p", schedule="table3", criterion="taylor", steps=2,
                         data=str(data), finetune_steps=2, batch_size=8, progress=False)
    assert [s["step"] for s in man["steps"]] == [1, 2]
    for s in man["steps"]:
        assert s["finetune"]["steps"] == 2 and math.isfinite(s["finetune"]["last_loss"])
    assert man["steps"][0]["macs"] > man["steps"][1]["macs"] == man["macs"]["after"]
    assert man["method"]["criterion"] == "taylor" and "24 images" in man["method"]["data"]
    pruned = load_model(tmp_path / "p")
    assert arch(pruned) == arch(build_model("table3"))
    assert json.loads((tmp_path / "p" / "manifest.json").read_text())["steps"][1]["step"] == 2
