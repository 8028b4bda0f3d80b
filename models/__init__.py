"""Event schemas of the phaseflow contract (DESIGN.md sections 3 and 5) and their codec."""
