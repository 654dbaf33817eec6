"""Studies: small, reproducible experiments that reproduce a paper's analysis on embedded data.

``obliviate study NAME`` runs them from the command line; each writes its points as JSON and
its figure into an output directory.
"""

from .unrolling import UnrollingStudy, run_unrolling_study

__all__ = ["UnrollingStudy", "run_unrolling_study"]
