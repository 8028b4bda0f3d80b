"""The ground floor: what agents and sinks are built on (settings, clock, topics, codecs, registry
format, lifecycle, metrics, the feature context).

Layers (enforced by ``make imports``, see docs/architecture.md): ``phaseflow.models`` <
``phaseflow.streams.core`` < ``phaseflow.agents`` | ``phaseflow.sinks`` < the rest of
``phaseflow.streams`` (app wiring, web, monitoring, CLI, local services). Nothing here imports
an agent, a sink or the roof.
"""
