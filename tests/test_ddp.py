"""fit() under torchrun: 2 CPU processes (gloo) end where one process with the same global batch ends.

Randomness that could differ between the two set-ups is made equal or removed:
- data order, shifts and flips are drawn per position of the epoch from a generator that does not
  depend on the rank, so augmentation stays on;
- dropout masks are drawn per rank, so the model is built with ``dropout=0``;
- bf16 autocast rounds each process's partial gradient sums, so the recipe pins fp32.
61 images in global batches of 16 end with a batch of 13 (7 + 6 images), which checks the loss scaling that makes
DDP's average of per-process means equal the global batch mean.
"""

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from zfkit import models
from zfkit.data import TensorImages
from zfkit.train import Recipe, fit

REPO = Path(__file__).resolve().parents[1]


def torchrun(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 ARGS`` with this interpreter's torch, asserting success.

    One OpenMP thread per process: two processes on two cores, none oversubscribed.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args],
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc

WORKER = textwrap.dedent("""
    import json
    import sys

    import torch.distributed as dist
    from safetensors.torch import save_file

    sys.path.insert(0, {tests!r})
    from test_ddp import make_run
    from zfkit.train import fit

    out = sys.argv[1]
    result = fit(*make_run(), out, progress=False)
    rank = dist.get_rank()
    save_file({{k: v.contiguous() for k, v in result.model.state_dict().items()}}, f"{{out}}/rank{{rank}}.safetensors")
    with open(f"{{out}}/history{{rank}}.json", "w") as f:
        json.dump(result.history, f)
    dist.destroy_process_group()
""")


def make_run():
    """The same model, data and recipe for every process and for the single-process reference."""
    g = torch.Generator().manual_seed(0)
    images = TensorImages(torch.randn(84, 1, 32, 32, generator=g), torch.randint(0, 10, (84,), generator=g),
                          tuple(map(str, range(10))))
    torch.manual_seed(0)
    spec = models.variant(models.zfnet_mini(width=0.125), fc_width=16).spec
    model = models.build(replace(spec, dropout=0.0))
    recipe = Recipe(epochs=2, batch_size=16, lr=0.05, device="cpu", precision="fp32", eval_batch_size=10)
    return model, images.subset(range(61)), images.subset(range(61, 84)), recipe


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    (tmp_path / "worker.py").write_text(WORKER.format(tests=os.path.dirname(__file__)))
    out = tmp_path / "ddp"
    torchrun(str(tmp_path / "worker.py"), str(out))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, train, val, recipe = make_run()
        single = fit(model, train, val, recipe, tmp_path / "single", progress=False)
    finally:
        torch.set_num_threads(threads)
    ranks = [load_file(out / f"rank{r}.safetensors") for r in (0, 1)]
    reference = single.model.state_dict()
    for name, value in reference.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), f"ranks disagree on {name}"
        assert torch.allclose(ranks[0][name], value, atol=1e-5), f"DDP and single process differ on {name}"
    assert not torch.equal(ranks[0]["features.conv1.weight"], make_run()[0].state_dict()["features.conv1.weight"])

    # metrics are all-reduced: every rank reports the global numbers, rank 0 alone writes them
    histories = [json.loads((out / f"history{r}.json").read_text()) for r in (0, 1)]
    timeless = [[{k: v for k, v in row.items() if k != "images_per_s"} for row in h] for h in histories]
    assert timeless[0] == timeless[1]
    for ddp_row, row in zip(histories[0], single.history):
        assert ddp_row["val_loss"] == pytest.approx(row["val_loss"], rel=1e-4)
        assert ddp_row["train_loss"] == pytest.approx(row["train_loss"], rel=1e-4)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(("rank", "history"))) == \
        ["epoch_001", "epoch_002", "last", "metrics.csv"]


TOPK_WORKER = textwrap.dedent("""
    import sys

    import torch.distributed as dist
    from safetensors.torch import save_file

    sys.path.insert(0, {tests!r})
    from test_ddp import topk_case
    from zfkit.topk import topk

    model, data = topk_case()
    result = topk(model, data, "conv3", k=5, batch_size=8, progress=False)  # joins the process group itself
    if dist.get_rank() == 0:
        save_file({{"values": result.values, "indices": result.indices, "ys": result.ys, "xs": result.xs}}, sys.argv[1])
    dist.destroy_process_group()
""")


def topk_case():
    """A random mini and 37 images (shards of 8-image batches split unevenly across 2 ranks)."""
    from helpers import random_mini

    g = torch.Generator().manual_seed(1)
    data = TensorImages(torch.randn(37, 1, 32, 32, generator=g), torch.zeros(37, dtype=torch.long), ("x",))
    return random_mini(), data


@pytest.mark.slow
def test_topk_shards_across_ranks_and_merges_to_the_single_process_result(tmp_path):
    from zfkit.topk import topk

    (tmp_path / "worker.py").write_text(TOPK_WORKER.format(tests=os.path.dirname(__file__)))
    torchrun(str(tmp_path / "worker.py"), str(tmp_path / "topk.safetensors"))
    merged = load_file(tmp_path / "topk.safetensors")
    model, data = topk_case()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun's workers; the batches still differ (shards), so rounding may too
    try:
        single = topk(model, data, "conv3", k=5, batch_size=8, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert torch.allclose(merged["values"], single.values, rtol=1e-5, atol=1e-6)
    same = (merged["indices"] == single.indices) & (merged["ys"] == single.ys) & (merged["xs"] == single.xs)
    near_tie = (merged["values"] - single.values).abs() <= 1e-5 * single.values.abs().max()
    assert same.float().mean() > 0.9 and torch.all(same | near_tie), "only near-ties may swap places"
