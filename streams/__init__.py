"""phaseflow's streaming core: settings, topic catalog, codecs, the Faust app and the CLI."""
