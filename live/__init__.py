"""``kwatt top``: the live view of a fleet, from the broker (docs/DESIGN.md §1)."""
