"""Kill and resume: ``ci`` training SIGKILLed at 5 random optimizer steps ends bit-identical to one run.

Every training segment is its own process, which resumes the run folder with
``fit(..., resume=True)`` and kills itself with a real SIGKILL right after global optimizer step N:
no exception, no ``finally``, no flush, exactly what ``kill -9`` or the OOM killer does. The
segments are forked from one driver process that has imported torch and read Fashion-MNIST once
(a fresh interpreter per segment would spend most of the test starting up); each segment still
builds its model, optimizer and scheduler afresh and resumes from what is on disk.
"""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import textwrap

import torch

from zfkit import profiles
from zfkit.train import latest_checkpoint, load_checkpoint

CI = profiles.get("ci")
STEPS_PER_EPOCH = -(-CI.train_subset // CI.batch_size)  # 2000 images in batches of 128: 16 steps
TOTAL_STEPS = STEPS_PER_EPOCH * CI.epochs
KILLS = 5
SEED = 5  # the test's own RNG: random kill steps, the same on every run (2, 16, 17, 23, 30: either side of
# epoch 1's checkpoint too)

# Reads "RUN_FOLDER KILL_AT" lines (KILL_AT 0: train to the end); forks one training segment per
# line and answers with the segment's wait status as JSON.
DRIVER = textwrap.dedent("""\
    import json, os, signal, sys, traceback

    import torch

    torch.set_num_threads(1)
    from zfkit import zoo
    from zfkit.train import fit, latest_checkpoint

    zoo.prepare("zfnet-mini", "ci")  # reads the data into zoo's cache before forking

    def segment(out, kill_at):
        run = zoo.prepare("zfnet-mini", "ci")
        saved = latest_checkpoint(out) if os.path.isdir(out) else None
        per_epoch = -(-len(run.train) // run.recipe.batch_size)
        done = [saved.epoch * per_epoch if saved else 0]  # global steps behind the resume point
        step = torch.optim.SGD.step

        def counted_step(self, *args, **kwargs):
            result = step(self, *args, **kwargs)
            done[0] += 1
            if done[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        torch.optim.SGD.step = counted_step
        fit(run.model, run.train, run.val, run.recipe, out, resume=True, progress=False)

    for line in sys.stdin:
        out, kill_at = line.split()
        pid = os.fork()
        if pid == 0:
            try:
                segment(out, int(kill_at))
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        print(json.dumps(os.waitpid(pid, 0)[1]), flush=True)
""")


def _kill_steps() -> list[int]:
    return sorted(random.Random(SEED).sample(range(1, TOTAL_STEPS + 1), KILLS))


def _epochs(run) -> list[int]:
    if not (run / "metrics.csv").exists():
        return []
    with open(run / "metrics.csv") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _metrics_without_timing(run) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "images_per_s"} for row in csv.DictReader(f)]


def test_kill_steps_are_distinct_and_land_in_every_epoch():
    steps = _kill_steps()
    assert len(set(steps)) == KILLS and all(1 <= s <= TOTAL_STEPS for s in steps)
    assert {(s - 1) // STEPS_PER_EPOCH for s in steps} == set(range(CI.epochs))


def test_sigkill_at_five_random_steps_then_resume_is_bit_identical(tmp_path):
    (tmp_path / "driver.py").write_text(DRIVER)
    whole, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # one thread: deterministic and fast
    driver = subprocess.Popen([sys.executable, str(tmp_path / "driver.py")], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def train(out, kill_at: int = 0) -> int:
        driver.stdin.write(f"{out} {kill_at}\n")
        driver.stdin.flush()
        reply = driver.stdout.readline()
        assert reply, f"the driver died (exit status {driver.wait()})"
        return json.loads(reply)

    try:
        status = train(whole)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        for kill_at in _kill_steps():
            status = train(killed, kill_at)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"no kill at step {kill_at}"
            epochs_done = (kill_at - 1) // STEPS_PER_EPOCH  # killed before that epoch's checkpoint
            saved = latest_checkpoint(killed)
            assert (saved.epoch if saved else 0) == epochs_done
            assert _epochs(killed) == list(range(1, epochs_done + 1))
        status = train(killed)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        driver.stdin.close()
        try:
            driver.wait(timeout=60)
        except subprocess.TimeoutExpired:
            driver.kill()
            raise
    assert driver.returncode == 0

    assert _epochs(killed) == list(range(1, CI.epochs + 1))
    assert _metrics_without_timing(killed) == _metrics_without_timing(whole)
    # Bitwise equality is guaranteed by construction here: both runs are forks of one process on one
    # machine, with one thread, the same seeded batches and shapes, so every kernel call repeats
    # exactly (DESIGN: Deterministic); any difference is resume state lost or replayed wrongly.
    a, b = load_checkpoint(killed / "last"), load_checkpoint(whole / "last")
    assert a.epoch == b.epoch == CI.epochs
    assert a.model_state.keys() == b.model_state.keys()
    for name in a.model_state:
        assert torch.equal(a.model_state[name], b.model_state[name]), name
    momenta = [(s["momentum_buffer"], t["momentum_buffer"])
               for s, t in zip(a.optimizer_state["state"].values(), b.optimizer_state["state"].values())]
    assert momenta and all(torch.equal(s, t) for s, t in momenta)
