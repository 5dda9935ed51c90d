"""ament_python / pip install for vitron_ros.

The same file serves `colcon build` (data_files put launch and config where ament expects them) and a plain
`pip install -e .` on machines without ROS 2, which is how the CLI and the tests run.
"""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "vitron_ros"


def _tree(source: str, target: str) -> list[tuple[str, list[str]]]:
    """data_files entries installing every file under `source` at the same relative place under `target`."""
    entries = []
    for folder, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # no staging leftovers
        if files:
            relative = os.path.relpath(folder, source)
            entries.append((os.path.normpath(os.path.join(target, relative)), [os.path.join(folder, f) for f in sorted(files)]))
    return entries


ONNX = ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript>=0.2"]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        # The trained `shapes` profile ships with the package (LLM, SAM, SAM 2 tracker, diffusion editor): it runs
        # offline. Every folder under models/shapes keeps its place (diffusers folders nest a level deeper).
        *_tree("models/shapes", f"share/{PACKAGE}/models/shapes"),
    ],
    python_requires=">=3.10",
    install_requires=[
        # Ranges, not pins: a robot keeps the torch it has (JetPack's build for its GPU, or an x86 CUDA build), and
        # pip changes neither when both are in range. 2.6 is what transformers 5 needs; torchvision 0.21 is its pair.
        # pip cannot tie the two together: `vitron doctor` checks that this torchvision's NMS runs with this torch.
        # The exact set CI runs is constraints.txt.
        "torch>=2.6,<3",
        "torchvision>=0.21,<1",
        "transformers>=5.0,<6",
        "diffusers>=0.42,<0.43",  # StableDiffusionInpaint and InstructPix2Pix (generator, editor)
        "huggingface_hub",
        "segment-anything==1.0",
        # grammar-constrained decoding of replies (core/model/constrained.py): special tokens as tokens, Lark grammars
        "llguidance>=1.9,<2",
        "numpy",
        "packaging",  # vitron doctor compares installed versions with the ranges above
        "opencv-python-headless",
        "pillow",
        "safetensors",
        "pyyaml",
        # ROS 2 message definitions and bags without a ROS 2 install: replay, tests, benches.
        "rosbags>=0.10",
        "tqdm",
    ],
    extras_require={
        # the onnxruntime encoder backend (and exports for TensorRT); on CUDA install onnxruntime-gpu instead.
        # TensorRT itself comes with JetPack or NVIDIA's index and is found by import when present.
        "onnx": ONNX,
        # converting published checkpoints whose tokenizer is a sentencepiece model (GLaMM: core/model/glamm.py)
        "convert": ["sentencepiece"],
        "test": ["pytest", "hypothesis", "pycocotools", "sentencepiece", *ONNX],
    },
    entry_points={"console_scripts": ["vitron = vitron_ros.cli:main", "vitron_node = vitron_ros.ros.node:main"]},
    zip_safe=True,
    maintainer="vitron_ros developers",
    description="Pixel-level vision assistant (VITRON) for ROS 2",
    license="Apache-2.0",
)
