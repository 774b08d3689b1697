"""Pretraining heads of SpanBERT (Joshi et al., TACL 2020): masked-LM head and Span Boundary Objective head.

Both decoders are tied to the encoder's input embeddings: the weight is passed to `forward` rather than held as a
sub-module, so the state dict has no shared tensors (safetensors refuses those) and freezing it is a `.detach()`.
Both project to the vocabulary only at the positions that have a target: on a 30k vocabulary the output layer run
on every token costs about as much as the encoder itself.
"""
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F


INIT_STD = 0.02


def init_bert_weights(module: nn.Module, std: float = INIT_STD) -> None:
    """BERT's initialisation, as the reference heads get it: N(0, std) weights and embeddings, zero biases,
    LayerNorm weight 1 / bias 0. PyTorch's defaults (uniform Linear weights with non-zero biases, N(0, 1)
    embeddings) give fresh heads on a trained encoder a large, noisy start."""
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Embedding)):
            nn.init.normal_(sub.weight, mean=0.0, std=std)
            if isinstance(sub, nn.Linear) and sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)


class MaskedLMHead(nn.Module):
    """BERT's MLM head: dense -> GeLU -> LayerNorm -> tied decoder + own bias.

    Parameter names follow HF `BertLMPredictionHead` (`transform.dense`, `transform.LayerNorm`, `bias`) so a
    checkpoint's `cls.predictions.*` weights load directly.
    """

    def __init__(self, hidden_size: int, vocab_size: int, layer_norm_eps: float = 1e-12,
                 initializer_range: float = INIT_STD) -> None:
        super().__init__()
        self.transform = nn.Module()
        self.transform.dense = nn.Linear(hidden_size, hidden_size)
        self.transform.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        init_bert_weights(self, initializer_range)

    def forward(self, hidden: torch.Tensor, decoder_weight: torch.Tensor) -> torch.Tensor:
        """*Shape:* hidden (n_targets, hidden) -> logits (n_targets, vocab)."""
        x = self.transform.LayerNorm(F.gelu(self.transform.dense(hidden)))
        return F.linear(x, decoder_weight, self.bias)


class SpanBoundaryHead(nn.Module):
    """Span Boundary Objective: predict token x_i of a masked span s..e from [x_{s-1}; x_{e+1}; p_{i-s}].

    p is a learned relative-position embedding (`position_size`, 200 in the paper) for the first `max_targets`
    tokens of a span; the representation goes through Linear -> GeLU -> LayerNorm -> Linear -> GeLU -> LayerNorm
    and then the decoder tied to the input embeddings plus this head's own bias. Initialised as BERT (and the
    reference pair_bert.py) does: N(0, 0.02) weights and position embeddings, zero biases, LayerNorm 1/0.
    """

    def __init__(
        self,
        hidden_size: int,
        vocab_size: int,
        max_targets: int = 15,
        position_size: int = 200,
        layer_norm_eps: float = 1e-12,
        initializer_range: float = INIT_STD,
    ) -> None:
        super().__init__()
        self.max_targets = max_targets
        self.position_embeddings = nn.Embedding(max_targets, position_size)
        self.mlp = nn.Sequential(
            nn.Linear(2 * hidden_size + position_size, hidden_size),
            nn.GELU(),
            nn.LayerNorm(hidden_size, eps=layer_norm_eps),
            nn.Linear(hidden_size, hidden_size),
            nn.GELU(),
            nn.LayerNorm(hidden_size, eps=layer_norm_eps),
        )
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        init_bert_weights(self, initializer_range)

    def forward(
        self,
        hidden: torch.Tensor,
        batch_index: torch.Tensor,
        left: torch.Tensor,
        right: torch.Tensor,
        offset: torch.Tensor,
        decoder_weight: torch.Tensor,
    ) -> torch.Tensor:
        """Logits for every SBO target.

        *Shape:* hidden (batch, seq, hidden); batch_index, left (= s-1), right (= e+1), offset (= i-s, below
        max_targets) all (n_targets,) -> logits (n_targets, vocab).
        """
        # Checked on CPU only: on a GPU the check would sync every step; there the collator's guarantee (first
        # max_targets tokens of a span) stands, and an out-of-range index still fails loudly in the embedding.
        if offset.device.type == "cpu" and offset.numel() and int(offset.max()) >= self.max_targets:
            raise ValueError(f"SBO offsets must be below max_targets={self.max_targets}.")
        x = torch.cat(
            (hidden[batch_index, left], hidden[batch_index, right], self.position_embeddings(offset)), dim=-1
        )
        return F.linear(self.mlp(x), decoder_weight, self.bias)


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, anchor: Optional[torch.Tensor] = None):
    """Mean cross-entropy; an empty target set gives a zero that still belongs to the graph (keeps DDP happy)."""
    if labels.numel() == 0:
        return logits.sum() * 0.0 if anchor is None else anchor.sum() * 0.0
    return F.cross_entropy(logits.float(), labels)
