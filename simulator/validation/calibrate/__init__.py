"""Calibration on real kernels (issue 5): microbenchmarks with PyTorch -> a profile YAML ->
models.profile.HardwareProfile. PyTorch is optional: only ``microbench``, ``gpt`` and
``profile.run_calibration`` need it; reading and applying a profile does not."""
