#!/bin/bash
# Entry point of both images (exec-form ENTRYPOINT). SageMaker appends `train` or `serve`:
#   serve [ARGS]   forecaster serve --model-dir "$SM_MODEL_DIR" (default /opt/ml/model) ARGS: gunicorn on :8080
#   train [ARGS]   the sagemaker-training toolkit, which runs /opt/ml/code/$SAGEMAKER_PROGRAM, after
#                  forecaster.container.preflight (fails in seconds when this host does not resolve; restores a hidden
#                  entry script)
#   anything else  run as given, e.g. `forecaster evaluate ...` (processing steps) or `bash`
set -eu

case "${1:-serve}" in
serve)
    [ $# -gt 0 ] && shift
    model_dir="${SM_MODEL_DIR:-/opt/ml/model}"
    if [ "$(id -u)" = 0 ] && [ -n "${FORECASTER_SERVER_UID:-}" ]; then
        # started as root (the inference image's default): serve as the unprivileged user. SageMaker's
        # /opt/ml/model is world-readable; the SDK's local mode mounts a 0700 root-owned temporary directory
        # there, which that user cannot read: then serve a readable copy from /tmp.
        as_server="setpriv --reuid=$FORECASTER_SERVER_UID --regid=$FORECASTER_SERVER_UID --clear-groups"
        if [ -n "$($as_server find "$model_dir" ! -readable -print -quit 2>&1)" ]; then
            echo "forecaster-entrypoint: $model_dir is not readable by uid $FORECASTER_SERVER_UID; serving a copy" >&2
            copy="$(mktemp -d /tmp/model.XXXXXX)"
            cp -R "$model_dir/." "$copy/"
            chown -R "$FORECASTER_SERVER_UID:$FORECASTER_SERVER_UID" "$copy"
            model_dir="$copy"
        fi
        exec $as_server forecaster serve --model-dir "$model_dir" "$@"
    fi
    # exec: the server becomes PID 1 and gets SIGTERM directly (graceful gunicorn shutdown)
    exec forecaster serve --model-dir "$model_dir" "$@"
    ;;
train)
    python3 -m forecaster.container.preflight || exit $?
    # PID 1 ignores every signal it has no handler for, and the toolkit installs none: run it as a child in
    # its own process group (session) and pass SIGTERM/SIGINT (job stopped, MaxRuntimeInSeconds) to the
    # toolkit and the training script it started; then wait until the script has written its failure reason
    # and exited (at most 120 s, when SageMaker sends SIGKILL anyway) and exit with the toolkit's status.
    setsid "$@" &
    child=$!
    trap 'kill -TERM -- "-$child" 2>/dev/null || true' TERM INT
    status=0
    wait "$child" || status=$?
    while kill -0 "$child" 2>/dev/null; do
        status=0
        wait "$child" || status=$?
    done
    waited=0
    while kill -0 -- "-$child" 2>/dev/null && [ "$waited" -lt 120 ]; do
        sleep 1
        waited=$((waited + 1))
    done
    exit "$status"
    ;;
*)
    exec "$@"
    ;;
esac
