"""SCHP (Self-Correction for Human Parsing) inference, written from the
specification: network (:mod:`.network`), checkpoint loading and validation
(:mod:`.checkpoint`), pre/post-processing (:mod:`.transforms`) and the engine
(:class:`segworker.schp.engine.SchpEngine`). See docs/schp.md.
"""
