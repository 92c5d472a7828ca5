#!/usr/bin/env bash
# The paper study at the `full` size on a lent GPU (not run yet: no GPU was lent when this was written).
# Resumable: rerun the same command after an interruption; each (target, method) and each setting is one
# JSON under examples/paper/runs/mobilestylegan-ffhq-full/. Then commit that folder and regenerate the report:
#   python benchmarks/paper/report.py --runs examples/paper/runs/mobilestylegan-ffhq-full
# Wall time is not measured yet; the `cpu` size's per-run seconds are in its JSON files.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
NET="${NET:-mobilestylegan-ffhq}"
DEVICE="${DEVICE:-cuda}"
python benchmarks/paper/table1_gaussianity.py --network "$NET" --size full --device "$DEVICE" --out examples/paper
python benchmarks/paper/table2_projection.py --network "$NET" --size full --device "$DEVICE" --resume --out examples/paper
python benchmarks/paper/table3_tradeoff.py --network "$NET" --size full --device "$DEVICE" --resume --out examples/paper
python benchmarks/paper/report.py --out examples/paper --runs "examples/paper/runs/${NET}-full"
