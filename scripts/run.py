"""quadflow's main job: train a student, compute the theory, log both.

    python scripts/run.py                                   # default config (CPU, < 1 min)
    python scripts/run.py problem.d=512 theory=[dmft] device=cuda
    python scripts/run.py -m problem.alpha=0.5,1,2          # sweep, one W&B run per job
    torchrun --nproc_per_node=2 scripts/run.py ...          # one run, samples sharded
    python scripts/run.py resume=true hydra.run.dir=<dir>   # continue a killed run
"""
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from quadflow.cli.app import register_configs, run_hydra_job
from quadflow.cli.job import EXIT_CODES, one_line_report

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg) -> str:
    summary = run_hydra_job(cfg, HydraConfig.get())
    print(one_line_report(summary, HydraConfig.get().runtime.output_dir))
    if HydraConfig.get().mode != RunMode.MULTIRUN and summary["status"] != "ok":
        print(f"run {summary['status']}: {summary['error']}", file=sys.stderr)
        sys.exit(EXIT_CODES[summary["status"]])
    return summary["status"]


if __name__ == "__main__":
    main()
