#!/usr/bin/env python3
"""The Python PyTorch peer of `hashlab train` for tools/bench_train.sh.

The same HashNet training step as trainers/hashnet.cpp on the same data: a
torchvision-layout ResNet (or the small CNN), fch, tanh(beta z), the
weighted pairwise likelihood over the batch (eq. 2 and 4), SGD with momentum
and the hash layer at 10x, bf16 autocast and channels-last on CUDA when asked.
Batches are drawn from the uint8 array held in (pinned) host memory, moved to
the device and scaled there, as hashlab's loader does. Prints one JSON line
with the images/s over the timed steps (after the warm-up ones).
"""
import argparse, json, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride != 1 or cin != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(self.bn3(self.conv3(y)) + idt)


class Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + idt)


class ResNet(nn.Module):
    def __init__(self, depth):
        super().__init__()
        block, counts = {18: (Basic, [2, 2, 2, 2]), 34: (Basic, [3, 4, 6, 3]),
                         50: (Bottleneck, [3, 4, 6, 3])}[depth]
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for i, (planes, n) in enumerate(zip([64, 128, 256, 512], counts)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, planes, 2 if (j == 0 and i > 0) else 1))
                cin = planes * block.expansion
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.feature_dim = cin

    def forward(self, x):
        if x.size(1) == 1:
            x = x.repeat(1, 3, 1, 1)
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class SmallCNN(nn.Module):
    def __init__(self, c, h, w, dim=512):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(c, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.ReLU(True),
                                      nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, 1, 1),
                                      nn.BatchNorm2d(64), nn.ReLU(True), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Linear(64 * (h // 4) * (w // 4), dim), nn.ReLU(True))
        self.feature_dim = dim

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class AlexNet(nn.Module):
    """torchvision's layout, as models/backbones/plain_nets.cpp (features -> 4096)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, 1, 2), nn.ReLU(True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, 1, 1), nn.ReLU(True), nn.Conv2d(384, 256, 3, 1, 1), nn.ReLU(True),
            nn.Conv2d(256, 256, 3, 1, 1), nn.ReLU(True), nn.MaxPool2d(3, 2))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(256 * 36, 4096), nn.ReLU(True),
                                        nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(True))
        self.feature_dim = 4096

    def forward(self, x):
        if x.size(1) == 1:
            x = x.repeat(1, 3, 1, 1)
        x = F.adaptive_avg_pool2d(self.features(x), 6)
        return self.classifier(torch.flatten(x, 1))


class VGG16(nn.Module):
    """Configuration D, torchvision's layout, as models/backbones/plain_nets.cpp."""

    def __init__(self):
        super().__init__()
        layers, cin = [], 3
        for c in [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0]:
            if c == 0:
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, c, 3, 1, 1), nn.ReLU(True)]
                cin = c
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(512 * 49, 4096), nn.ReLU(True), nn.Dropout(0.5),
                                        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(0.5))
        self.feature_dim = 4096

    def forward(self, x):
        if x.size(1) == 1:
            x = x.repeat(1, 3, 1, 1)
        x = F.adaptive_avg_pool2d(self.features(x), 7)
        return self.classifier(torch.flatten(x, 1))


def hashnet_loss(h, labels, alpha):
    """Eq. 4 with the paper's weighting (eq. 2), overflow-safe, pairs i < j."""
    ip = alpha * (h @ h.t())
    s = (labels[:, None] == labels[None, :]).float()
    iu = torch.triu_indices(h.size(0), h.size(0), 1, device=h.device)
    ip, s = ip[iu[0], iu[1]], s[iu[0], iu[1]]
    l = torch.clamp(ip, min=0) + torch.log1p(torch.exp(-ip.abs())) - s * ip
    n1 = s.sum().clamp(min=1)
    n0 = (1 - s).sum().clamp(min=1)
    w = torch.where(s > 0, s.numel() / n1, s.numel() / n0)
    return (w * l).sum() / w.sum()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--iters", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--device", default="cuda")
    p.add_argument("--amp", type=int, default=1)
    p.add_argument("--channels-last", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    on_cuda = dev.type == "cuda"
    x_all = torch.from_numpy(np.load(a.images))
    y_all = torch.from_numpy(np.load(a.labels).astype(np.int64))
    if on_cuda:
        x_all = x_all.pin_memory()
    n, c, hgt, wid = x_all.shape
    torch.manual_seed(0)
    if a.backbone in ("resnet18", "resnet34", "resnet50"):
        net = ResNet(int(a.backbone[6:]))
    elif a.backbone == "alexnet":
        net = AlexNet()
    elif a.backbone == "vgg16":
        net = VGG16()
    elif a.backbone == "small_cnn":
        net = SmallCNN(c, hgt, wid)
    else:
        raise SystemExit(f"bench_train.py: no peer model for backbone '{a.backbone}'")
    fch = nn.Linear(net.feature_dim, a.bits)
    nn.init.normal_(fch.weight, 0, 0.01)
    nn.init.zeros_(fch.bias)
    net.to(dev).train()
    fch.to(dev)
    if on_cuda and a.channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD([{"params": net.parameters(), "lr": 0.003},
                           {"params": fch.parameters(), "lr": 0.03}],
                          lr=0.003, momentum=0.9, weight_decay=5e-4)
    alpha = 10.0 / a.bits
    gen = torch.Generator().manual_seed(0)
    def step():
        idx = torch.randint(0, n, (a.batch,), generator=gen)
        xb = x_all[idx].to(dev, non_blocking=True).float().div_(255.0)
        yb = y_all[idx].to(dev, non_blocking=True)
        if on_cuda and a.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16,
                            enabled=bool(a.amp) and on_cuda):
            z = fch(net(xb))
        h = torch.tanh(z.float())
        loss = hashnet_loss(h, yb, alpha)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(a.warmup):
        step()
    if on_cuda:
        torch.cuda.synchronize()
    # Timed in windows of 5 steps, as hashlab's train records (log_every 5)
    # are: the mean over all of them, and the best window (the least
    # disturbed by the other guests of a shared machine).
    windows = []
    for _ in range(a.iters // 5):
        t0 = time.perf_counter()
        for _ in range(5):
            loss = step()
        if on_cuda:
            torch.cuda.synchronize()
        windows.append((time.perf_counter() - t0) / 5)
    sec, best = sum(windows) / len(windows), min(windows)
    print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "backbone": a.backbone,
                      "batch": a.batch, "sec_per_step": sec, "images_per_s": a.batch / sec,
                      "best_images_per_s": a.batch / best, "final_loss": float(loss)}))


if __name__ == "__main__":
    main()
