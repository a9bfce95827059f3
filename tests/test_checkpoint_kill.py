"""Kill and resume: a training run killed with SIGKILL (no cleanup can run), resumed from its last
checkpoint, ends bit-identical to an unbroken run of the same seed on the CPU: model weights,
optimizer state, EMA weights, random state, batch sampler and loss history. The comparison is shown
to fail when resume leaves out any one of them, and at least one kill lands during a checkpoint write.
"""
import hashlib
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
import torch

from ddpm_lessons import checkpoints, training

STEPS = 40
SCRIPT = textwrap.dedent("""
    import sys, time
    import torch
    import ddpm_lessons as dl

    class Model(dl.models.NoiseMLP):
        def __init__(self):
            super().__init__(T=50, hidden=32)
            self.register_buffer("ballast", torch.zeros(8_000_000))  # 32 MB: each write takes a while

    def setup():
        torch.set_num_threads(1)  # one thread: the same order of sums in every process, so bit-identical
        torch.manual_seed(0)
        diffusion = dl.Diffusion(dl.schedules.cosine_beta_schedule(50))
        data = dl.data.butterfly(512, noise=0.02, generator=torch.Generator().manual_seed(1))
        batches = dl.training.TensorBatches(data, batch_size=32, device="cpu", seed=3)
        loss = lambda m, x: diffusion.loss(m, x)  # random t and noise at every step: the RNG matters
        return Model(), loss, batches

    OPTIONS = dict(lr=3e-3, optimizer="adamw", weight_decay=1e-4, ema_decay=0.9, progress=False)

    if __name__ == "__main__":
        model, loss, batches = setup()
        resume = len(sys.argv) > 2
        # a checkpoint at every step; the callback slows the loop so that the parent can kill it
        dl.training.train(model, loss, batches, steps=10**6, checkpoint_path=sys.argv[1], checkpoint_every_s=0.0,
                          resume=resume, callback=lambda step, m, r: time.sleep(0.02), callback_every=1, **OPTIONS)
""")


@pytest.fixture
def script(tmp_path):
    (tmp_path / "train_script.py").write_text(SCRIPT)
    sys.path.insert(0, str(tmp_path))
    import train_script
    yield train_script
    sys.path.remove(str(tmp_path))
    sys.modules.pop("train_script", None)


def _wait_for(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False


def _temporaries(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".ckpt.pt.") and p.name.endswith(".tmp")]


def _kill_one_run(tmp_path, path, resume: bool, delay: float | None) -> bool:
    """Start the script, kill it with SIGKILL after ``delay`` s of checkpointing (None: as soon as a
    checkpoint write has begun); True when the kill left a half-written temporary file (it landed
    during a write)."""
    command = [sys.executable, str(tmp_path / "train_script.py"), str(path)] + (["resume"] if resume else [])
    before = path.stat().st_mtime_ns if path.exists() else None
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert _wait_for(lambda: (path.exists() and path.stat().st_mtime_ns != before) or process.poll() is not None), \
            "no checkpoint appeared"
        assert process.poll() is None, process.stderr.read().decode()
        if delay is None:
            assert _wait_for(lambda: _temporaries(tmp_path), timeout=30), "no checkpoint write began"
        else:
            time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    return bool(_temporaries(tmp_path))


def _fingerprint(value):
    """``value`` with every tensor replaced by its dtype, shape and SHA-256 digest: all that a bit-for-bit
    comparison needs, without keeping copies of the runs' 32 MB buffers in memory."""
    if isinstance(value, dict):
        return {k: _fingerprint(v) for k, v in value.items()}
    if torch.is_tensor(value):
        return value.dtype, tuple(value.shape), hashlib.sha256(value.detach().contiguous().numpy()).hexdigest()
    return value


def _state_of(result, batches):
    return _fingerprint({"model": result.model.state_dict(), "optimizer": result.optimizer.state_dict()["state"],
                         "ema": result.ema_model.state_dict(), "rng": torch.get_rng_state(),
                         "batches": batches.state_dict()["generator"], "history": list(result.history)})


def _differences(a: dict, b: dict) -> list:
    """Which parts of two finished runs differ (bit for bit)."""
    def same(x, y):
        if isinstance(x, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        return x == y
    return [name for name in a if not same(a[name], b[name])]


def _unbroken(script):
    model, loss, batches = script.setup()
    result = training.train(model, loss, batches, steps=STEPS, **script.OPTIONS)
    return _state_of(result, batches)


def _resumed(script, path):
    model, loss, batches = script.setup()
    torch.manual_seed(12345)  # whatever the state now: resume must restore the saved one
    result = training.train(model, loss, batches, steps=STEPS, checkpoint_path=path, resume=True, **script.OPTIONS)
    return result, _state_of(result, batches)


def test_sigkill_mid_run_then_resume_is_bit_identical(tmp_path, script):
    path = tmp_path / "ckpt.pt"
    rng = random.Random(0)
    landed_during_write = False
    for kills in range(1, 13):  # at random moments of the step/write cycle, then, if need be, during a write
        delay = rng.uniform(0.0, 0.3) if kills <= 3 else None
        landed_during_write |= _kill_one_run(tmp_path, path, resume=kills > 1, delay=delay)
        saved_step = int(checkpoints.load(path)["step"])  # readable after every kill: never a corrupt file
        assert saved_step < STEPS - 2, "the script ran past the comparison point; lower the delays"
        if landed_during_write and kills >= 3:
            break
    assert landed_during_write, f"none of {kills} kills landed during a checkpoint write"

    result, resumed = _resumed(script, path)
    assert 1 <= result.resumed_from_step < STEPS and result.steps == STEPS
    del result   # its model and EMA (64 MB of ballast) need not live beside the unbroken run's
    assert _differences(resumed, _unbroken(script)) == []
    assert not _temporaries(tmp_path)  # the killed write's temporary file is gone after the next save


@pytest.mark.parametrize("left_out", ["model", "optimizer", "ema", "rng_cpu", "batches"])
def test_the_comparison_fails_when_resume_leaves_one_part_out(tmp_path, script, monkeypatch, left_out):
    """Each mutation of resume (one part not restored: the checkpoint hands back a fresh one) is
    caught by the comparison that the kill test makes."""
    path = tmp_path / "ckpt.pt"
    model, loss, batches = script.setup()
    training.train(model, loss, batches, steps=STEPS // 2, checkpoint_path=path, **script.OPTIONS)
    load = checkpoints.load

    def load_without_one_part(p):
        saved = load(p)
        fresh_model, _, _ = script.setup()
        fresh = {"model": fresh_model.state_dict(), "ema": None, "rng_cpu": torch.get_rng_state(), "batches": None,
                 "optimizer": torch.optim.AdamW(fresh_model.parameters()).state_dict()}
        return {**saved, left_out: fresh[left_out]}

    monkeypatch.setattr(checkpoints, "load", load_without_one_part)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", training.ResumeWarning)  # "EMA starts now", for the EMA mutation
        _, resumed = _resumed(script, path)
    assert _differences(resumed, _unbroken(script)), f"leaving out {left_out} went unnoticed"
