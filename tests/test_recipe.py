"""compress/recipe.py: every shipped recipe loads to its values; a wrong key or base is one clear error."""

import tomllib

import pytest

from compress.errors import UserError
from compress.full_recipe import load_recipe
from compress.recipe import SECTIONS, BenchConfig, ExportConfig, QuantizeConfig, read_sections, section_config
from compress.schedules import profiles_dir


def _recipes() -> list[str]:
    return [p.stem for p in sorted(profiles_dir().glob("*.toml")) if "stages" not in tomllib.loads(p.read_text())]


@pytest.mark.parametrize("name", _recipes())
def test_every_profile_loads_to_its_tables(name):
    """Each typed section holds exactly what the merged TOML says, and the defaults elsewhere."""
    r = load_recipe(name)
    sec = read_sections(r.path)
    for k, v in sec["train"].items():
        assert getattr(r.train, k) == v, (name, k)
    for s, cls in SECTIONS.items():
        cfg, table = getattr(r, s), sec.get(s, {})
        if cfg is None:
            assert s == "prune" and not table
            continue
        for k, v in table.items():
            got = getattr(cfg, k)
            assert (list(got) if isinstance(got, tuple) else got) == v, (name, s, k)


def test_profile_values():
    ci, demo = load_recipe("ci"), load_recipe("demo")
    assert (ci.train.epochs, ci.train.synthetic_identities, ci.train.s, ci.train.batch_size) == (6, 60, 32.0, 64)
    assert (ci.evaluate.identities, ci.quantize.images, ci.quantize.threads) == (60, 128, 1)
    assert (ci.export.parity_images, ci.bench.seconds, ci.bench.threads) == (200, 1.0, 1)
    assert ci.quantize.keep_float == ("stem", "embedding") and ci.quantize.qat_steps == 300 and ci.prune is None
    assert ci.reference.model.endswith("MobileFaceNet.onnx") and ci.pipeline.model is None
    assert (demo.train.epochs, demo.evaluate.identities, demo.quantize.images) == (16, 100, 256)
    assert demo.bench.seconds == 2.0
    dz = load_recipe("deploy-zoo-table3")  # three levels: deploy-zoo-table3 -> deploy-celeba-table3 -> celeba-table3
    assert dz.quantize.calibration == "synthetic" and dz.quantize.align is False
    assert dz.evaluate.lfw == "../shared/data/lfw" and dz.train.optimizer == "adamw"
    assert load_recipe("table2-pruned-ft").train.distill_weight > 50


def test_defaults_are_the_library_and_cli_defaults():
    """The library functions and the CLI take their defaults from the configs."""
    import inspect

    from compress.export.folders import export_artifact
    from compress.prune.folders import prune_artifact
    from compress.quantize import quantize_artifact

    q = inspect.signature(quantize_artifact).parameters
    assert (q["n_calibration"].default, q["qat_steps"].default, q["qat_lr"].default) == (256, 300, 5e-5)
    assert tuple(q["keep_float"].default) == QuantizeConfig.keep_float
    assert inspect.signature(prune_artifact).parameters["finetune_lr"].default == 1e-3
    assert inspect.signature(export_artifact).parameters["n_parity"].default == ExportConfig.parity_images
    assert BenchConfig().seconds == 2.0


def _write(tmp_path, name, text):
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("body, msg", [
    ("[train]\nepoch = 1\n", r"unknown \[train\] key 'epoch'; did you mean 'epochs'\?"),
    ("[train]\nepochs = 1\n[quantize]\nqat_step = 5\n", r"\[quantize\] key 'qat_step'; did you mean 'qat_steps'\?"),
    ("[train]\nepochs = 1\n[bench]\nsecs = 1\n", r"unknown \[bench\] key 'secs'; did you mean 'seconds'\?"),
    ("[train]\nepochs = 1\n[export]\nparity_image = 8\n", r"key 'parity_image'; did you mean 'parity_images'"),
    ("[train]\nepochs = 1\n[quantise]\nimages = 4\n", r"recipe section \[quantise\]; did you mean \[quantize\]"),
    ("[train]\nepochs = 1\n[quantize]\nkeep_float = \"stem\"\n", r"\[quantize\] keep_float must be a list of strings"),
    ("[train]\nepochs = 1\n[prune]\nratio = 1.5\n", r"\[prune\] ratio must be a number > 0 and <= 1"),
    ("[train]\nepochs = 1\n[evaluate]\nbins = [\"a.txt\"]\n", r"\[evaluate\] bins must be a list of .bin paths"),
    ("[evaluate]\nflip = true\n", r"no \[train\] table"),
])
def test_bad_recipe_is_one_clear_error(tmp_path, body, msg):
    p = _write(tmp_path, "r", body)
    with pytest.raises(UserError, match=msg) as e:
        load_recipe(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_base_cycles_are_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    self_base = _write(tmp_path, "s", f"base = '{tmp_path / 's.toml'}'\n[train]\nepochs = 1\n")
    with pytest.raises(UserError, match="cannot be its own base"):
        load_recipe(self_base)
    a = _write(tmp_path, "a", "base = 'b.toml'\n[train]\nepochs = 1\n")
    _write(tmp_path, "b", "base = 'c.toml'\n[train]\nepochs = 2\n")
    _write(tmp_path, "c", "base = 'a.toml'\n[train]\nepochs = 3\n")
    with pytest.raises(UserError, match=r"base recipes form a cycle \(a.toml -> b.toml -> c.toml -> a.toml\)"):
        load_recipe(a)


def test_base_merges_section_by_section(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "base", "[train]\nepochs = 7\nloss = 'arcface'\n[quantize]\nimages = 64\nmode = 'qat'\n")
    r = load_recipe(_write(tmp_path, "top", "base = 'base.toml'\n[train]\nloss = 'softmax'\n"
                                            "[quantize]\nimages = 32\nqat_lr = 1e-4\noverflow_fix = 'enable'\n"
                                            "[prune]\nratio = 0.5\ndepth = 'importance'\n"))
    assert (r.train.epochs, r.train.loss) == (7, "softmax")
    q = r.quantize
    assert (q.images, q.mode, q.qat_lr, q.overflow_fix) == (32, "qat", 1e-4, "enable")
    assert r.prune.depth == "importance" and r.prune.ratio == 0.5 and r.prune.steps == 1


def test_section_config_types():
    assert section_config("bench", {"seconds": 1}).seconds == 1.0 and isinstance(
        section_config("bench", {"seconds": 1}).seconds, float)
    assert section_config("export", {"targets": ["onnx", "intel-nuc:int8"]}).targets == ("onnx", "intel-nuc:int8")
    with pytest.raises(UserError, match=r"\[bench\] threads must be an integer >= 0 and <= \d+ .*, got -1"):
        section_config("bench", {"threads": -1})
