"""The `stylelens project` job: check every input, project, and write the results with a manifest.

Everything that can be wrong with the inputs (target image, channels, loss, class, weights, video format) is checked
before the output folder is created, so a refused run writes nothing. Written, each atomically: `projected_w.npz`
('w' [1, num_ws, w_dim], NVIDIA's layout), `proj.png` (the projection rendered from that w with the network's own
constant noise, so `mix --rows w:DIR/projected_w.npz` reproduces it exactly), `target.png`, `proj.gif` or
`proj.mp4` (target | projection while it converges), `loss.csv`, `loss.png`, `distances.json` and `manifest.json`.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from stylelens.errors import StylelensError
from stylelens.generation import synthesize
from stylelens.latents import class_to_c, save_ws_file
from stylelens.loading.download import file_sha256, remembered_sha256
from stylelens.outputs import atomic_write_text, ensure_outdir, save_png, to_jsonable, to_uint8, write_manifest
from stylelens.progress import progress_bar
from stylelens.projection.objectives import PERCEPTUAL_LOSSES, check_loss, make_objective, perceptual_distances
from stylelens.projection.perceptual import VGG16Features
from stylelens.projection.projector import ProjectionResult, ProjectionSettings, project
from stylelens.projection.quality import psnr, ssim
from stylelens.projection.target import PREPARATION, load_target
from stylelens.projection.vgg_weights import cached_weights, load_vgg16, resolve_weights
from stylelens.viz import new_figure, save_figure
from stylelens.walks import check_walk_path, render_frames, save_animation

VIDEO_FORMATS = ('gif', 'mp4', 'none')
VIDEO_FPS = 10
VIDEO_MIN_HEIGHT = 256  # small networks' frames are enlarged (nearest neighbour) to at least this height


@dataclass
class ProjectionRequest:
    """What to project and how: the target file, the loss, the class, the VGG16 file (None: the registry's), the
    progress-video format and the algorithm's settings."""

    target: str
    loss: str = 'lpips'
    class_idx: str | int | None = None
    vgg: str | None = None
    video: str = 'gif'
    settings: ProjectionSettings = field(default_factory=ProjectionSettings)


def _features(request: ProjectionRequest, progress: bool) -> tuple[VGG16Features | None, Path | None]:
    """The VGG16 network and its file: required (downloaded if need be) for a perceptual loss; for mse only when
    given or already cached, to report perceptual distances."""
    if request.loss in PERCEPTUAL_LOSSES or request.vgg is not None:
        path = resolve_weights(request.vgg, progress=progress)
    else:
        path = cached_weights()
    return (load_vgg16(path), path) if path is not None else (None, None)


def _video_path(outdir: Path, video: str) -> Path | None:
    """proj.gif / proj.mp4 (checked now: an MP4 needs imageio-ffmpeg), or None for 'none'."""
    if video not in VIDEO_FORMATS:
        raise StylelensError(f"unknown --video {video!r}: choose one of {', '.join(VIDEO_FORMATS)}")
    return None if video == 'none' else check_walk_path(outdir / f'proj.{video}')


def run_projection(G: torch.nn.Module, request: ProjectionRequest, outdir: str | os.PathLike, *,
                   network: dict[str, Any] | None = None, class_names: Sequence[str] | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """Project `request.target` into G's W (or W+) and write every output into `outdir`; returns the distances,
    timings and file names that also go into the manifest."""
    settings = request.settings
    settings.check()
    device = next(G.parameters()).device
    check_loss(request.loss, G.img_channels)
    c = torch.from_numpy(class_to_c(request.class_idx, G.c_dim, 1, class_names)).to(device)
    target = load_target(request.target, G.img_resolution, G.img_channels)
    video = _video_path(Path(outdir), request.video)
    features, vgg_path = _features(request, progress)
    objective = make_objective(request.loss, target, features, device)
    out = ensure_outdir(outdir)
    with progress_bar(settings.steps, 'projecting', enabled=progress) as bar:
        def advance(step: int, dist: float, loss: float) -> None:
            bar.set_postfix_str(f'dist {dist:.4g} loss {loss:.4g}', refresh=False)
            bar.update(1)

        result = project(G, objective, settings, c=c, callback=advance)
    projected = to_uint8(synthesize(G, result.ws.to(device)))[0]
    files = _write_images(out, G, result, target, projected, video)
    distances = _distances(target, projected, features, device)
    atomic_write_text(out / 'distances.json', json.dumps(to_jsonable(distances), indent=2) + '\n')
    summary = dict(distances=distances, timing=_timing(result), w_std=result.w_std,
                   noise_buffers_optimised=result.noise_buffers, files=files + ['distances.json'],
                   target=dict(path=str(request.target), sha256=file_sha256(Path(request.target)),
                               preparation=PREPARATION),
                   vgg16=dict(path=str(vgg_path), sha256=remembered_sha256(vgg_path)) if vgg_path else None)
    options = dict(asdict(settings), loss=request.loss, class_idx=request.class_idx, video=request.video,
                   device=str(device))
    write_manifest(out, command='project', options=options, network=network, extra=summary)
    return summary


def _write_images(out: Path, G: torch.nn.Module, result: ProjectionResult, target: np.ndarray,
                  projected: np.ndarray, video: Path | None) -> list[str]:
    """target.png, proj.png, projected_w.npz, loss.csv, loss.png and the progress video; returns their names."""
    save_png(target, out / 'target.png')
    save_png(projected, out / 'proj.png')
    save_ws_file(out / 'projected_w.npz', result.ws)
    _write_history(result, out / 'loss.csv')
    _loss_figure(result, out / 'loss.png')
    files = ['target.png', 'proj.png', 'projected_w.npz', 'loss.csv', 'loss.png']
    if video is not None:
        frames = render_frames(G, result.frame_ws)
        save_animation(_side_by_side(target, frames), video, fps=VIDEO_FPS)
        files.append(video.name)
    return files


def _side_by_side(target: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Frames [F, H, 2W, C]: the target left, the projection right, enlarged for small networks."""
    pairs = np.concatenate([np.broadcast_to(target, frames.shape), frames], axis=2)
    scale = max(1, VIDEO_MIN_HEIGHT // target.shape[0])
    return pairs.repeat(scale, axis=1).repeat(scale, axis=2) if scale > 1 else pairs


def _write_history(result: ProjectionResult, path: Path) -> None:
    """One CSV row per step: step, learning rate, distance, noise regulariser, total loss, seconds."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(['step', 'lr', 'dist', 'noise_reg', 'loss', 'seconds'])
    h = result.history
    for step in range(len(h['dist'])):
        writer.writerow([step, repr(h['lr'][step]), repr(h['dist'][step]), repr(h['noise_reg'][step]),
                         repr(h['loss'][step]), f'{result.step_seconds[step]:.4f}'])
    atomic_write_text(path, buffer.getvalue())


def _loss_figure(result: ProjectionResult, path: Path) -> None:
    """The distance and the total loss per step (log scale), with the learning rate on a second axis."""
    fig = new_figure(8, 4)
    ax = fig.add_subplot()
    steps = np.arange(len(result.history['dist']))
    ax.plot(steps, result.history['dist'], label='distance')
    ax.plot(steps, result.history['loss'], alpha=0.6, label='distance + noise regulariser')
    ax.set(xlabel='step', ylabel='loss', yscale='log', title='projection')
    ax.legend(loc='upper right', fontsize='small')
    lr_axis = ax.twinx()
    lr_axis.plot(steps, result.history['lr'], color='grey', linestyle='--', linewidth=0.8)
    lr_axis.set_ylabel('learning rate', color='grey')
    save_figure(fig, path, tight=True)


def _distances(target: np.ndarray, projected: np.ndarray, features: VGG16Features | None,
               device: torch.device) -> dict[str, Any]:
    """PSNR, SSIM and (when the VGG16 weights are here) LPIPS and the VGG distance of proj.png to target.png."""
    out: dict[str, Any] = dict(psnr_db=psnr(target, projected), ssim=ssim(target, projected))
    if features is not None and target.shape[2] in (1, 3):
        out.update(perceptual_distances(target, projected, features, device))
    else:
        out.update(lpips=None, vgg=None, note='LPIPS and VGG distances need the VGG16 weights (--vgg PATH) and an '
                                              'RGB or grayscale network')
    return out


def _timing(result: ProjectionResult) -> dict[str, float]:
    """Setup seconds (W statistics, copies), total step seconds and steps per second (median step)."""
    seconds = result.step_seconds
    return dict(setup_seconds=result.setup_seconds, steps_seconds=float(sum(seconds)),
                steps_per_second=1 / float(np.median(seconds)) if seconds else 0.0)
