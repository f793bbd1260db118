"""`gift study`: a grid of training runs (settings × modes × seeds) run, resumed and compared with intervals."""

from gift.study.cells import Cell, cell_state, plan_cells, run_cell
from gift.study.curves import game_metric
from gift.study.run import aggregate, run_study
from gift.study.schema import Study, load_study

__all__ = [
    "Cell",
    "Study",
    "aggregate",
    "cell_state",
    "game_metric",
    "load_study",
    "plan_cells",
    "run_cell",
    "run_study",
]
