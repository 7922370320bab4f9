"""`python -m manifold_sweeps [overrides]`: train one run; add `-m` to sweep."""

import hydra
from omegaconf import DictConfig

from .app import run
from .config.schema import register_configs
from .paths import CONF_DIR

register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> str:
    return run(cfg)


if __name__ == "__main__":
    main()
