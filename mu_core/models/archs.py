"""The architectures: ``mlp``, ``cnn``, ``resnet18`` and ``resnet18_small``.

Every builder takes ``(in_shape, num_classes)`` with ``in_shape = (channels, height, width)``.
Inputs are images with values in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..errors import AuditInputError

Builder = Callable[[tuple[int, int, int], int], nn.Module]
_REGISTRY: dict[str, tuple[Builder, str]] = {}


def register_arch(name: str, description: str) -> Callable[[Builder], Builder]:
    """Decorator adding an architecture builder under ``name``."""

    def decorate(builder: Builder) -> Builder:
        _REGISTRY[name] = (builder, description)
        return builder

    return decorate


def list_archs() -> list[str]:
    return list(_REGISTRY)


def arch_description(name: str) -> str:
    return _REGISTRY[name][1]


def build_model(name: str, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A freshly initialised model (initialisation follows torch's global RNG)."""
    if name not in _REGISTRY:
        raise AuditInputError(f"Unknown architecture '{name}'; choose one of: {', '.join(_REGISTRY)}.")
    if len(in_shape) != 3 or min(in_shape) < 1:
        raise AuditInputError(f"Input shape {tuple(in_shape)} is not (channels, height, width).")
    if num_classes < 2:
        raise AuditInputError("A classifier needs at least two classes.")
    return _REGISTRY[name][0](tuple(int(d) for d in in_shape), int(num_classes))  # type: ignore[arg-type]


class MLP(nn.Module):
    """Two hidden layers of 256 and 128 ReLU units."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        c, h, w = in_shape
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(c * h * w, 256)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(256, 128)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.relu2(self.fc2(self.relu1(self.fc1(self.flatten(x))))))


class SmallCNN(nn.Module):
    """Two 3x3 conv blocks (16, 32 channels, each max-pooled while the image is large enough),
    average-pooled to 4x4, then 128 hidden units."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        c = in_shape[0]
        side = min(in_shape[1:])
        self.conv1 = nn.Conv2d(c, 16, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2) if side >= 4 else nn.Identity()
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2) if side >= 16 else nn.Identity()
        self.pool3 = nn.AdaptiveAvgPool2d(4)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(32 * 16, 128)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool3(self.pool2(self.relu2(self.conv2(x))))
        return self.fc2(self.relu3(self.fc1(self.flatten(x))))


def _image_resnet(num_classes: int) -> nn.Module:
    """torchvision's ResNet-18 with its parameter names; grey inputs are repeated to 3 channels.

    A state dict saved from ``torchvision.models.resnet18(num_classes=K)`` loads unchanged.
    (torchvision is imported here, not at the top: it pulls in much of torch's compiler, seconds of
    start-up that the other architectures and the command line's quick commands do not need.)
    """
    from torchvision.models.resnet import BasicBlock

    return _resnet_class()(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)


_RESNET: list[type] = []


def _resnet_class() -> type:
    if not _RESNET:
        from torchvision.models.resnet import ResNet

        class ImageResNet(ResNet):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                if x.shape[1] == 1 and self.conv1.in_channels == 3:
                    x = x.expand(-1, 3, -1, -1)
                return super().forward(x)

        _RESNET.append(ImageResNet)
    return _RESNET[0]


@register_arch("mlp", "multi-layer perceptron (256-128)")
def build_mlp(in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    return MLP(in_shape, num_classes)


@register_arch("cnn", "small CNN (2 conv layers, 16-32 channels)")
def build_cnn(in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    return SmallCNN(in_shape, num_classes)


def _check_channels(in_shape: tuple[int, int, int], name: str) -> None:
    if in_shape[0] not in (1, 3):
        raise AuditInputError(f"'{name}' takes grey or RGB images, not {in_shape[0]} channels.")


@register_arch("resnet18", "ResNet-18, torchvision's layout and parameter names")
def build_resnet18(in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    _check_channels(in_shape, "resnet18")
    return _image_resnet(num_classes)


@register_arch("resnet18_small", "ResNet-18 with a 3x3 stem and no max-pool, for small images")
def build_resnet18_small(in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    _check_channels(in_shape, "resnet18_small")
    model = _image_resnet(num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


from . import ddpm  # noqa: E402, F401  (registers the ddpm architecture, after the others)
