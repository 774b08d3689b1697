#!/usr/bin/env bash
# Download the cp312 wheels that bench/gpu_check.sh needs on the lent GPU machine (Python 3.12, torch and cupy already
# there, no network, transformers 5.x which spacy-transformers cannot use) into .whl/a and .whl/b: two halves, each
# under one call's 64 MiB, and the project's own wheel. On that machine install .whl/a in one call and .whl/b in the
# next (the machine stays warm ~30 s), both with `pip install --no-index --no-deps --target` into folders under /tmp,
# and put both folders on PYTHONPATH. `.whl/` must be git-ignored (`echo /.whl/ >> .git/info/exclude`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
get() {  # get DIR NAME==VERSION...
    local dir=$1; shift
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d "$dir" "$@"
}
rm -rf .whl && mkdir -p .whl/a .whl/b
# the exact pins of requirements-lock.txt; peft 0.16 because a newer one there breaks transformers 4.53's Trainer
get .whl/a transformers==4.53.2 tokenizers==0.21.4 huggingface-hub==0.36.2 safetensors==0.8.0 accelerate==1.10.1 \
    peft==0.16.0
get .whl/b spacy==3.8.18 thinc==8.3.14 spacy-transformers==1.4.0 spacy-alignments==0.9.3 weasel==1.0.1 \
    spacy-legacy spacy-loggers murmurhash cymem preshed blis srsly wasabi catalogue confection typer \
    cloudpathlib smart-open langcodes language-data marisa-trie
"$PY" -m pip wheel -q --no-deps -w .whl/b .
du -sh .whl/a .whl/b
