"""The model's inputs as serving stacks pass them.

``MultimodalClassifier`` takes a dict of tensors (modality name -> batch) and a dict of padding masks. Serving
formats want something flatter:

- ``NamedInputs``: one positional tensor per input, in ``input_fields`` order - the ONNX file's named inputs.
- ``FlatInputs``: one float32 row per sample, every input flattened and laid side by side - what MLflow's PyTorch
  flavour feeds a model (a single tensor, from a numpy array or a DataFrame). ``flat_rows`` builds such rows.

Which series take a mask is the dataset's choice (its variable-length series); a mask marks real steps, and
what the padding holds never reaches the output. Imports torch only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from emule_models.config import ModelConfig

MASK_SUFFIX = "_valid"


@dataclass(frozen=True)
class InputField:
    """One named input: a modality's batch, or a series' mask of real steps.

    Args:
        name: the input's name (the modality's, or ``<modality>_valid`` for a mask).
        modality: the modality it belongs to.
        mask: True for a mask (bool, 1.0/0.0 in flat rows), False for the data itself (float32).
        shape: the shape of one sample: (C, L) series, (C, H, W) image, (L,) mask.
    """

    name: str
    modality: str
    mask: bool
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


def input_fields(cfg: ModelConfig, masked: Sequence[str] = ()) -> list[InputField]:
    """The model's inputs in serving order: every modality in ``cfg`` order, then the masks of the series named
    in ``masked`` (in ``cfg`` order). Raises ValueError naming a ``masked`` entry that is not a series of ``cfg``,
    or a mask name that another modality already uses."""
    series = {m.name for m in cfg.modalities if m.kind == "series"}
    unknown = [n for n in masked if n not in series]
    if unknown:
        raise ValueError(f"masked: {unknown} are not series modalities of the model; accepted: {sorted(series)}")
    fields = [InputField(m.name, m.name, False, (m.channels, m.length) if m.kind == "series"
                         else (m.channels, m.height, m.width)) for m in cfg.modalities]
    fields += [InputField(m.name + MASK_SUFFIX, m.name, True, (m.length,))
               for m in cfg.modalities if m.name in masked]
    names = [f.name for f in fields]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ValueError(f"modalities: {clash} name both a modality and a mask; rename the modality (a mask is "
                         f"named <series>{MASK_SUFFIX})")
    return fields


def field_tensors(fields: Sequence[InputField], inputs: Mapping[str, torch.Tensor],
                  valid: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The tensors of a ``(inputs, valid)`` batch in ``fields`` order (a missing mask is all real)."""
    out = []
    for f in fields:
        if not f.mask:
            out.append(inputs[f.modality])
        elif f.modality in valid:
            out.append(valid[f.modality])
        else:
            out.append(torch.ones(len(inputs[f.modality]), *f.shape, dtype=torch.bool))
    return tuple(out)


class NamedInputs(nn.Module):
    """``forward(*tensors)`` in ``fields`` order -> ``(B, classes)`` logits of the wrapped model."""

    def __init__(self, model: nn.Module, fields: Sequence[InputField]):
        super().__init__()
        self.model, self.fields = model, list(fields)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        inputs = {f.modality: t for f, t in zip(self.fields, tensors) if not f.mask}
        valid = {f.modality: t for f, t in zip(self.fields, tensors) if f.mask}
        return self.model(inputs, valid)  # (B, classes)


class FlatInputs(nn.Module):
    """``forward(rows)`` on ``(B, F)`` float32 rows laid out as ``flat_rows`` lays them -> ``(B, classes)`` logits.
    A mask column is real where it is > 0.5."""

    def __init__(self, model: nn.Module, fields: Sequence[InputField]):
        super().__init__()
        self.model, self.fields = model, list(fields)
        self.width = sum(f.size for f in self.fields)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        inputs, valid, start = {}, {}, 0
        for f in self.fields:
            block = rows[:, start:start + f.size].reshape(-1, *f.shape)  # (B, *shape)
            start += f.size
            if f.mask:
                valid[f.modality] = block > 0.5
            else:
                inputs[f.modality] = block
        return self.model(inputs, valid)  # (B, classes)


def flat_rows(fields: Sequence[InputField], inputs: Mapping[str, np.ndarray | torch.Tensor],
              valid: Mapping[str, np.ndarray | torch.Tensor] | None = None) -> np.ndarray:
    """``(B, F)`` float32 rows for ``FlatInputs``: each input flattened (C order), side by side in ``fields``
    order; masks as 1.0 (real) / 0.0 (padding), all real where ``valid`` lacks one."""
    valid = valid or {}
    batch = len(next(iter(inputs.values())))
    blocks = []
    for f in fields:
        source = valid.get(f.modality) if f.mask else inputs[f.modality]
        block = np.ones((batch, *f.shape), np.float32) if source is None else np.asarray(source, np.float32)
        if block.shape[1:] != f.shape:
            raise ValueError(f"{f.name}: shape {tuple(block.shape[1:])} per sample; accepted: {f.shape}")
        blocks.append(block.reshape(batch, -1))
    return np.concatenate(blocks, axis=1)
