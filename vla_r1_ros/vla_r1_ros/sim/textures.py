"""Textures PyBullet's EGL renderer can upload without reading past them.

Bullet's `GLInstancingRenderer::updateTexture` (bullet3 examples/OpenGLWindow/GLInstancingRenderer.cpp)
hands OpenGL every texture as tightly packed RGB, width * height * 3 bytes, and leaves
GL_UNPACK_ALIGNMENT at its default of 4: OpenGL then takes each row to start on a 4-byte boundary. A
texture whose width is not a multiple of 4 is read height - 1 bytes past the end of its buffer (and
sheared). pybullet_data's tray.jpg is 853 px wide: Mesa read 1460 bytes past a 3.7 MB buffer and
segfaulted whenever the page after it was unmapped (1 load in 4 after the tiny-model tests; with the
buffer's end put on an unmapped page, every load: test/test_textures.py). So every URDF the renderer's
client loads goes through `renderable_urdf`, and the white texture is 4 px wide.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import tempfile
import xml.etree.ElementTree as ET
import zlib

import pybullet_data
from PIL import Image

_ROW_ALIGNMENT_PX = 4  # 4-byte rows at 3 bytes a pixel


def white_texture_path() -> str:
    """A 4x4 white PNG. Replacing a mesh's texture with it leaves only the palette colour: PyBullet's
    `textureUniqueId=-1` does not remove a texture under the EGL renderer (the yellow duck texture
    would tint every duck)."""
    path = os.path.join(tempfile.gettempdir(), "vla_r1_white_texture_4x4.png")
    if not os.path.exists(path):

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        size = _ROW_ALIGNMENT_PX
        rows = b"".join(b"\x00" + b"\xff" * 3 * size for _ in range(size))
        png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
        png += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "wb") as handle:
            handle.write(png)
        os.replace(tmp, path)  # atomic: parallel test processes never read a half-written file
    return path


def renderable_urdf(urdf: str) -> str:
    """The path to load for `urdf` (a path as PyBullet takes it: as given, else in pybullet_data).

    The URDF itself when every texture its meshes use is a multiple of 4 px wide; otherwise a copy of
    the URDF, its meshes, materials and textures, with each misfit texture resized to the nearest
    multiple of 4 px wide (same height), made once in the temp directory and shared by later calls
    and processes."""
    path = urdf if os.path.isabs(urdf) or os.path.exists(urdf) else os.path.join(pybullet_data.getDataPath(), urdf)
    path = os.path.abspath(path)
    root = os.path.dirname(path)
    files, textures = _asset_files(path)
    misfits = [t for t in textures if _width(t) % _ROW_ALIGNMENT_PX]
    if not misfits:
        return path
    outside = [f for f in files if os.path.relpath(f, root).startswith(os.pardir)]
    if outside:
        raise ValueError(f"{urdf}: textures need resizing but {outside[0]} lies outside the URDF's directory")
    stamp = "".join(f"{f}:{os.stat(f).st_mtime_ns};" for f in sorted(files))
    copy = os.path.join(tempfile.gettempdir(), "vla_r1_textures", hashlib.sha1(stamp.encode()).hexdigest()[:16])
    if not os.path.isdir(copy):
        os.makedirs(os.path.dirname(copy), exist_ok=True)
        staging = tempfile.mkdtemp(dir=os.path.dirname(copy))
        os.chmod(staging, 0o755)  # mkdtemp makes it private; other users of the machine load it too
        for source in files:
            target = os.path.join(staging, os.path.relpath(source, root))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if source in misfits:
                with Image.open(source) as image:
                    width = max(_ROW_ALIGNMENT_PX, round(image.size[0] / _ROW_ALIGNMENT_PX) * _ROW_ALIGNMENT_PX)
                    image.resize((width, image.size[1]), Image.Resampling.LANCZOS).save(target, quality=95)
            else:
                shutil.copyfile(source, target)
        try:
            os.rename(staging, copy)  # atomic: a process that sees the directory sees all of it
        except OSError:  # another process made it first
            shutil.rmtree(staging, ignore_errors=True)
    return os.path.join(copy, os.path.basename(path))


def _width(image_path: str) -> int:
    with Image.open(image_path) as image:  # reads the header only
        return image.size[0]


def _asset_files(urdf: str) -> tuple[set[str], set[str]]:
    """Every file loading `urdf` reads (the URDF, its meshes, their .mtl files and textures), and the
    textures among them. Paths resolve as Bullet's URDF importer resolves them: relative to the file
    that names them, `package://` stripped."""
    root = os.path.dirname(urdf)
    files, textures = {urdf}, set()

    def resolve(base: str, name: str) -> str:
        return os.path.normpath(os.path.join(base, name.removeprefix("package://")))

    tree = ET.parse(urdf)
    for mesh in tree.iter("mesh"):
        mesh_path = resolve(root, mesh.attrib["filename"])
        files.add(mesh_path)
        if mesh_path.lower().endswith(".obj") and os.path.exists(mesh_path):
            for material in _obj_statements(mesh_path, "mtllib"):
                material_path = resolve(os.path.dirname(mesh_path), material)
                if os.path.exists(material_path):
                    files.add(material_path)
                    for texture in _obj_statements(material_path, "map_Kd"):
                        textures.add(resolve(os.path.dirname(material_path), texture.split()[-1]))
    for texture in tree.iter("texture"):
        textures.add(resolve(root, texture.attrib["filename"]))
    textures = {t for t in textures if os.path.exists(t)}
    return files | textures, textures


def _obj_statements(path: str, keyword: str) -> list[str]:
    """The arguments of every `keyword` line of a Wavefront .obj or .mtl file."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        statements = [line.split(None, 1) for line in handle]
    return [parts[1].strip() for parts in statements if len(parts) == 2 and parts[0] == keyword]
