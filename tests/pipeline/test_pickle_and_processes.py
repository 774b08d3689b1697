"""Pipelines pickle (the `spawn` start method needs it) and `nlp.pipe(n_process=2)` finishes under OpenMP threads."""
import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy

from span_helpers import ents, ner_examples, train

TEXTS = ["John saw the big dog in London .", "Mary liked Paris and Berlin .", "The company Google met the king ."]


def test_pickled_pipeline_predicts_the_same_entities_and_scores(blank_ner):
    nlp = blank_ner
    train(nlp, ner_examples(nlp), steps=60)
    docs = list(nlp.pipe(TEXTS))
    assert any(doc.ents for doc in docs)  # trained: the comparison below is about real entities
    restored = pickle.loads(pickle.dumps(nlp))
    for doc, other in zip(docs, restored.pipe(TEXTS)):
        assert ents(other) == ents(doc)
        numpy.testing.assert_allclose(other.spans["spanbert_ents"].attrs["scores"],
                                      doc.spans["spanbert_ents"].attrs["scores"], rtol=1e-5)


CHILD = textwrap.dedent("""
    import json, sys
    import spacy
    nlp = spacy.load(sys.argv[1])
    texts = json.loads(sys.argv[2]) * 100
    nlp(texts[0])  # the parent runs torch's OpenMP threads before forking, as a user's warm-up call would
    one = [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in nlp.pipe(texts)]
    two = [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in nlp.pipe(texts, n_process=2)]
    print(json.dumps({"n": len(two), "same": one == two}))
""")


def test_pipe_with_two_processes_finishes_with_openmp_threads(blank_ner, tmp_path):
    """Without the at-fork reset the forked workers wait forever on the parent's OpenMP pool (5 of 5 runs hung).

    tests/conftest.py sets OMP_NUM_THREADS=1, which hides the hang: the child runs with 2 threads."""
    nlp = blank_ner
    train(nlp, ner_examples(nlp), steps=1)
    nlp.to_disk(tmp_path / "pipe")
    env = {**os.environ, "OMP_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "pipe"), json.dumps(TEXTS)], env=env,
                         capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {"n": 300, "same": True}
