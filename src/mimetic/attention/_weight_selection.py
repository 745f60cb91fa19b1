"""Weight selection (Xu et al., ICLR 2024, "Initializing Models with Larger Ones"; code
OscarXZQ/weight-selection, `weight_selection.py`): every weight of the student but its head is
an evenly spaced selection of a larger pretrained teacher's, along every dimension.

Followed as published: student block i takes teacher block i (the paper's first-N layer
selection), every tensor the same name's. Adaptations, each because the published code assumes a
student of the teacher's resolution and pooling: the patch embedding's kernel and the position
embedding's grid are resampled with timm's helpers (FlexiViT's pseudo-inverse resize, bicubic);
a student without a class token drops the teacher's class position; an average-pooling student's
`fc_norm` takes the teacher's final `norm` (the same LayerNorm before the head).

The planning check (`teacher_problem`) needs no torch or timm: the workflow's config check runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mimetic import hub
from mimetic.attention._spec import Param, register_init

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

# The paper's teacher for ViT-Tiny: ViT-S/16 pretrained on ImageNet-21k.
TEACHER = "vit_small_patch16_224.augreg_in21k"


def selected_indices(teacher: int, student: int) -> Tensor:
    """The rule's indices along one dimension: every (teacher / student)-th where student divides
    teacher, else round(linspace) from the first index to the last."""
    import torch

    if student > teacher:
        raise ValueError(f"the student's dimension {student} is larger than the teacher's {teacher}")
    if teacher % student == 0:
        return torch.arange(student) * (teacher // student)
    # The published code spaces linspace(0, teacher, student) in floats, whose last point is one
    # past the end (and index_select takes no floats): the same spread, ending at the last index.
    return torch.linspace(0, teacher - 1, student).round().long()


def uniform_element_selection(weight: Tensor, shape: tuple[int, ...] | torch.Size) -> Tensor:
    """`weight` reduced to `shape` by selected_indices along every dimension."""
    if weight.dim() != len(shape):
        raise ValueError(f"teacher tensor {tuple(weight.shape)} and student {tuple(shape)} differ in rank")
    for dim, size in enumerate(shape):
        weight = weight.index_select(dim, selected_indices(weight.shape[dim], size))
    return weight


def _pos_embed(teacher: nn.Module, student: nn.Module) -> Tensor:
    """The teacher's position embedding at the student's width (selection) and grid (resampled)."""
    from timm.layers import resample_abs_pos_embed

    t_prefix = 0 if teacher.no_embed_class else teacher.num_prefix_tokens
    s_prefix = 0 if student.no_embed_class else student.num_prefix_tokens
    if s_prefix > t_prefix:
        raise ValueError(f"the student's position embedding has {s_prefix} prefix rows, the teacher's {t_prefix}")
    pos = teacher.pos_embed.detach()
    pos = pos.index_select(2, selected_indices(pos.shape[2], student.pos_embed.shape[2]))
    grid = list(student.patch_embed.grid_size)
    if grid != list(teacher.patch_embed.grid_size):
        pos = resample_abs_pos_embed(pos, grid, list(teacher.patch_embed.grid_size), num_prefix_tokens=t_prefix)
    return pos[:, t_prefix - s_prefix:]


def _teacher_key(key: str, teacher: dict[str, Tensor]) -> str:
    if key.startswith("fc_norm.") and key not in teacher:
        return "norm." + key.split(".", 1)[1]
    if key not in teacher:
        raise ValueError(f"the teacher has no {key!r}; weight selection needs a teacher of the student's family "
                         "(a timm VisionTransformer) at least as deep")
    return key


def select_weights(teacher: nn.Module, student: nn.Module) -> dict[str, Tensor]:
    """Every state-dict tensor of `student` but its head, selected from `teacher` (both timm
    VisionTransformers): what the init writes."""
    from timm.layers import resample_patch_embed

    source = {k: v.detach() for k, v in teacher.state_dict().items()}
    out = {}
    for key, own in student.state_dict().items():
        if key.startswith("head."):
            continue
        try:
            if key == "pos_embed":
                out[key] = _pos_embed(teacher, student)
                continue
            weight = source[_teacher_key(key, source)]
            if key == "patch_embed.proj.weight":  # (out, in, kh, kw): select out and in, resample the kernel
                weight = uniform_element_selection(weight, (*own.shape[:2], *weight.shape[2:]))
                if weight.shape[2:] != own.shape[2:]:
                    weight = resample_patch_embed(weight, list(own.shape[2:]))
            out[key] = uniform_element_selection(weight, own.shape)
        except ValueError as e:
            raise ValueError(f"weight selection, {key}: {e}") from None
    return out


def teacher_problem(params: dict[str, object]) -> tuple[str, str] | None:
    """(parameter, what is wrong) when the teacher cannot be had: `file` missing, or the hub name
    neither in the hub cache nor reachable. None when it can."""
    if params["file"] is not None:
        path = Path(str(params["file"])).expanduser()
        if not path.is_file():
            return "file", f"teacher checkpoint {str(path)!r} does not exist; give a safetensors or PyTorch state dict"
        return None
    name = str(params["teacher"])
    if "." not in name:
        return "teacher", (f"{name!r} names no pretrained tag; give the weights' tag, e.g. {TEACHER!r}, or set "
                           "`file` to a local checkpoint")
    repo = hub.snapshots(f"timm/{name}")
    if any(repo.glob("*/model.safetensors")) or any(repo.glob("*/pytorch_model.bin")):
        return None
    why = hub.unreachable(f"timm/{name}")
    if why:
        return "teacher", (f"the teacher {name!r} is not in the hub cache {hub.cache_dir()} and cannot be had from "
                           f"{why}; download it once where there is internet "
                           f"(timm.create_model({name!r}, pretrained=True)), or set `file` to a local checkpoint")
    return None


@register_init("weight-selection",
               touches=("q", "k", "v", "proj", r"patch_embed\..*", "pos_embed", "cls_token", r"blocks\.\d+\..*",
                        r"norm\..*", r"fc_norm\..*"),
               params={"teacher": Param(TEACHER, "the teacher: a timm model name with its pretrained tag", text=True),
                       "file": Param(None, "a local checkpoint of the teacher (safetensors or a PyTorch state "
                                           "dict) instead of the hub", file=True)},
               source="Xu et al., ICLR 2024 (arXiv 2311.18823); code OscarXZQ/weight-selection",
               needs={"pos_embed": "learned"}, preflight=teacher_problem, kinds=("vision",))
def weight_selection(model: nn.Module, gen: torch.Generator, teacher: str, file: str | None) -> None:
    """Every weight but the head's, not only attention: an evenly spaced selection of a larger
    pretrained teacher's (ViT-S/16 in21k for ViT-Tiny), block i from block i; the patch and
    position embeddings resampled to the student's patch and grid (an adaptation)."""
    import torch

    from mimetic.attention.pretrained import PretrainedUnavailable, load_timm

    try:
        with torch.random.fork_rng(devices=[]):  # building the teacher draws its own init: the run's RNG stays
            source = load_timm(teacher, file, config_key="the arm's params.file")
    except PretrainedUnavailable as e:
        raise ValueError(str(e)) from None
    except RuntimeError as e:  # load_state_dict's list of mismatches: the file holds another architecture
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        first = next((line for line in lines if "mismatch" in line or "key" in line), lines[0] if lines else "")
        raise ValueError(f"the teacher checkpoint {file!r} does not fit teacher={teacher!r} ({first}); set `teacher` "
                         "to the checkpoint's timm architecture") from None
    selected = select_weights(source, model)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key in selected:
                tensor.copy_(selected[key])
