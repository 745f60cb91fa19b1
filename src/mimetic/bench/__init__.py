"""`mimetic bench`: the project's training step timed against the usual DataLoader loop
(`measure`), the step itself (`project`), the reference loop (`reference`), and the work a step
is counted to ask (`flops`: FLOPs, and copies and kernels with the device faked as `meta`)."""

from mimetic.bench.measure import FIELDS, TARGETS, Options, collect, run

__all__ = ["FIELDS", "TARGETS", "Options", "collect", "run"]
