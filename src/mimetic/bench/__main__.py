"""python -m mimetic.bench worker <options JSON> <result file>: one packing worker;
python -m mimetic.bench collect <folder> <gpu|cpu>: benchmarks/gpu_check.sh's JSON."""

import json
import sys
from pathlib import Path

from mimetic.bench.measure import collect
from mimetic.bench.options import Options
from mimetic.bench.project import pack_worker

if sys.argv[1] == "worker":
    pack_worker(Options(**json.loads(sys.argv[2])), Path(sys.argv[3]))
elif sys.argv[1] == "collect":
    doc = collect(Path(sys.argv[2]), sys.argv[3])
    (Path(sys.argv[2]) / "gpu_check.json").write_text(json.dumps(doc, indent=2) + "\n")
else:
    raise SystemExit(f"python -m mimetic.bench: unknown mode {sys.argv[1]!r} (worker, collect)")
