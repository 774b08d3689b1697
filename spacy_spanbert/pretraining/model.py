"""SpanBERT pretraining model: any HF BERT-family encoder + MLM head + Span Boundary Objective head.

Loss = mean CE over masked tokens (MLM) + sbo_weight * mean CE over SBO targets (Joshi et al., TACL 2020, eq. 2).
The vocabulary projection runs only on masked positions and SBO targets.
"""
import json
import logging
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import torch
from torch import nn

from ..nn.heads import MaskedLMHead, SpanBoundaryHead, masked_cross_entropy

logger = logging.getLogger(__name__)
HEADS_FILE = "heads.safetensors"
HEADS_CONFIG = "heads_config.json"
# checkpoint prefix of an MLM head -> renames of its tensors to MaskedLMHead's (BERT's names are already ours)
MLM_HEAD_NAMES: Dict[str, Dict[str, str]] = {
    "cls.predictions.": {},
    "lm_head.": {"dense.weight": "transform.dense.weight", "dense.bias": "transform.dense.bias",
                 "layer_norm.weight": "transform.LayerNorm.weight", "layer_norm.bias": "transform.LayerNorm.bias"},
}


class SpanBertForPretraining(nn.Module):
    """Encoder + MLM head + SBO head. `freeze_encoder` (set by the heads-only warm-up) stops all encoder updates."""

    def __init__(self, encoder, max_sbo_targets: int = 15, sbo_position_size: int = 200, sbo_weight: float = 1.0):
        super().__init__()
        cfg = encoder.config
        self.encoder = encoder
        eps = getattr(cfg, "layer_norm_eps", 1e-12)
        std = getattr(cfg, "initializer_range", 0.02)
        self.mlm_head = MaskedLMHead(cfg.hidden_size, cfg.vocab_size, eps, std)
        self.sbo_head = SpanBoundaryHead(cfg.hidden_size, cfg.vocab_size, max_sbo_targets, sbo_position_size, eps,
                                         std)
        self.sbo_weight = sbo_weight
        self.freeze_encoder = False
        # The pooler is not trained here; freezing it keeps its weights and keeps DDP from waiting for its grads.
        for name, param in encoder.named_parameters():
            if name.startswith("pooler."):
                param.requires_grad_(False)
        self.heads_config = {"max_sbo_targets": max_sbo_targets, "sbo_position_size": sbo_position_size}

    @classmethod
    def from_pretrained(cls, name_or_path: Union[str, Path], **kwargs) -> "SpanBertForPretraining":
        """Continue pretraining a checkpoint; reuse its MLM head (BERT or RoBERTa style) when it has one."""
        from transformers import AutoModel

        try:
            encoder = _load_with_sdpa(AutoModel.from_pretrained, str(name_or_path))
        except (OSError, ValueError) as err:
            raise ValueError(
                f"Cannot load checkpoint {name_or_path!r}: give paths.init_model an existing model directory or an "
                f"HF model name available offline ({str(err).splitlines()[0]})"
            ) from None
        model = cls(encoder, **kwargs)
        if model.load_mlm_head_from(name_or_path):
            logger.info("Reusing the checkpoint's MLM head.")
        else:
            logger.warning("Checkpoint %s has no MLM head (cls.predictions.* or lm_head.*): the MLM and SBO heads "
                           "start from scratch.", name_or_path)
        return model

    @classmethod
    def from_config(cls, config, **kwargs) -> "SpanBertForPretraining":
        """A fresh model for pretraining from scratch (`config`: a transformers PretrainedConfig)."""
        from transformers import AutoModel

        return cls(_load_with_sdpa(AutoModel.from_config, config), **kwargs)

    def head_parameter_names(self) -> List[str]:
        """Names of the MLM and SBO head parameters (what a head learning-rate factor applies to)."""
        return [n for n, _ in self.named_parameters() if n.startswith(("mlm_head.", "sbo_head."))]

    @property
    def decoder_weight(self) -> torch.Tensor:
        return self.encoder.get_input_embeddings().weight

    def load_mlm_head_from(self, name_or_path: Union[str, Path]) -> bool:
        """Copy a checkpoint's MLM head (all but the tied decoder), if it has one: BERT's `cls.predictions.*` or
        RoBERTa's `lm_head.*` (the same dense -> GeLU -> LayerNorm -> decoder + bias, under other names)."""
        for prefix, renames in MLM_HEAD_NAMES.items():
            state = _read_checkpoint_tensors(name_or_path, prefix)
            mapped = {}
            for key, value in state.items():
                name = key[len(prefix):]
                if not name.startswith("decoder"):
                    mapped[renames.get(name, name)] = value
            own = self.mlm_head.state_dict()
            if mapped and set(mapped) == set(own) and all(own[k].shape == v.shape for k, v in mapped.items()):
                self.mlm_head.load_state_dict(mapped)
                return True
        return False

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        sbo_batch: torch.Tensor,
        sbo_left: torch.Tensor,
        sbo_right: torch.Tensor,
        sbo_offset: torch.Tensor,
        sbo_labels: torch.Tensor,
        token_type_ids: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """*Shape:* input_ids, attention_mask, labels (batch, seq); sbo_* (n_targets,). Returns losses."""
        decoder = self.decoder_weight
        if self.freeze_encoder:
            with torch.no_grad():
                hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                      token_type_ids=token_type_ids).last_hidden_state
            decoder = decoder.detach()
        else:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state
        selected = labels != -100
        mlm_logits = self.mlm_head(hidden[selected], decoder)
        mlm_loss = masked_cross_entropy(mlm_logits, labels[selected])
        sbo_logits = self.sbo_head(hidden, sbo_batch, sbo_left, sbo_right, sbo_offset, decoder)
        sbo_loss = masked_cross_entropy(sbo_logits, sbo_labels)
        loss = mlm_loss + self.sbo_weight * sbo_loss if self.sbo_weight else mlm_loss + 0.0 * sbo_loss
        # the reference's criterion sums over targets (MLM + SBO) and its trainer divides by the masked tokens
        loss_sum = mlm_loss * selected.sum() + (self.sbo_weight or 0.0) * sbo_loss * sbo_labels.numel()
        return {"loss": loss, "loss_sum": loss_sum, "mlm_loss": mlm_loss.detach(), "sbo_loss": sbo_loss.detach()}

    def save_heads(self, directory: Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {f"mlm_head.{k}": v.contiguous() for k, v in self.mlm_head.state_dict().items()}
        state.update({f"sbo_head.{k}": v.contiguous() for k, v in self.sbo_head.state_dict().items()})
        save_file(state, str(directory / HEADS_FILE), metadata={"format": "pt"})
        (directory / HEADS_CONFIG).write_text(json.dumps({**self.heads_config, "sbo_weight": self.sbo_weight}))

    def load_heads(self, directory: Path) -> None:
        from safetensors.torch import load_file

        state = load_file(str(Path(directory) / HEADS_FILE))
        self.mlm_head.load_state_dict({k[9:]: v for k, v in state.items() if k.startswith("mlm_head.")})
        self.sbo_head.load_state_dict({k[9:]: v for k, v in state.items() if k.startswith("sbo_head.")})

    def save_encoder(self, directory: Path, tokenizer=None) -> None:
        """The encoder in HF format (safetensors) with its tokenizer: loads with AutoModel and spacy-transformers."""
        self.encoder.save_pretrained(str(directory), safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(directory))


def _load_with_sdpa(load: Callable, source):
    """Build the encoder with torch's fused scaled-dot-product attention where transformers has it for the
    architecture (BERT, RoBERTa, ... in 4.53); others fall back to their default attention."""
    try:
        return load(source, attn_implementation="sdpa")
    except ValueError as err:
        if "sdpa" not in str(err).lower() and "scaled_dot_product" not in str(err).lower():
            raise
        logger.info("This architecture has no SDPA attention in transformers: using its default attention.")
        return load(source)


def _read_checkpoint_tensors(name_or_path, prefix: str) -> Dict[str, torch.Tensor]:
    """Tensors whose name starts with `prefix` from a local or cached checkpoint; {} when there are none."""
    path = Path(str(name_or_path))
    files = []
    for fname in ("model.safetensors", "pytorch_model.bin"):
        if path.is_dir():
            files.append(path / fname)
        else:
            try:
                from transformers.utils import cached_file

                found = cached_file(str(name_or_path), fname, _raise_exceptions_for_missing_entries=False)
                files.append(Path(found) if found else path / fname)
            except (OSError, ValueError):
                continue
    for file in files:
        if not file.exists():
            continue
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as handle:
                return {k: handle.get_tensor(k) for k in handle.keys() if k.startswith(prefix)}
        state = torch.load(str(file), map_location="cpu", weights_only=True)
        return {k: v for k, v in state.items() if k.startswith(prefix)}
    return {}
