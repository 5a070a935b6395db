"""Networks of the WRN and ResNet papers, by name: plain nn.Modules, no Lightning, no I/O."""

from wrn.models.config import NetConfig
from wrn.models.registry import (FAMILIES, ModelSpec, Published, build_model, create_model,
                                 design_switches, list_models, model_config, model_spec_from_config,
                                 published, register_model, resolve_model)
from wrn.models.resnet import CifarResNet, PreActResNet, ResNetV1
from wrn.models.wide_resnet import WideResNet

__all__ = ["FAMILIES", "CifarResNet", "ModelSpec", "NetConfig", "PreActResNet", "Published", "ResNetV1",
           "WideResNet", "build_model", "create_model", "design_switches", "list_models", "model_config",
           "model_spec_from_config", "published", "register_model", "resolve_model"]
