"""PyTorch peer of the U-Net/ResNet50 training benchmark (bfloat16 autocast, channels-last).

A U-Net laid out like `kerasvision.models.unet.build_unet(backbone="resnet50")`:
the ResNet50 encoder's stride-2..32 features (torchvision's `resnet50`,
weights=None) as skips, decoder blocks of a 2x2 stride-2 transposed
convolution to 256, 128, 64, 32 and 16 channels, concatenation with the skip,
two 3x3 convolutions with batch norm and ReLU, and a 1x1 convolution to the
class logits; the caffe-style preprocessing and the cross-entropy + Dice
loss of the Keras model; Adam. Each step runs the forward pass and loss
under `torch.autocast("cpu", torch.bfloat16)` on channels-last tensors, then
backward and the optimizer step: PyTorch's recommended CPU mixed-precision
recipe. A float32 channels-last row is measured too.

One difference in the work done: torchvision's ResNet50 is "v1.5" (stride 2
in the 3x3 convolution of each stage's first block), Keras' is v1 (stride 2
in the first 1x1 convolution), so the torch encoder does ~5% more FLOPs at
the same size; the FLOPs reported here are torch's own count
(`torch.utils.flop_counter`), not the Keras profiler's.

This script imports only torch (and torchvision when it imports: a
torchvision wheel built for another torch fails at import, and then an
identical v1.5 ResNet50 defined here is used and the output says so). It is
run by `train_throughput.py --peer torch` with the interpreter given by
`--torch-python`, so torch never needs to be installed next to TensorFlow:

    python benchmarks/torch_peer.py --image-size 256 --batch-size 4 --output peer.json
    python benchmarks/torch_peer.py --smoke --output /tmp/peer.json   # 32 px, seconds (tests)
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError:  # torch is not a dependency of kerasvision
    sys.exit("torch not installed: pip install torch torchvision to compare")

CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
DECODER_FILTERS = (256, 128, 64, 32, 16)
NUM_CLASSES = 5


# ---------------------------------------------------------------------------
# Encoder: torchvision's resnet50, or the same architecture defined here
# ---------------------------------------------------------------------------


class _Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck: 1x1, 3x3 (strided), 1x1, with a projected shortcut."""

    expansion = 4

    def __init__(self, in_channels, width, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class _ResNet50(nn.Module):
    """The torchvision ResNet-50 layout (conv1, bn1, relu, maxpool, layer1..layer4)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for index, (width, blocks, stride) in enumerate(
                [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=1):
            downsample = nn.Sequential(nn.Conv2d(channels, width * 4, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(width * 4))
            layers = [_Bottleneck(channels, width, stride, downsample)]
            channels = width * 4
            layers += [_Bottleneck(channels, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*layers))


def make_resnet50():
    """torchvision.models.resnet50(weights=None), or the local copy when torchvision fails.

    Returns:
        (module, source): the network and a string naming where it came from.
    """
    try:
        from torchvision.models import resnet50

        return resnet50(weights=None), "torchvision.models.resnet50"
    except Exception as error:  # ImportError, or a RuntimeError from a mismatched build
        reason = str(error).strip().splitlines()[0][:120]
        return _ResNet50(), f"local ResNet-50 v1.5 (torchvision unavailable: {reason})"


# ---------------------------------------------------------------------------
# U-Net
# ---------------------------------------------------------------------------


class _ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each with batch norm and ReLU (kerasvision's apply_conv_block)."""

    def __init__(self, in_channels, filters):
        super().__init__(
            nn.Conv2d(in_channels, filters, 3, padding=1, bias=False), nn.BatchNorm2d(filters),
            nn.ReLU(inplace=True),
            nn.Conv2d(filters, filters, 3, padding=1, bias=False), nn.BatchNorm2d(filters),
            nn.ReLU(inplace=True),
        )


class UNetResNet50(nn.Module):
    """U-Net on a ResNet50 encoder, as kerasvision's build_unet(backbone="resnet50")."""

    def __init__(self, num_classes=NUM_CLASSES):
        super().__init__()
        self.encoder, self.encoder_source = make_resnet50()
        self.register_buffer("mean", torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1))
        skip_channels = (1024, 512, 256, 64, 0)  # P4, P3, P2, P1, none
        self.ups, self.blocks = nn.ModuleList(), nn.ModuleList()
        channels = 2048
        for skip, filters in zip(skip_channels, DECODER_FILTERS):
            self.ups.append(nn.ConvTranspose2d(channels, filters, 2, stride=2, bias=False))
            self.blocks.append(_ConvBlock(filters + skip, filters))
            channels = filters
        self.logits = nn.Conv2d(channels, num_classes, 1)

    def forward(self, images):
        # Raw RGB in [0, 255] -> BGR minus the ImageNet mean (caffe), as in Keras.
        x = images.flip(1) - self.mean
        e = self.encoder
        p1 = e.relu(e.bn1(e.conv1(x)))
        p2 = e.layer1(e.maxpool(p1))
        p3 = e.layer2(p2)
        p4 = e.layer3(p3)
        x = e.layer4(p4)
        for up, block, skip in zip(self.ups, self.blocks, (p4, p3, p2, p1, None)):
            x = up(x)
            if skip is not None:
                x = torch.cat([x, skip], dim=1)
            x = block(x)
        return self.logits(x)


def segmentation_loss(logits, masks):
    """Cross-entropy plus soft Dice over classes (the Keras model's "ce+dice")."""
    logits = logits.float()
    cross_entropy = F.cross_entropy(logits, masks)
    probabilities = logits.softmax(1)
    one_hot = F.one_hot(masks, logits.shape[1]).permute(0, 3, 1, 2).to(probabilities.dtype)
    intersection = (probabilities * one_hot).sum((0, 2, 3))
    total = probabilities.sum((0, 2, 3)) + one_hot.sum((0, 2, 3))
    dice = 1 - ((2 * intersection + 1) / (total + 1)).mean()
    return cross_entropy + dice


# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------


def peak_rss_reset():
    """Resets the process's peak resident memory (Linux); returns the current RSS in MiB."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return None
    return _status_mb("VmRSS")


def _status_mb(field):
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def measure(precision, image_size, batch_size, warmup, repeats, seed=0):
    """Median training step time of the U-Net in `precision` ("bfloat16" or "float32").

    Returns:
        dict with `step_s`, `first_call_s`, `flops_per_step`, `peak_memory_mb`
        (above the memory before the timed steps) and the encoder's source.
    """
    torch.manual_seed(seed)
    model = UNetResNet50().to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(seed)
    images = (torch.rand(batch_size, 3, image_size, image_size, generator=generator) * 255)
    images = images.contiguous(memory_format=torch.channels_last)
    masks = torch.randint(0, NUM_CLASSES, (batch_size, image_size, image_size), generator=generator)
    autocast = precision == "bfloat16"

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = segmentation_loss(model(images), masks)
        loss.backward()
        optimizer.step()
        return loss

    start = time.perf_counter()
    step()  # first call: allocations and oneDNN primitive creation
    first_call = time.perf_counter() - start
    flops = None
    try:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            step()
        flops = counter.get_total_flops()
    except Exception:  # an older torch without the counter
        pass
    for _ in range(warmup):
        step()
    baseline = peak_rss_reset()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = _status_mb("VmHWM")
    return {
        "precision": precision,
        "memory_format": "channels_last",
        "step_s": statistics.median(times),
        "step_times_s": times,
        "first_call_s": first_call,
        "flops_per_step": flops,
        "peak_memory_mb": None if baseline is None or peak is None else max(0.0, peak - baseline),
        "encoder": model.encoder_source,
    }


# --smoke's defaults; flags given explicitly still win. Batch 2: at 32 px the
# deepest feature map is 1x1, and batch norm needs two values per channel.
SMOKE_DEFAULTS = dict(image_size=32, batch_size=2, warmup=0, repeats=1)


def main(argv=None):
    """Times the torch U-Net's training step per precision, writes `--output`; returns the rows."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="32 px, batch 2, one timed step: checks the script runs (seconds)")
    parser.add_argument("--image-size", type=int, default=256, help="multiple of 32")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precisions", default="bfloat16,float32",
                        help="comma-separated: bfloat16 (autocast), float32")
    parser.add_argument("--output", required=True, help="JSON file to write")
    # Parsed twice: the smoke defaults must be in place before the real parse
    # so that flags given explicitly override them.
    if parser.parse_known_args(argv)[0].smoke:
        parser.set_defaults(**SMOKE_DEFAULTS)
    args = parser.parse_args(argv)
    if args.image_size % 32:
        parser.error(f"--image-size must be a multiple of 32; received {args.image_size}")
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not precisions or set(precisions) - {"bfloat16", "float32"}:
        parser.error(f"--precisions: bfloat16 and/or float32; received {args.precisions!r}")
    # All cores, as TensorFlow uses them.
    torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else os.cpu_count())
    rows = []
    for precision in precisions:
        row = measure(precision, args.image_size, args.batch_size, args.warmup, args.repeats)
        rows.append(row)
        print(f"torch U-Net/ResNet50 {precision} channels-last b{args.batch_size} "
              f"{args.image_size}px: {1e3 * row['step_s']:.0f} ms/step", flush=True)
    environment = {"torch": torch.__version__, "python": platform.python_version(),
                   "threads": torch.get_num_threads(),
                   "cpu_capability": getattr(torch.backends.cpu, "get_cpu_capability",
                                             lambda: None)(),
                   "encoder": rows[0]["encoder"]}
    with open(args.output, "w") as handle:
        json.dump({"environment": environment, "rows": rows}, handle, indent=2)
    return rows


if __name__ == "__main__":
    main()
