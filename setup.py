"""ament_python / pip install for vitron_ros.

The same file serves `colcon build` (data_files put launch and config where ament expects them) and a plain
`pip install -e .` on machines without ROS 2, which is how the CLI and the tests run.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "vitron_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        # The trained `shapes` profile ships with the package (18 MB with its SAM 2 tracker): it runs offline.
        (f"share/{PACKAGE}/models/shapes", glob("models/shapes/*.safetensors")),
        (f"share/{PACKAGE}/models/shapes/llava", glob("models/shapes/llava/*")),
        (f"share/{PACKAGE}/models/shapes/sam2", glob("models/shapes/sam2/*")),
    ],
    python_requires=">=3.10",
    install_requires=[
        # torch and torchvision are a matching pair; pinning both keeps pip from pairing a new torch with an old
        # torchvision (segment-anything needs torchvision's NMS).
        "torch==2.15.0",
        "torchvision==0.29.2",
        "transformers>=5.0,<6",
        "diffusers>=0.42,<0.43",  # StableDiffusionInpaint and InstructPix2Pix (generator, editor)
        "huggingface_hub",
        "segment-anything==1.0",
        "numpy",
        "opencv-python-headless",
        "pillow",
        "safetensors",
        "pyyaml",
        # ROS 2 message definitions and bags without a ROS 2 install: replay, tests, benches.
        "rosbags>=0.10",
        "tokenizers",
        "tqdm",
    ],
    extras_require={"test": ["pytest", "hypothesis", "pycocotools"]},
    entry_points={"console_scripts": ["vitron = vitron_ros.cli:main", "vitron_node = vitron_ros.ros.node:main"]},
    zip_safe=True,
    maintainer="vitron_ros developers",
    description="Pixel-level vision assistant (VITRON) for ROS 2",
    license="Apache-2.0",
)
