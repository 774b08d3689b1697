"""SpanScorer (pure torch): decomposed first layer, interior pooling bounds, chunked inference, empty input."""
import pytest
import torch

from spacy_spanbert.nn.span_scorer import SpanScorer


def built(use_interior=False, chunk_size=8192, seed=0):
    torch.manual_seed(seed)
    model = SpanScorer(8, 3, hidden_width=16, max_width=4, use_interior=use_interior, dropout=0.0,
                       chunk_size=chunk_size)
    return model.eval()


def all_spans(n, max_width):
    rows = [(s, s + w) for s in range(n) for w in range(1, max_width + 1) if s + w <= n]
    return torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])


def test_decomposed_layer_equals_mlp_on_concatenated_boundaries():
    model = built()
    tokens = torch.randn(10, 8)
    starts, ends = all_spans(10, 4)
    widths = torch.nn.functional.one_hot(ends - starts - 1, 4).float()
    concat = torch.cat([tokens[starts], tokens[ends - 1], widths], dim=1)
    weight = torch.cat([model.start_proj.weight, model.end_proj.weight, model.width_embed.weight.T], dim=1)
    hidden = torch.nn.functional.gelu(concat @ weight.T + model.start_proj.bias)
    expected = model.output(model.norm(hidden))
    torch.testing.assert_close(model(tokens, starts, ends), expected)


@pytest.mark.parametrize("use_interior", [False, True])
def test_scores_depend_only_on_tokens_inside_the_span(use_interior):
    model = built(use_interior)
    tokens = torch.randn(12, 8)
    starts, ends = torch.tensor([3, 5]), torch.tensor([6, 6])
    before = model(tokens, starts, ends)
    changed = tokens.clone()
    changed[[0, 1, 2, 6, 7, 11]] += 5.0
    torch.testing.assert_close(model(changed, starts, ends), before)
    inside = tokens.clone()
    inside[4] += 5.0  # an interior token of [3, 6): only matters with the pooled interior
    assert torch.allclose(model(inside, starts[:1], ends[:1]), before[:1]) != use_interior


def test_chunked_inference_matches_one_pass():
    tokens = torch.randn(50, 8)
    starts, ends = all_spans(50, 4)
    whole = built(True)(tokens, starts, ends)
    chunked = built(True, chunk_size=7)(tokens, starts, ends)
    torch.testing.assert_close(chunked, whole)


def test_empty_input_and_bad_sizes():
    model = built()
    empty = torch.zeros(0, dtype=torch.long)
    assert model(torch.randn(3, 8), empty, empty).shape == (0, 3)
    with pytest.raises(ValueError, match="n_in, n_out, hidden_width and max_width >= 1"):
        SpanScorer(8, 3, max_width=0)
