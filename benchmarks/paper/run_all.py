"""Run (or resume) the paper study on one generator, then regenerate REPORT.md from the run files.

    python benchmarks/paper/run_all.py                      # mobilestylegan-ffhq, --size cpu, resumes
    python benchmarks/paper/run_all.py --size full          # the GPU-session size (examples/paper/run_gpu.sh)
    python benchmarks/paper/run_all.py --quick --network tests/data/reference-nets/sg2ada_uncond_map8_res32.pkl --out /tmp/paper
    python benchmarks/paper/run_all.py --report-only        # only regenerate the report (same as report.py)

Table 1 writes ``<out>/table1.json``; Tables 2 and 3 write one JSON per run under
``<out>/runs/<network>-<size>/`` and skip the runs already there (``--no-resume`` recomputes them), so the
study accumulates over several invocations; ``report.py`` assembles ``<out>/REPORT.md`` from those files.
The stages can also run one by one (``table1_gaussianity.py``, ``table2_projection.py``,
``table3_tradeoff.py``, same options, e.g. in parallel processes).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SIZES, parser, runs_dir, setup  # noqa: E402


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--report-only", action="store_true", help="only regenerate REPORT.md from the run files")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO)
    out = Path(args.out)
    if not args.report_only:
        import table1_gaussianity
        import table2_projection
        import table3_tradeoff

        G, prior, size, out = setup(args)
        started = time.time()
        if not (args.resume and (out / "table1.json").is_file()):
            table1_gaussianity.run(G, prior, size, out, args.network)
        table2_projection.run(G, prior, size, out, args.network, args.targets, resume=args.resume)
        table3_tradeoff.run(G, prior, size, out, args.network, resume=args.resume)
        logging.getLogger("paper").info("all stages in %.1f min", (time.time() - started) / 60)
    import report

    report.main(["--out", str(out), "--runs", str(runs_dir(out, args.network, SIZES[args.size]))])


if __name__ == "__main__":
    main()
