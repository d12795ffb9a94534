"""Emulators: software devices and hosts that expose the *real* driver surfaces (DESIGN §7).

An emulator writes files, serves HTTP or prints tool output exactly as the hardware's driver or
runtime would, and logs its ground truth, so collectors are exercised through their real code
paths. Nothing here imports kwatt's parsing code (``collectors/``): an emulator must never share a
parser with the collector that reads it (DESIGN §2).

- :mod:`kwatt.emulators.rngd`: FuriosaAI RNGD device physics and its sysfs/hwmon tree.
- :mod:`kwatt.emulators.serving`: a furiosa-llm serving model and its Prometheus ``/metrics`` endpoint.
- :mod:`kwatt.emulators.node`: an emulated node. ``Node``: devices of any catalogue model, the K-Cloud
  services, every vendor surface, ground truth and faults (``kwatt emulate node|fleet|fault``);
  ``EmulatedNode``: the original N RNGD cards + one serving endpoint (``python -m kwatt.emulators.node
  --root DIR``).
- :mod:`kwatt.emulators.catalogue` (+ ``catalogue.yaml``), :mod:`kwatt.emulators.workloads`,
  :mod:`kwatt.emulators.physics`, :mod:`kwatt.emulators.faults`, :mod:`kwatt.emulators.fleet`: the model behind ``Node``.
- :mod:`kwatt.emulators.surfaces`: the ``Surface`` protocol and the vendor registry;
  :mod:`kwatt.emulators.furiosa_surface` (with :mod:`kwatt.emulators.warboy`, :mod:`kwatt.emulators.rngd` and
  ``tools/furiosa_smi.py``) renders FuriosaAI devices. See docs/emulators.md.
"""
