"""Bad inputs to `mimetic <command>`, as a user types them: each ends in one line `mimetic <command>: ...`
(argparse's own errors: its usage, then that line) with a non-zero status, never a traceback.
The cases run in-process; one subprocess checks that the real entry point prints no traceback."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from mimetic import cli

DIGITS = {"dataset": "digits", "model": "vit_digits", "epochs": 1}
LM = {"dataset": "shakespeare_char", "model": "gpt_char_tiny"}
VIT = "vit_tiny_patch16_224"


def recipe(**keys):
    return json.dumps({**(LM if keys.pop("lm", False) else DIGITS), **keys})


def train(*args):
    return ["train", "--out", "{tmp}/run", *args]


def extract(model, file, *args):
    return ["extract", "--model", model, "--file", file, *args, "--products", "{tmp}/p.safetensors",
            "--metrics", "{tmp}/s.csv"]


FAST = ["--images", "64", "--test-images", "64", "--batch-size", "32", "--steps", "1", "--warmup", "0", "--repeats",
        "1", "--eval", "off", "--matmul-size", "64", "--device", "cpu"]  # a bench that fails does so before timing
RESULTS = ["--claims", "config/claims.yaml", "--claims-schema", "workflow/schemas/claims.schema.yaml"]

CASES = [
    # the recipe's values: type, bounds, finiteness, choices; the JSON itself
    (train("--recipe", recipe(batch_size=1.5)), "batch_size=1.5: must be an integer"),
    (train("--recipe", recipe(batch_size=True)), "batch_size=True: must be an integer"),
    (train("--recipe", recipe(epochs="ten")), "epochs='ten': must be an integer"),
    (train("--recipe", recipe(lr=-1)), "lr=-1: must be > 0"),
    (train("--recipe", recipe(lr="0.1")), "lr='0.1': must be a number"),
    (train("--recipe", recipe(lr=float("nan"))), "lr=nan: must be a finite number"),
    (train("--recipe", recipe(min_lr=float("inf"))), "min_lr=inf: must be a finite number"),
    (train("--recipe", recipe(amp="yes")), "amp='yes': must be true or false"),
    (train("--recipe", recipe(init="nope")), "init='nope': unknown; choose one of"),
    (train("--recipe", recipe(init_params=[1])), "init_params=[1]: must be a mapping"),
    (train("--recipe", recipe(model="vit_nope")), "model='vit_nope': unknown"),
    (train("--recipe", recipe(dataset="nope")), "dataset='nope': unknown"),
    (train("--recipe", recipe(nope=1)), "--recipe has unknown key(s) ['nope']"),
    (train("--recipe", recipe(lm=True, batch_size=1.5)), "batch_size=1.5: must be an integer"),
    (train("--recipe", '{"dataset": "digits"'), "--recipe is not valid JSON"),
    (train("--recipe", "[1]"), "--recipe must be a JSON object"),
    (train("--recipe", recipe(), "--seed", "-3"), "seed=-3: must be >= 0"),
    (train("--recipe", recipe(seed=-1)), "seed=-1: must be >= 0"),  # the recipe's own seed, not overridden by 0
    (train("--recipe", recipe(), "--checkpoint", "{tmp}"), "--checkpoint {tmp} is a folder: give the checkpoint"),
    (train("--recipe", recipe(), "--workers", "-1"), "workers=-1: must be >= 0"),
    (train("--recipe", recipe(), "--accum-steps", "0"), "accum_steps=0: must be >= 1"),
    (train("--recipe", recipe(), "--threads", "-1"), "argument --threads: -1: must be >= 0"),
    (train("--recipe", recipe(), "--runs-per-gpu", "0"), "argument --runs-per-gpu: 0: must be >= 1"),
    # a pretrained checkpoint that is none, or is refused
    (extract("gpt2", "{tmp}/some.csv"), "{tmp}/some.csv is not a checkpoint (neither safetensors nor torch.save's)"),
    (extract(VIT, "{tmp}/some.csv"), "{tmp}/some.csv is not a checkpoint"),
    (extract("gpt2", "{tmp}/empty.safetensors"), "empty.safetensors is not a checkpoint (it is empty)"),
    (extract("gpt2", "{tmp}/folder"), "pretrained.<label>.file: '{tmp}/folder' is a folder"),
    (extract("gpt2", "{tmp}/missing.pt"), "checkpoint file '{tmp}/missing.pt' does not exist"),
    (extract("gpt2", "{tmp}/tensor.pt"), "tensor.pt holds a Tensor, not a state dict"),
    (extract("gpt2", "{tmp}/planted.pt", "--label", "gpt2"),
     "pretrained.gpt2.file: checkpoint {tmp}/planted.pt is refused: it holds the pickled object posix.system"),
    (extract(VIT, "{tmp}/other.safetensors"), f"other.safetensors does not fit '{VIT}' (Missing key(s)"),
    (extract("gpt2", "{tmp}/other.safetensors", "--num-heads", "0"), "pretrained.<label>.num_heads=0: must be >= 1"),
    (extract("gpt2", "{tmp}/other.safetensors"), "no GPT-2 attention weights found"),
    (["extract", "--model", "vit_nope", "--products", "p", "--metrics", "m"], "'vit_nope' is not a timm model name"),
    (["extract-runs", "--summaries", "{tmp}/some.csv", "--weights", "{tmp}/other.safetensors", "--stages", "final",
      "--products", "p", "--metrics", "m"], "Expecting value"),
    (["plot-structure", "--labels", "a", "--products", "{tmp}/some.csv"], "header"),
    # bench: its counts, device and recipe before any timing
    (["bench", "--recipe", "{bad"], "argument --recipe: not valid JSON"),
    (["bench", "--recipe", "[1]"], "--recipe must be a JSON object"),
    (["bench", *FAST, "--recipe", '{"epochs": "ten"}'], "epochs='ten': must be an integer"),
    (["bench", *FAST, "--steps", "0"], "argument --steps: 0: must be >= 1"),
    (["bench", *FAST, "--threads", "-1"], "argument --threads: -1: must be >= 0"),
    (["bench", *FAST, "--images", "-5"], "argument --images: -5: must be >= 1"),
    (["bench", *FAST, "--device", "tpu"], "argument --device: 'tpu': expected auto, cpu, cuda or cuda:N"),
    (["bench", *FAST, "--model", "nope"], "model='nope': unknown"),
    # records and results: a folder or a missing file where a file goes
    (["check-records", "--summaries", "{tmp}/folder", "--metrics", "{tmp}/folder"], "Is a directory: '{tmp}/folder'"),
    (["check-records", "--summaries", "{tmp}/some.csv", "--metrics", "{tmp}/some.csv"], "some.csv: not valid JSON"),
    (["tables", "--runs-csv", "{tmp}/missing.csv", "--epochs-csv", "{tmp}/some.csv", *RESULTS, "--out", "x.csv"],
     "No such file or directory: '{tmp}/missing.csv'"),
    (["figures", "--runs-csv", "{tmp}/folder", "--epochs-csv", "{tmp}/some.csv", *RESULTS, "--out", "x.png"],
     "Is a directory: '{tmp}/folder'"),
    (["provenance", "--summaries", "s.json", "--config", "{bad", "--out", "p.html"],
     "argument --config: not valid JSON"),
    (["provenance", "--summaries", "{tmp}/no_environment.json", "--config", "{}", "--out", "{tmp}/p.html"],
     "{tmp}/no_environment.json: not a run record of this version of `mimetic train` (lacks ['environment'])"),
]


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The files a user gives by mistake: a CSV, an empty file, a folder, a bare tensor, a planted
    pickle, a safetensors file of no model in particular."""
    tmp = tmp_path_factory.mktemp("inputs")
    (tmp / "some.csv").write_text("layer,head\n0,1\n")
    (tmp / "empty.safetensors").write_bytes(b"")
    (tmp / "folder").mkdir()
    torch.save(torch.zeros(3), tmp / "tensor.pt")
    torch.save({"h.0.attn.c_attn.weight": torch.zeros(4, 12), "x": _Payload(tmp / "ran")}, tmp / "planted.pt")
    save_file({"w": torch.zeros(2)}, str(tmp / "other.safetensors"))
    (tmp / "no_environment.json").write_text('{"device": "cpu", "wall_time": 1.0}')
    return tmp


def _fill(items, tmp):
    return [item.replace("{tmp}", str(tmp)) for item in items]


@pytest.mark.parametrize("argv, fragment", CASES, ids=[f"{i}-{argv[0]}" for i, (argv, _) in enumerate(CASES)])
def test_a_bad_input_ends_in_one_line(inputs, capsys, argv, fragment):
    argv = _fill(argv, inputs)
    with pytest.raises(SystemExit) as err:
        cli.main(argv)
    code = err.value.code
    # ours: the message is the exit's; argparse's: status 2 and its last line on stderr
    message = code if isinstance(code, str) else capsys.readouterr().err.strip().splitlines()[-1]
    assert code != 0 and "\n" not in message, message
    assert message.startswith(f"mimetic {argv[0]}: "), message
    assert _fill([fragment], inputs)[0] in message, message
    assert not (inputs / "ran").exists()


def test_the_entry_point_prints_one_line_and_no_traceback(inputs):
    """`python -m mimetic` itself, two cases at once (each process pays its imports: torch, pandas)."""
    cases = [extract("gpt2", "{tmp}/some.csv"),
             ["tables", "--runs-csv", "{tmp}/missing.csv", "--epochs-csv", "{tmp}/some.csv", *RESULTS, "--out", "x"]]
    procs = [subprocess.Popen([sys.executable, "-m", "mimetic", *_fill(argv, inputs)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
             for argv in cases]
    for argv, proc in zip(cases, procs):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode != 0 and "Traceback" not in err, err
        assert err.strip().splitlines()[-1].startswith(f"mimetic {argv[0]}: "), err
