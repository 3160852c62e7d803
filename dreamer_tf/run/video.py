"""Videos of episodes and of the world model's open-loop predictions ("dreams").

`dream_frames` follows DreamerV2's `video_pred` report (danijar/dreamerv2
agent.py `WorldModel.video_pred`): the model filters the first `context`
frames of a real episode, then predicts the rest open loop from the real
actions alone; the frames show truth, prediction and their difference side by
side. Videos are written as GIF (Pillow) or MP4 (imageio with its ffmpeg
plugin), to a temp file renamed into place.
"""

import os
from pathlib import Path

import numpy as np

FORMATS = ('.gif', '.mp4')


def image_key(obs_space):
    """The single (H, W, C) observation key to film; raises if there is none."""
    keys = [key for key, space in obs_space.items() if len(space.shape) == 3]
    if len(keys) != 1:
        raise ValueError(
            f'a video needs exactly one (H, W, C) image observation, got keys '
            f'{sorted(obs_space)}; flattened observations (env.flatten) cannot be filmed.'
        )
    return keys[0]


def to_rgb(frames):
    """[T, H, W, C] uint8 with C = 1 (grey), 3, or other (channels folded) -> [T, H, W, 3]."""
    frames = np.asarray(frames)
    if frames.shape[-1] == 3:
        return frames.astype(np.uint8)
    if frames.shape[-1] == 1:
        return np.repeat(frames, 3, -1).astype(np.uint8)
    # MinAtar-style object channels: each channel gets its own hue.
    palette = (
        np.linspace(64, 255, frames.shape[-1])[:, None] * np.eye(3)[np.arange(frames.shape[-1]) % 3]
    )
    weights = frames.astype(np.float32) / 255.0
    return np.clip(weights @ palette, 0, 255).astype(np.uint8)


def check_video_path(path):
    """Raises unless ``path`` names a format that can be written here; returns its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f'video path must end in {" or ".join(FORMATS)}, got {Path(path).name!r}.')
    if suffix == '.mp4':
        _require_mp4()
    return suffix


def write_video(frames, path, fps=15):
    """Writes [T, H, W, C] uint8 frames to ``path`` (.gif or .mp4) atomically."""
    path = Path(path)
    suffix = check_video_path(path)
    frames = to_rgb(frames)
    if frames.ndim != 4 or not len(frames):
        raise ValueError(f'expected frames shaped [T, H, W, C] with T > 0, got {frames.shape}.')
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp{suffix}')
    try:
        if suffix == '.gif':
            _write_gif(frames, tmp, fps)
        else:
            _write_mp4(frames, tmp, fps)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_gif(frames, path, fps):
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(
        path,
        format='GIF',
        save_all=True,
        append_images=images[1:],
        duration=max(1, round(1000 / fps)),
        loop=0,
    )


def _require_mp4():
    try:
        import imageio  # noqa: F401
        import imageio_ffmpeg  # noqa: F401  (the ffmpeg binary imageio's plugin runs)
    except ImportError as error:
        raise RuntimeError(
            f'writing MP4 needs imageio and imageio-ffmpeg (pip install imageio-ffmpeg): '
            f'{error}. Use a .gif path instead.'
        ) from None


def _write_mp4(frames, path, fps):
    import imageio.v2 as imageio

    with imageio.get_writer(path, format='FFMPEG', fps=fps, macro_block_size=1) as writer:
        for frame in frames:
            writer.append_data(frame)


def dream_frames(agent, episode, context=5, length=50, seed=0):
    """Truth | open-loop prediction | difference for the start of an episode.

    Args:
      agent: a trained `Agent`.
      episode: dict of [T, ...] arrays in replay form (observation keys,
        ``action`` holding the previous action, ``is_first``).
      context: frames the model observes before predicting open loop.
      length: frames shown in all (at most the episode's length).
    Returns [length, H, 3W, C] uint8 frames; the first `context` predictions
    are reconstructions of observed frames.
    """
    import tensorflow as tf

    wm = agent.wm
    if not wm.representation.decodes:
        raise ValueError('the world model has no decoder (Dreaming presets): no dream video')
    key = image_key(agent.obs_space)
    length = min(length, len(episode['is_first']))
    if not 0 < context < length:
        raise ValueError(f'need 0 < context < length, got context {context}, length {length}.')
    data = {
        k: tf.convert_to_tensor(np.asarray(episode[k][:length])[None])
        for k in (*agent.obs_space, 'action', 'is_first')
    }
    seeds = tf.random.experimental.stateless_split(tf.constant([seed, 0], tf.int64), length)
    embed = wm.encoder({k: v[:, :context] for k, v in data.items()})
    post, _ = wm.rssm.observe(
        embed, data['action'][:, :context], data['is_first'][:, :context], seeds[0]
    )
    decoder = wm.representation.decoder
    predictions = [decoder(wm.rssm.feat(post))[key].mode()[0]]
    state = {k: v[:, -1] for k, v in post.items()}
    for t in range(context, length):
        state = wm.rssm.img_step(state, data['action'][:, t], seeds[t])
        predictions.append(decoder(wm.rssm.feat(state))[key].mode())
    model = tf.concat(predictions, 0).numpy()
    model = np.clip((model + 0.5) * 255.0, 0, 255).astype(np.uint8)
    truth = np.asarray(episode[key][:length], np.uint8)
    error = np.abs(truth.astype(np.int16) - model.astype(np.int16)).astype(np.uint8)
    return np.concatenate([truth, model, error], 2)
