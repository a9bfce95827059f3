"""The diagrams draw, fit the column, and carry the book's labels as text (chapters 2 and 3)."""
import matplotlib
import matplotlib.pyplot as plt
import pytest
from matplotlib.patches import FancyArrowPatch
from matplotlib.text import Text

from ddpm_lessons import diagrams, viz

matplotlib.use("Agg")


@pytest.fixture
def chain():
    viz.use_book_style()
    fig = diagrams.diffusion_chain()
    fig.canvas.draw()
    yield fig
    plt.close(fig)


def texts(fig) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_text()]


def test_the_chain_has_the_states_and_both_kernels_as_text(chain):
    labels = [t.get_text() for t in texts(chain)]
    for label in (r"$x_0$", r"$x_1$", r"$x_{t-1}$", r"$x_t$", r"$x_T$",
                  r"$q(x_t \mid x_{t-1})$", r"$p_\theta(x_{t-1} \mid x_t)$", "data", "noise"):
        assert label in labels, f"{label} missing from {labels}"
    # the data on the left, the noise on the right
    position = {t.get_text(): t.get_position()[0] for t in texts(chain)}
    assert position[r"$x_0$"] < position[r"$x_{t-1}$"] < position[r"$x_t$"] < position[r"$x_T$"]


def test_one_arrow_each_way_between_neighbours(chain):
    arrows = [p for p in chain.axes[0].patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == 2 * (len(diagrams.NODES) - 1)
    dashed = [a for a in arrows if a.get_linestyle() in ("--", "dashed")]
    assert len(dashed) == len(diagrams.NODES) - 1                # the fixed forward steps


def test_the_chain_fits_the_column_with_legible_text(chain):
    width, height = chain.get_size_inches()
    assert width <= viz.WIDTH and height < width
    renderer = chain.canvas.get_renderer()
    box = chain.bbox
    for text in texts(chain):
        assert text.get_fontsize() >= 10, text.get_text()
        extent = text.get_window_extent(renderer)
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1 and box.y0 <= extent.y0 and extent.y1 <= box.y1, \
            f"{text.get_text()} is cut off"


def test_narrower_chain_and_bad_width():
    fig = diagrams.diffusion_chain(width=3.5)
    assert fig.get_size_inches()[0] == 3.5
    plt.close(fig)
    for bad in (0, 2.0, 2 * viz.WIDTH, "5"):
        with pytest.raises(ValueError, match=rf"diffusion_chain\(\): width must be a number in \[3, {viz.WIDTH:g}\]"):
            diagrams.diffusion_chain(width=bad)


def test_unet_diagram_shows_the_traced_shapes():
    import matplotlib.pyplot as plt

    import ddpm_lessons as dl

    model = dl.models.UNet(dl.models.UNetConfig(dim=8, dim_mults=(1, 2, 4), attn_heads=1, attn_dim_head=8))
    shapes = dl.diagrams.unet_shapes(model, 32)
    assert [(level["size"], level["channels"]) for level in shapes["levels"]] == [(32, 8), (16, 16), (8, 32)]
    assert [(level["size"], level["channels"]) for level in shapes["ups"]] == [(32, 8), (16, 8), (8, 16)]
    assert shapes["mid"] == {"channels": 32, "size": 8} and shapes["time_dim"] == 32
    fig = dl.diagrams.unet(model, 32)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "2 ResNet + lin. attn\n16×16, 16 ch" in texts and "ResNet, attention, ResNet\n8×8, 32 ch" in texts
    assert fig.get_size_inches()[0] <= dl.viz.WIDTH
    plt.close(fig)
    assert all(p.requires_grad for p in model.parameters())  # the traced pass left the model as it was
