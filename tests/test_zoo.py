"""The zoo (chapters 5-6): load-or-train of chapter 5's U-Net, keyed by recipe and data, never the wrong model."""
import shutil
from dataclasses import replace

import pytest
import torch

import ddpm_lessons as dl
from ddpm_lessons import zoo
from ddpm_lessons.models import UNetConfig

TINY = zoo.Recipe(config=UNetConfig(dim=8, dim_mults=(1, 2), attn_heads=1, attn_dim_head=8, groups=4), T=5,
                  batch_size=4, max_steps=3, train_seconds=60.0, amp=False, channels_last=False)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DDPM_LESSONS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def images(seed=0, n=16):
    return torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def load(recipe=TINY, data=None, **kwargs):
    return zoo.unet_fashion_mnist(recipe, device="cpu", progress=False, images=images() if data is None else data,
                                  **kwargs)


def same_weights(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_train_then_load(capsys, cache):
    first = load()
    out = capsys.readouterr().out
    assert "Training: the cache holds no model of this recipe" in out and "trained now" in first.source
    assert "up to 60 s of training (at most 3 steps of 4 images)" in out
    assert first.steps == 3 and len(first.history) == 3 and first.images == 12 and not first.model.training
    assert first.checkpoint_path == zoo.checkpoint_path(TINY, images()) and first.checkpoint_path.parent == cache
    assert isinstance(first.diffusion, dl.Diffusion) and first.diffusion.T == 5
    second = load()
    out = capsys.readouterr().out
    assert "loaded from the cache" in second.source and "Training" not in out and "loaded from the cache" in out
    assert same_weights(first.model, second.model) and second.steps == 3 and second.history == first.history
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([0, 4])
    assert torch.equal(first.model(x, t), second.model(x, t))
    assert str(cache) not in out                                    # no machine paths printed


def test_the_same_recipe_trains_the_same_model():
    first = load()
    first.checkpoint_path.unlink()
    assert same_weights(first.model, load().model)


def test_a_changed_recipe_gets_its_own_file_and_a_copied_file_is_refused(capsys):
    first = load()
    other = replace(TINY, lr=5e-4)
    assert zoo.checkpoint_path(other, images()) != first.checkpoint_path
    shutil.copy(first.checkpoint_path, zoo.checkpoint_path(other, images()))   # the wrong model under the right name
    capsys.readouterr()
    retrained = load(other)
    out = capsys.readouterr().out
    assert "it was trained with a different recipe (lr 0.002 there, 0.0005 now); training afresh" in out
    assert "trained now" in retrained.source
    assert dl.checkpoints.load(retrained.checkpoint_path)["metadata"]["recipe"]["lr"] == 5e-4   # replaced
    assert "loaded from the cache" in load(other).source


def test_a_changed_unet_config_is_refused(capsys):
    first = load()
    other = replace(TINY, config=replace(TINY.config, dim=16))
    shutil.copy(first.checkpoint_path, zoo.checkpoint_path(other, images()))
    capsys.readouterr()
    load(other)
    assert "different recipe (config" in capsys.readouterr().out


def test_other_training_images_are_refused(capsys):
    first = load(data=images(seed=0))
    path = zoo.checkpoint_path(TINY, images(seed=1))
    assert path != first.checkpoint_path
    shutil.copy(first.checkpoint_path, path)
    capsys.readouterr()
    retrained = load(data=images(seed=1))
    out = capsys.readouterr().out
    assert "it was trained on other images" in out and "training afresh" in out and "trained now" in retrained.source
    assert dl.checkpoints.load(path)["metadata"]["data"]["fingerprint"] == dl.data.fingerprint(images(seed=1))


def test_a_corrupt_file_is_retrained(capsys, cache):
    first = load()
    data = bytearray(first.checkpoint_path.read_bytes())
    data[-100] ^= 0xFF                                               # one flipped byte
    first.checkpoint_path.write_bytes(bytes(data))
    capsys.readouterr()
    again = load()
    out = capsys.readouterr().out
    assert "the cached file is unusable" in out and "corrupt" in out and "training afresh" in out
    assert str(cache) not in out and "trained now" in again.source
    first.checkpoint_path.write_bytes(b"not a checkpoint")
    load()
    assert "not a ddpm_lessons checkpoint" in capsys.readouterr().out


def test_a_chapter5_style_run_is_loaded_and_an_unfinished_one_resumed(capsys):
    """Chapter 5 trains with dl.training.train and the zoo's path and metadata (here: 1 step of 3, then all 3)."""
    recipe, data = TINY, images()
    diffusion = recipe.diffusion()
    torch.manual_seed(recipe.seed)
    model = recipe.model()
    dl.training.train(model, lambda m, x: diffusion.loss(m, x), recipe.batches(data, "cpu"), steps=1, progress=False,
                      checkpoint_path=zoo.checkpoint_path(recipe, data), metadata=zoo.metadata(recipe, data),
                      **recipe.train_options())
    resumed = load()
    out = capsys.readouterr().out
    assert "the cached run stopped at step 1" in out and "resuming it" in out
    assert resumed.steps == 3 and "resumed and finished now" in resumed.source
    assert "loaded from the cache" in load().source
    assert same_weights(resumed.model, load().model)


def test_the_caller_random_state_is_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load()      # trains
    load()      # loads
    assert torch.equal(torch.rand(3), expected)


def test_recipe_checks_and_quick_recipe():
    with pytest.raises(ValueError, match="T must be a positive int"):
        zoo.Recipe(T=0)
    with pytest.raises(ValueError, match="schedule must be one of"):
        zoo.Recipe(schedule="cosin")
    with pytest.raises(ValueError, match="config must be a UNetConfig"):
        zoo.Recipe(config={"dim": 16})
    with pytest.raises(ValueError, match=r"ema_decay must be a number in \(0, 1\)"):
        zoo.Recipe(ema_decay=1.0)
    with pytest.raises(ValueError, match="recipe must be a dl.zoo.Recipe"):
        zoo.checkpoint_path("chapter 5")
    with pytest.raises(ValueError, match="images must be the uint8 training images"):
        zoo.metadata(TINY, torch.rand(4, 1, 28, 28))
    quick = zoo.fashion_mnist_recipe()                             # the tests run in quick mode
    assert quick.T == 10 and quick.max_steps == 6 and quick.config == UNetConfig()
    assert zoo.Recipe().T == 100 and zoo.Recipe().train_seconds == 30 * 60    # chapter 5's full run
    meta = zoo.metadata(quick)                                      # FashionMNIST's training split by default
    assert meta["data"]["images"] == len(dl.data.fashion_mnist_tensors()[0]) and meta["kind"] == zoo.KIND
    assert torch.equal(meta["betas"], quick.diffusion().float64["betas"])
