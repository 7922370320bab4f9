"""What our Hydra launchers (hydra_plugins/manifold_sweeps_launcher) share: packed seeds."""
