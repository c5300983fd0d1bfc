"""Study configurations: a paper's experiment written as options of ``cellsynth study`` (issue 33: the papers'
experiments as configurations of the one study, not as separate scripts).  The package ships them as JSON in
``configs/`` beside this module (``--config paper000``); a user's JSON file works the same way.  A configuration
holds ``options`` (the command's long options without their dashes, e.g. ``"label-map": "jurkat4"``) and, for the
reader, ``paper``, ``what`` and ``differs`` (what the study does otherwise than the paper).  Options given on the
command line override the configuration's; ``--generator`` adds to its generators.  The data and ``--out`` are
always given on the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

FOLDER = Path(__file__).with_name("configs")
CONFIGS = sorted(path.stem for path in FOLDER.glob("*.json"))
NOT_IN_A_CONFIG = ("config", "data", "out", "help", "report-only", "quiet")


def read_config(name: str) -> dict:
    """The ``options`` of a shipped configuration (by name) or of a JSON file."""
    path = FOLDER / f"{name}.json" if name in CONFIGS else Path(name)
    if not path.is_file():
        raise ValueError(f"--config {name}: neither a shipped configuration ({', '.join(CONFIGS)}) nor a JSON file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"--config {path}: not a JSON file ({error}); write {{\"options\": {{\"rare\": [\"M\"], ...}}}}"
                         ) from None
    options = data.get("options") if isinstance(data, dict) else None
    if not isinstance(options, dict):
        raise ValueError(f"--config {path}: no \"options\" object; write {{\"options\": {{\"rare\": [\"M\"], ...}}}}")
    return options


def config_defaults(parser: argparse.ArgumentParser, options: dict, source: str) -> dict:
    """The parser's defaults that ``options`` set, by destination (an append option's items each a group of one)."""
    by_flag = {flag: action for action in parser._actions for flag in action.option_strings}
    defaults = {}
    for key, value in options.items():
        action = by_flag.get(f"--{key}")
        if action is None or key in NOT_IN_A_CONFIG:
            raise ValueError(f"--config {source}: {key!r} is not an option a configuration may set; use the command's "
                             "long options without dashes (e.g. \"label-map\"), and give the data and --out on the "
                             "command line")
        listed = value if isinstance(value, list) else [value]
        if isinstance(action, argparse._AppendAction):
            value = [[item] for item in listed]
        elif action.nargs in ("+", "*"):
            value = listed
        defaults[action.dest] = value
    return defaults


def parse_with_config(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``, with the defaults of its ``--config`` (if any) in place of the parser's."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--config")
    known, _ = early.parse_known_args(argv)
    if known.config:
        parser.set_defaults(**config_defaults(parser, read_config(known.config), known.config))
    return parser.parse_args(argv)
