#!/usr/bin/env bash
# Build what bench/gpu_check.sh needs on the lent GPU machine, which has Python 3.12, torch, cupy and no network
# (and a transformers 5.x that spacy-transformers cannot use), in three parts of < 64 MiB each, one per device call:
#   .gpu/a  spaCy + Hugging Face wheels (cp312) at our pins; peft 0.16 (a newer one there breaks transformers
#           4.53's Trainer)                                                               ~51 MB
#   .gpu/b  the rest of the spaCy stack, the project's own wheel, and the data: corpus/{train,dev,test}.spacy and
#           a 3 MB slice of corpus/pretrain.txt                                           ~40 MB
#   .gpu/c  MiniLM-L6 as an fp16 copy (the tokenizer files beside it)                     ~45 MB
# On the machine, call 1 installs .gpu/a with `pip install --no-index --no-deps --target /tmp/site_a .gpu/a/*.whl`;
# call 2 (at once: the machine stays warm ~30 s) installs .gpu/b into /tmp/site_b and copies its data to /tmp/data;
# call 3 runs `PYTHONPATH=/tmp/site_a:/tmp/site_b MODEL=.gpu/c/minilm CORPUS=/tmp/data/pretrain.txt
# CORPUS_DIR=/tmp/data bash bench/gpu_check.sh`, carrying .gpu/c (README: GPU and scale).
# Needs: the project's venv (.venv), assets and corpus (`spacy project run fetch convert corpus`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
get() {  # get DIR NAME==VERSION...
    local dir=$1; shift
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d "$dir" "$@"
}
rm -rf .gpu && mkdir -p .gpu/a .gpu/b/data .gpu/c
pin() { grep -i "^$1==" requirements-lock.txt; }  # the lock's exact version of a package
get .gpu/a "$(pin spacy)" "$(pin transformers)" "$(pin tokenizers)" "$(pin huggingface_hub)" "$(pin safetensors)" \
    "$(pin accelerate)" peft==0.16.0
get .gpu/b "$(pin thinc)" "$(pin spacy-transformers)" "$(pin spacy-alignments)" "$(pin weasel)" "$(pin blis)" \
    "$(pin spacy-legacy)" "$(pin spacy-loggers)" "$(pin murmurhash)" "$(pin cymem)" "$(pin preshed)" "$(pin srsly)" \
    "$(pin wasabi)" "$(pin catalogue)" "$(pin confection)" "$(pin typer)" "$(pin cloudpathlib)" "$(pin smart_open)"
"$PY" -m pip wheel -q --no-deps -w .gpu/b .
cp corpus/train.spacy corpus/dev.spacy corpus/test.spacy .gpu/b/data/
head -c 3000000 "${CORPUS:-corpus/pretrain.txt}" > .gpu/b/data/pretrain.txt
"$PY" - "${MODEL:-assets/all-MiniLM-L6-v2}" .gpu/c/minilm <<'PYEOF'
import sys
import torch
from transformers import AutoModel, AutoTokenizer
src, out = sys.argv[1], sys.argv[2]
AutoModel.from_pretrained(src, torch_dtype=torch.float16).save_pretrained(out, safe_serialization=True)
AutoTokenizer.from_pretrained(src).save_pretrained(out)
PYEOF
du -sh .gpu/a .gpu/b .gpu/c
