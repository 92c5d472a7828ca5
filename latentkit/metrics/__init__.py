"""Measurements: face identity (:mod:`.identity`), sample quality FID/KID/PRDC (:mod:`.quality`) and
perceptual path length (:mod:`.ppl`). Import the submodules directly; this package imports nothing heavy."""

__all__ = ["identity", "ppl", "quality"]
