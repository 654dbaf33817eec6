"""Unlearning methods: one module per method family, all registered in ``METHODS``.

Every module is imported here explicitly, so registration needs no import-time magic.
"""

from .adversarial import AdversarialUnlearning
from .bad_teacher import BadTeacher
from .base import METHODS, RunContext, UnlearningMethod, UnlearningResult, get_method, make_method, register_method, unlearn
from .boundary import BoundaryExpand, BoundaryShrink
from .delete import DELETE
from .finetune import Finetune
from .fisher import FisherForgetting
from .gradient_ascent import GradientAscent
from .influence import InfluenceUnlearning
from .langevin import Langevin
from .last_k import CatastrophicForgettingK, ExactUnlearningK
from .lora import PruneLoRA
from .neggrad_plus import NegGradPlus
from .random_label import RandomLabel
from .retrain import Retrain
from .rum import RUM
from .salun import SalUn
from .scar import SCAR
from .scrub import SCRUB
from .sfr import SFROn
from .sisa import SISA
from .sparse import FinetunePrune, GradientAscentL1, L1Sparse
from .ssd import LossFreeSSD, SelectiveSynapticDampening
from .unrolling import AmnesiacUnlearning, SingleGradientUnlearning
from .unsir import UNSIR

__all__ = [
    "METHODS",
    "AdversarialUnlearning",
    "AmnesiacUnlearning",
    "BadTeacher",
    "BoundaryExpand",
    "BoundaryShrink",
    "CatastrophicForgettingK",
    "DELETE",
    "ExactUnlearningK",
    "Finetune",
    "FinetunePrune",
    "FisherForgetting",
    "GradientAscent",
    "GradientAscentL1",
    "InfluenceUnlearning",
    "L1Sparse",
    "Langevin",
    "LossFreeSSD",
    "NegGradPlus",
    "PruneLoRA",
    "RandomLabel",
    "RUM",
    "Retrain",
    "RunContext",
    "SCAR",
    "SCRUB",
    "SFROn",
    "SISA",
    "SalUn",
    "SelectiveSynapticDampening",
    "SingleGradientUnlearning",
    "UNSIR",
    "UnlearningMethod",
    "UnlearningResult",
    "get_method",
    "make_method",
    "register_method",
    "unlearn",
]
