"""Event schemas of the phaseflow contract (docs/contract.md#events) and their codec."""
