#!/usr/bin/env bash
# The GPU evidence in one command, sized for at most 8 minutes on one H100/H200:
#   1. the environment (GPU, driver, torch/CUDA, cupy, spaCy stack)          -> bench/results/gpu_env.json
#   2. a 200-step bf16 `spacy spanbert-pretrain` of MiniLM on the news corpus -> bench/results/gpu_pretrain.json
#      (its first and last log entries, with tokens/s)
#   3. CoNLL-2003 spanbert_ner (fp32 and mixed precision) vs spacy-transformers
#      + ner, 400 steps each on the GPU, equal batches, so the train times'
#      ratio is the training words/s ratio; test F                          -> bench/results/accuracy_gpu.json|md
#
# Usage:  bash bench/gpu_check.sh            on the GPU machine
#         bash bench/gpu_check.sh --dry-run  on a CPU: the same steps at toy sizes, writing under bench/work/ only
# Needs the project's dependencies importable by $PYTHON (default: .venv/bin/python, else python3), and the assets
# and corpus of `spacy project run fetch convert corpus` (assets/all-MiniLM-L6-v2, corpus/*.spacy, corpus/pretrain.txt).
# On the lent device machine (Python 3.12, no network) carry what bench/gpu_payload.sh builds (MODEL, CORPUS and
# CORPUS_DIR point at it there).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
MODEL=${MODEL:-assets/all-MiniLM-L6-v2}
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
if [ "$DRY" = 1 ]; then
    OUT=bench/work/gpu_check_dry; GPU=-1
    BATCH=2; PRE_STEPS=2; PRE_LEN=64; ACC="--quick"
else
    OUT=bench/results; GPU=0
    BATCH=32; PRE_STEPS=200; PRE_LEN=512; ACC="--seeds 1 --max-steps 400 --eval-frequency 100"
fi
CORPUS=${CORPUS:-corpus/pretrain.txt}
CORPUS_DIR=${CORPUS_DIR:-corpus}
for need in "$MODEL/config.json" "$CORPUS" "$CORPUS_DIR/train.spacy" "$CORPUS_DIR/dev.spacy" "$CORPUS_DIR/test.spacy"; do
    [ -e "$need" ] || { echo "gpu_check: $need is missing: run 'spacy project run fetch', 'convert' and 'corpus' first" >&2
                        exit 2; }
done
WORK=bench/work/gpu_check; mkdir -p "$OUT" "$WORK"
start=$(date +%s)
step() { echo "gpu_check [$(( $(date +%s) - start ))s] $*"; }

step "1/3 environment"
$PY - "$OUT/gpu_env.json" <<'EOF'
import json, platform, subprocess, sys
from importlib import metadata
import torch
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
for name in ("spacy", "thinc", "spacy-transformers", "transformers", "tokenizers", "accelerate", "peft",
             "spacy-spanbert"):
    try:
        info[name] = metadata.version(name)
    except metadata.PackageNotFoundError:  # a missing package is worth recording, not fatal
        info[name] = None
try:
    import cupy
    info["cupy"] = cupy.__version__
except ImportError:
    info["cupy"] = None
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                         "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
except FileNotFoundError:
    info["nvidia_smi"] = None
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info))
EOF

step "2/3 ${PRE_STEPS}-step bf16 spanbert-pretrain"
rm -rf "$WORK/pretrain"
$PY -m spacy spanbert-pretrain configs/pretrain.cfg "$WORK/pretrain" --gpu-id "$GPU" \
    --paths.raw_text "$CORPUS" --paths.init_model "$MODEL" --training.max_steps "$PRE_STEPS" \
    --training.batch_size "$BATCH" --training.max_length "$PRE_LEN" --training.precision bf16 \
    --training.dataloader_workers 2 --training.save_steps "$PRE_STEPS" --training.logging_steps 10
$PY - "$WORK/pretrain" "$OUT/gpu_pretrain.json" <<'EOF'
import json, sys
from pathlib import Path
log = [json.loads(line) for line in (Path(sys.argv[1]) / "log.jsonl").read_text().splitlines() if line.strip()]
summary = {"steps": log[-1].get("step"), "first": log[0], "last": log[-1],
           "encoder_saved": (Path(sys.argv[1]) / "encoder" / "config.json").exists()}
json.dump(summary, open(sys.argv[2], "w"), indent=2)
print(json.dumps(summary))
EOF

step "3/3 CoNLL-2003: spanbert_ner vs transformer + ner on the GPU"
# shellcheck disable=SC2086
$PY -m bench.accuracy --encoder "$MODEL" --systems spanbert_ner spanbert_ner_amp trf_ner $ACC --gpu-id "$GPU" \
    --corpus-dir "$CORPUS_DIR" --work-dir "$WORK/accuracy" --output "$OUT/accuracy_gpu.json"

step "done: results in $OUT"
