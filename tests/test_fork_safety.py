"""Importing the package changes nothing global: a forked worker of an app that loaded spacy-spanbert's entry points
but never ran one of its components keeps torch's threads; one that runs a component goes single-threaded (the
OpenMP guard, `fork_safety`), unless SPACY_SPANBERT_FORK_SAFETY=0."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

CODE = textwrap.dedent("""
    import json, os, sys
    import torch
    import spacy
    import spacy_spanbert  # what spaCy's entry points import for any pipeline
    from spacy_spanbert import fork_safety
    torch.set_num_threads(2)
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp("One sentence. Another one.")
    torch.ones(10000).sum()  # the parent has used torch
    read, write = os.pipe()
    if os.fork() == 0:
        before = torch.get_num_threads()
        changed = fork_safety.guard() if sys.argv[1] == "component" else False
        os.write(write, json.dumps([before, changed, torch.get_num_threads()]).encode())
        os._exit(0)
    os.wait()
    print(os.read(read, 200).decode())
""")


def _child_threads(mode: str, **env) -> list:
    done = subprocess.run([sys.executable, "-c", CODE, mode], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # subprocesses or a long end-to-end run: CI runs it, the quick loop skips it
@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX's")
def test_a_forked_child_keeps_torch_threads_unless_a_component_runs():
    assert _child_threads("plain") == [2, False, 2]
    assert _child_threads("component") == [2, True, 1]
    assert _child_threads("component", SPACY_SPANBERT_FORK_SAFETY="0") == [2, False, 2]
