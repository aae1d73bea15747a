#!/usr/bin/env bash
# The benchmark grid: every task x model x seed trained by the default command (plus --seed and a budget),
# evaluated on every split, and its eval.json copied to $RESULTS/<task>/<model>/seed<k>/ (RESULTS: results).
#
# The budget is wall-clock: the augmented model trains STEPS optimizer steps (--time-limit TIME_LIMIT is only a
# safety stop), and each baseline trains for a fixed time (--schedule time: its learning rate decays over that
# time, which ends the run): the time its cell's committed seeds trained for, so that every seed of a cell has
# the same budget, or for a cell with none yet the median training time of the task's augmented runs (so the grid
# runs the augmented cells first). A baseline therefore never gets less time than the augmented model took when
# its cell was started (it got more where the augmented runs have since become faster). eval.json records the
# steps and seconds each run took.
# The README's table is then `ncl report results/` (tests/test_tooluse_and_report.py checks they agree).
#
#   scripts/run_benchmark.sh [RUNS_DIR]   (env: TASKS, MODELS, SEEDS, STEPS, TIME_LIMIT, COUNT, JOBS, RESULTS)
#
# The language tasks (docs/language.md) run the same way into their own directory, with the default steps:
#   TASKS="mix compose" MODELS="augmented tooluse llama" RESULTS=results-language STEPS=1500 COUNT=200 \
#     scripts/run_benchmark.sh runs-language
# and mix_nested, whose default is 3000 steps, with STEPS=3000 TIME_LIMIT=1500. Only RESULTS=results,
# RESULTS=results-language and RESULTS=results-labels write their report into the README, docs/language.md and
# docs/labels.md; any other directory (an experiment's) has its report printed.
#
# "augmented" is the default command (its heads learn from the labels alone, so the machine runs without a
# backward). MODELS may also hold "augmented-answergrad": with --answer-grad (the answer's gradient reaches the
# heads too), "augmented-noaux": with --aux 0 (answers only), and "augmented-labelsF": with --labels F
# --answer-grad (the interface labels on a fraction F of the examples, the answer's gradient reaching the heads),
# "augmented-labelsF-only" (--labels F --labels-only) or "augmented-labelsF-heads-H+H" (--labels F
# --answer-grad-heads H,H), as in docs/labels.md; each with --search-programs 0 unless it ends in "-search[M]"
# (--search-programs M, default 3: on mix, the programs that print an unlabelled example's answer train the
# program heads), and --no-search-steps --no-search-pointers unless it ends in "-steps" (--search-steps),
# "-pointers" (--search-pointers) or "-steps-pointers" (both), and --replay 0 unless it ends in "-replayR"
# (--replay R: R labelled examples seen before added to each batch), and --call-separators unless it ends in
# "-nosep" (--no-call-separators: a chain's heads do not pool a list's inner separators with the step's words,
# ncl train's default on a chain at 0 < F < 1), and --discover 0 unless it ends in "-discover[N]" (--discover N,
# default 32, with --labels-only unless "-heads-" says otherwise: a single call's interface searched on the
# library, ncl train's default at F = 0). All train the same steps. A chain's words are read as ncl train's
# default has them (--word-view): in the prompt with its numbers collapsed with every label, as written below 1.
# "tooluse-labelsF" is the tool-use baseline with --labels F (REINFORCE on the examples without a labelled call),
# and "tooluse-labelsF-discover[N]" with --discover N too (the calls the search explains labelled).
# The baselines' time is that of the "augmented" runs, or BASELINE_TIME seconds when that is set.
# JOBS runs that many trainings at once, one thread each (2 on a 2-core machine).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs}
TASKS=${TASKS:-"long_add long_sub long_mul long_compare sort reverse sum merge_sort palindrome shortest_path reachable"}
MODELS=${MODELS:-"augmented augmented-noaux tooluse llama"}
SEEDS=${SEEDS:-"0 1 2"}
STEPS=${STEPS:-150}
TIME_LIMIT=${TIME_LIMIT:-600}
COUNT=${COUNT:-500}
JOBS=${JOBS:-2}
RESULTS=${RESULTS:-results}
NCL=${NCL:-.venv/bin/ncl}

budget() {  # task model -> the training seconds of the cell's committed seeds, else the median of the task's
  # augmented runs (empty if neither exists)
  python3 - "$1" "$2" "$RESULTS" <<'PY'
import glob, json, statistics, sys
task, model, root = sys.argv[1:]
for cell in (model, "augmented"):
    times = [json.load(open(f))["train_time_s"] for f in glob.glob(f"{root}/{task}/{cell}/seed*/eval.json")]
    if times:
        print(round(statistics.median(times)))
        break
PY
}

one() {  # task model seed
  local task=$1 model=$2 seed=$3 name=$2
  local flags=(--steps "$STEPS" --time-limit "$TIME_LIMIT")
  if [ "$model" = augmented-noaux ]; then flags+=(--aux 0); model=augmented; fi
  if [ "$model" = augmented-answergrad ]; then flags+=(--answer-grad); model=augmented; fi
  local labels=()
  local named='^(augmented|tooluse)-labels([0-9.]+)(-only|-heads-([a-z+]+))?(-search([0-9]*))?(-steps)?(-pointers)?'
  if [[ "$model" =~ ${named}(-replay([0-9]+))?(-nosep)?(-discover([0-9]*))?$ ]]; then
    labels=(--labels "${BASH_REMATCH[2]}")
    model=${BASH_REMATCH[1]}
    if [ "$model" = augmented ]; then  # each option spelled out: the names keep their meaning if defaults move
      if [ "${BASH_REMATCH[3]}" = -only ] || { [ -z "${BASH_REMATCH[3]}" ] && [ -n "${BASH_REMATCH[12]}" ]; }; then
        labels+=(--labels-only); else labels+=(--answer-grad); fi
      if [ -n "${BASH_REMATCH[4]}" ]; then labels+=(--answer-grad-heads "${BASH_REMATCH[4]//+/,}"); fi
      # "-search" alone: --search-programs with no number, its default
      if [ -n "${BASH_REMATCH[5]}" ]; then labels+=(--search-programs ${BASH_REMATCH[6]}); \
        else labels+=(--search-programs 0); fi
      if [ -n "${BASH_REMATCH[7]}" ]; then labels+=(--search-steps); else labels+=(--no-search-steps); fi
      if [ -n "${BASH_REMATCH[8]}" ]; then labels+=(--search-pointers); else labels+=(--no-search-pointers); fi
      labels+=(--replay "${BASH_REMATCH[10]:-0}")
      if [ -n "${BASH_REMATCH[11]}" ]; then labels+=(--no-call-separators); else labels+=(--call-separators); fi
      if [ -n "${BASH_REMATCH[12]}" ]; then labels+=(--discover ${BASH_REMATCH[13]}); else labels+=(--discover 0); fi
    elif [ -n "${BASH_REMATCH[12]}" ]; then  # the tool-use baseline: REINFORCE unless "-discover" is named
      labels+=(--discover ${BASH_REMATCH[13]})
    fi
  fi
  local dir="$RUNS/$task/$name/seed$seed" dest="$RESULTS/$task/$name/seed$seed"
  if [ -f "$dest/eval.json" ]; then echo "skip $dest (exists)"; return; fi
  if [ "$model" != augmented ]; then
    local seconds; seconds=${BASELINE_TIME:-$(budget "$task" "$name")}
    if [ -z "$seconds" ]; then echo "SKIPPED $dest: no augmented run of $task to match its time"; return; fi
    flags=(--steps 1000000 --schedule time --time-limit "$seconds")
  fi
  local resume=()
  if [ -f "$dir/latest.json" ]; then  # a run dir left by an earlier call: resumed to its steps (a finished one
    echo "resuming the run $dir"      # trains no more), so start from an empty RUNS after changing the model's code
    resume=(--resume)
  fi
  "$NCL" train --task "$task" --model "$model" --seed "$seed" --threads 1 --quiet --out "$dir" "${flags[@]}" \
    "${labels[@]}" "${resume[@]}" >> "$dir.train.log" 2>&1 || { echo "FAILED train $dir"; return; }
  "$NCL" eval "$dir" --count "$COUNT" --threads 1 --json > "$dir.eval.log" 2>&1 || { echo "FAILED eval $dir"; return; }
  mkdir -p "$dest" && cp "$dir/eval.json" "$dest/eval.json"
  echo "done $dest: $(tail -c 300 "$dir.eval.log")"
}
export -f one budget
export RUNS STEPS TIME_LIMIT COUNT NCL RESULTS BASELINE_TIME
mkdir -p "$RUNS"
for model in $MODELS; do for seed in $SEEDS; do for task in $TASKS; do  # the augmented cells first (budget)
  mkdir -p "$RUNS/$task/$model"; echo "$task $model $seed"
done; done; done | xargs -P "$JOBS" -L 1 bash -c 'one "$@"' _
if [ "$RESULTS" = results ]; then
  "$NCL" report results/ --plot docs/results_grid.png --write README.md
elif [ "$RESULTS" = results-language ]; then
  "$NCL" report "$RESULTS"/ --write docs/language.md
elif [ "$RESULTS" = results-labels ]; then
  "$NCL" report "$RESULTS"/ --write docs/labels.md
else  # an experiment's own directory: printed, never written over a committed table
  "$NCL" report "$RESULTS"/
fi
