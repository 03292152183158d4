"""Synthetic photo-like frames for the demo dataset, from NumPy alone."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: One sinusoid: cycles across x, cycles across y, phase, amplitude, phase drift per frame.
Wave = tuple[float, float, float, float, float]


class PhotoFrames:
    """Photo-like uint8 frames of shape (C, H, W) from NumPy alone, one frame at a time.

    A frame is a sum of a brightness gradient, a few low-frequency sinusoids (shared luminance
    plus weaker per-channel colour), a few flat-shaded rectangles giving hard edges, and mild
    per-pixel noise. The sinusoids and rectangles drift from frame to frame like a slow camera
    pan. Sinusoids are evaluated separably (sin(u + v) = sin u cos v + cos u sin v), so a 4K frame
    costs a few full-size float32 operations.
    """

    def __init__(self, rng: np.random.Generator, channels: int, height: int, width: int) -> None:
        self.rng = rng
        self.c, self.h, self.w = channels, height, width
        self.x = np.linspace(0.0, 1.0, width, dtype=np.float32)
        self.y = np.linspace(0.0, 1.0, height, dtype=np.float32)

        def waves(n: int, amp: tuple[float, float]) -> list[Wave]:
            return [
                (
                    float(rng.uniform(0.5, 6.0) * rng.choice((-1.0, 1.0))),  # cycles across x
                    float(rng.uniform(0.5, 5.0) * rng.choice((-1.0, 1.0))),  # cycles across y
                    float(rng.uniform(0.0, 2 * np.pi)),  # phase
                    float(rng.uniform(*amp)),  # amplitude
                    float(rng.uniform(-0.15, 0.15)),  # phase drift per frame
                )
                for _ in range(n)
            ]

        self.luma = waves(4, (12.0, 30.0))
        self.chroma = [waves(2, (4.0, 12.0)) for _ in range(channels)]
        self.base = rng.uniform(70.0, 150.0, size=channels)
        self.grad = rng.uniform(-40.0, 40.0, size=(channels, 2))
        self.rects = [
            (
                int(rng.integers(0, height)),
                int(rng.integers(0, width)),
                int(rng.integers(height // 16, height // 3)),
                int(rng.integers(width // 16, width // 4)),
                rng.uniform(-45.0, 45.0, size=channels),
                int(rng.integers(-12, 13)),  # vertical drift per frame, pixels
                int(rng.integers(-24, 25)),  # horizontal drift per frame, pixels
            )
            for _ in range(6)
        ]

    def _add_waves(self, img: npt.NDArray[np.float32], waves: list[Wave], t: int) -> None:
        two_pi = np.float32(2 * np.pi)
        for fx, fy, phase, amp, drift in waves:
            u = two_pi * np.float32(fx) * self.x + np.float32(phase + drift * t)
            v = two_pi * np.float32(fy) * self.y
            a = np.float32(amp)
            img += (a * np.sin(v))[:, None] * np.cos(u)[None, :]
            img += (a * np.cos(v))[:, None] * np.sin(u)[None, :]

    def frame(self, t: int) -> npt.NDArray[np.uint8]:
        """Frame number ``t`` (any ``t >= 0``), shape (C, H, W) uint8."""
        c, h, w = self.c, self.h, self.w
        luma = np.zeros((h, w), dtype=np.float32)
        self._add_waves(luma, self.luma, t)
        out = np.empty((c, h, w), dtype=np.uint8)
        for ch in range(c):
            img = luma.copy()
            gx, gy = self.grad[ch]
            img += np.float32(self.base[ch]) + np.float32(gx) * self.x[None, :]
            img += (np.float32(gy) * self.y)[:, None]
            self._add_waves(img, self.chroma[ch], t)
            for top, left, rh, rw, shade, dy, dx in self.rects:
                r0 = (top + dy * t) % h
                c0 = (left + dx * t) % w
                img[r0 : r0 + rh, c0 : c0 + rw] += np.float32(shade[ch])
            img += self.rng.integers(-3, 4, size=(h, w), dtype=np.int8)
            np.clip(img, 0.0, 255.0, out=img)
            np.rint(img, out=img)
            out[ch] = img
        return out
