"""Models: the Transformer, tokenizers, hyponets, Trans-INR and the baselines."""

from .hyponets import ImageHyponet, NeRFHyponet
from .tokenizers import ImageTokenizer, ViewsTokenizer
from .trans_inr import TransINR
from .transformer import TransformerEncoder
from .factory import build_model
from .instance_pattern import InstancePatternComposer
from .learned_init import LearnedInit
from .single_vector import SingleVectorHypernet

__all__ = ["ImageHyponet", "NeRFHyponet", "ImageTokenizer", "ViewsTokenizer", "TransINR",
           "TransformerEncoder", "build_model", "LearnedInit", "SingleVectorHypernet",
           "InstancePatternComposer"]
