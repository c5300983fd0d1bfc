"""What every trainer's run record shares: settings mapped once from the parsed options, and a record written to
the run folder's ``config.json`` and read back with :meth:`RunRecord.read`.

A trainer's parser stays the one source of its options' defaults, choices and help; its settings class is their
typed view (a frozen dataclass whose fields are the parser's destinations: ``tests/test_run_records.py`` checks
that the two stay the same).  Runs written before a field existed still load: a setting they did not record reads
as ``None`` (``False`` for a switch).  A record of another task, or one missing what every run of the task has
written, is refused in one line that names the fix.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

CONFIG_NAME = "config.json"


class Settings:
    """A trainer's options, typed (mixed into a frozen dataclass)."""

    @classmethod
    def from_namespace(cls, args: argparse.Namespace):
        """The parsed options; an option without a field is a programming error (a new option needs its field)."""
        given = vars(args)
        unknown = sorted(set(given) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"{cls.__name__} has no field for the option(s) {', '.join(unknown)}")
        return cls(**given)

    @classmethod
    def from_dict(cls, recorded: dict[str, Any]):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in recorded.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        """What the run folder records: every option but ``quiet``, which changes nothing the run computes."""
        return {k: v for k, v in asdict(self).items() if k != "quiet"}


@dataclass(frozen=True)
class TrainingData:
    """What every trainer records of its data: the file it read, how its labels became the classes, the channels,
    the crops' size, dtype and range, and how intensities were normalised for the network."""

    data: str
    label_map: dict[str, list[str]]
    classes: list[str]
    channels: list[str]
    image_size: list[int]
    dtype: str
    value_range: list[float]
    normalization: dict[str, Any]


class RunRecord:
    """One run's record (mixed into a frozen dataclass with a ``settings`` field).  ``TASK`` is the ``task`` the
    record carries, ``TRAINER`` the command that writes it, ``SETTINGS`` its settings class."""

    TASK: ClassVar[str]
    TRAINER: ClassVar[str]
    SETTINGS: ClassVar[type]
    FILE: ClassVar[str] = CONFIG_NAME  # the run folder's file that holds the record

    def to_dict(self) -> dict[str, Any]:
        record = {"task": self.TASK}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "settings":
                record["args"] = None if value is None else value.to_dict()
            else:
                record[f.name] = value
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any], where: str = "the record"):
        if record.get("task", cls.TASK) != cls.TASK:
            raise ValueError(f"{where} is a {record.get('task')} run, not a {cls.TASK} run; pass the --out folder of "
                             f"{cls.TRAINER}")
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if ("args" if name == "settings" else name) not in record]
        if missing:
            raise ValueError(f"{where} is incomplete (no {', '.join(missing)}): it was not written by {cls.TRAINER}; "
                             "train the run again")
        known = {f.name for f in fields(cls)} - {"settings"}
        settings = cls.SETTINGS.from_dict(record["args"]) if record.get("args") is not None else None
        return cls(settings=settings, **{k: v for k, v in record.items() if k in known})

    @classmethod
    def read(cls, run: str | Path):
        """The record in the run folder (``config.json``; ``FILE``), with a one-line error naming the fix when it is
        missing or another task's."""
        path = Path(run) / cls.FILE
        if not path.is_file():
            raise ValueError(f"{run} has no {cls.FILE}: pass the --out folder of {cls.TRAINER}")
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} cannot be read ({err}); train the run again") from err
        if not isinstance(record, dict):
            raise ValueError(f"{path} is not a run record (a JSON object); train the run again")
        return cls.from_dict(record, str(path))
