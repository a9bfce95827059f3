"""FID (chapter 5): the Fréchet distance formula, features of the cached classifier, and its cache."""
import math

import pytest
import torch

from ddpm_lessons import fid as fid_module
from ddpm_lessons.models.classifier import FashionClassifier


def test_frechet_distance_zero_for_identical_and_symmetric():
    torch.manual_seed(0)
    a = torch.randn(50, 4, dtype=torch.float64)
    mu, cov = fid_module.feature_statistics(a)
    assert fid_module.frechet_distance(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-8)
    mu2, cov2 = fid_module.feature_statistics(torch.randn(40, 4, dtype=torch.float64) * 2 + 1)
    assert fid_module.frechet_distance(mu, cov, mu2, cov2) == pytest.approx(
        fid_module.frechet_distance(mu2, cov2, mu, cov), rel=1e-8)


def test_frechet_distance_closed_forms():
    # 1-D: (μ1 − μ2)² + (σ1 − σ2)²
    assert fid_module.frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]),
                                    torch.tensor([-2.0]), torch.tensor([[9.0]])) == pytest.approx(9 + 1)
    # commuting (diagonal) covariances: Σ (σ1_i − σ2_i)²
    d1, d2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    assert fid_module.frechet_distance(torch.zeros(3), torch.diag(d1), torch.zeros(3), torch.diag(d2)) == \
        pytest.approx(((d1.sqrt() - d2.sqrt()) ** 2).sum().item())
    # a rotation of both Gaussians does not change the distance
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    c1 = rotation @ torch.diag(d1).double() @ rotation.T
    c2 = rotation @ torch.diag(d2).double() @ rotation.T
    assert fid_module.frechet_distance(torch.zeros(3), c1, torch.zeros(3), c2) == \
        pytest.approx(((d1.sqrt() - d2.sqrt()) ** 2).sum().item(), rel=1e-6)


def test_frechet_distance_matches_general_matrix_square_root():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(5, 5, generator=g, dtype=torch.float64), torch.randn(5, 5, generator=g, dtype=torch.float64)
    c1, c2 = a @ a.T + 0.1 * torch.eye(5), b @ b.T + 0.1 * torch.eye(5)
    mu1, mu2 = torch.randn(5, generator=g), torch.randn(5, generator=g)
    # tr((Σ1 Σ2)^½) from the eigenvalues of Σ1 Σ2 (real and positive: it is similar to a PSD matrix)
    cross = torch.linalg.eigvals(c1 @ c2).real.clamp(min=0).sqrt().sum()
    expected = (mu1 - mu2).double().pow(2).sum() + c1.trace() + c2.trace() - 2 * cross
    assert fid_module.frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected.item(), rel=1e-6)


def test_frechet_distance_and_statistics_errors():
    with pytest.raises(ValueError, match="covariances"):
        fid_module.frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match="N >= 2"):
        fid_module.feature_statistics(torch.zeros(1, 3))


@pytest.fixture(scope="module")
def untrained_net():
    torch.manual_seed(0)
    return FashionClassifier().eval()


def test_fid_on_images(untrained_net):
    g = torch.Generator().manual_seed(0)
    real = torch.rand(80, 1, 28, 28, generator=g) * 2 - 1
    assert fid_module.fid(real, real, untrained_net) == pytest.approx(0.0, abs=1e-6)
    same_kind = torch.rand(80, 1, 28, 28, generator=g) * 2 - 1
    other = torch.full((80, 1, 28, 28), -1.0) + 0.1 * torch.rand(80, 1, 28, 28, generator=g)
    assert fid_module.fid(same_kind, real, untrained_net) < fid_module.fid(other, real, untrained_net)
    as_bytes = ((real + 1) * 127.5).round().to(torch.uint8)
    assert fid_module.fid(as_bytes, real, untrained_net) == pytest.approx(0.0, abs=1e-3)


def test_fid_bad_inputs(untrained_net):
    with pytest.raises(ValueError, match="images"):
        fid_module.fid(torch.zeros(10, 28, 28), torch.zeros(10, 1, 28, 28), untrained_net)
    with pytest.raises(ValueError, match="N >= 2"):
        fid_module.fid(torch.zeros(1, 1, 28, 28), torch.zeros(10, 1, 28, 28), untrained_net)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        untrained_net(torch.zeros(2, 3, 28, 28))


def test_fid_classifier_trains_caches_and_reloads(tmp_path, capsys):
    net = fid_module.fid_classifier(cache_dir=tmp_path, epochs=2)
    printed = capsys.readouterr().out
    assert "trained on 800 images" in printed and "test accuracy" in printed
    assert str(tmp_path) not in printed  # the reader needs no path of the machine that ran it
    assert 0.3 < net.test_accuracy <= 1.0  # well above chance (0.1) after two epochs
    cached = list(tmp_path.glob("fid_classifier_800_*_2epochs.pt"))
    assert len(cached) == 1
    again = fid_module.fid_classifier(cache_dir=tmp_path, epochs=2)
    assert "loaded from" in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    assert not any(p.requires_grad for p in again.parameters())

    cached[0].write_bytes(cached[0].read_bytes()[:100])  # truncated: warned about and retrained
    with pytest.warns(UserWarning, match="unreadable"):
        retrained = fid_module.fid_classifier(cache_dir=tmp_path, epochs=2, verbose=False)
    assert retrained.test_accuracy == pytest.approx(net.test_accuracy)  # seeded: the same network


def test_real_vs_real_fid_is_small_on_the_trained_features(tmp_path):
    import ddpm_lessons as dl

    net = fid_module.fid_classifier(cache_dir=tmp_path, epochs=2, verbose=False)
    train, _ = dl.data.fashion_mnist_tensors(train=True)
    test, _ = dl.data.fashion_mnist_tensors(train=False)
    noise = torch.rand(len(test), 1, 28, 28) * 2 - 1
    baseline, bad = fid_module.fid(test, train, net), fid_module.fid(noise, train, net)
    assert math.isfinite(baseline) and baseline < 0.5 * bad


def test_fid_classifier_on_a_full_disk_keeps_the_trained_network(tmp_path, monkeypatch, capsys):
    from ddpm_lessons import checkpoints

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints, "write", no_space)
    net = fid_module.fid_classifier(cache_dir=tmp_path, epochs=1)
    assert "not cached: No space left on device" in capsys.readouterr().out and net.test_accuracy > 0.1
