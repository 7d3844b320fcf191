#!/usr/bin/env bash
# The whole platform on the bundled sample corpus, as `make demo` runs it:
#   build a dataset version -> scaling sweep of small models -> our own scaling law -> a plan -> dashboard.
# Usage: scripts/demo.sh [HOME]   (env: PY, the Python to use; SWEEP, the sweep's arguments;
#                                  SHARED_EVAL, where the published Chinchilla runs may be found)
# Every step is resumable: a rerun reuses the dataset version and the finished sweep points.
set -euo pipefail

PY=${PY:-.venv/bin/python}
HOME_DIR=${1:-.}
SWEEP=${SWEEP:---budget demo}
SHARED_EVAL=${SHARED_EVAL:-../shared/eval}
CHINCHILLA_RUNS="$SHARED_EVAL/chinchilla/chinchilla_N_D_loss.csv"
STEPS=5
started=$SECONDS

step() {
    printf '\n== [%d/%d] %s  (%ds elapsed)\n' "$1" "$STEPS" "$2" $((SECONDS - started))
}

step 1 "Build a dataset version from the bundled sample corpus"
"$PY" -m pipelines.build --runner DirectRunner --home "$HOME_DIR"
"$PY" -m pipelines.versions --home "$HOME_DIR" verify

step 2 "Train a scaling sweep of small models on it ($SWEEP)"
# shellcheck disable=SC2086  # SWEEP is a list of arguments
"$PY" -m trainer.sweep --home "$HOME_DIR" $SWEEP

step 3 "Fit scaling laws"
if [ -f "$CHINCHILLA_RUNS" ]; then
    # Recorded first so that our own fit, the newest, is the one the Planning page opens on.
    echo "-- the published Chinchilla runs ($CHINCHILLA_RUNS), for comparison on the dashboard"
    "$PY" -m planner fit "$CHINCHILLA_RUNS" --home "$HOME_DIR" > /dev/null
    echo "   recorded"
else
    echo "-- $CHINCHILLA_RUNS not found: the dashboard compares with Hoffmann 2022 and Besiroglu 2024 only"
fi
echo "-- our sweep's runs"
"$PY" -m planner fit "$HOME_DIR/metrics" --home "$HOME_DIR"

step 4 "Plan 6e21 FLOPs on 128 H100s with our own law and our data's unique tokens"
if ! "$PY" -m planner --compute 6e21 --gpus 128 --gpu h100 --fit "$HOME_DIR" --data latest --home "$HOME_DIR"; then
    # A law from minutes of CPU training extrapolates about ten decades, and this corpus has well under a
    # million unique tokens: its model may not fit on the cluster at all. That is the plan's answer (the
    # planner said why above, and the fit's warnings say how far to trust it), not a failure of the demo.
    echo "-- no layout fits on 128 H100s for our law's model (reasons above); the fit is still on the dashboard"
fi

step 5 "Watch it"
cat <<TEXT
Everything above is in $HOME_DIR/metrics. To look at it (nothing is opened for you):

    $PY -m dashboard --home $HOME_DIR

then browse to http://127.0.0.1:8501 (the server listens on this machine only; over SSH, forward the
port: ssh -L 8501:127.0.0.1:8501 HOST). Pages: Data, Training, Planning.
Done in $((SECONDS - started))s.
TEXT
