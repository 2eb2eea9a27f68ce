"""scripts/wandb_workspace.py: the workspace is built offline (nothing saved) and its panels overlay the simulation
with every theory on log axes."""
import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def script():
    return SimpleNamespace(**runpy.run_path(str(ROOT / "scripts" / "wandb_workspace.py")))


def test_panels_overlay_sim_and_every_theory_against_t_on_log_axes(script):
    workspace = script.build_workspace("someone", "quadflow")
    assert (workspace.entity, workspace.project) == ("someone", "quadflow")
    assert workspace.settings.x_axis == "t"
    (section,) = workspace.sections
    panels = {p.y[0]: p for p in section.panels}
    assert list(panels) == ["sim/mse", "sim/test_error", "sim/train_loss", "sim/in_sample_error",
                            "sim/rank_fraction", "sim/trace", "sim/loss_reg"]
    for sim_key, panel in panels.items():
        metric = sim_key.split("/")[1]
        assert panel.x == "t" and panel.log_x is True
        assert panel.y == [sim_key, f"theory/dmft/{metric}", f"theory/longtime/{metric}",
                           f"theory/population/{metric}"]
        assert panel.log_y is (metric != "rank_fraction")
        assert panel.line_titles[sim_key] == "simulation"
        assert panel.line_titles[f"theory/dmft/{metric}"] == "theory: dmft"
    only = script.build_workspace("someone", "quadflow", theories=["longtime"])
    assert only.sections[0].panels[0].y == ["sim/mse", "theory/longtime/mse"]


def test_without_save_it_prints_the_panels_and_saves_nothing(script, capsys):
    assert script.main(["--entity", "someone", "--project", "quadflow", "--theories", "dmft"]) == 0
    out = capsys.readouterr().out
    assert "mse: simulation and theory: sim/mse, theory/dmft/mse against t (x=log y=log)" in out
    assert "rank_fraction" in out and "(x=log y=linear)" in out and "not saved" in out
    with pytest.raises(SystemExit) as exc:
        script.main(["--entity", "someone", "--project", "quadflow", "--theories", ","])
    assert exc.value.code == 2
    assert "error: --theories ','" in capsys.readouterr().err
