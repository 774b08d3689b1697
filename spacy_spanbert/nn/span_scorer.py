"""Span scorer: boundary tokens + width embedding (+ optional attention-pooled interior) -> label logits.

Pure PyTorch: no spaCy or thinc imports (the thinc bridge lives in `spacy_spanbert.models.span_model`).
"""
from typing import Optional

import torch
from torch import nn


class SpanScorer(nn.Module):
    """Score candidate spans from their boundaries, following SpanBERT (Joshi et al., TACL 2020).

    SpanBERT's Span Boundary Objective trains the boundary tokens to carry the span, so a span is represented by its
    start and end token vectors, a learned width embedding and, optionally, an attention-pooled interior
    (Lee et al. 2017). The first linear layer of the MLP is decomposed: every TOKEN is projected once with W_start,
    W_end (and W_interior); a span's hidden vector is then the sum of gathered rows, so enumerating ~max_width spans
    per token costs gathers and adds instead of one matmul per span:

        h = P_start[s] + P_end[e] + W_width[w] (+ sum_i a_i P_int[i]) -> GELU -> LayerNorm -> dropout -> Linear
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        hidden_width: int = 256,
        max_width: int = 10,
        use_interior: bool = False,
        dropout: float = 0.1,
        chunk_size: int = 8192,
    ) -> None:
        super().__init__()
        if min(n_in, n_out, hidden_width, max_width) < 1:
            raise ValueError(f"SpanScorer needs n_in, n_out, hidden_width and max_width >= 1, got {n_in}, {n_out}, "
                             f"{hidden_width} and {max_width}")
        h = hidden_width
        self.n_in, self.n_out = n_in, n_out
        self.hidden_width = hidden_width
        self.max_width = max_width
        self.use_interior = use_interior
        self.chunk_size = chunk_size
        self.start_proj = nn.Linear(n_in, h)
        self.end_proj = nn.Linear(n_in, h, bias=False)
        self.width_embed = nn.Embedding(max_width, h)
        nn.init.normal_(self.width_embed.weight, std=0.02)
        if use_interior:
            self.attn_logit = nn.Linear(n_in, 1)
            self.interior_proj = nn.Linear(n_in, h, bias=False)
        self.norm = nn.LayerNorm(h)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(h, n_out)

    def set_output_bias(self, bias: torch.Tensor) -> None:
        """Start the output layer at the label prior (log-odds), as in Lin et al. 2017 (focal loss), so that early
        updates learn entities rather than "almost every candidate span is negative"."""
        if bias.shape != (self.n_out,):
            raise ValueError(f"Output bias needs shape ({self.n_out},), got {tuple(bias.shape)}")
        with torch.no_grad():
            self.output.bias.copy_(bias.to(self.output.bias))

    def forward(self, tokens: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """Score spans [starts, ends) over a flat token matrix.

        *Shape:* tokens (n_tokens, n_in); starts, ends (n_spans,) int64, `ends` exclusive, indices into `tokens`.
        RETURNS *Shape:* (n_spans, n_out) logits.
        """
        if starts.numel() == 0:
            return tokens.new_zeros((0, self.n_out))
        p_start = self.start_proj(tokens)
        p_end = self.end_proj(tokens)
        p_int = self.interior_proj(tokens) if self.use_interior else None
        a_int = self.attn_logit(tokens).squeeze(-1) if self.use_interior else None
        if self.training or starts.numel() <= self.chunk_size:
            return self._score(p_start, p_end, p_int, a_int, starts, ends)
        # Inference on long inputs: bound the (n_spans, hidden) activations by the chunk, not the document.
        out = [
            self._score(p_start, p_end, p_int, a_int, starts[i : i + self.chunk_size], ends[i : i + self.chunk_size])
            for i in range(0, starts.numel(), self.chunk_size)
        ]
        return torch.cat(out, dim=0)

    def _score(
        self,
        p_start: torch.Tensor,
        p_end: torch.Tensor,
        p_int: Optional[torch.Tensor],
        a_int: Optional[torch.Tensor],
        starts: torch.Tensor,
        ends: torch.Tensor,
    ) -> torch.Tensor:
        widths = (ends - starts).clamp(1, self.max_width)
        hidden = p_start[starts] + p_end[ends - 1] + self.width_embed(widths - 1)
        if p_int is not None and a_int is not None:
            hidden = hidden + self._pool_interior(p_int, a_int, starts, ends)
        hidden = self.dropout(self.norm(nn.functional.gelu(hidden)))
        return self.output(hidden)

    def _pool_interior(
        self, p_int: torch.Tensor, a_int: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor
    ) -> torch.Tensor:
        """Attention-weighted sum of the projected interior tokens (pooling commutes with the projection).

        *Shape:* p_int (n_tokens, hidden); a_int (n_tokens,) -> (n_spans, hidden).
        """
        offsets = torch.arange(self.max_width, device=starts.device)
        index = starts.unsqueeze(1) + offsets.unsqueeze(0)  # (n_spans, max_width)
        inside = index < ends.unsqueeze(1)
        index = torch.where(inside, index, starts.unsqueeze(1))
        logits = a_int[index].masked_fill(~inside, float("-inf"))
        weights = torch.softmax(logits, dim=1)
        return (weights.unsqueeze(-1) * p_int[index]).sum(dim=1)
