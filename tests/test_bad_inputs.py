"""A careless student's mistakes, each answered by a clear error (or, where the input can be
legitimate, a warning) that says what was expected and how to fix it, in the book's words.

One table row per mistake of the issue "a student's mistake gets a teaching error, never a silent
wrong number"; the message words checked are the part that teaches.
"""

import pytest
import torch

import ddpm_lessons as dl
from ddpm_lessons import _checks, schedules
from ddpm_lessons.diffusion import Diffusion, ScheduleWarning
from ddpm_lessons.models import AmountConditionedUNet, BasicUNet, NoiseMLP, UNet, UNetConfig

D = Diffusion(schedules.cosine_beta_schedule(20))
IMAGES = torch.rand(4, 1, 28, 28) * 2 - 1
IMAGES_255 = (torch.rand(4, 1, 28, 28) * 255).round()
IMAGES_01 = torch.rand(4, 1, 28, 28)
POINTS = torch.randn(8, 2)
NAN_IMAGES = IMAGES.clone().index_put_((torch.tensor([0]),), torch.tensor(float("nan")))
SMALL_UNET = dict(dim=8, dim_mults=(1, 2), attn_heads=1, attn_dim_head=8)


def unet(**changes):
    torch.manual_seed(0)
    return UNet(UNetConfig(**{**SMALL_UNET, **changes}))


def mlp(T=20):
    torch.manual_seed(0)
    return NoiseMLP(T, hidden=16)


def _under_autocast(call):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return call()


def eps_model(x, t):
    return torch.zeros_like(x)


ERRORS = {
    # data range: the top cause of "my samples are noise"
    "q_sample on images in 0…255": (lambda: D.q_sample(IMAGES_255, 3), r"look like images in 0…255.*to_model_range"),
    "loss on images in 0…255": (lambda: D.loss(eps_model, IMAGES_255), r"0…255"),
    "loss on uint8 images": (lambda: D.loss(eps_model, IMAGES_255.to(torch.uint8)), r"holds integers.*to_model_range"),
    "loss on int64 images": (lambda: D.loss(eps_model, IMAGES_255.long()), r"holds integers"),
    "naive loss on 0…255": (lambda: dl.naive.loss(BasicUNet(), IMAGES_255), r"naive.loss\(\).*0…255"),
    "corrupt on 0…255": (lambda: dl.corruption.corrupt(IMAGES_255, 0.5), r"corrupt\(\).*0…255"),
    "TensorBatches of int64 images": (lambda: dl.training.TensorBatches(IMAGES_255.long(), 2, device="cpu"),
                                      r"uint8 images .* or floats"),
    "TensorBatches of float 0…255": (lambda: dl.training.TensorBatches(IMAGES_255, 2, device="cpu"), r"0…255"),
    "fid on 0…255 floats": (lambda: dl.fid.fid(IMAGES_255, IMAGES, dl.models.FashionClassifier()), r"0…255"),
    "image grid of 0…255 floats": (lambda: dl.viz.image_grid(IMAGES_255), r"0…255"),
    "to_model_range twice": (lambda: dl.data.to_model_range(dl.data.to_model_range(IMAGES_01)), r"applied twice"),
    "to_model_range on float 0…255": (lambda: dl.data.to_model_range(IMAGES_255), r"uint8|divide by 255"),
    "to_image_range on 0…255": (lambda: dl.data.to_image_range(IMAGES_255), r"0…255 already"),
    # out of range
    "NoiseMLP with t = T": (lambda: mlp(20)(POINTS, torch.full((8,), 20)), r"t must lie in 0 … T-1 = 0 … 19"),
    "NoiseMLP with t < 0": (lambda: mlp(20)(POINTS, torch.full((8,), -1)), r"t must lie in 0 … T-1"),
    "NoiseMLP with fractional t": (lambda: mlp(20)(POINTS, torch.full((8,), 0.5)), r"integer steps"),
    "UNet with t < 0": (lambda: unet()(IMAGES, torch.tensor([0, 1, 2, -1])), r"t must lie in steps >= 0"),
    "UNet with float t": (lambda: unet()(IMAGES, torch.tensor([0.5, 1, 2, 3])), r"integer steps"),
    "UNet built for T = 10 with t = 15": (lambda: unet(T=10)(IMAGES, torch.full((4,), 15)), r"0 … 9"),
    "oracle with t = -1": (lambda: dl.oracle.GaussianMixture([1.0], [[0.0, 0.0]], [1.0]).eps_model(D)(POINTS, -1),
                           r"t must lie in 0 … T-1"),
    "oracle with t = 0.5": (lambda: dl.oracle.GaussianMixture([1.0], [[0.0, 0.0]], [1.0]).eps_model(D)(
        POINTS, torch.full((8,), 0.5)), r"integer steps"),
    "network for another T": (lambda: D.sample(mlp(50), (8, 2)), r"built for T = 50 steps, this Diffusion has T = 20"),
    "amount above 1": (lambda: AmountConditionedUNet()(IMAGES, 1.5), r"amount must lie in \[0, 1\]"),
    "amount below 0": (lambda: AmountConditionedUNet()(IMAGES, torch.tensor([0.1, -0.2, 0.3, 0.4])),
                       r"amount must lie in \[0, 1\]"),
    # schedules
    "reversed beta range": (lambda: schedules.linear_beta_schedule(100, 0.02, 1e-4), r"beta_start .* smaller"),
    "beta = 1": (lambda: schedules.linear_beta_schedule(100, 1e-4, 1.0), r"beta_end must be a number in \(0, 1\)"),
    "NaN beta": (lambda: schedules.linear_beta_schedule(100, float("nan")), r"beta_start must be"),
    "infinite beta": (lambda: schedules.quadratic_beta_schedule(100, 1e-4, float("inf")), r"beta_end must be"),
    "schedule function uncalled": (lambda: Diffusion(schedules.linear_beta_schedule), r"call it.*linear_beta_schedule\(1000\)"),
    "schedule by name": (lambda: Diffusion("cosine"), r"SCHEDULES\['cosine'\]"),
    # shapes and sizes
    "fractional sample size": (lambda: D.sample(eps_model, (16.7, 2)), r"tuple of positive ints"),
    "empty batch in the loss": (lambda: D.loss(eps_model, torch.zeros(0, 2)), r"empty batch"),
    "FID 32x32 against 28x28": (lambda: dl.fid.fid(torch.zeros(4, 1, 32, 32), IMAGES, dl.models.FashionClassifier()),
                                r"same size"),
    "non-PSD covariance": (lambda: dl.fid.frechet_distance(torch.zeros(2), torch.tensor([[1.0, 2.0], [2.0, 1.0]]),
                                                           torch.zeros(2), torch.eye(2)), r"positive semi-definite"),
    # NaN in
    "NaN images into q_sample": (lambda: D.q_sample(NAN_IMAGES, 2), r"x0 contains 784 NaN or infinite value\(s\) \(of 3136\)"),
    "NaN points into the loss": (lambda: D.loss(eps_model, POINTS.index_put((torch.tensor([0]),), torch.tensor(float("nan")))),
                                 r"x0 contains"),
    "NaN x_t into p_sample": (lambda: D.p_sample(eps_model, torch.full((2, 2), float("nan")), 3), r"x_t contains"),
    "NaN into energy distance": (lambda: dl.metrics.energy_distance(torch.full((4, 2), float("nan")), POINTS),
                                 r"contains .* NaN"),
    "NaN into the UNet": (lambda: unet()(NAN_IMAGES, torch.zeros(4, dtype=torch.long)), r"x contains"),
    "a model that returns NaN": (lambda: D.sample(lambda x, t: x * float("nan"), (4, 2)), r"returned NaN"),
    # dtypes, models, generators
    "uint8 images into the UNet": (lambda: unet()(IMAGES_255.to(torch.uint8), torch.zeros(4, dtype=torch.long)),
                                   r"dtype torch.uint8.*to_model_range"),
    "float64 images into the UNet": (lambda: unet()(IMAGES.double(), torch.zeros(4, dtype=torch.long)),
                                     r"dtype torch.float64 but the network's weights are torch.float32"),
    "float16 points into NoiseMLP": (lambda: mlp()(POINTS.half(), torch.zeros(8, dtype=torch.long)), r"float16"),
    "float64 images into the UNet under bf16 autocast": (
        lambda: _under_autocast(lambda: unet()(IMAGES.double(), torch.zeros(4, dtype=torch.long))),
        r"dtype torch.float64 but the network's weights are torch.float32"),
    "training on float64 images (bf16 autocast where the CPU has it)": (
        lambda: dl.training.train(unet(), D.loss, dl.training.TensorBatches(IMAGES.double(), 2, device="cpu"), steps=2,
                                  progress=False),
        r"float64 but the network's weights are torch.float32"),
    "a float16 UNet sampled on the CPU": (lambda: D.sample(unet().half(), (2, 1, 28, 28), generator=0),
                                          r"float16 weights do not run on the CPU.*keep the network in float32"),
    "FID statistics of features with NaN": (
        lambda: dl.fid.feature_statistics(torch.tensor([[0.0, 1.0], [float("nan"), 2.0], [1.0, 0.5]])),
        r"feature_statistics\(\): features .*NaN"),
    "a model that takes only x": (lambda: D.sample(BasicUNet(), (2, 1, 28, 28)), r"BasicUNet takes only x"),
    "a class instead of an instance": (lambda: D.sample(NoiseMLP, (8, 2)), r"the class NoiseMLP; pass the trained network"),
    "a string as generator": (lambda: D.sample(eps_model, (8, 2), generator="0"), r"torch.Generator or an int seed"),
    # found by the sweep of bad inputs
    "a device this machine lacks": (lambda: D.sample(eps_model, (8, 2), device="gpu"), r"device must be one of 'cpu'"),
    "CUDA without a GPU": (lambda: dl.training.TensorBatches(POINTS, 2, device="cuda" if not torch.cuda.is_available()
                                                              else "mps"), r"this machine has no"),
    "a noise predictor in the naive sampler": (lambda: dl.naive.sample(unet(), (2, 1, 28, 28), steps=2),
                                               r"called as model\(x\).*Diffusion.sample"),
    "a class in the naive sampler": (lambda: dl.naive.sample(BasicUNet, (2, 1, 28, 28)), r"the class BasicUNet"),
    "a naive model that returns NaN": (lambda: dl.naive.denoise(lambda x: x * float("nan"), IMAGES, 2), r"prediction contains"),
    "a loss_fn of one argument": (lambda: dl.training.train(mlp(), lambda m: m, dl.training.TensorBatches(POINTS, 4, device="cpu"),
                                                            steps=1, progress=False), r"loss_fn\(model, batch\).*lambda m, x"),
    "a loss of another model": (lambda: dl.training.train(mlp(), lambda m, x: D.loss(mlp(), x),
                                                          dl.training.TensorBatches(POINTS, 4, device="cpu"), steps=1,
                                                          progress=False), r"does not depend on the model being trained"),
    "metadata that is not a dict": (lambda: dl.training.train(mlp(), lambda m, x: D.loss(m, x),
                                                              dl.training.TensorBatches(POINTS, 4, device="cpu"), steps=1,
                                                              progress=False, metadata="unet"), r"metadata must be a dict"),
    "a checkpoint holding a function": (lambda: dl.checkpoints.serialize({"f": lambda: 0}), r"tensors and plain values"),
    "sigmoid schedule with NaN steepness": (lambda: schedules.sigmoid_beta_schedule(10, steepness=float("nan")), r"steepness"),
    "sigmoid schedule reversed": (lambda: schedules.sigmoid_beta_schedule(10, steepness=-6), r"steepness"),
    "log SNR of a beta of 1": (lambda: schedules.log_snr(torch.tensor([0.1, 1.0])), r"open interval \(0, 1\)"),
    "a damaged label file": (lambda: None, None),
    "a grid with 0 images per row": (lambda: dl.viz.image_grid(IMAGES, nrow=0), r"nrow"),
    "labels that do not match the images": (lambda: dl.viz.show_images(IMAGES, labels=["a", "b"]), r"one entry per image"),
    "a batch as one GIF frame": (lambda: dl.viz.gif_bytes([IMAGES]), r"one image.*grid_frames"),
    "an empty frame": (lambda: dl.viz.gif_bytes([torch.zeros(1, 0, 8)]), r"one image"),
    "a GIF scaled by 2.5": (lambda: dl.viz.gif_bytes([IMAGES[0]], scale=2.5), r"scale"),
    "no states to choose from": (lambda: dl.viz.choose_frames([], 2), r"got no states"),
    "None as a sample set": (lambda: dl.metrics.energy_distance(None, POINTS), r"expected a sample set"),
    "a metric by name": (lambda: dl.metrics.data_baseline("mmd", dl.data.butterfly, 10), r"the function itself"),
    "smoothing over 0 steps": (lambda: dl.training.smoothed([1.0, 2.0], window=0), r"window"),
    "a NaN loss history": (lambda: dl.training.smoothed([1.0, float("nan")]), r"diverged"),
    "counting a class's parameters": (lambda: dl.utils.count_parameters(NoiseMLP), r"the class"),
    "FID with a class as classifier": (lambda: dl.fid.fid(IMAGES, IMAGES, dl.models.FashionClassifier), r"fid_classifier"),
    "a data root that is a number": (lambda: dl.data.fashion_mnist(root=123), r"root must be a folder"),
    "describe() of a tensor": (lambda: dl.data.describe(IMAGES), r"expected a FashionMNIST dataset"),
    "bool images into q_sample": (lambda: D.q_sample(IMAGES > 0, 3), r"real numbers"),
    "NaN steps into the embedding": (lambda: dl.models.embeddings.sinusoidal_embedding(torch.tensor([float("nan")]), 8),
                                     r"t contains"),
}
del ERRORS["a damaged label file"]  # in tests/test_data.py, with a copy of the data


@pytest.mark.parametrize("name", list(ERRORS))
def test_a_mistake_gets_a_clear_error(name):
    call, words = ERRORS[name]
    with pytest.raises((ValueError, FloatingPointError), match=words):
        call()


WARNINGS = {
    "q_sample on images in [0, 1]": (lambda: D.q_sample(IMAGES_01, 3), _checks.DataRangeWarning, r"\[0, 1\].*to_model_range"),
    "show_images of [0, 1] images": (lambda: dl.viz.image_grid(IMAGES_01), _checks.DataRangeWarning, r"expect images in \[-1, 1\]"),
    "a frame in [0, 1]": (lambda: dl.viz.gif_bytes([IMAGES_01[0]]), _checks.DataRangeWarning, r"\[0, 1\]"),
    "to_image_range twice": (lambda: dl.data.to_image_range(dl.data.to_image_range(IMAGES)), _checks.DataRangeWarning,
                             r"applied twice"),
    "a diverged loss curve": (lambda: dl.viz.plot_loss([1.0, 0.5, float("nan")]), UserWarning, r"not finite from step 2"),
    "T = 10 with the paper's betas": (lambda: Diffusion(schedules.linear_beta_schedule(10)), ScheduleWarning,
                                      r"ᾱ_T = 0.9.*not pure noise.*1000 / T"),
}


@pytest.mark.parametrize("name", list(WARNINGS))
def test_a_legitimate_but_suspicious_input_gets_a_warning(name):
    call, category, words = WARNINGS[name]
    with pytest.warns(category, match=words):
        call()


def test_an_int_generator_is_a_seed():
    one = D.sample(eps_model, (8, 2), generator=3)
    assert torch.equal(one, D.sample(eps_model, (8, 2), generator=torch.Generator().manual_seed(3)))
    assert torch.equal(D.q_sample(POINTS, 2, generator=5), D.q_sample(POINTS, 2, generator=5))


def test_uint8_images_are_drawn_as_images():
    grid = dl.viz.image_grid(IMAGES_255.to(torch.uint8))
    assert 0 <= grid.min() and grid.max() <= 1 and grid.std() > 0.1


def test_p_sample_moves_x_t_to_the_model():
    model = mlp(20)
    x = D.p_sample(model, POINTS, 3)
    assert x.device == next(model.parameters()).device and torch.isfinite(x).all()


def test_book_warnings_show_no_file_paths():
    import warnings

    text = warnings.formatwarning("x_T is not noise", ScheduleWarning, "/home/someone/ddpm_lessons/diffusion.py", 90)
    assert text == "ScheduleWarning: x_T is not noise\n"
    other = warnings.formatwarning("other", UserWarning, "/somewhere/else.py", 3)
    assert "/somewhere/else.py" in other  # everybody else's warnings as usual
