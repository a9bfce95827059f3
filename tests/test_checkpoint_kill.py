"""A training run killed with SIGKILL (no cleanup can run) resumes from its last checkpoint, and the
kill never leaves a corrupt checkpoint behind (issue 6: "test the kill")."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from ddpm_lessons import checkpoints, training

SCRIPT = textwrap.dedent("""
    import sys, time
    import torch
    from torch import nn
    from ddpm_lessons import training

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 1)
            self.register_buffer("ballast", torch.zeros(2_000_000))  # 8 MB: each write takes a moment

        def forward(self, x):
            return self.linear(x)

    def model_and_batches():
        torch.manual_seed(0)
        data = torch.randn(256, 4)
        return Model(), training.TensorBatches(data, batch_size=16, device="cpu")

    def loss(m, b):
        return (m(b[:, :3]) - b[:, 3:]).pow(2).mean()

    if __name__ == "__main__":
        model, batches = model_and_batches()
        # a checkpoint after every step; the callback slows the loop so that the parent can kill it
        training.train(model, loss, batches, steps=10**6, lr=0.01, ema_decay=0.9, progress=False,
                       checkpoint_path=sys.argv[1], checkpoint_every_s=0.0,
                       callback=lambda step, m, r: time.sleep(0.01), callback_every=1)
""")


def _wait_for(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("delay", [0.0, 0.37])
def test_sigkill_mid_run_then_resume(tmp_path, delay):
    script, path = tmp_path / "train_script.py", tmp_path / "ckpt.pt"
    script.write_text(SCRIPT)
    process = subprocess.Popen([sys.executable, str(script), str(path)], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert _wait_for(lambda: path.exists() or process.poll() is not None), "no checkpoint appeared"
        assert process.poll() is None, process.stderr.read().decode()
        time.sleep(delay)  # kill at a different moment of the write/step cycle
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL

    saved = checkpoints.load(path)  # readable: never a corrupt file
    step = int(saved["step"])
    assert step >= 1 and len(saved["history"]) == step

    sys.path.insert(0, str(tmp_path))
    try:
        import train_script
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("train_script", None)
    model, batches = train_script.model_and_batches()
    result = training.train(model, train_script.loss, batches, steps=step + 5, lr=0.01, ema_decay=0.9,
                            progress=False, checkpoint_path=path, resume=True)
    assert result.resumed_from_step == step and result.steps == step + 5
    assert result.history[:step] == pytest.approx(saved["history"].tolist())
    assert int(checkpoints.load(path)["step"]) == step + 5
    # a temporary file that the kill may have left mid-write is gone after the next save
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".py" and p.name != "__pycache__") == ["ckpt.pt"]
