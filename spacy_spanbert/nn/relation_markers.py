"""Typed entity markers for relation extraction, after PURE (Zhong and Chen, NAACL 2021), approximation model.

Pure PyTorch (the thinc bridge is `spacy_spanbert.models.marker_relation_model`). For one text segment and a group
of candidate pairs, the encoder reads the text's wordpieces followed by four marker tokens per pair: <S:type>,
</S:type>, <O:type>, </O:type> for the subject (head) and object (tail) spans and their entity types. Each marker
shares its position id with the first or last wordpiece of its span ("levitated" markers), text tokens attend only
to text tokens, and a marker attends to the text and to the three other markers of its pair. The text is therefore
encoded once for all the pairs of a group, and each pair's representation is the concatenation of the final hidden
states of its two start markers, as in PURE's approximation model.

The marker embeddings are a table of our own (4 x entity types rows) added through the encoder's `inputs_embeds`,
so the checkpoint's vocabulary is left as it is.
"""
from typing import Any, Optional

import torch
from torch import nn

from .heads import INIT_STD

MARKER_KINDS = 4  # subject start, subject end, object start, object end


def marker_id(kind: int, entity_type: int, n_types: int) -> int:
    """Row of the marker table for marker `kind` (0-3) of an argument of entity type `entity_type`."""
    return kind * n_types + entity_type


class PairMarkerEncoder(nn.Module):
    """An encoder (`hf`, an `HFEncoder` holding the Hugging Face transformer and its tokenizer) that reads text with
    levitated typed markers and returns, per pair, [h(<S:type>); h(<O:type>)].

    The marker table is built (`build_markers`) once the number of entity types is known; BERT-style encoders only
    (absolute position ids that the markers can share)."""

    def __init__(self, hf: Any) -> None:
        super().__init__()
        self.hf = hf
        self.n_types: Optional[int] = None
        self.register_module("markers", None)

    def build_markers(self, n_types: int, weight: Optional[torch.Tensor] = None) -> None:
        """The marker table for `n_types` entity types: BERT's N(0, 0.02) initialisation, or the saved `weight`."""
        self.n_types = int(n_types)
        table = nn.Embedding(MARKER_KINDS * self.n_types, self.hf.hidden_size)
        if weight is None:
            nn.init.normal_(table.weight, mean=0.0, std=INIT_STD)
        else:
            table.weight.data.copy_(weight)
        self.markers = table.to(next(self.hf.parameters()).device)

    def forward(self, input_ids: torch.Tensor, marker_ids: torch.Tensor, position_ids: torch.Tensor,
                attention_mask: torch.Tensor, pair_rows: torch.Tensor, pair_columns: torch.Tensor,
                token_type_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """*Shape:* input_ids, marker_ids, position_ids, token_type_ids (batch, seq): the text's wordpiece ids (any
        id at marker slots), the marker table row at marker slots and -1 elsewhere, each slot's position id and
        token type; attention_mask (batch, seq, seq): 1 where a slot may attend to another; pair_rows (n_pairs,) the
        sequence of each pair and pair_columns (n_pairs, 2) the slots of its two start markers.
        RETURNS (n_pairs, 2 * hidden)."""
        if self.markers is None:
            raise ValueError("The marker relation encoder is not built yet: initialise the component first")
        transformer = self.hf.transformer
        is_marker = marker_ids >= 0
        embeds = transformer.get_input_embeddings()(input_ids)
        embeds = torch.where(is_marker.unsqueeze(-1), self.markers(marker_ids.clamp(min=0)).to(embeds.dtype), embeds)
        inputs = {"inputs_embeds": embeds, "attention_mask": attention_mask, "position_ids": position_ids}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        bf16 = self.hf.cpu_bf16 and input_ids.device.type == "cpu"
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            hidden = transformer(**inputs).last_hidden_state
        hidden = hidden.float()
        return torch.cat([hidden[pair_rows, pair_columns[:, 0]], hidden[pair_rows, pair_columns[:, 1]]], dim=1)


class PairMarkerHead(nn.Module):
    """PURE's relation classifier: dropout, then one Linear from [h(<S>); h(<O>)] to the label logits."""

    def __init__(self, n_in: int, n_out: int, dropout: float = 0.1) -> None:
        super().__init__()
        if min(n_in, n_out) < 1:
            raise ValueError("PairMarkerHead needs n_in and n_out >= 1")
        self.n_in, self.n_out = n_in, n_out
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(n_in, n_out)
        nn.init.normal_(self.output.weight, mean=0.0, std=INIT_STD)
        nn.init.zeros_(self.output.bias)

    def set_output_bias(self, bias: torch.Tensor) -> None:
        """Start the output bias at a prior (the component's label shares)."""
        with torch.no_grad():
            self.output.bias.copy_(bias.to(self.output.bias.device, self.output.bias.dtype))

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        """*Shape:* (n_pairs, n_in) -> (n_pairs, n_out)."""
        return self.output(self.dropout(pairs))
