"""int8 quantization of a FaceMobileNet with NNCF: post-training (PTQ) and quantization-aware fine-tuning (QAT).

NNCF 3.4 (torch "function hook" backend) names every traced op by its module path with "/" separators plus the
op and call index, e.g. `stages/0/0/conv/1/0/conv2d/0`; weight quantizers are pre-hooks on port 1 of a conv,
activation quantizers are post-hooks on the op that produces the tensor. A user's keep-float names are
FaceMobileNet module names (dotted, as in `named_modules()`), turned into IgnoredScope regex patterns on those
node names. NNCF then inserts neither the weight quantizer nor the input quantizer of an ignored op.
"""

from __future__ import annotations

import copy
import re
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..data.folder import FaceSet
from ..data.transforms import to_float
from ..errors import UserError
from ..model.network import FaceMobileNet, batchnorms_folded, fold_batchnorms
from ..recipe import QuantizeConfig
from ..train.finetune import embed, finetune

DEFAULT_KEEP_FLOAT: tuple[str, ...] = QuantizeConfig.keep_float  # why these two: compress/recipe.py

# The paper's last row is "conv2d 1x1 + BN": keeping `embedding` float also keeps the final BatchNorm1d float.
# Otherwise NNCF quantizes the embedding conv's output (the BN's input) to 8 bits, i.e. the embedding itself.
_ALIASES: dict[str, tuple[str, ...]] = {"embedding": ("embedding", "bn")}
# A MobileFaceNet's embedding starts one layer earlier, at its global depthwise conv (GDC, `pool` with weights):
# quantized per tensor, it took the pruned entries' int8 embeddings to cosine 0.43 / 0.81 / 0.94 to float
# (mfn-18m / 57m / 113m; 0.94 / 0.99 / 0.997 with the GDC in float, 256 CelebA calibration faces, 128 others);
# it is ~20 k MACs, so `embedding` keeps it float too. A weightless pool (the paper's networks) is unaffected.
_GDC_EMBEDDING = ("pool",)


# NNCF's OverflowFix values. "first_layer_only" (NNCF's default) halves the weight range of the first quantized
# layer. Measured on a CelebA-trained table3 (epoch 9), 128 synthetic held-out faces, default keep-float:
# cosine mean/min 0.9965/0.81 with first_layer_only vs 0.9984/0.94 with disable, because with the stem float the
# "first layer" is stage 0's convs, where 7 bits cost more than on the 3-channel stem. Our default is "disable":
# the int8 targets (TensorRT QDQ on Orin, OpenVINO on the NUC's VNNI-capable i7-1185G7, ONNX Runtime) do not
# saturate int16 accumulators, which is the overflow the fix guards against on pre-VNNI x86.
OVERFLOW_FIX = ("first_layer_only", "enable", "disable")


# Activation quantization, per tensor always (TensorRT and onnxruntime's QLinear kernels take one scale per
# activation tensor; NNCF's CPU default quantizes depthwise-conv inputs per channel, which neither can fuse).
# "asymmetric" (NNCF's MIXED preset: uint8 activations with a zero point): every conv's input and output are the
# same type, the form onnxruntime fuses into QLinearConv (with NNCF's symmetric default, a ReLU6 output is uint8
# and a linear projection's output int8, and onnxruntime runs those convs in float between Q/DQ).
# "symmetric" (NNCF's PERFORMANCE preset). The TensorRT export rewrites either into TensorRT's signed form.
ACTIVATIONS = ("asymmetric", "symmetric")


def _module_names(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_modules() if n and "__nncf" not in n and "_nncf" not in n]


def resolve_keep_float(model: FaceMobileNet, keep_float: Iterable[str] | None) -> list[str]:
    """Validated, alias-expanded module names to keep in float (empty: full int8)."""
    names = set(_module_names(model))
    out: list[str] = []
    for k in keep_float or ():
        k = str(k).strip()
        if not k:
            continue
        if k not in names:
            top = [n for n, _ in model.named_children()]
            raise UserError(f"unknown layer '{k}' in keep-float; use FaceMobileNet module names: {', '.join(top)} "
                            "or a sub-module such as stages.0.0 (or none for full int8)")
        for name in _expand(model, k):
            if name not in out:
                out.append(name)
    return out


def has_weighted_gdc(model: nn.Module) -> bool:
    """Whether the pool before the embedding is a global depthwise conv with weights (MobileFaceNet's GDC)."""
    pool = getattr(model, "pool", None)
    return pool is not None and any(True for _ in pool.parameters())


def _expand(model: nn.Module, name: str) -> tuple[str, ...]:
    gdc = name == "embedding" and has_weighted_gdc(model)
    return (_GDC_EMBEDDING if gdc else ()) + _ALIASES.get(name, (name,))


def ignored_scope_for(keep_float: Sequence[str]):
    """nncf.IgnoredScope that excludes every op inside the given module names (weights and inputs)."""
    import nncf

    # "stages.1" -> ^stages/1/ : the trailing "/" keeps stages.1 from also matching stages.10.
    patterns = [f"^{re.escape(name.replace('.', '/'))}/" for name in keep_float]
    # validate=False: a name is already checked against the model; a module NNCF does not trace (e.g. an
    # empty Sequential) would otherwise abort the run.
    return nncf.IgnoredScope(patterns=patterns, validate=False)


def _images_to_batches(images: np.ndarray, batch_size: int = 1) -> list[torch.Tensor]:
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise UserError(f"calibration images must be uint8 [N,H,W,3] aligned RGB crops, got {images.dtype} "
                        f"{list(images.shape)}")
    t = torch.from_numpy(np.ascontiguousarray(images))
    return [to_float(t[i:i + batch_size]) for i in range(0, len(t), batch_size)]


def ptq(model: FaceMobileNet, calibration: np.ndarray, keep_float: Iterable[str] | None = DEFAULT_KEEP_FLOAT,
        subset_size: int | None = None, batch_size: int = 32, bias_correction: bool = False,
        overflow_fix: str = "disable", activations: str = QuantizeConfig.activations) -> nn.Module:
    """Post-training int8 quantization of `model` with every BatchNorm folded into its conv (fold_batchnorms):
    symmetric 8-bit per-channel weights, per-tensor `activations` (ACTIVATIONS), NNCF's fast bias correction only
    if bias_correction=True (why not by default: the comment at nncf.quantize), on the first `subset_size` calibration faces (default: all). overflow_fix
    (OVERFLOW_FIX): NNCF's 7-bit weights for the first quantized layer, which keeps int8 exact on CPUs without
    VNNI. Returns an eval-mode fake-quant copy (a folded FaceMobileNet); `model` is unchanged."""
    import nncf
    from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters, OverflowFix,
                                                       QuantizationParameters)

    if overflow_fix not in OVERFLOW_FIX:
        raise UserError(f"unknown overflow fix '{overflow_fix}'; choose one of: {', '.join(OVERFLOW_FIX)}")
    if activations not in ACTIVATIONS:
        raise UserError(f"unknown activation quantization '{activations}'; choose one of: {', '.join(ACTIVATIONS)}")

    if len(calibration) < 1:
        raise UserError("the calibration set is empty; pass at least one aligned face")
    float_model = fold_batchnorms(copy.deepcopy(model).cpu().eval())
    names = resolve_keep_float(float_model, keep_float)
    if subset_size is not None:
        calibration = calibration[: max(1, int(subset_size))]
    # Batches, not single faces: NNCF's statistics pass has a fixed Python hook cost per call, so 256 faces one
    # at a time took 32 s and in batches of 32 took 5 s (table3, 1 torch thread), with the same embedding cosine
    # (min/max are then reduced over the batch axis too).
    data = _images_to_batches(calibration, max(1, int(batch_size)))
    with torch.no_grad():
        # subset_size counts dataset items (batches) in NNCF, so pass the number of batches.
        preset = nncf.QuantizationPreset.MIXED if activations == "asymmetric" else nncf.QuantizationPreset.PERFORMANCE
        q = nncf.quantize(float_model, nncf.Dataset(data), preset=preset, subset_size=len(data),
                          ignored_scope=ignored_scope_for(names) if names else None,
                          # NNCF's fast bias correction re-fits every folded conv's bias to the calibration faces.
                          # On zoo:table3, cosine to float on 256 real (CelebA) faces: calibrated on synthetic faces
                          # 0.9909 / 0.9754 (mean / min) with it, 0.9986 / 0.9951 without; calibrated on 128 CelebA
                          # faces, on 128 others: 0.9984 / 0.9882 with, 0.9985 / 0.9964 without. So off by default.
                          advanced_parameters=AdvancedQuantizationParameters(
                              disable_bias_correction=not bias_correction, overflow_fix=OverflowFix(overflow_fix),
                              activations_quantization_params=QuantizationParameters(per_channel=False)))
    return q.eval()


_SHAPE_OPS = {"flatten", "view", "reshape", "chunk", "split", "__getitem__", "contiguous", "transpose", "cat"}


def quantizer_placement(qmodel: nn.Module) -> dict[str, set[str]]:
    """Where the quantizers sit, by FaceMobileNet module name: {"weights": modules whose weight is quantized,
    "inputs": modules that receive a quantized activation}. Reads NNCF's hook names and the traced graph."""
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph
    from nncf.torch.function_hook.wrapper import get_hook_storage
    from nncf.torch.quantization.layers import BaseQuantizer

    def module_of(node_name: str) -> str:
        # "stages/0/0/conv/1/0/conv2d/0" -> "stages.0.0.conv.1.0" (drop op name and call index)
        parts = node_name.split("/")
        return ".".join(p for p in parts[:-2] if p)

    probe = FaceMobileNet(qmodel.schedule).eval()
    if batchnorms_folded(qmodel):
        probe = fold_batchnorms(probe)
    size = qmodel.schedule.input_size
    graph = build_nncf_graph(probe, torch.zeros(1, 3, size, size))
    weights: set[str] = set()
    inputs: set[str] = set()
    for hook_name, module in get_hook_storage(qmodel).named_hooks():
        if not isinstance(module, BaseQuantizer):
            continue
        kind, rest = hook_name.split(".", 1)
        node_name, port = rest.rsplit("__", 1)
        port_id = int(port.split(".")[0])
        if kind == "pre_hooks":
            node = graph.get_node_by_name(node_name)
            # Port 1 of conv/linear is the weight; any other port is an activation input of that op.
            (weights if port_id == 1 and node.node_type in ("conv2d", "linear") else inputs).add(module_of(node_name))
        else:
            todo = list(graph.get_next_nodes(graph.get_node_by_name(node_name)))
            while todo:  # look through shape-only ops to the layer that really consumes the tensor
                nxt = todo.pop()
                if nxt.node_type in _SHAPE_OPS:
                    todo += graph.get_next_nodes(nxt)
                else:
                    inputs.add(module_of(nxt.node_name))
    return {"weights": weights, "inputs": inputs}


def float_weights(qmodel: nn.Module) -> FaceMobileNet:
    """A plain FaceMobileNet with the quantized model's current float weights (e.g. after QAT); BatchNorms folded
    when the quantized model's are."""
    model = FaceMobileNet(qmodel.schedule).eval()
    if batchnorms_folded(qmodel):
        model = fold_batchnorms(model)
    own = model.state_dict()
    state = {k: v.detach().cpu().clone() for k, v in qmodel.state_dict().items() if k in own}
    model.load_state_dict(state)
    return model.eval()


def fake_quant_cosine(float_model: nn.Module, qmodel: nn.Module, images: np.ndarray) -> dict[str, float]:
    """Cosine similarity between float and fake-quant embeddings of the same faces: mean and worst case."""
    if len(images) == 0:
        return {"mean": float("nan"), "min": float("nan"), "n": 0}
    cos = (embed(float_model, images) * embed(qmodel, images)).sum(1)
    return {"mean": float(cos.mean()), "min": float(cos.min()), "n": int(len(images))}


def qat(model: FaceMobileNet, calibration: np.ndarray, train_faces: FaceSet, *,
        steps: int = QuantizeConfig.qat_steps, lr: float = QuantizeConfig.qat_lr, batch_size: int = 32,
        keep_float: Iterable[str] | None = DEFAULT_KEEP_FLOAT, subset_size: int | None = None,
        teacher: nn.Module | None = None, distill_weight: float = 50.0, loss: str = "arcface_w", s: float = 32.0,
        m: float = 0.5, terms: int = 2, augment_images: bool = True, seed: int = 0, progress: bool = True,
        qmodel: nn.Module | None = None, history: list[dict[str, float]] | None = None,
        bias_correction: bool = False, activations: str = QuantizeConfig.activations) -> nn.Module:
    """Quantization-aware fine-tuning: PTQ init (or `qmodel`), then `steps` AdamW steps of the training loss
    (margin loss on labelled faces, label -1 excluded, + distill_weight x (1 - cos) to the float `teacher`,
    default `model`). BatchNorms are folded into the convs (ptq), so what trains is the conv weights and biases. Per-step losses are appended to `history` if given.
    Returns the fine-tuned fake-quant model in eval mode; `model` is not changed."""
    if steps < 1 or lr <= 0 or batch_size < 1:
        raise UserError(f"QAT needs steps >= 1, lr > 0 and batch size >= 1 (got {steps}, {lr}, {batch_size})")
    if len(train_faces) < 1:
        raise UserError("QAT needs training faces; pass --train-data (the folder the model was trained on)")
    torch.manual_seed(seed)
    teacher = copy.deepcopy(teacher if teacher is not None else model).cpu().eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    q = copy.deepcopy(qmodel) if qmodel is not None else ptq(model, calibration, keep_float, subset_size,
                                                                      bias_correction=bias_correction,
                                                                      activations=activations)
    # No weight decay: shrinking weights under fixed quantizer ranges would only waste int8 levels.
    return finetune(q, train_faces, teacher, steps=steps, lr=lr, batch_size=batch_size,
                    distill_weight=distill_weight, loss=loss, s=s, m=m, terms=terms, weight_decay=0.0,
                    freeze_bn=True, augment_images=augment_images, seed=seed, progress=progress, desc="QAT",
                    history=history)


def nncf_version() -> str:
    import nncf

    return str(nncf.__version__)
