#!/usr/bin/env bash
# The recipe of our own base model (docs/base_model.md), stage by stage; every stage resumes.
#
#   bash scripts/train_base.sh corpus            # English corpus from the TTS engines + voice folders
#   bash scripts/train_base.sh prepare           # phone-aligned tokens, spectrograms, phones
#   bash scripts/train_base.sh init              # random GPT + SoVITS for the aligned tokens
#   bash scripts/train_base.sh s2 STEPS          # SoVITS up to STEPS in total (resumes)
#   bash scripts/train_base.sh s1 STEPS          # GPT up to STEPS in total (resumes)
#   bash scripts/train_base.sh export [DIR]      # newest weights -> DIR (default: $FROM) in our layout
#   bash scripts/train_base.sh finetune VOICE OUT [S2 S1]  # a voice's minute on top of $FROM (300/100 steps)
#
# RUNS (default runs/base) holds everything but the export. To continue from shipped weights on
# a fresh machine (its run folders are gone), `s2`/`s1` start from $FROM (default models/snapshots/gsv-base-phone1) when
# their run folder has no checkpoint yet, so progress carries across machines through the repo
# (FRESH=1 starts from the random init instead).
# Threads: S2 and S1 each take THREADS (default 1) so both fit side by side on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
GSV=${GSV:-.venv/bin/gsv}
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs/base}
FROM=${FROM:-models/snapshots/gsv-base-phone1}
VOICES=${VOICES:-../shared/data/voices}
THREADS=${THREADS:-1}
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS

# S2: batch 8 x 0.64 s slices, no discriminator yet (intelligibility first), multi-resolution STFT
# loss for the iSTFT decoder, and 60 % of the steps trained end to end through the prior path.
S2_SET=(--set batch_size=8 --set segment_frames=32 --set lr=4e-4 --set text_low_lr_rate=1.0
        --set c_stft=10 --set adv_start_step=1000000 --set decoder_prior_share=0.6 --set max_frames=300
        --set epochs=10000 --set lr_decay=1.0 --set save_every_steps=200 --set log_every_steps=50)
# S1: half of the items after another utterance of the same speaker (the prompted layout).
S1_SET=(--set batch_size=16 --set lr=5e-4 --set warmup_steps=300 --set min_lr_ratio=1.0
        --set prompt_pairs=0.5 --set epochs=10000 --set save_every_steps=300 --set log_every_steps=50)

# Fine-tune on one voice: the pretraining losses (there is no trained discriminator to start an
# adversarial stage from), a fixed number of steps over the voice's ~15 utterances.
FT_SET=(--s2-epochs 100000 --s1-epochs 100000 --batch-size 8
        --s2-set segment_frames=32 --s2-set lr=2e-4 --s2-set text_low_lr_rate=1.0 --s2-set c_stft=10
        --s2-set adv_start_step=1000000 --s2-set decoder_prior_share=0.6 --s2-set max_frames=300
        --s2-set lr_decay=1.0 --s1-set lr=2e-4 --s1-set min_lr_ratio=1.0 --s1-set prompt_pairs=0.5)

base_file() {  # base_file STAGE-FILE: the run's init weights, or the shipped ones to continue
  if [ -f "$FROM/$1.safetensors" ] && [ "${FRESH:-0}" != 1 ]; then echo "$FROM/$1.safetensors"
  else echo "$RUNS/init/$1.safetensors"; fi
}

case "${1:-}" in
  corpus)
    $GSV corpus build --out "$RUNS/corpus" --voices "$VOICES" --source flite --source festival \
      --source espeak-ng --source voices --source asterisk-en --max-utts 400 --overwrite
    awk -F'|' '$3=="en"' "$RUNS/corpus/train.list" > "$RUNS/corpus/train_en.list"
    awk -F'|' '$3=="en"' "$RUNS/corpus/heldout.list" > "$RUNS/corpus/heldout_en.list" ;;
  prepare)
    [ -d "$RUNS/init" ] || bash scripts/train_base.sh init  # cwd is the repo root (cd above)
    for split in train heldout; do
      $GSV prepare --list "$RUNS/corpus/${split}_en.list" --sovits "$RUNS/init/sovits.safetensors" \
        --hubert "$RUNS/init/hubert" -o "$RUNS/dataset_$split" --device cpu --no-progress
    done ;;
  init)
    $PY -m training.base_init --gpt-config configs/gpt_base_phone.json \
      --sovits-config configs/sovits_base_phone.json --phone-aligner --out "$RUNS/init" ;;
  s2)
    $GSV train sovits --data "$RUNS/dataset_train" --base "$(base_file sovits)" -o "$RUNS/s2" \
      --device cpu --no-progress --max-steps "${2:?steps}" "${S2_SET[@]}" ;;
  s1)
    $GSV train gpt --data "$RUNS/dataset_train" --base "$(base_file gpt)" -o "$RUNS/s1" \
      --device cpu --no-progress --max-steps "${2:?steps}" "${S1_SET[@]}" ;;
  export)
    out=${2:-$FROM}
    mkdir -p "$out"
    s1=(); [ -f "$RUNS/s1/checkpoints/latest.json" ] && s1=(--s1-run "$RUNS/s1")  # no S1 run: keep OUT's GPT
    $PY -m training.base_init export --s2-run "$RUNS/s2" "${s1[@]}" --aligner "$RUNS/init/hubert" --out "$out" ;;
  finetune)
    $GSV finetune "${2:?voice folder}" -o "${3:?output folder}" --base-gpt "$FROM/gpt.safetensors" \
      --base-sovits "$FROM/sovits.safetensors" --hubert "$FROM/hubert" --lang en --device cpu --no-progress \
      --s2-max-steps "${4:-300}" --s1-max-steps "${5:-100}" "${FT_SET[@]}" ;;
  *)
    sed -n '2,15p' "$0"; exit 2 ;;
esac
