"""Emulators: software devices and hosts that expose the *real* driver surfaces (DESIGN §7).

An emulator writes files, serves HTTP or prints tool output exactly as the hardware's driver or
runtime would, and logs its ground truth, so collectors are exercised through their real code
paths. Nothing here imports kwatt's parsing code (``collectors/``): an emulator must never share a
parser with the collector that reads it (DESIGN §2).

- :mod:`emulators.rngd`: FuriosaAI RNGD device physics and its sysfs/hwmon tree.
- :mod:`emulators.serving`: a furiosa-llm serving model and its Prometheus ``/metrics`` endpoint.
- :mod:`emulators.node`: an emulated node (N RNGD devices + one serving endpoint); run it with
  ``python -m emulators.node``.
"""
