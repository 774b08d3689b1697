"""Relation scorer: an ordered pair of argument spans -> relation label logits.

Pure PyTorch: no spaCy or thinc imports (the thinc bridge lives in `spacy_spanbert.models.relation_model`).
"""
import torch
from torch import nn

REPRESENTATIONS = ("boundary_context", "mean_pooled")
# signed token distance between the two arguments, in log-spaced buckets (Lee et al. 2017's distance features)
DISTANCE_BUCKETS = (0, 1, 2, 3, 4, 5, 8, 16, 32, 64)


class RelationScorer(nn.Module):
    """Score directed (head, tail) pairs of argument spans, after SpERT (Eberts and Ulges, ECAI 2020) with
    SpanBERT's span representation (Joshi et al., TACL 2020).

    "boundary_context" (the default): each argument is its start and end token vectors (the Span Boundary Objective
    trains the boundaries to carry the span), a width embedding and an embedding of its entity type; the tokens
    between the two arguments are max-pooled (SpERT's localized context), and the signed distance between them is
    embedded. As in `SpanScorer`, the first MLP layer is decomposed, so every token is projected once:

        h = P_hs[hs] + P_he[he] + P_ts[ts] + P_te[te] + W_width(head) + W_width(tail) + E_type(head) + E_type(tail)
            + max_{hs..te gap} P_ctx + E_dist -> GELU -> LayerNorm -> dropout -> Linear

    "mean_pooled": the baseline of spaCy's relation-extraction tutorial: the mean of each argument's token vectors,
    concatenated, then one Linear layer (no types, no context, no hidden layer).
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        n_types: int,
        hidden_width: int = 256,
        max_width: int = 16,
        max_context: int = 64,
        dropout: float = 0.1,
        representation: str = "boundary_context",
    ) -> None:
        super().__init__()
        if representation not in REPRESENTATIONS:
            raise ValueError(f"RelationScorer representation must be one of {REPRESENTATIONS}, got {representation!r}")
        if min(n_in, n_out, n_types, hidden_width, max_width, max_context) < 1:
            raise ValueError("RelationScorer needs n_in, n_out, n_types, hidden_width, max_width and max_context >= 1")
        self.n_in, self.n_out, self.n_types = n_in, n_out, n_types
        self.hidden_width, self.max_width, self.max_context = hidden_width, max_width, max_context
        self.representation = representation
        h = hidden_width
        if representation == "mean_pooled":
            self.output = nn.Linear(2 * n_in, n_out)
            return
        self.token_proj = nn.Linear(n_in, 5 * h)  # head start, head end, tail start, tail end, context
        self.width_embed = nn.Embedding(2 * max_width, h)  # head widths, then tail widths
        self.type_embed = nn.Embedding(2 * n_types, h)  # head types, then tail types
        self.distance_embed = nn.Embedding(2 * len(DISTANCE_BUCKETS), h)  # head before tail, then after
        for table in (self.width_embed, self.type_embed, self.distance_embed):
            nn.init.normal_(table.weight, std=0.02)
        self.norm = nn.LayerNorm(h)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(h, n_out)
        self.register_buffer("buckets", torch.tensor(DISTANCE_BUCKETS[1:]), persistent=False)

    def set_output_bias(self, bias: torch.Tensor) -> None:
        """Start the output layer at the label prior (log-odds), as `SpanScorer.set_output_bias`."""
        if bias.shape != (self.n_out,):
            raise ValueError(f"Output bias needs shape ({self.n_out},), got {tuple(bias.shape)}")
        with torch.no_grad():
            self.output.bias.copy_(bias.to(self.output.bias))

    def forward(self, tokens: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        """Score pairs over a flat token matrix.

        *Shape:* tokens (n_tokens, n_in); pairs (n_pairs, 6) int64: head start, head end, tail start, tail end
            (ends exclusive, indices into `tokens`), head type, tail type (in [0, n_types)).
        RETURNS *Shape:* (n_pairs, n_out) logits.
        """
        if pairs.shape[0] == 0:  # still connected to `tokens`, so a backward pass gives them a (zero) gradient
            return tokens.new_zeros((0, self.n_out)) + tokens[:0, :1]
        hs, he, ts, te, htype, ttype = pairs.unbind(dim=1)
        if self.representation == "mean_pooled":
            return self.output(torch.cat([self._mean(tokens, hs, he), self._mean(tokens, ts, te)], dim=1))
        p_hs, p_he, p_ts, p_te, p_ctx = self.token_proj(tokens).chunk(5, dim=1)
        width = self.max_width
        hidden = (
            p_hs[hs] + p_he[he - 1] + p_ts[ts] + p_te[te - 1]
            + self.width_embed((he - hs).clamp(1, width) - 1) + self.width_embed((te - ts).clamp(1, width) - 1 + width)
            + self.type_embed(htype) + self.type_embed(ttype + self.n_types)
            + self._context(p_ctx, torch.minimum(he, te), torch.maximum(hs, ts))
            + self.distance_embed(self._distance(hs, he, ts, te))
        )
        return self.output(self.dropout(self.norm(nn.functional.gelu(hidden))))

    def _context(self, p_ctx: torch.Tensor, gap_start: torch.Tensor, gap_end: torch.Tensor) -> torch.Tensor:
        """Max-pool of the projected tokens strictly between the two arguments (their first `max_context`); zeros
        where they touch or overlap.

        *Shape:* p_ctx (n_tokens, hidden); gap_start, gap_end (n_pairs,) -> (n_pairs, hidden)."""
        lengths = (gap_end - gap_start).clamp(0, self.max_context)
        n = int(lengths.max().item()) if lengths.numel() else 0
        if n == 0:
            return p_ctx.new_zeros((gap_start.shape[0], p_ctx.shape[1]))
        offsets = torch.arange(n, device=gap_start.device)
        inside = offsets.unsqueeze(0) < lengths.unsqueeze(1)
        index = torch.where(inside, gap_start.unsqueeze(1) + offsets.unsqueeze(0), gap_start.unsqueeze(1) * 0)
        gathered = p_ctx[index].masked_fill(~inside.unsqueeze(-1), float("-inf"))
        pooled = gathered.max(dim=1).values
        return torch.where(lengths.unsqueeze(1) > 0, pooled, torch.zeros_like(pooled))

    def _distance(self, hs: torch.Tensor, he: torch.Tensor, ts: torch.Tensor, te: torch.Tensor) -> torch.Tensor:
        """Bucket of the token gap between the arguments, offset by len(DISTANCE_BUCKETS) when the tail comes first."""
        tail_first = ts < hs
        gap = torch.where(tail_first, hs - te, ts - he).clamp(min=0)
        bucket = torch.bucketize(gap, self.buckets, right=True)
        return bucket + tail_first.long() * len(DISTANCE_BUCKETS)

    def _mean(self, tokens: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """Mean of each span's token vectors (the first `max_width` tokens). *Shape:* -> (n_pairs, n_in)."""
        lengths = (ends - starts).clamp(1, self.max_width)
        offsets = torch.arange(int(lengths.max().item()), device=starts.device)
        inside = (offsets.unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)
        index = torch.where(inside.squeeze(-1), starts.unsqueeze(1) + offsets.unsqueeze(0), starts.unsqueeze(1))
        return (tokens[index] * inside).sum(dim=1) / lengths.unsqueeze(1)
