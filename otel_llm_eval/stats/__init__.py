"""Pure statistics for the sidecar: no I/O, no clocks, no global state.

Every function takes numbers, sufficient statistics or numpy arrays and returns one documented,
frozen result shape per family. Undefined quantities (zero variance, empty arm) are `None`, never
NaN or Inf, so callers can publish whatever is defined and omit the rest.

Modules: ab (proportions, Welch, lift, Holm/BH), sequential (always-valid p-values), srm, power,
ratio (delta-method ratio metrics), interleaving (sign test), bandits (allocations), drift,
anomaly, judge_rate (judge sample rates that serve an experiment), verdict.
"""
