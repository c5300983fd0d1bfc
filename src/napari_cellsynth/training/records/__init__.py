"""Typed run records: what a trainer ran, written once by the trainer into its run folder and read back by the
exporters, ``--init-from`` and the experiments through their fields, never through the JSON's keys (issue 34,
item 3).  The bottom layer of training: it imports nothing else of it."""
