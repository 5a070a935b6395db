"""Networks of the WRN and ResNet papers, by name: plain nn.Modules, no Lightning, no I/O."""

from wrn.models.registry import (FAMILIES, ModelSpec, Published, create_model, list_models,
                                 published, register_model, resolve_model)
from wrn.models.resnet import CifarResNet, PreActResNet, ResNetV1
from wrn.models.wide_resnet import WideResNet

__all__ = ["FAMILIES", "CifarResNet", "ModelSpec", "PreActResNet", "Published", "ResNetV1",
           "WideResNet", "create_model", "list_models", "published", "register_model",
           "resolve_model"]
