"""Results figures: real PNG and PDF files, one colour per arm in every figure, every case drawn."""

from pathlib import Path

import matplotlib.colors as mcolors
import matplotlib.image as mpimg
import pytest

import analysis_data as data
from mimetic.report import figures as plots, outputs


@pytest.fixture(scope="module")
def records():
    return data.make()


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """svhn (accuracy over epochs) and wikitext103 (validation loss over steps), two arms each."""
    runs, epochs = data.make_mixed(tmp_path_factory.mktemp("lm"))
    keep = ["svhn", "wikitext103"]
    return runs[runs["experiment"].isin(keep)], epochs[epochs["experiment"].isin(keep)]


def is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def is_pdf(path):
    raw = path.read_bytes()
    return raw[:5] == b"%PDF-" and b"%%EOF" in raw[-1024:]


def test_arm_colors_are_fixed_and_colour_blind_safe():
    arms = ["mimetic-qk", "default", "mimetic", "mimetic-b0.35"]
    c = plots.arm_colors(arms)
    assert list(c) == ["default", "mimetic", "mimetic-b0.35", "mimetic-qk"]
    assert c["default"] == plots.OKABE_ITO["blue"] and c["mimetic"] == plots.OKABE_ITO["orange"]
    assert c == plots.arm_colors(reversed(arms))  # input order does not matter
    assert set(c.values()) <= set(plots.OKABE_ITO.values()) and len(set(c.values())) == 4
    # baseline and mimetic keep their colours in any subset; another baseline takes blue
    assert plots.arm_colors(["mimetic", "default"]) == {"default": c["default"], "mimetic": c["mimetic"]}
    assert plots.arm_colors(["ctrl", "mimetic"], baseline="ctrl")["ctrl"] == plots.OKABE_ITO["blue"]
    many = plots.arm_colors([f"arm{i}" for i in range(12)], baseline="arm0")
    assert len(many) == 12  # colours repeat past the palette, but every arm gets one


def test_paper_figures_write_png_and_pdf(records, tmp_path):
    runs, epochs = records
    paths = plots.paper_figures(runs, epochs, "default", data.CLAIMS, tmp_path)
    assert paths == [Path(f) for f in outputs.figure_files(tmp_path, grid=True).values()]
    for p in paths:
        assert p.stat().st_size > 10_000, p
        assert is_png(p) if p.suffix == ".png" else is_pdf(p), p
    for p in paths[::2]:
        h, w = mpimg.imread(p).shape[:2]
        assert h > 500 and w > 800, (p, h, w)
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temporaries left


def test_no_grid_figure_without_a_grid(mixed, tmp_path):
    """Two arms, and experiments of both kinds (accuracy; a language model's loss): no grid."""
    two, epochs = mixed
    paths = plots.paper_figures(two, epochs, "default", data.LM_CLAIMS, tmp_path)
    assert {p.stem for p in paths} == set(outputs.FIGURES)
    assert all(is_png(p) if p.suffix == ".png" else is_pdf(p) for p in paths)
    with pytest.raises(ValueError, match="no \\(alpha, beta\\) grid"):
        plots.grid_heatmap(two, tmp_path / "grid.png")


@pytest.fixture
def figures(monkeypatch):
    """Figures as drawn, instead of written."""
    drawn = []
    monkeypatch.setattr(plots, "save", lambda fig, out: drawn.append(fig))
    return drawn


def hexes(collection):
    return [mcolors.to_hex(c) for c in collection.get_facecolors()]


def test_every_figure_uses_the_arm_colours(records, figures, tmp_path):
    runs, epochs = records
    colors = plots.arm_colors(runs["arm"].unique())
    order = list(colors)  # baseline, mimetic, the rest sorted: cifar10 has all six
    plots.final_accuracy(runs, tmp_path / "a.png")
    plots.learning_curves(epochs, tmp_path / "b.png")
    plots.time_to_accuracy(runs, epochs, tmp_path / "c.png")
    plots.gain_forest(runs, data.CLAIMS, tmp_path / "d.png")
    final, curves, time, forest = figures
    cifar10 = final.axes[0]
    assert cifar10.get_title() == "cifar10"
    dots = [c for c in cifar10.collections if len(c.get_offsets()) == 5]
    assert [set(hexes(c)) for c in dots] == [{colors[a]} for a in order]
    assert [t.get_text() for t in cifar10.get_xticklabels()] == [f"{a} (n=5)" for a in order]
    legend = curves.axes[0].get_legend()
    assert {t.get_text(): mcolors.to_hex(h.get_color()) for t, h in zip(legend.get_texts(), legend.legend_handles)} \
        == {f"{a} (n=5)": colors[a] for a in order}
    legend_colors = {t.get_text(): mcolors.to_hex(h.get_color()) for t, h in
                     zip(time.legends[0].get_texts(), time.legends[0].legend_handles)}
    assert legend_colors == {a: colors[a] for a in order}
    # forest: one mean marker per row that has runs, in its treatment arm's colour
    ax = forest.axes[0]
    means = [ln for ln in ax.lines if ln.get_marker() == "o"]
    labels = {round(y): t.get_text() for y, t in zip(ax.get_yticks(), ax.get_yticklabels())}
    assert len(means) == sum("no runs" not in lbl for lbl in labels.values()) == 9
    for ln in means:
        arm = labels[round(ln.get_ydata()[0])].split(": ")[1].split(" vs ")[0]
        assert mcolors.to_hex(ln.get_color()) == colors[arm]


def test_forest_shows_every_verdict_and_claim(records, figures, tmp_path):
    runs, _ = records
    plots.gain_forest(runs, data.CLAIMS, tmp_path / "f.png")
    ax = figures[0].axes[0]
    texts = [t.get_text() for t in ax.texts]
    for v in ("reproduced", "smaller gain", "no significant gain", "reversed", "too few seeds", "not run",
              "significant gain"):
        assert v in texts, v
    claimed = sorted(ln.get_xdata()[0] for ln in ax.lines if ln.get_marker() == "D")
    assert claimed == sorted(c.gain for c in data.CLAIMS)
    assert "percentage points" in ax.get_xlabel()
    assert any("n=5" in t.get_text() for t in ax.get_yticklabels())
    assert any("no runs" in t.get_text() for t in ax.get_yticklabels())
    # The measured verdicts stand out; the rows without an interval recede.
    style = {t.get_text(): (t.get_fontweight(), t.get_fontstyle(), mcolors.to_hex(t.get_color())) for t in ax.texts}
    for v in ("reproduced", "smaller gain", "no significant gain", "reversed", "significant gain"):
        assert style[v] == ("bold", "normal", mcolors.to_hex("0.1")), v
    for v in ("too few seeds", "not run"):
        assert style[v] == ("normal", "italic", mcolors.to_hex("0.5")), v


def test_axes_are_labelled_with_units(records, figures, tmp_path):
    runs, epochs = records
    plots.final_accuracy(runs, tmp_path / "a.png")
    plots.time_to_accuracy(runs, epochs, tmp_path / "c.png")
    plots.grid_heatmap(runs, tmp_path / "g.png")
    final, time, grid = figures
    assert final.axes[0].get_ylabel() == "final test accuracy (%)"
    xlabels = {ax.get_xlabel() for ax in time.axes}
    assert xlabels == {"epochs to reach", "wall time to reach (s)"}  # 10 epochs of 2-3 s
    assert all("n=" in ax.get_title() for ax in time.axes[: len(time.axes) // 2])
    heat = grid.axes[0]
    assert "α" in heat.get_ylabel() and "β" in heat.get_xlabel() and "n=5" in heat.get_title()
    assert "not run" in [t.get_text() for t in heat.texts]
    assert "points" in grid.axes[-1].get_ylabel()  # the colour bar


def test_structure_profile_draws_each_arm_in_its_colour_init_dashed(monkeypatch, tmp_path):
    """The diagonal profile speaks the results figures' colours: an arm's init and trained lines
    share its colour, the init dashed; a pretrained reference is grey; the figure has a title."""
    import numpy as np
    import pandas as pd

    from mimetic.report import structure_figures

    drawn = []
    monkeypatch.setattr(structure_figures, "save", lambda fig, out: drawn.append(fig))
    labels = ["pretrained vit", "default init", "mimetic init", "default trained", "mimetic trained"]
    rows = [{"model": m, "layer": layer, "head": h, "product": p, "diag_mean": v, "identity_cosine": v}
            for i, m in enumerate(labels) for layer in range(3) for p in ("qk", "vo")
            for h, v in enumerate(np.linspace(0, 1, 2) + i)]
    colors = plots.arm_colors(["default", "mimetic"])
    arm_of = {m: m.split()[0] for m in labels[1:]}
    structure_figures.diagonal_profile(pd.DataFrame(rows), tmp_path / "p.png", title="digits, seed 0",
                                       colors={m: colors[a] for m, a in arm_of.items()},
                                       dashed=["default init", "mimetic init"])
    (fig,) = drawn
    assert fig.get_suptitle().startswith("digits, seed 0: ")
    legend = fig.axes[1].get_legend()
    handles = dict(zip([t.get_text() for t in legend.get_texts()], legend.legend_handles))
    assert list(handles) == labels
    for label, handle in handles.items():
        want = colors[arm_of[label]] if label in arm_of else mcolors.to_hex("0.35")
        assert mcolors.to_hex(handle.get_color()) == want, label
        assert (handle.get_linestyle() != "-") == label.endswith("init"), label


def test_arm_ranking_orders_every_arm_by_its_paired_gain(records, figures, tmp_path):
    """Per experiment, every arm but the baseline, best on top, its 95% t-interval and mean
    recomputed here from the runs (scipy), in its arm colour."""
    import numpy as np
    from scipy import stats as st

    runs, _ = records
    colors = plots.arm_colors(runs["arm"].unique())
    plots.arm_ranking(runs, tmp_path / "r.png")
    (fig,) = figures
    for ax in fig.axes:
        exp = ax.get_title()
        part = runs[runs["experiment"] == exp].pivot(index="seed", columns="arm", values="final_test_acc")
        gains = {a: (part[a] - part["default"]).dropna() for a in part.columns if a != "default"}
        want = sorted(gains, key=lambda a: gains[a].mean())  # bottom to top
        got = [t.get_text().split(" (n=")[0] for t in ax.get_yticklabels()]
        assert got == want, exp
        for y, arm in enumerate(want):
            g = gains[arm].to_numpy()
            (mean,) = [ln for ln in ax.lines if ln.get_marker() == "o" and ln.get_ydata()[0] == y]
            assert mean.get_xdata()[0] == pytest.approx(g.mean())
            assert mcolors.to_hex(mean.get_color()) == colors[arm]
            bars = [ln for ln in ax.lines if ln.get_marker() in ("None", "", None) and list(ln.get_ydata()) == [y, y]]
            if len(g) >= 2:
                half = st.t.ppf(0.975, len(g) - 1) * g.std(ddof=1) / np.sqrt(len(g))
                np.testing.assert_allclose(bars[0].get_xdata(), [g.mean() - half, g.mean() + half])
            else:
                assert not bars
    assert "gain over default" in fig.axes[0].get_xlabel()


# --- Language models beside image classification -------------------------------------------------

def test_lm_panels_speak_loss_and_steps(mixed, figures, tmp_path):
    import numpy as np

    runs, epochs = mixed
    plots.learning_curves(epochs, tmp_path / "a.png")
    plots.final_accuracy(runs, tmp_path / "b.png")
    plots.time_to_accuracy(runs, epochs, tmp_path / "c.png")
    plots.gain_forest(runs, data.LM_CLAIMS, tmp_path / "d.png")
    plots.arm_ranking(runs, tmp_path / "e.png")
    curves, final, time, forest, ranking = figures
    assert [(ax.get_title().split()[0], ax.get_xlabel(), ax.get_ylabel()) for ax in curves.axes] == [
        ("svhn", "epoch", "test accuracy (%)"),
        ("wikitext103", "step", "validation loss (nats/token; lower is better)")]
    assert [ax.get_ylabel() for ax in final.axes] == ["final test accuracy (%)",
                                                      "final validation loss (nats/token; lower is better)"]
    top = time.axes[:2]  # the epochs or steps row, then the wall-time row
    assert [ax.get_xlabel() for ax in top] == ["epochs to reach", "steps to reach"]
    assert [ax.get_ylabel() for ax in top] == ["target test accuracy", "target validation loss"]
    # the loss gain, recomputed here: the baseline's loss minus mimetic's, seed by seed
    d = np.array(data.LM_FINAL["wikitext103"]["default"]) - np.array(data.LM_FINAL["wikitext103"]["mimetic"])
    acc, loss = forest.axes[:2]  # one panel per metric: accuracy and loss gains share no axis
    assert "percentage points" in acc.get_xlabel()
    assert "nats per token" in loss.get_xlabel() and "baseline loss − treatment loss" in loss.get_xlabel()
    means = [ln.get_xdata()[0] for ln in loss.lines if ln.get_marker() == "o"]
    assert means == pytest.approx([d.mean(), d.mean()]) and d.mean() > 0
    assert sorted(ln.get_marker() for ln in loss.lines if ln.get_marker() in ("<", ">")) == ["<", ">"]
    assert sorted(loss.collections[0].get_offsets()[:, 0]) == pytest.approx(sorted(d))
    assert [t.get_text() for t in loss.texts] == ["reproduced", "reversed"]
    lm = next(ax for ax in ranking.axes if ax.get_title() == "wikitext103")
    assert "nats/token" in lm.get_xlabel() and "default loss − arm loss" in lm.get_xlabel()
    (mean,) = [ln for ln in lm.lines if ln.get_marker() == "o"]
    assert mean.get_xdata()[0] == pytest.approx(d.mean())
