#!/bin/bash
# Submits a sweep as a Slurm job array of N shards plus a merge job that runs after every
# shard succeeded (see fracsweep-array.sbatch). Extra sbatch options: FRACSWEEP_SBATCH_FLAGS.
#
#   slurm/fracsweep-array-submit.sh N JOB.ini OUT.h5 [more `fracsweep run` flags]
#
# Prints the two job ids (array, merge).
set -euo pipefail
count=${1:?usage: fracsweep-array-submit.sh N JOB.ini OUT.h5 [fracsweep run flags]}
job=${2:?usage: fracsweep-array-submit.sh N JOB.ini OUT.h5 [fracsweep run flags]}
out=${3:?usage: fracsweep-array-submit.sh N JOB.ini OUT.h5 [fracsweep run flags]}
shift 3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
read -r -a extra <<< "${FRACSWEEP_SBATCH_FLAGS:-}"
array=$(sbatch --parsable "${extra[@]}" --array="0-$((count - 1))" \
        "$here/fracsweep-array.sbatch" "$job" "$out" "$@")
array=${array%%;*}
merge=$(sbatch --parsable "${extra[@]}" --job-name=fracsweep-merge --dependency="afterok:$array" \
        --output="${out%.h5}.merge-%j.log" "$here/fracsweep-array.sbatch" --merge "$count" "$out")
echo "$array ${merge%%;*}"
