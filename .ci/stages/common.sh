# Sourced by each .ci/stages/*.sh: run from the repository root, print a header, and on exit the
# stage's result and wall time.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
mkdir -p artifacts

stage_begin() {  # stage_begin NAME "what it does"
    STAGE_NAME=$1
    STAGE_T0=$SECONDS
    printf '\n===== stage %s: %s =====\n' "$1" "$2"
    trap 'stage_end $?' EXIT
}

stage_end() {
    local rc=$1 took=$((SECONDS - STAGE_T0)) result=ok
    [ "$rc" -eq 0 ] || result="FAILED (exit $rc)"
    printf '===== stage %s: %s in %dm%02ds =====\n' "$STAGE_NAME" "$result" $((took / 60)) $((took % 60))
}
