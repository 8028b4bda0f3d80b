"""Faust agents: the stream processors that move the pipeline forward."""
