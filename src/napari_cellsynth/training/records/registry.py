"""Which record a run folder holds, by the task its ``config.json`` names: callers read a run without branching on
what trained it."""

from __future__ import annotations

import json
from pathlib import Path

from .bbdm_run import BbdmRun
from .cellpose_run import CellposeRun
from .classifier_run import ClassifierRun
from .cyclegan_run import CycleGanRun
from .ddpm_run import DdpmRun
from .gan_run import GanRun
from .pretrain_run import PretrainRun
from .run_record import RunRecord

RECORDS: dict[str, type[RunRecord]] = {record.TASK: record for record in (ClassifierRun, DdpmRun, GanRun, BbdmRun,
                                                                               CycleGanRun, PretrainRun, CellposeRun)}


def read_run(run: str | Path, tasks: tuple[str, ...] = tuple(RECORDS)) -> RunRecord:
    """The typed record of the run in ``run``, which must be one of ``tasks``; one line naming the fix otherwise."""
    wanted = " or ".join(f"cellsynth train {task}" for task in tasks)
    files: dict[str, list[str]] = {}
    for task in tasks:
        files.setdefault(RECORDS[task].FILE, []).append(task)
    for name, candidates in files.items():
        path = Path(run) / name
        if not path.is_file():
            continue
        try:
            task = json.loads(path.read_text()).get("task")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
            raise ValueError(f"{path} is not a run record ({err}); train the run again") from err
        task = task or (candidates[0] if len(candidates) == 1 else None)  # records from before they named their task
        if task not in tasks:
            raise ValueError(f"{run} is a {task} run; pass the --out folder of {wanted}")
        return RECORDS[task].read(run)
    raise ValueError(f"{run} is not a training run (no {' or '.join(files)}); pass the --out folder of {wanted}")
