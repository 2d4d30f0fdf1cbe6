#!/usr/bin/env bash
# Every benchmark in sequence, printing everything. On a CPU the step counts are small
# and the paper-sized configs run at batch 2, so the whole set takes about 6 minutes
# on 2 quiet cores; on a GPU the configs keep their own batch sizes.
#
#   bash benchmarks/run_all.sh                          # print
#   bash benchmarks/run_all.sh --save                   # also write benchmarks/results/<device>_<host>_<date>[_<overrides>].txt
#   bash benchmarks/run_all.sh --device cuda --save -- train.amp=bf16 train.compile=true
#   bash benchmarks/run_all.sh --dry-run                # only list the commands
#
# Everything after "--" is passed to every benchmark as config overrides.
set -euo pipefail

usage() {
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
}

save=0
dry_run=0
device=auto
overrides=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --save) save=1 ;;
        --dry-run) dry_run=1 ;;
        --device) device="${2:?--device needs a value: auto, cpu or cuda}"; shift ;;
        --device=*) device="${1#--device=}" ;;
        -h|--help) usage; exit 0 ;;
        --) shift; overrides=("$@"); break ;;
        *) echo "run_all.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "$0")/.."
python="${PYTHON:-python}"
device_type=$("$python" -c "from transinr.runtime import resolve_device; print(resolve_device('$device').type)")

if [[ "$device_type" == "cpu" ]]; then
    # Small counts for a shared 2-core machine; the paper configs at batch 2 (their own
    # batches take minutes a step on a CPU).
    emoji_steps=(--steps 10 --warmup 3)
    paper_image=(--batch 2 --steps 2 --warmup 1)
    small_nvs=(--steps 5 --warmup 2)
    paper_nvs=(--batch 2 --steps 1 --warmup 0)
    build_steps=(--steps 10 --warmup 2)
else
    emoji_steps=(--steps 30 --warmup 10)
    paper_image=(--steps 20 --warmup 5)
    small_nvs=(--steps 30 --warmup 10)
    paper_nvs=(--steps 20 --warmup 5)
    build_steps=(--steps 50 --warmup 10)
fi

commands=(
    "benchmarks/train_throughput.py emoji32_bench ${overrides[*]} ${emoji_steps[*]} --device $device"
    "benchmarks/train_throughput.py celeba178 ${overrides[*]} ${paper_image[*]} --device $device"
    "benchmarks/nvs_throughput.py shapes3d_chairs_1view ${overrides[*]} ${small_nvs[*]} --device $device"
    "benchmarks/nvs_throughput.py shapenet_chairs_1view ${overrides[*]} ${paper_nvs[*]} --device $device"
    "benchmarks/inr_build.py ${overrides[*]} ${build_steps[*]} --device $device"
)

if [[ $dry_run -eq 1 ]]; then
    for command in "${commands[@]}"; do
        echo "$python $command"
    done
    exit 0
fi

run_everything() {
    echo "# transinr benchmarks  $(date -u '+%Y-%m-%d %H:%M UTC')  host $(uname -n)"
    echo "# git $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (uncommitted changes)')"
    echo "# $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || uname -m)"
    echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime)"
    local started=$SECONDS
    for command in "${commands[@]}"; do
        echo
        echo "\$ python $command"
        # shellcheck disable=SC2086  # the command line is meant to split into words
        "$python" $command
    done
    echo
    echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime)"
    echo "# total $((SECONDS - started)) s"
}

if [[ $save -eq 1 ]]; then
    mkdir -p benchmarks/results
    setting=""
    if [[ ${#overrides[@]} -gt 0 ]]; then  # e.g. "_amp-bf16_compile-true": one file per setting
        setting="_$(printf '%s_' "${overrides[@]}" | sed -e 's/_$//' -e 's/train\.//g' -e 's/[^A-Za-z0-9_.-]/-/g')"
    fi
    out="benchmarks/results/${device_type}_$(uname -n)_$(date +%Y%m%d-%H%M)${setting}.txt"
    run_everything 2>&1 | tee "$out"
    echo "written to $out"
else
    run_everything
fi
