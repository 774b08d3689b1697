"""The validated `[objective]` and `[training]` sections of a pretraining config: one default per setting.

configs/pretrain.cfg lists every setting for users to read and override; the values a config leaves out come from
these schemas and nowhere else. A wrong value (`--training.max_length abc`, a misspelt key) is one error that names
the setting and says what it takes, raised before any model or corpus is loaded.
"""
from typing import Any, Dict, Literal, Type, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

S = TypeVar("S", bound="_Section")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObjectiveSettings(_Section):
    """[objective]: the Span Boundary Objective beside MLM (Joshi et al. 2020, section 3.2)."""

    sbo_weight: float = Field(1.0, ge=0)  # 0 = plain span masking without SBO (paper Table 7)
    max_span_targets: int = Field(15, ge=1)  # longest span whose tokens the SBO head predicts
    position_embedding_size: int = Field(200, ge=1)


class TrainingSettings(_Section):
    """[training]: the optimisation loop that transformers' Trainer runs."""

    max_steps: int = Field(1000, ge=1)
    batch_size: int = Field(8, ge=1)
    grad_accum_steps: int = Field(1, ge=1)
    max_length: int = Field(512, ge=8)  # wordpieces per packed block, [CLS] and [SEP] included
    learning_rate: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(100, ge=0)
    heads_warmup_steps: int = Field(0, ge=0)  # encoder frozen while the fresh heads settle
    # 8, not the reference's 1.0: our update is at the mean loss's scale, where a CPU-sized batch's noise alone is
    # about 6; at 8 the clip fires only while fresh heads settle (6% of steps), at no cost (docs/design-notes.md)
    max_grad_norm: float = Field(8.0, gt=0)
    # reference: the micro-batches' mean losses' gradient divided by the update's masked tokens (SpanBERT's fairseq
    # trainer), then clipped; masked_tokens: the summed losses' gradient divided by them; mean: the mean losses'
    # gradient (see SpanBertTrainer)
    grad_normalization: Literal["reference", "masked_tokens", "mean"] = "masked_tokens"
    # the fresh MLM/SBO heads learn at learning_rate * factor (10: lowest held-out loss, docs/design-notes.md)
    head_lr_factor: float = Field(10.0, gt=0)
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "auto"
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(500, ge=1)
    save_total_limit: int = Field(2, ge=0)  # 0 keeps every checkpoint
    dataloader_workers: int = Field(0, ge=0)
    progress_bar: bool = True


def _wants(error: Dict[str, Any]) -> str:
    kind = error.get("type", "")
    if kind.startswith("int_"):
        return "must be a whole number"
    if kind.startswith("float_"):
        return "must be a number"
    if kind.startswith("bool_"):
        return "must be true or false"
    return error.get("msg", "is invalid").lower().replace("input should be", "must be")


def validate_section(schema: Type[S], section: str, values: Dict[str, Any]) -> S:
    """RETURNS the validated settings; raises a one-line ValueError naming `section.key` and the fix."""
    try:
        return schema(**dict(values))
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in first.get("loc", ())) or "?"
        if first.get("type") == "extra_forbidden":
            raise ValueError(f"{section}.{key} is not a setting of [{section}]: check its spelling against "
                             f"configs/pretrain.cfg") from None
        value = first.get("input")
        shown = "" if first.get("type") == "missing" else f" = {value!r}"
        raise ValueError(f"{section}.{key}{shown} {_wants(first)}: set it in [{section}] or pass "
                         f"--{section}.{key} VALUE") from None


def objective_settings(cfg: Dict[str, Any]) -> ObjectiveSettings:
    return validate_section(ObjectiveSettings, "objective", cfg.get("objective", {}))


def training_settings(cfg: Dict[str, Any]) -> TrainingSettings:
    return validate_section(TrainingSettings, "training", cfg.get("training", {}))
