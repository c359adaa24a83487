"""Diagnostics of a world model on the simulator, each runnable as
``python -m planning.harness.diagnostics.<name> --help``: ``trace_episode`` (one episode step by
step), ``motion_gain`` (does the predictor move the latent as far as the world does),
``energy_vs_distance`` (does the goal energy rank distance), ``diagnose_grasp`` (does the model
see and predict a grasp), ``probe_encoder`` (linear probes of the frozen features)."""
