"""`python -m manifold_sweeps [overrides]`: train one run; add `-m` to sweep."""

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .app import run
from .config.schema import register_configs
from .launch.packs import refusal_ends_the_command
from .paths import CONF_DIR

register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> str:
    if HydraConfig.get().mode != RunMode.RUN:  # a sweep's job: its launcher records failures and goes on
        return run(cfg)
    with refusal_ends_the_command():  # a single run refused before training: the message, not a traceback
        return run(cfg)


if __name__ == "__main__":
    main()
