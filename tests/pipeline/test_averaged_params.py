"""`use_averages = true` must reach the PyTorch weights: spaCy evaluates and saves inside
`nlp.use_params(optimizer.averages)`, and thinc's own shims never find the averages there."""
import numpy
import spacy
import torch
from span_helpers import component_config, ner_examples
from spacy.util import fix_random_seed
from thinc.api import Adam

from spacy_spanbert.models.hf_encoder import HFEncoder
from spacy_spanbert.models.scorer_layer import get_torch_scorer


def trained_with_averages(tiny_bert_dir, steps=4):
    fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("spanbert_ner", config=component_config(tiny_bert_dir))
    examples = ner_examples(nlp)
    nlp.initialize(lambda: examples)
    optimizer = Adam(1e-2, use_averages=True)
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)
    return nlp, examples, optimizer


def torch_modules(nlp):
    """The encoder's and the scorer's torch modules, as their shims hold them, with the shims' ids (the optimizer's
    keys)."""
    model = nlp.get_pipe("spanbert_ner").model
    shims = [shim for node in model.walk() for shim in node.shims]
    encoder_shim = next(shim for shim in shims if isinstance(shim.module, HFEncoder))
    scorer_shim = next(shim for shim in shims if shim.module.inner is get_torch_scorer(model))
    return [(encoder_shim.id, encoder_shim.module), (scorer_shim.id, scorer_shim.module)]


def snapshot(module):
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def test_use_params_swaps_in_the_averages_of_encoder_and_scorer_and_restores_them(tiny_bert_dir):
    nlp, _, optimizer = trained_with_averages(tiny_bert_dir)
    modules = torch_modules(nlp)
    live = [snapshot(module) for _, module in modules]
    with nlp.use_params(optimizer.averages):
        for (shim_id, module), before in zip(modules, live):
            averaged = [(n, p) for n, p in module.named_parameters() if (shim_id, n) in optimizer.averages]
            assert len(averaged) > 1  # every trained weight (an unused pooler gets no gradient and no average)
            for name, param in averaged:
                average = numpy.asarray(optimizer.averages[(shim_id, name)]).reshape(param.shape)
                numpy.testing.assert_allclose(param.detach().numpy(), average, rtol=1e-6)
            assert any(not torch.equal(p, before[n]) for n, p in module.named_parameters())
    for (_, module), before in zip(modules, live):
        assert all(torch.equal(p, before[n]) for n, p in module.named_parameters())


def test_the_averaged_weights_are_what_a_save_inside_use_params_keeps(tiny_bert_dir, tmp_path):
    """spaCy's loop saves model-best inside use_params: the saved pipeline predicts with the averages."""
    nlp, examples, optimizer = trained_with_averages(tiny_bert_dir)
    docs = [eg.predicted for eg in examples]
    pipe = nlp.get_pipe("spanbert_ner")
    live_scores = pipe.predict(docs)[1]
    with nlp.use_params(optimizer.averages):
        averaged_scores = pipe.predict(docs)[1]
        nlp.to_disk(tmp_path / "best")
    assert not numpy.allclose(live_scores, averaged_scores)
    loaded = spacy.load(tmp_path / "best").get_pipe("spanbert_ner")
    numpy.testing.assert_allclose(loaded.predict(docs)[1], averaged_scores, rtol=1e-4, atol=1e-6)
