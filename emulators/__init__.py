"""Emulators: software devices and hosts that expose the *real* driver surfaces (DESIGN §7).

An emulator writes files, serves HTTP or prints tool output exactly as the hardware's driver or
runtime would, and logs its ground truth, so collectors are exercised through their real code
paths. Nothing here imports kwatt's parsing code (``collectors/``): an emulator must never share a
parser with the collector that reads it (DESIGN §2).

- :mod:`kwatt.emulators.node`: the emulated node, :class:`~kwatt.emulators.node.Node`: devices of
  any catalogue model, the K-Cloud services, every vendor surface, ground truth and faults;
  :mod:`kwatt.emulators.fleet`: many nodes in one process; :mod:`kwatt.emulators.agentconfig`: the
  agent config a node prints (collectors named by their kind strings); :mod:`kwatt.emulators.cli`:
  ``kwatt emulate node|fleet|fault`` and ``python -m kwatt.emulators.node``.
- The model behind a node: :mod:`kwatt.emulators.catalogue` (+ ``catalogue.yaml``, the published
  figures with their sources), :mod:`kwatt.emulators.workloads`, :mod:`kwatt.emulators.physics`,
  :mod:`kwatt.emulators.faults`, :mod:`kwatt.emulators.state` (the snapshot the surfaces render) and
  :mod:`kwatt.emulators.truth` (the ground-truth log and its codec).
- :mod:`kwatt.emulators.surfaces`: the ``Surface`` protocol and the vendor registry. Surfaces:
  :mod:`kwatt.emulators.furiosa_surface` (with :mod:`kwatt.emulators.warboy` and
  :mod:`kwatt.emulators.rngd`), :mod:`kwatt.emulators.rebellions`, :mod:`kwatt.emulators.sapeon`,
  :mod:`kwatt.emulators.nvidia` (with the C library in :mod:`kwatt.emulators.libnvml`),
  :mod:`kwatt.emulators.pim` (both assumed surfaces render their hwmon chip with
  :mod:`kwatt.emulators.boardhwmon`), and :mod:`kwatt.emulators.host` (RAPL, hwmon, IPMI DCMI through
  :mod:`kwatt.emulators.bmc`, Redfish through :mod:`kwatt.emulators.redfish`); the vendor
  executables in :mod:`kwatt.emulators.tools` (sharing :mod:`kwatt.emulators.executables`); the
  serving runtimes' ``/metrics`` in :mod:`kwatt.emulators.serving`.
- :mod:`kwatt.emulators.rngd_node`: the first emulator, N RNGD cards and one furiosa-llm endpoint.

See docs/emulators.md.
"""
