import pytest
import torch

from compress.errors import UserError
from compress.model import build_model
from compress.model.blocks import InvertedResidual, ParallelExpansion, channel_shuffle
from compress.model.complexity import count_macs, layer_table, totals
from compress.schedules import load_schedule, parse_schedule

TABLE3 = dict(c=[8, 12, 16, 32, 64, 128], t=[1, 6, 5, 4, 3, 2], n=[1, 2, 3, 4, 3, 1], s=[1, 2, 2, 2, 2, 1])
TABLE2 = dict(c=[16, 24, 32, 64, 96, 160, 320], t=[1, 6, 6, 6, 6, 6, 6], n=[1, 2, 3, 4, 3, 3, 1],
              s=[1, 2, 2, 2, 1, 2, 1])


@pytest.mark.parametrize("name,paper", [("table3", TABLE3), ("table2", TABLE2)])
def test_schedule_matches_paper(name, paper):
    s = load_schedule(name)
    for k in "ctns":
        assert [getattr(st, k) for st in s.stages] == paper[k], k
    assert (s.stem_c, s.stem_s, s.head_c, s.input_size) == (32, 2, 1280, 112)


@pytest.mark.parametrize("name,spatial", [("table3", [56, 28, 14, 7, 4, 4]), ("table2", [56, 28, 14, 7, 7, 4, 4])])
def test_real_shapes_per_stage(name, spatial):
    rows = layer_table(build_model(name))
    stage_rows = rows[1:-3]
    assert [r.output_shape[1] for r in stage_rows] == spatial
    assert [r.output_shape[0] for r in stage_rows] == [st.c for st in load_schedule(name).stages]
    assert rows[-1].output_shape == (128,)


def test_row_totals_equal_whole_model_count():
    m = build_model("table3").eval()
    p, macs = totals(layer_table(m))
    assert p == sum(x.numel() for x in m.parameters())
    assert macs == count_macs(m, (3, 112, 112))
    assert macs < count_macs(build_model("table2").eval(), (3, 112, 112)) / 3


def test_embedding_shape_and_residual_kinds():
    m = build_model("table3").eval()
    assert m(torch.randn(3, 3, 112, 112)).shape == (3, 128)
    kinds = [type(stage[0]) for stage in m.stages]
    assert kinds == [InvertedResidual] * 4 + [ParallelExpansion] * 2


def test_inverted_residual_shortcut_rule():
    assert InvertedResidual(16, 16, 6, 1).use_shortcut
    assert not InvertedResidual(16, 16, 6, 2).use_shortcut
    assert not InvertedResidual(16, 24, 6, 1).use_shortcut
    # t=1 skips the expand conv, as in MobileNet-v2
    assert len(InvertedResidual(16, 16, 1, 1).conv) == 2


def test_parallel_expansion_keeps_half_of_input_untouched():
    blk = ParallelExpansion(16, 16, 3, 1).eval()
    x = torch.randn(2, 16, 8, 8)
    y = blk(x)
    # After the shuffle, even output channels are the untouched first half of the input.
    assert torch.equal(y[:, 0::2], x[:, :8])
    assert blk.branch[0][0].out_channels == 8 * 3  # hidden width = t x branch input
    down = ParallelExpansion(16, 32, 2, 2).eval()
    assert down(x).shape == (2, 32, 4, 4)


def test_channel_shuffle_is_a_permutation():
    x = torch.arange(8.0).view(1, 8, 1, 1)
    assert channel_shuffle(x).flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


def _raw(**stage):
    st = {"t": 2, "c": 16, "n": 1, "s": 1, **stage}
    return {"stem": {"c": 8, "s": 2}, "stages": [st], "head": {"c": 64}}


@pytest.mark.parametrize("stage,msg", [
    ({"c": "x"}, "stage 1.c must be an integer"),
    ({"s": 3}, "stage 1.s must be one of"),
    ({"residual": "z"}, "stage 1.residual"),
    ({"c": 15, "residual": "b"}, "must be even"),
    ({"wdith": 3}, "unknown field"),
])
def test_malformed_schedule_names_the_field(stage, msg):
    with pytest.raises(UserError, match=msg):
        parse_schedule(_raw(**stage), "x.toml")


def test_schedule_file_errors(tmp_path):
    with pytest.raises(UserError, match="unknown schedule 'nope'"):
        load_schedule("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("[stem\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_schedule(bad)
    missing = tmp_path / "m.toml"
    missing.write_text("[stem]\nc=8\ns=2\n[head]\nc=64\n")
    with pytest.raises(UserError, match=r"missing \[stages\]"):
        load_schedule(missing)


def test_user_schedule_file_builds(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text('name="tiny"\nembedding_size=32\n[stem]\nc=8\ns=2\n'
                 '[[stages]]\nt=2\nc=8\nn=2\ns=2\n[[stages]]\nt=2\nc=16\nn=2\ns=2\nresidual="b"\n[head]\nc=64\n')
    m = build_model(p).eval()
    assert m(torch.randn(1, 3, 112, 112)).shape == (1, 32)


def test_folding_the_embedding_bn_keeps_the_function():
    from compress.model.network import fold_embedding_bn

    torch.manual_seed(0)
    m = build_model("table3")
    with torch.no_grad():  # non-trivial BN statistics and affine terms
        m.bn.running_mean.normal_()
        m.bn.running_var.uniform_(0.5, 2.0)
        m.bn.weight.normal_()
        m.bn.bias.normal_()
    m.eval()
    folded = fold_embedding_bn(m)
    x = torch.randn(4, 3, 112, 112)
    with torch.no_grad():
        assert torch.allclose(m(x), folded(x), atol=1e-4, rtol=1e-4)
    assert isinstance(folded.bn, torch.nn.Identity) and folded.embedding.bias is not None
    assert isinstance(m.bn, torch.nn.BatchNorm1d)  # the original is untouched

