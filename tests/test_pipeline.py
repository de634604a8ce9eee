import json

from compress.pipeline import run_pipeline


def test_pipeline_trains_evaluates_and_reuses_cached_stage(tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text("[train]\nsynthetic_identities = 8\nsynthetic_images_per_identity = 8\nepochs = 1\n"
                      "batch_size = 16\ns = 16.0\nm = 0.2\nthreads = 2\nprogress = false\neval_identities = 20\n"
                      "[evaluate]\nidentities = 20\nflip = false\n")
    out = tmp_path / "run"
    first = run_pipeline(recipe, out)
    result = json.loads((out / "result.json").read_text())
    assert "SYNTHETIC" in result["evaluation"]["dataset"] and 0 <= result["evaluation"]["accuracy"] <= 1
    assert first["schedule"] == "table3"
    stamp = (out / "train" / "model.pt").stat().st_mtime_ns
    run_pipeline(recipe, out)
    assert (out / "train" / "model.pt").stat().st_mtime_ns == stamp  # cached: same recipe, config and code
    run_pipeline(recipe, out, force=True)
    assert (out / "train" / "model.pt").stat().st_mtime_ns != stamp
