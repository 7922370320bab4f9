"""Sparse-autoencoder probing of saved model checkpoints (the paper's sections 3.4 and 4.4, Fig. 6).

Stage: `python -m manifold_sweeps.probes PATH...` (`__main__.py`), or `sae_probe_rows(run_dir)` per
run from the aggregation. Modules, in the order the data flows:

    sae.py          the sparse autoencoder (eq. 8), its training and quality measures
    activations.py  rebuild a checkpointed model; residual stream after a block; the rest of the network
    variables.py    task variables at every position
    selection.py    latent-variable correlations and the top latents per variable
    ablation.py     accuracy with latents zeroed, edited at every position and run to the readout
    probe.py        one checkpoint, end to end
    stage.py        run directories: which runs, caching, files
    tables.py       the sae_probes / sae_latents tables, loaders, summary over seeds
    figure.py       the report's figure (paper Fig. 6), imported on its own (it loads seaborn)
    claims.py       the verdict on "SAE latents do not isolate execution"
"""

from .claims import sae_execution_claim
from .stage import probe_run, sae_probe_rows
from .tables import load_sae_latents, load_sae_probes, sae_probe_summary

__all__ = ["load_sae_latents", "load_sae_probes", "probe_run", "sae_execution_claim", "sae_probe_rows",
           "sae_probe_summary"]
