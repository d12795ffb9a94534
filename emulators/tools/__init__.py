"""Emulated vendor executables: each renders the node's snapshot the way the real tool prints it.

Run one as ``python -m kwatt.emulators.tools.<tool> --root ROOT [the real tool's arguments]``; an emulated
node installs a ``ROOT/bin/<tool>`` script that does exactly that (DESIGN §7).
"""
